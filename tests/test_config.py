"""Study configuration, cells, seeding, starts and fit jobs: pure Python, no Snakemake run."""

from __future__ import annotations

import copy
import os
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from emsim.study import jobs
from emsim.study.config import expand_cells, load_study
from emsim.study.config_checks import ConfigError
from emsim.study.fitjob import align_to_truth, fit_chunk
from emsim.study.parquet_io import fit_provenance, read_metadata, write_parquet_atomic
from emsim.study.schema import FITS_SCHEMA
from emsim.study.seeding import (
    cell_key,
    data_rng,
    simulate_replicate,
    simulate_replicates,
)
from emsim.study.starts import expand_starts, start_values
from emsim.study.study import Cell

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
HIVE_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")

MINIMAL = {"scenarios": [{"n": 100, "mu": [0, 2], "sigma": 1, "pi": 0.8}]}


def study(cfg):
    return load_study(cfg, SCHEMA)


def with_(base, **changes):
    cfg = copy.deepcopy(base)
    cfg.update(changes)
    return cfg


# --- validation -------------------------------------------------------------------------------


def test_default_config_is_valid_and_covers_the_design_ranges():
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    s = study(cfg)
    ns = {c.n for c in s.cells}
    seps = {abs(c.mu2 - c.mu1) / c.sigma1 for c in s.cells}
    pis = {c.pi for c in s.cells}
    assert min(ns) == 50 and max(ns) == 5000
    assert min(seps) == 1 and max(seps) == 4
    assert min(pis) == 0.5 and max(pis) == 0.95
    assert s.replicates >= 200
    assert set(s.config["models"]) == {"pi", "equal_var", "full"}
    names = s.start_names
    assert {"fixed", "quantile", "truth", "random1", "random2", "random3"} <= set(names)
    fixed = next(spec for spec in s.starts if spec.name == "fixed")
    assert fixed.values == {"pi": 0.5}  # the seed's start


def test_stopping_rules_multiply_the_fit_rows_and_take_their_tolerances():
    s = study(with_(MINIMAL, em={"stopping": ["abs", "aitken", "rel"], "tolerance": 1e-6}))
    assert s.fits_per_replicate == 3 * study(MINIMAL).fits_per_replicate
    assert s.tolerances == {"abs": 1e-6, "aitken": 1e-6, "rel": 1e-6}
    assert s.stopping == ("abs", "aitken", "rel")
    per_rule = {"abs": 1e-5, "rel": 1e-9}
    s = study(with_(MINIMAL, em={"stopping": ["rel", "abs"], "tolerance": per_rule}))
    assert s.tolerances == {"rel": 1e-9, "abs": 1e-5}
    assert s.stopping == ("rel", "abs")


def test_defaults_are_filled():
    s = study(MINIMAL)
    cfg = s.config
    assert cfg["em"] == {
        "stopping": ["abs"],
        "tolerance": 1e-5,
        "score_tolerance": 0.01,
        "max_iterations": 1000,
        "premature_threshold": 0.1,
    }
    assert cfg["coverage"]["level"] == 0.95
    assert cfg["models"] == ["pi", "equal_var", "full"]
    assert cfg["methods"] == ["em", "squarem"]
    assert s.start_names == ["fixed", "quantile", "random1", "random2", "random3", "truth"]
    assert MINIMAL == {"scenarios": [{"n": 100, "mu": [0, 2], "sigma": 1, "pi": 0.8}]}


GRID = {"grid": {"n": [50, 100], "mu": [[0, 2]], "sigma": [1, [1, 2]], "pi": [0.5, 0.8]}}


@pytest.mark.parametrize(
    ("cfg", "path", "fragment"),
    [
        (with_(MINIMAL, replicats=10), "replicats", "unknown key"),
        (with_(MINIMAL, em={"tolerence": 1e-3}), "em.tolerence", "unknown key"),
        (with_(MINIMAL, replicates="ten"), "replicates", "'ten' is not of type 'integer'"),
        (with_(MINIMAL, replicates=0), "replicates", "minimum"),
        (with_(MINIMAL, models=["fulll"]), "models[0]", "'fulll' is not one of"),
        (
            {"grid": {"n": [50], "mu": [[0, 2]], "sigma": [1, -1], "pi": [0.5]}},
            "grid.sigma[1]",
            "-1 is not > 0",
        ),
        (
            {"grid": {"n": [50], "mu": [[0, 2]], "sigma": [[1, 0]], "pi": [0.5]}},
            "grid.sigma[0][1]",
            "0 is not > 0",
        ),
        ({"grid": {"n": [50], "mu": [[0, 2]], "sigma": [1]}}, "grid.pi", "missing"),
        (
            {"grid": {"n": [50], "mu": [[0, 2, 3]], "sigma": [1], "pi": [0.5]}},
            "grid.mu[0]",
            "too long",
        ),
        (
            {"scenarios": [{"n": 100, "mu": [0, 2], "sigma": 1, "pi": 1.0}]},
            "scenarios[0].pi",
            "1.0 is not in (0, 1)",
        ),
        ({"scenarios": [{"n": 1, "mu": [0, 2], "sigma": 1, "pi": 0.5}]}, "scenarios[0].n", ">= 2"),
        (
            {"scenarios": [{"n": 100, "mu": [0, 2], "sigma": "x", "pi": 0.5}]},
            "scenarios[0].sigma",
            "not a number or a pair",
        ),
        ({"scenarios": []}, "grid", "no cells"),
        ({}, "grid", "no cells"),
        (
            with_(
                MINIMAL,
                starts=[
                    {"name": "r", "strategy": "random", "k": 2},
                    {"name": "r2", "strategy": "truth"},
                ],
            ),
            "starts[1].name",
            "'r2' is already used",
        ),
        (
            with_(MINIMAL, starts=[{"name": "best", "strategy": "truth"}]),
            "starts[0].name",
            "reserved",
        ),
        (
            with_(MINIMAL, starts=[{"name": "q", "strategy": "quantile", "k": 2}]),
            "starts[0].k",
            "only for strategy random",
        ),
        (
            with_(MINIMAL, starts=[{"name": "f", "strategy": "fixed"}]),
            "starts[0].values",
            "missing",
        ),
        (
            with_(MINIMAL, starts=[{"name": "f", "strategy": "fixed", "values": {"pi": 1.5}}]),
            "starts[0].values.pi",
            "outside [1e-06, 1 - 1e-06]",
        ),
        (
            with_(MINIMAL, starts=[{"name": "f", "strategy": "fixed", "values": {"p": 0.5}}]),
            "starts[0].values.p",
            "unknown key",
        ),
        (with_(MINIMAL, em={"tolerance": 0}), "em.tolerance", "not > 0"),
        (with_(MINIMAL, em={"stopping": ["abs", "newton"]}), "em.stopping[1]", "not one of"),
        (with_(MINIMAL, em={"stopping": []}), "em.stopping", "should be non-empty"),
        (
            with_(MINIMAL, em={"stopping": ["abs", "rel"], "tolerance": {"abs": 1e-5}}),
            "em.tolerance.rel",
            "missing",
        ),
        (
            with_(MINIMAL, em={"stopping": ["abs"], "tolerance": {"abs": 1e-5, "rel": 1e-8}}),
            "em.tolerance.rel",
            "not in em.stopping",
        ),
        (with_(MINIMAL, em={"tolerance": {"abs": -1.0}}), "em.tolerance.abs", "not > 0"),
        (with_(MINIMAL, em={"tolerance": "1e-6"}), "em.tolerance", "1.0e-6"),
        (with_(MINIMAL, em={"premature_threshold": 0}), "em.premature_threshold", "0"),
        (with_(MINIMAL, coverage={"level": 95}), "coverage.level", "not in (0, 1)"),
    ],
)
def test_invalid_config_names_the_key_in_one_line(cfg, path, fragment):
    with pytest.raises(ConfigError) as info:
        study(cfg)
    message = str(info.value)
    assert message.startswith(f"config error: {path}: "), message
    assert fragment in message
    assert "\n" not in message


# --- cells ------------------------------------------------------------------------------------


def test_grid_is_full_factorial_and_ids_are_hive_safe_and_unique():
    s = study(GRID)
    assert len(s.cells) == 2 * 1 * 2 * 2
    ids = [c.cell_id for c in s.cells]
    assert len(set(ids)) == len(ids)
    assert all(HIVE_SAFE.match(i) and "=" not in i and "/" not in i for i in ids)
    assert ids[0].startswith("n50_mu0-2_s1-1_pi0.5_")


def test_cell_id_depends_on_values_only():
    a = Cell.make(500, [0, 2], 1, 0.8)
    assert a == Cell.make(500.0, (0.0, 2.0), [1.0, 1.0], 0.8)
    assert a.cell_id == Cell.make(500, [-0.0, 2], 1, 0.8).cell_id
    assert a.cell_id != Cell.make(500, [2, 0], 1, 0.8).cell_id
    assert a.cell_id != Cell.make(500, [0, 2], 1, 0.80000001).cell_id
    neg = Cell.make(50, [-1.5, 2], [1, 2], 0.5)
    assert neg.cell_id.startswith("n50_mum1.5-2_s1-2_pi0.5_")
    # Position in the grid does not matter; duplicates (grid + scenario) are dropped.
    grid = {"grid": {"n": [500, 50], "mu": [[0, 2]], "sigma": [1], "pi": [0.8, 0.5]}}
    grid["scenarios"] = [{"n": 500, "mu": [0, 2], "sigma": [1, 1], "pi": 0.8}]
    cells = expand_cells(grid)
    assert len(cells) == 4
    assert a.cell_id in {c.cell_id for c in cells}


def test_chunks_cover_every_replicate_once():
    for reps, size in [(10, 3), (10, 10), (10, 20), (7, 1)]:
        s = study(with_(MINIMAL, replicates=reps, chunk_size=size))
        assert s.n_chunks == -(-reps // size)
        covered = [r for k in range(s.n_chunks) for r in s.chunk_replicates(k)]
        assert covered == list(range(reps))
        with pytest.raises(ValueError):
            s.chunk_replicates(s.n_chunks)
    assert study(with_(MINIMAL, replicates=10, chunk_size=3)).chunk_label(3) == "9-9"
    s = study(GRID)
    assert len(s.outputs("fits")) == len(s.cells) * s.n_chunks


def test_fit_hash_covers_only_what_changes_fits():
    base = study(MINIMAL)
    same = [
        with_(MINIMAL, figures={"dpi": 200}),
        with_(MINIMAL, coverage={"level": 0.9}),
        with_(MINIMAL, study="other name"),
        with_(MINIMAL, replicates=50, chunk_size=7),
        with_(GRID),
    ]
    for cfg in same:
        s = study(cfg)
        assert s.fit_hash == base.fit_hash
        assert s.config_hash != base.config_hash
    changed = [
        with_(MINIMAL, seed=1),
        with_(MINIMAL, em={"tolerance": 1e-6}),
        with_(MINIMAL, models=["full"]),
        with_(MINIMAL, methods=["em"]),
        with_(MINIMAL, traces=0),
        with_(MINIMAL, starts=[{"name": "truth", "strategy": "truth"}]),
    ]
    for cfg in changed:
        assert study(cfg).fit_hash != base.fit_hash
    # Explicit defaults are the same config as omitted ones.
    assert study(with_(MINIMAL, em={"tolerance": 1e-5})).config_hash == base.config_hash


def test_fit_hash_covers_the_emsim_version(monkeypatch):
    # A version whose engine fits differently (0.2.0's fma) must refit an older results folder.
    from emsim.study import parquet_io

    base = study(MINIMAL).fit_hash
    monkeypatch.setattr(parquet_io, "emsim_version", lambda: "0.0.0+other")
    assert study(MINIMAL).fit_hash != base


# --- seeding ----------------------------------------------------------------------------------

CELL = Cell.make(60, [0, 2], 1, 0.8).as_dict()


def test_replicate_data_do_not_depend_on_chunking_or_order():
    all_rows = simulate_replicates(7, CELL, range(6))
    assert np.array_equal(simulate_replicates(7, CELL, [4, 2]), all_rows[[4, 2]])
    assert np.array_equal(simulate_replicate(7, CELL, 3), all_rows[3])
    assert len({row.tobytes() for row in all_rows}) == 6
    assert not np.array_equal(simulate_replicates(8, CELL, range(6)), all_rows)


def test_cell_key_comes_from_values_not_position():
    other = Cell.make(60, [0, 2], 1, 0.5).as_dict()
    assert cell_key(CELL) == cell_key(Cell.make(60.0, [0.0, 2.0], [1, 1], 0.8).as_dict())
    assert cell_key(CELL) != cell_key(other)
    # Same seed and replicate, different cell: independent streams.
    a = data_rng(1, CELL, 0).random(5)
    b = data_rng(1, other, 0).random(5)
    assert not np.array_equal(a, b)
    # The spawn key is exactly (cell_key..., replicate) under entropy = seed
    # (docs/design.md section 3).
    ss = np.random.SeedSequence(entropy=1, spawn_key=(*cell_key(CELL), 0))
    expected = np.random.Generator(np.random.PCG64(ss)).random(5)
    assert np.array_equal(a, expected)


def test_random_starts_have_their_own_streams():
    Y = simulate_replicates(3, CELL, range(4))
    truth = {k: CELL[k] for k in ("pi", "mu1", "mu2", "sigma1", "sigma2")}
    three = expand_starts([{"name": "random", "strategy": "random", "k": 3}])
    five = expand_starts([{"name": "random", "strategy": "random", "k": 5}])
    assert [s.name for s in three] == ["random1", "random2", "random3"]
    v3 = [start_values(s, Y, truth, 3, CELL, range(4)) for s in three]
    v5 = [start_values(s, Y, truth, 3, CELL, range(4)) for s in five]
    for a, b in zip(v3, v5[:3], strict=True):
        for p in a:
            assert np.array_equal(a[p], b[p])
    # Same start for a replicate whichever chunk it is in.
    part = start_values(three[1], Y[2:], truth, 3, CELL, [2, 3])
    for p in part:
        assert np.array_equal(part[p], v3[1][p][2:])
    # Draws are within the documented ranges; the means are observations of the replicate.
    for v in v3:
        assert ((v["pi"] > 0.05) & (v["pi"] < 0.95)).all()
        for i in range(4):
            assert v["mu1"][i] in Y[i] and v["mu2"][i] in Y[i]
            assert v["mu1"][i] != v["mu2"][i]
        sd = Y.std(axis=1)
        assert ((v["sigma1"] >= 0.5 * sd) & (v["sigma1"] <= 1.5 * sd)).all()
    assert not np.array_equal(v3[0]["pi"], v3[1]["pi"])
    # Drawing starts does not touch the data stream.
    assert np.array_equal(simulate_replicates(3, CELL, range(4)), Y)


def test_fixed_quantile_and_truth_starts():
    Y = simulate_replicates(3, CELL, range(3))
    truth = {k: CELL[k] for k in ("pi", "mu1", "mu2", "sigma1", "sigma2")}
    specs = expand_starts(
        [
            {"name": "fixed", "strategy": "fixed", "values": {"pi": 0.5}},
            {"name": "q", "strategy": "quantile", "pi0": 0.5},
            {"name": "truth", "strategy": "truth"},
            {
                "name": "all",
                "strategy": "fixed",
                "values": {"pi": 0.3, "mu1": 1.0, "mu2": 2.0, "sigma1": 1.0, "sigma2": 3.0},
            },
        ]
    )
    fixed, q, tr, full = (start_values(s, Y, truth, 3, CELL, range(3)) for s in specs)
    for p in fixed:  # the seed's start: pi 0.5, the rest from the quantile split at 0.5
        assert np.array_equal(fixed[p], q[p])
    assert (fixed["pi"] == 0.5).all()
    ordered = np.sort(Y[0])
    assert q["mu1"][0] == pytest.approx(ordered[30:].mean())  # upper half = component 1
    assert q["mu2"][0] == pytest.approx(ordered[:30].mean())
    assert q["sigma2"][0] == pytest.approx(ordered[:30].std())
    assert all((tr[p] == truth[p]).all() for p in truth)
    assert (full["sigma2"] == 3.0).all() and (full["pi"] == 0.3).all()


# --- fit jobs ---------------------------------------------------------------------------------


def test_align_to_truth_swaps_labels_when_closer():
    truth = {"pi": 0.8, "mu1": 0.0, "mu2": 2.0, "sigma1": 1.0, "sigma2": 2.0}
    params = {
        "pi": np.array([0.2, 0.8, np.nan]),
        "mu1": np.array([2.1, 0.1, np.nan]),
        "mu2": np.array([-0.1, 1.9, np.nan]),
        "sigma1": np.array([2.0, 1.0, np.nan]),
        "sigma2": np.array([1.1, 2.0, np.nan]),
    }
    se = {p: np.array([0.1, 0.2, 0.3]) + i for i, p in enumerate(params)}
    est, se2, swapped = align_to_truth(params, se, truth, "full")
    assert swapped.tolist() == [True, False, False]
    assert est["pi"][0] == pytest.approx(0.8)
    assert (est["mu1"][0], est["mu2"][0]) == (-0.1, 2.1)
    assert (est["sigma1"][0], est["sigma2"][0]) == (1.1, 2.0)
    assert (se2["mu1"][0], se2["mu2"][0]) == (se["mu2"][0], se["mu1"][0])
    assert se2["pi"][0] == se["pi"][0]
    _, _, never = align_to_truth(params, se, truth, "pi")
    assert not never.any()


SMALL = {
    "seed": 11,
    "replicates": 4,
    "traces": 1,
    "scenarios": [{"n": 40, "mu": [0, 3], "sigma": 1, "pi": 0.7}],
    "models": ["pi", "full"],
    "methods": ["em", "squarem"],
    "starts": [
        {"name": "fixed", "strategy": "fixed", "values": {"pi": 0.5}},
        {"name": "random", "strategy": "random", "k": 2},
        {"name": "truth", "strategy": "truth"},
    ],
}


def _fits(tmp_path, chunk_size, tag):
    s = study(with_(SMALL, chunk_size=chunk_size))
    frames, traces = [], []
    for k in range(s.n_chunks):
        out = tmp_path / tag / f"chunk={k}.parquet"
        tr = tmp_path / tag / f"traces={k}.parquet"
        fit_chunk(s.fit_task(s.cells[0].cell_id, k), out, tr)
        frames.append(pd.read_parquet(out))
        traces.append(pd.read_parquet(tr))
    return s, pd.concat(frames, ignore_index=True), pd.concat(traces, ignore_index=True)


def test_fit_chunk_rows_do_not_depend_on_chunking(tmp_path):
    s, a, ta = _fits(tmp_path, 1, "a")
    _, b, tb = _fits(tmp_path, 3, "b")
    assert len(a) == s.replicates * s.fits_per_replicate
    keys = ["replicate", "model", "method", "start"]
    assert not a.duplicated(keys).any()
    cols = [c for c in a.columns if c != "runtime_s"]
    pd.testing.assert_frame_equal(
        a.sort_values(keys, ignore_index=True)[cols], b.sort_values(keys, ignore_index=True)[cols]
    )
    # Traces: the first `traces` replicates only, every model x method x start, same either way.
    assert set(ta["replicate"]) == {0}
    assert len(ta.groupby(["model", "method", "start"])) == s.fits_per_replicate
    pd.testing.assert_frame_equal(ta, tb)
    # Traces end where the fit ended.
    last = ta.sort_values("iteration").groupby(["model", "method", "start"]).tail(1)
    merged = last.merge(a[a.replicate == 0], on=["model", "method", "start"], suffixes=("", "_f"))
    np.testing.assert_allclose(merged["loglik"], merged["loglik_f"])
    np.testing.assert_allclose(merged["est_pi"], merged["est_pi_f"])


def test_fit_chunk_file_schema_metadata_and_gap(tmp_path):
    s = study(with_(SMALL, traces=0))
    out, tr = tmp_path / "f.parquet", tmp_path / "t.parquet"
    fit_chunk(s.fit_task(s.cells[0].cell_id, 0), out, tr)
    assert pq.read_schema(out).remove_metadata() == FITS_SCHEMA
    assert pq.read_table(tr).num_rows == 0  # no kept trace: an empty file with the schema
    meta = read_metadata(out)
    for key in ("emsim_version", "git_commit", "config_hash", "seed", "numpy_version", "created"):
        assert key in meta
    assert meta["config_hash"] == s.fit_hash and meta["seed"] == "11"
    df = pd.read_parquet(out)
    # Known parameters are the truth; the pi model never swaps.
    pim = df[df.model == "pi"]
    assert (pim.est_mu1 == 0).all() and (pim.est_sigma2 == 1).all() and not pim.swapped.any()
    assert pim.se_mu1.isna().all()
    # `best` is the highest loglik among the non-oracle starts: their gaps are >= 0 with a 0
    # in every group; the oracle start `truth` may sit higher (a negative gap).
    ok = df[(df.status == "converged") & (df.start != "truth")]
    assert (ok.best_start_gap >= 0).all()
    best = ok.groupby(["replicate", "model", "method"])["best_start_gap"].min()
    np.testing.assert_allclose(best, 0.0, atol=0)
    truth = df[(df.status == "converged") & (df.start == "truth")]
    assert truth.best_start_gap.notna().all()
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_write_parquet_atomic(tmp_path):
    path = write_parquet_atomic(
        pd.DataFrame({"a": [1, 2]}), tmp_path / "sub" / "x.parquet", {"config_hash": "abc"}
    )
    assert pd.read_parquet(path)["a"].tolist() == [1, 2]
    assert read_metadata(path)["config_hash"] == "abc"
    assert [p.name for p in path.parent.iterdir()] == ["x.parquet"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_every_figure_has_a_caption_file_and_unknown_names_are_refused(tmp_path):
    from emsim.study import figures
    from emsim.study.summary import SummaryFiles

    with pytest.raises(ValueError, match="unknown figure 'nope'"):
        figures.draw_one("nope", SummaryFiles.in_folder(tmp_path), [], tmp_path / "nope.png")
    for name in jobs.FIGURE_NAMES:
        assert Path(jobs.caption_path(name)).is_file()


def test_provenance_counts_only_the_listed_fit_files(tmp_path):
    fits = tmp_path / "results" / "fits"
    wanted = []
    for cell, chunk in [("a", 0), ("a", 1), ("b", 0), ("old", 0)]:
        path = fits / f"cell={cell}" / f"chunk={chunk}.parquet"
        write_parquet_atomic(pd.DataFrame({"x": [chunk]}), path)
        if cell != "old":  # left by an earlier design: must not be read
            wanted.append(str(path))
    prov = fit_provenance(wanted)
    assert prov["total_fits"] == 3 and prov["fit_jobs"] == 3


def test_figure_workers_exit_when_their_parent_is_killed(tmp_path):
    """Issue 13: after `kill -9` of Snakemake during the figures, its spawned workers drew on
    as orphans. A process that starts `jobs.figure_pool` and is then killed with SIGKILL leaves
    no worker running a few seconds later."""
    import contextlib
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import time\n"
        "from emsim.study import jobs\n"
        "if __name__ == '__main__':\n"
        "    pool = jobs.figure_pool(2)\n"
        "    futures = [pool.submit(time.sleep, 120) for _ in range(2)]\n"
        "    while len(pool._processes) < 2:\n"
        "        time.sleep(0.1)\n"
        "    print(*pool._processes, flush=True)\n"
        "    time.sleep(300)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2
        time.sleep(1.0)  # the workers are drawing (sleeping) and watching
        for pid in workers:
            os.kill(pid, 0)  # alive
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)

        def running(pid: int) -> bool:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                return False
            return state != "Z"

        deadline = time.monotonic() + 10
        while any(running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(running(pid) for pid in workers)
    finally:
        parent.kill()
        parent.wait()
        for pid in workers if "workers" in locals() else []:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_manifest_job_deletes_a_result_damaged_past_the_start_up_check(tmp_path, monkeypatch):
    """A file with whole magic bytes and footer length but garbage inside passes the workflow's
    12-byte check; the manifest job, which reads it all, deletes it, so the next run refits it
    instead of failing again, and says so in one line."""
    from types import SimpleNamespace

    monkeypatch.chdir(tmp_path)
    spec = study(MINIMAL)
    fits, traces = spec.outputs("fits"), spec.outputs("traces")
    for path in [*fits, *traces]:
        write_parquet_atomic(pd.DataFrame({"x": [1]}), path)
    bad = Path(fits[0])
    data = bytearray(bad.read_bytes())
    data[4:-8] = b"\0" * (len(data) - 12)  # magic and footer length kept, the rest zeroed
    bad.write_bytes(bytes(data))
    assert jobs.parquet_damage(bad) is None  # beyond what the 12-byte check sees
    assert jobs.parquet_damage(Path(traces[0])) is None
    job = SimpleNamespace(
        input=SimpleNamespace(fits=fits, traces=traces, parts=[]),
        output=SimpleNamespace(manifest="results/manifest.json"),
        log=["results/logs/manifest.log"],
    )
    with pytest.raises(
        RuntimeError, match=r"cannot read as parquet.*moved it to .*: rerun the study"
    ):
        jobs.run_manifest(spec, job.input, job.output, job.log)
    assert not bad.exists() and Path(traces[0]).exists()


def test_start_up_check_names_truncated_and_emptied_results(tmp_path):
    from emsim.study.integrity import file_problem

    spec = study(MINIMAL)
    folder = tmp_path / "cell=x"
    folder.mkdir()
    whole, truncated, empty = (folder / f"chunk={k}.parquet" for k in range(3))
    write_parquet_atomic(pd.DataFrame({"x": [1.0] * 100}), whole)
    truncated.write_bytes(whole.read_bytes()[:-30])
    empty.write_bytes(b"")
    damage = file_problem(truncated, "fits", spec)
    assert damage.startswith("is damaged (no Parquet magic bytes"), damage
    assert file_problem(empty, "fits", spec) == "is damaged (0 bytes, too short for Parquet)"
    # Whole Parquet, so past the damage check: what it holds is checked next.
    assert "is damaged" not in file_problem(whole, "fits", spec)


def test_fit_jobs_are_scheduled_costliest_first_by_size_and_overlap():
    """Priorities order the default study's n = 5000 cells as their fits cost (separation 1,
    then 2, then 4), and any n = 5000 cell before any n = 500 one of the same separation."""
    s = study(yaml.safe_load((ROOT / "config.yaml").read_text()))
    priority = {
        (c.n, abs(c.mu2 - c.mu1), c.pi, c.family): s.fit_priority(c.cell_id) for c in s.cells
    }
    slow, seed, separated = (
        priority[(5000, 1.0, 0.8, "normal")],
        priority[(5000, 2.0, 0.8, "normal")],
        priority[(5000, 4.0, 0.95, "normal")],
    )
    assert slow > seed > separated
    assert separated > priority[(500, 4.0, 0.95, "normal")]
    assert all(isinstance(value, int) for value in priority.values())
    # Within a cell, the chunk that keeps the traces (replicates 0 and 1) first; not before
    # the chunks of a costlier cell.
    cells = {(c.n, abs(c.mu2 - c.mu1), c.pi, c.family): c.cell_id for c in s.cells}
    seed_cell, cheaper = cells[(5000, 2.0, 0.8, "normal")], cells[(5000, 4.0, 0.95, "normal")]
    assert s.fit_priority(seed_cell, 0) == s.fit_priority(seed_cell, "1") + 1
    assert s.fit_priority(seed_cell, 1) > s.fit_priority(cheaper, 0)


def test_an_adaptive_study_fits_every_cell_s_round_0_before_any_later_round():
    """A cell's rounds are a chain (its fits, summary, gate, next fits): every cell's round 0
    goes first, so that the cheap cells' chains do not run link by link after the costly cells'
    fits. Within round 0 and within later rounds the cost order holds, and a cell's chunk with
    traces goes first."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["replicates"] = {"min": 100, "max": 500, "step": 100}
    config["precision"] = {"bias_mcse": 0.01}
    s = study(config)
    cells = {(c.n, abs(c.mu2 - c.mu1), c.pi, c.family): c.cell_id for c in s.cells}
    costly, cheap = cells[(5000, 1.0, 0.8, "normal")], cells[(500, 4.0, 0.95, "normal")]
    (first,) = s.plan.round_chunks(0)
    later = s.plan.round_chunks(1)[0]
    assert s.fit_priority(cheap, first) > s.fit_priority(costly, later)
    assert s.fit_priority(costly, first) > s.fit_priority(cheap, first)
    assert s.fit_priority(costly, later) > s.fit_priority(cheap, later)
    assert s.fit_priority(costly, first) % 2 == 1  # the chunk that keeps traces
    # Small numbers: Snakemake's default (integer-program) scheduler ordered priorities near
    # 2^45 that differ by one as if equal, and ran a cell's chunk with traces after its other.
    assert max(s.fit_priority(c.cell_id, first) for c in s.cells) < 2**32
