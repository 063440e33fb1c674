"""Issue 23: `emsim replay` recomputes one fit of a finished study, equal to its row bit for bit.

The study is the session's TINY (tests/conftest.py `tiny_study`); its fits include failures
(premature, degenerate, saddle, boundary, max_iterations), drawn here on purpose.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
from studyrun import TINY, read_fits

from emsim.cli import main as emsim_main
from emsim.study.replay import FitKey, replay
from emsim.study.schema import FITS_SCHEMA

pytestmark = pytest.mark.slow

KEY_COLUMNS = ("cell_id", "replicate", "model", "method", "start", "stopping")


def _key(row) -> FitKey:
    return FitKey(
        row["cell_id"],
        int(row["replicate"]),
        row["model"],
        row["method"],
        row["start"],
        row["stopping"],
    )


def _args(key: FitKey) -> list[str]:
    return [
        "--cell",
        key.cell,
        "--replicate",
        str(key.replicate),
        "--model",
        key.model,
        "--method",
        key.method,
        "--start",
        key.start,
        "--stopping",
        key.stopping,
    ]


def _bits(value) -> bytes | object:
    """A float's IEEE bytes (a null read from Parquet is the NaN the job wrote); else itself."""
    if value is None or isinstance(value, float | np.floating):
        return np.float64(np.nan if value is None or pd.isna(value) else value).tobytes()
    return value.item() if isinstance(value, np.generic) else value


@pytest.fixture(scope="module")
def fits(tiny_study) -> pd.DataFrame:
    return read_fits(tiny_study)


@pytest.fixture(scope="module")
def drawn(fits) -> pd.DataFrame:
    """20 fits at random, 8 of them failures (every failure when there are fewer)."""
    rng = random.Random(23)
    failed = fits.index[fits["status"] != "converged"].tolist()
    assert len(set(fits.loc[failed, "status"])) >= 3, "TINY no longer has varied failures"
    chosen = rng.sample(failed, min(8, len(failed)))
    rest = [i for i in fits.index if i not in chosen]
    chosen += rng.sample(rest, 20 - len(chosen))
    return fits.loc[chosen]


def test_twenty_random_fits_including_failures_replay_bit_for_bit(tiny_study, drawn):
    columns = [c for c in FITS_SCHEMA.names if c != "runtime_s"]
    assert (drawn["status"] != "converged").sum() >= 8
    for _, stored in drawn.iterrows():
        replayed = replay(tiny_study / "results", _key(stored))
        differs = [c for c in columns if _bits(replayed.row[c]) != _bits(stored[c])]
        assert not differs, (_key(stored), {c: (replayed.row[c], stored[c]) for c in differs})
        # Its trace is the path that ended at the row: every iterate, the last one the row's.
        trace = replayed.trace
        assert len(trace) == stored["iterations"] + 1
        assert trace["iteration"].tolist() == list(range(stored["iterations"] + 1))
        last = trace.iloc[-1]
        for name in ("loglik", "est_pi", "est_mu1", "est_mu2", "est_sigma1", "est_sigma2"):
            assert _bits(last[name]) == _bits(stored[name]), (name, _key(stored))


def test_a_kept_trace_replays_to_the_studys_trace_rows(tiny_study, fits):
    traces = pd.read_parquet(tiny_study / "results" / "traces")
    kept = fits[(fits["replicate"] < TINY["traces"]) & (fits["model"] == "full")]
    stored = kept.iloc[len(kept) // 2]
    replayed = replay(tiny_study / "results", _key(stored))
    mine = traces
    for column in KEY_COLUMNS:
        mine = mine[mine[column] == stored[column]]
    mine = mine.drop(columns=["cell"]).sort_values("iteration", ignore_index=True)
    assert len(mine) == stored["iterations"] + 1
    pd.testing.assert_frame_equal(
        replayed.trace[mine.columns].reset_index(drop=True), mine, check_exact=True
    )


def test_cli_json_has_fit_keys_and_the_row_and_data_refit_by_emsim_fit(
    tiny_study, fits, tmp_path, capsys
):
    """--json prints `emsim fit --json`'s keys with the row's numbers; --data writes the
    replicate's data, which `emsim fit` from the same start (the truth, pi model: nothing to
    swap) fits to the same status, iterations, log-likelihood and pi, bit for bit."""
    stored = fits[(fits["model"] == "pi") & (fits["start"] == "truth")].iloc[7]
    key = _key(stored)
    data, trace = tmp_path / "data.csv", tmp_path / "trace.parquet"
    argv = ["replay", "--results", str(tiny_study / "results"), *_args(key), "--json"]
    capsys.readouterr()
    assert emsim_main([*argv, "--data", str(data), "--trace", str(trace)]) == 0
    replayed = json.loads(capsys.readouterr().out)
    truth = {p: float(stored[p]) for p in ("pi", "mu1", "mu2", "sigma1", "sigma2")}
    known = ",".join(f"{p}={truth[p]!r}" for p in ("mu1", "mu2", "sigma1", "sigma2"))
    fit_argv = ["fit", str(data), "--model", "pi", "--method", key.method, "--json"]
    fit_argv += ["--start", f"pi={truth['pi']!r}", "--known", known]
    fit_argv += ["--stopping", key.stopping, "--max-iterations", str(TINY["em"]["max_iterations"])]
    assert emsim_main(fit_argv) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert replayed.keys() == fitted.keys()
    assert replayed["status"] == stored["status"] == fitted["status"]
    assert replayed["iterations"] == stored["iterations"] == fitted["iterations"]
    assert replayed["loglik"] == stored["loglik"] == fitted["loglik"]
    assert replayed["params"]["pi"] == stored["est_pi"] == fitted["params"]["pi"]
    assert replayed["se"]["pi"] == stored["se_pi"]
    assert len(pd.read_csv(data)) == stored["n"]
    assert len(pd.read_parquet(trace)) == stored["iterations"] + 1


def test_cli_text_says_the_row_is_identical(tiny_study, drawn, capsys):
    stored = drawn.iloc[0]
    capsys.readouterr()
    code = emsim_main(["replay", "--results", str(tiny_study / "results"), *_args(_key(stored))])
    out = capsys.readouterr().out
    assert code == 0
    assert f"{stored['status']} after {stored['iterations']} iterations" in out
    assert out.rstrip().endswith("its row is identical to the replay (runtime_s aside)"), out


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ({"--cell": "n40_nope"}, ["--cell 'n40_nope'", "n40_mu0-3"]),
        ({"--replicate": "6"}, ["--replicate 6", "0..5"]),
        ({"--model": "fll"}, ["--model 'fll'", "pi, equal_var, full"]),
        ({"--method": "newton"}, ["--method 'newton'", "em, squarem"]),
        ({"--start": "best"}, ["--start 'best'", "fixed, random1, truth"]),
        ({"--stopping": "score"}, ["--stopping 'score'", "abs, aitken"]),
    ],
)
def test_a_fit_the_study_did_not_run_is_one_line_naming_flag_and_choices(
    tiny_study, fits, capsys, change, needles
):
    args = _args(_key(fits.iloc[0]))
    for flag, value in change.items():
        args[args.index(flag) + 1] = value
    capsys.readouterr()
    code = emsim_main(["replay", "--results", str(tiny_study / "results"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err
    assert all(needle in err for needle in needles), err


def test_a_folder_without_a_study_is_one_line(tmp_path, capsys):
    args = _args(FitKey("c", 0, "pi", "em", "fixed", "abs"))
    assert emsim_main(["replay", "--results", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.yaml: no recorded config" in err, err
