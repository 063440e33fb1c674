"""Component families (issue 21): draws, config, cell ids and seeds, and the study without one."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import emsim
from emsim.families import family_from_label, parse_family
from emsim.study.config import ConfigError, load_study, recorded_fit_task
from emsim.study.manifest import table_hash
from emsim.study.schema import FAMILY
from emsim.study.seeding import data_rng, simulate_replicate

ROOT = Path(__file__).resolve().parents[1]
T5 = {"name": "t", "df": 5}
SKEW4 = {"name": "skew_normal", "alpha": 4}
CONTAMINATED = {"name": "contaminated", "epsilon": 0.05, "scale": 5}

# The default config's cells as they were before families existed (commit e886b4f): a study
# without `family` must keep them, with their seeds and data.
DEFAULT_CELL_IDS = [
    "n50_mu0-1_s1-1_pi0.5_a073a7a4",
    "n50_mu0-1_s1-1_pi0.8_8ec4cbc1",
    "n50_mu0-1_s1-1_pi0.95_5b386608",
    "n50_mu0-2_s1-1_pi0.5_7669f07d",
    "n50_mu0-2_s1-1_pi0.8_a9f193c0",
    "n50_mu0-2_s1-1_pi0.95_b60a5715",
    "n50_mu0-4_s1-1_pi0.5_ce099edd",
    "n50_mu0-4_s1-1_pi0.8_76ad6d3d",
    "n50_mu0-4_s1-1_pi0.95_f9e02bd1",
    "n500_mu0-1_s1-1_pi0.5_2290aa09",
    "n500_mu0-1_s1-1_pi0.8_1016508b",
    "n500_mu0-1_s1-1_pi0.95_76ce3f84",
    "n500_mu0-2_s1-1_pi0.5_0bff5bd0",
    "n500_mu0-2_s1-1_pi0.8_8529407a",
    "n500_mu0-2_s1-1_pi0.95_91c313f9",
    "n500_mu0-4_s1-1_pi0.5_00de1b1a",
    "n500_mu0-4_s1-1_pi0.8_4f747414",
    "n500_mu0-4_s1-1_pi0.95_2f460aa8",
    "n5000_mu0-1_s1-1_pi0.8_8384d09e",
    "n5000_mu0-2_s1-1_pi0.8_1eb15aae",
    "n5000_mu0-4_s1-1_pi0.95_1d3354c7",
]
# table_hash of replicates 0-3 of cell n50_mu0-2_s1-1_pi0.8 fitted by the default config at
# e886b4f (before families), over what the data and the path decide: the fit id, iterations,
# log-likelihoods, E-steps and estimates of the abs and aitken rows. The diagnostics (SEs,
# distance to the limit, statuses judged from them, the score rule's information checks)
# changed since by design (issue 18's limit, a faster information pass) and are left out.
PATH_COLUMNS = [
    "cell_id",
    "replicate",
    "model",
    "method",
    "start",
    "stopping",
    "iterations",
    "loglik",
    "loglik_start",
    "loglik_evals",
    "est_pi",
    "est_mu1",
    "est_mu2",
    "est_sigma1",
    "est_sigma2",
]
# The engine's path rows of the default study's first chunk: families must not move them. They
# moved once since, when the engine's multiply-adds were pinned to explicit fma (design.md
# section 8).
DEFAULT_CHUNK_PATH_HASH = "35f79346e52b5c3cbb016ec69dc9eab94519a65cb21b28b80d1c425dc8576d24"


def _default_config() -> dict:
    with open(ROOT / "config.yaml") as f:
        return yaml.safe_load(f)


def _with_families(cfg: dict, families: list) -> dict:
    return dict(cfg, grid=dict(cfg["grid"], family=families))


def test_default_study_keeps_its_cells() -> None:
    # Its normal cells are those of before families; the family scenarios come after them.
    study = load_study(_default_config())
    assert study.cell_ids[: len(DEFAULT_CELL_IDS)] == DEFAULT_CELL_IDS
    assert {c.family for c in study.cells[: len(DEFAULT_CELL_IDS)]} == {"normal"}
    added = study.cells[len(DEFAULT_CELL_IDS) :]
    assert [c.family for c in added] == ["t(df=4.0)", "contaminated(epsilon=0.05,scale=5.0)"]


def test_default_study_chunk_rows_unchanged(tmp_path: Path) -> None:
    from emsim.study.fitjob import fit_chunk

    study = load_study(_default_config())
    cell = study.cell("n50_mu0-2_s1-1_pi0.8_a9f193c0")
    task = recorded_fit_task(
        study.fit_config, study.config["seed"], study.fit_hash, cell, 0, range(4)
    )
    fit_chunk(task, tmp_path / "f.parquet", tmp_path / "t.parquet")
    table = pq.read_table(tmp_path / "f.parquet")
    assert set(table[FAMILY].to_pylist()) == {"normal"}
    rules = table["stopping"].to_numpy(zero_copy_only=False)
    path_rows = table.filter(pa.array((rules == "abs") | (rules == "aitken")))
    assert path_rows.num_rows == 288
    assert table_hash(path_rows.select(PATH_COLUMNS)) == DEFAULT_CHUNK_PATH_HASH


def test_normal_family_draws_todays_data() -> None:
    args = (200, (0.0, 2.0), (1.0, 1.5), 0.8)
    today = emsim.simulate(*args, np.random.default_rng(7))
    for spec in (None, "normal", {"name": "normal"}):
        np.testing.assert_array_equal(
            emsim.simulate(*args, np.random.default_rng(7), family=spec), today
        )


@pytest.mark.parametrize(
    ("spec", "mean", "variance"),
    [
        (T5, 0.0, 5.0 / 3.0),
        (SKEW4, (4 / math.sqrt(17)) * math.sqrt(2 / math.pi), 1 - (2 / math.pi) * 16 / 17),
        (CONTAMINATED, 0.0, 0.95 + 0.05 * 25.0),
    ],
)
def test_family_errors_have_the_family_moments(spec, mean, variance) -> None:
    # One component (pi = 1) at mu 3, sigma 2: y = 3 + 2 e.
    n = 400_000
    y = emsim.simulate(n, (3.0, 0.0), 2.0, 1.0, np.random.default_rng(11), family=spec)
    e = (y - 3.0) / 2.0
    assert abs(e.mean() - mean) < 5 * math.sqrt(variance / n)
    # The variance of a sample variance needs the fourth moment: 5 sd's of a loose bound.
    assert abs(e.var() / variance - 1.0) < 0.03


def test_skew_normal_has_its_skew() -> None:
    y = emsim.simulate(100_000, (0.0, 0.0), 1.0, 1.0, np.random.default_rng(2), family=SKEW4)
    assert np.mean(y < 0) < 0.1  # alpha 4: P(e < 0) = 1/2 - atan(4)/pi = 0.078
    assert abs(np.mean(y < 0) - (0.5 - math.atan(4) / math.pi)) < 0.005


def test_study_cell_draws_as_simulate() -> None:
    study = load_study(_with_families(_default_config(), ["normal", T5, SKEW4, CONTAMINATED]))
    cells = [c for c in study.cells if c.n == 50 and c.mu2 == 2.0 and c.pi == 0.8]
    assert [c.family for c in cells] == [
        "normal",
        "t(df=5.0)",
        "skew_normal(alpha=4.0)",
        "contaminated(epsilon=0.05,scale=5.0)",
    ]
    assert cells[0].cell_id == "n50_mu0-2_s1-1_pi0.8_a9f193c0"
    assert [c.cell_id.split("_")[4] for c in cells[1:]] == ["t5", "sn4", "cn0.05-5"]
    drawn = []
    for cell, spec in zip(cells, ["normal", T5, SKEW4, CONTAMINATED], strict=True):
        y = simulate_replicate(5, cell.as_dict(), 3)
        rng = data_rng(5, cell.as_dict(), 3)
        np.testing.assert_array_equal(y, emsim.simulate(50, (0, 2), 1, 0.8, rng, family=spec))
        drawn.append(y)
    # Each family cell has its own stream (its family is part of its seed).
    assert len({tuple(y) for y in drawn}) == 4


def test_grid_families_multiply_the_cells() -> None:
    cfg = _default_config()
    plain = load_study(cfg)
    study = load_study(_with_families(cfg, ["normal", T5]))
    grid_cells = len(plain.cells) - len(cfg["scenarios"])
    assert len(study.cells) == 2 * grid_cells + len(cfg["scenarios"])
    assert set(plain.cell_ids) <= set(study.cell_ids)


def test_label_round_trip() -> None:
    for spec in ("normal", T5, SKEW4, CONTAMINATED, {"name": "skew_normal", "alpha": -2.5}):
        family = parse_family(spec)
        assert family_from_label(family.label) == family
        assert parse_family(family.as_spec()) == family


@pytest.mark.parametrize(
    ("family", "message"),
    [
        ({"name": "t", "df": 2}, "grid.family[1].df: 2 is not > 2"),
        ({"name": "t"}, "grid.family[1].df: missing (required for t)"),
        ({"name": "t", "df": 5, "alpha": 1}, "grid.family[1].alpha: not a parameter of t"),
        ("student", "grid.family[1]: 'student' is not one of normal, t"),
        ({"name": "contaminated", "epsilon": 0, "scale": 5}, "grid.family[1].epsilon: 0 is not"),
        ({"name": "contaminated", "epsilon": 0.1, "scale": -1}, "grid.family[1].scale: -1 is not"),
        ({"name": "skew_normal", "alpha": ".5"}, "grid.family[1].alpha: '.5' is not of type"),
        ({"name": "t", "df": 5, "nu": 3}, "grid.family[1].nu: unknown key"),
    ],
)
def test_bad_family_is_one_line_naming_the_key(family, message) -> None:
    with pytest.raises(ConfigError) as err:
        load_study(_with_families(_default_config(), ["normal", family]))
    assert str(err.value).startswith(f"config error: {message}")
    assert "\n" not in str(err.value)


def test_bad_scenario_family() -> None:
    cfg = dict(_default_config(), scenarios=[{"n": 50, "mu": [0, 2], "sigma": 1, "pi": 0.8}])
    cfg["scenarios"][0]["family"] = {"name": "t", "df": 1.5}
    with pytest.raises(ConfigError, match=r"^config error: scenarios\[0\]\.family\.df: 1\.5"):
        load_study(cfg)


def test_simulate_refuses_bad_family_and_r_stream() -> None:
    with pytest.raises(ValueError, match="df"):
        emsim.simulate(5, (0, 2), 1, 0.8, np.random.default_rng(1), family={"name": "t", "df": 2})
    with pytest.raises(ValueError, match="numpy Generator"):
        emsim.simulate(5, (0, 2), 1, 0.8, emsim.RRandom(1), family=T5)


def test_cli_simulate_draws_as_simulate(tmp_path: Path) -> None:
    out = tmp_path / "y.csv"
    cmd = [sys.executable, "-m", "emsim", "simulate", "--n", "40", "--mu", "0,2", "--sigma", "1"]
    cmd += ["--pi", "0.8", "--seed", "9", "--family", "contaminated", "--epsilon", "0.05"]
    done = subprocess.run([*cmd, "--scale", "5", "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    y = np.loadtxt(out, skiprows=1)
    rng = np.random.default_rng(np.random.SeedSequence(9))
    np.testing.assert_array_equal(y, emsim.simulate(40, (0, 2), 1, 0.8, rng, CONTAMINATED))
    bad = subprocess.run([*cmd, "-o", str(out)], capture_output=True, text=True)
    assert bad.returncode != 0
    assert (
        bad.stderr.strip().splitlines()[-1]
        == "emsim: error: --scale: missing (required for contaminated)"
    )
