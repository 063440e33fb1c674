"""The command line (`emsim demo | simulate | fit`), run in-process through `emsim.cli.main`.

Contract (docs/design.md section 7 and the cli module's docstring): good input exits 0; bad input
exits 2 with exactly one line on stderr that names the problem (never a traceback) and leaves no
output file behind; a fit that fails is reported through its status, not as an error.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import emsim
from emsim.cli import main

DATA = Path(__file__).parent / "data"
EMSIM = Path(sys.executable).with_name("emsim")

# Truth of the data that the `fit` tests use: two well-separated components, so the default
# (quantile) start puts component 1 on the upper one and the labels need no alignment.
TRUTH = {"pi": 0.3, "mu1": 4.0, "mu2": 0.0, "sigma1": 1.0, "sigma2": 1.5}
N_FIT = 2000
SEED_FIT = 20240611

SIM_ARGS = ["--n", "50", "--mu", "0,2", "--sigma", "1", "--pi", "0.5", "--seed", "7"]


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, (code, out, err)
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, f"not exactly one line: {err!r}"
    assert err.startswith("emsim: error: "), err
    for needle in needles:
        assert needle in err, f"{needle!r} not named in {err!r}"


# --- demo ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed_reference() -> pd.DataFrame:
    return pd.read_csv(DATA / "seed_progress_R.csv")


def test_demo_csv_reproduces_the_seed_table(capsys, seed_reference) -> None:
    code, out, err = run(capsys, "demo", "--format", "csv")
    assert code == 0 and err == ""
    table = pd.read_csv(io.StringIO(out))
    assert list(table.columns) == ["Iteration", "p(Z=1)", "loglik", "diff_loglik"]
    assert len(table) == 19 == len(seed_reference)
    np.testing.assert_array_equal(table["Iteration"], np.arange(19))
    np.testing.assert_array_equal(table["Iteration"], seed_reference["iteration"])
    np.testing.assert_allclose(table["p(Z=1)"], seed_reference["pi"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(table["loglik"], seed_reference["loglik"], rtol=1e-9, atol=0)
    # diff_loglik: NA for the start, then the increments of the loglik column, all positive
    # and the last one below the seed's tolerance 1e-5 (the stopping rule).
    diff = table["diff_loglik"].to_numpy()
    assert np.isnan(diff[0])
    np.testing.assert_allclose(diff[1:], np.diff(table["loglik"]), rtol=1e-6, atol=1e-9)
    assert (diff[1:] > 0).all()
    assert diff[-1] < 1e-5 <= diff[-2]


def test_demo_json_parses(capsys, seed_reference) -> None:
    code, out, err = run(capsys, "demo", "--format", "json")
    assert code == 0 and err == ""
    payload = json.loads(out)
    assert payload["status"] == "converged"
    assert payload["fit_seconds"] > 0 and payload["engine_load_seconds"] > 0
    rows = pd.DataFrame(payload["rows"])
    assert len(rows) == 19
    assert rows["diff_loglik"].iloc[0] is None or np.isnan(rows["diff_loglik"].iloc[0])
    np.testing.assert_allclose(rows["p(Z=1)"], seed_reference["pi"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(rows["loglik"], seed_reference["loglik"], rtol=1e-9, atol=0)


def test_demo_table_and_plot(capsys, tmp_path) -> None:
    from emsim.study import figures

    if not hasattr(figures, "plot_seed_trace"):
        pytest.skip("emsim.study.figures.plot_seed_trace does not exist yet")
    import matplotlib.image

    png = tmp_path / "seed.png"
    code, out, err = run(capsys, "demo", "--plot", png)
    assert code == 0
    assert "status: converged" in out
    assert "Traceback" not in err and str(png) in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    rgb = image[..., :3]
    # Not blank: some ink, more than one colour, and not a single flat colour.
    assert (rgb < 0.5).any()
    assert float(rgb.std()) > 0.01
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 10


# --- simulate -----------------------------------------------------------------------------


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_simulate_r_stream_reproduces_emsim_simulate(capsys, tmp_path, suffix) -> None:
    out_file = tmp_path / f"sim{suffix}"
    # A value starting with '-' must be attached with '=' (argparse would take it for an option).
    args = ["--n", "300", "--mu=-1,2.5", "--sigma", "0.5,2", "--pi", "0.3", "--seed", "42"]
    code, out, err = run(capsys, "simulate", *args, "--rng", "r", "-o", out_file)
    assert (code, out, err) == (0, "", "")
    frame = read_table(out_file)
    assert list(frame.columns) == ["Y"]
    assert len(frame) == 300
    expected = emsim.simulate(300, (-1.0, 2.5), (0.5, 2.0), 0.3, emsim.RRandom(42))
    np.testing.assert_array_equal(frame["Y"].to_numpy(), expected)  # bit for bit
    assert sorted(p.name for p in tmp_path.iterdir()) == [out_file.name]  # no temp file left


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_simulate_numpy_stream_is_reproducible(capsys, tmp_path, suffix) -> None:
    paths = {}
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        paths[name] = tmp_path / f"{name}{suffix}"
        argv = ["--n", "200", "--mu", "0,3", "--sigma", "1", "--pi", "0.4", "--seed", seed]
        code, _, err = run(capsys, "simulate", *argv, "--rng", "numpy", "-o", paths[name])
        assert code == 0 and err == ""
    a, b, c = (read_table(paths[k]) for k in "abc")
    assert list(a.columns) == ["Y"] and len(a) == 200
    np.testing.assert_array_equal(a["Y"], b["Y"])
    assert not np.array_equal(a["Y"], c["Y"])
    # numpy is the default generator.
    default = tmp_path / f"default{suffix}"
    argv = ["--n", "200", "--mu", "0,3", "--sigma", "1", "--pi", "0.4", "--seed", "5"]
    assert run(capsys, "simulate", *argv, "-o", default)[0] == 0
    np.testing.assert_array_equal(read_table(default)["Y"], a["Y"])


def test_simulate_creates_missing_folders(capsys, tmp_path) -> None:
    target = tmp_path / "a" / "b" / "y.csv"
    assert run(capsys, "simulate", *SIM_ARGS, "-o", target)[0] == 0
    assert len(pd.read_csv(target)) == 50


# --- fit ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    y = emsim.simulate(
        N_FIT,
        (TRUTH["mu1"], TRUTH["mu2"]),
        (TRUTH["sigma1"], TRUTH["sigma2"]),
        TRUTH["pi"],
        np.random.default_rng(SEED_FIT),
    )
    path = tmp_path_factory.mktemp("fit") / "y.csv"
    pd.DataFrame({"x": np.arange(N_FIT), "Y": y, "Y2": y + 10.0}).to_csv(
        path, index=False, float_format="%.17g"
    )
    return path


def fit_json(capsys, *argv: str | Path) -> dict:
    code, out, err = run(capsys, "fit", *argv, "--json")
    assert code == 0, err
    assert out.count("\n") == 1
    return json.loads(out)


@pytest.mark.parametrize("method", ["em", "squarem"])
def test_fit_json_recovers_the_truth(capsys, data_file, method) -> None:
    result = fit_json(capsys, data_file, "--method", method)
    assert set(result) == {
        "status",
        "stopping",
        "iterations",
        "loglik",
        "params",
        "se",
        "distance_to_limit",
        "loglik_gap_to_limit",
        "polish_evals",
        "elapsed_s",
    }
    assert result["status"] == "converged" and result["stopping"] == "abs"
    assert 0 <= result["distance_to_limit"] <= 0.1 and result["loglik_gap_to_limit"] >= 0
    assert 0 < result["iterations"] < 1000
    assert set(result["params"]) == set(emsim.PARAMS) == set(result["se"])
    tolerance = {"pi": 0.05, "mu1": 0.15, "mu2": 0.15, "sigma1": 0.15, "sigma2": 0.15}
    for name, value in result["params"].items():
        assert abs(value - TRUTH[name]) < tolerance[name], (name, value)
        assert 0 < result["se"][name] < tolerance[name]
    # The command line is a thin layer over emsim.fit.
    y = pd.read_csv(data_file)["Y"].to_numpy()
    direct = emsim.fit(y, method=method)
    assert result["loglik"] == direct.loglik
    assert result["params"] == direct.params
    assert result["iterations"] == direct.iterations
    assert result["distance_to_limit"] == direct.distance_to_limit


def test_fit_stopping_rule_and_premature_threshold_reach_the_fit(capsys, data_file) -> None:
    y = pd.read_csv(data_file)["Y"].to_numpy()
    for rule, tolerance in (("aitken", "1e-5"), ("rel", "1e-9")):
        result = fit_json(capsys, data_file, "--stopping", rule, "--tolerance", tolerance)
        direct = emsim.fit(y, stopping=rule, tolerance=float(tolerance))
        assert result["stopping"] == rule
        assert (result["iterations"], result["status"]) == (direct.iterations, direct.status)
    strict = fit_json(capsys, data_file, "--premature-threshold", "1e-300")
    assert strict["status"] == "premature" and strict["distance_to_limit"] > 1e-300


def test_fit_text_output(capsys, data_file) -> None:
    code, out, err = run(capsys, "fit", data_file)
    assert code == 0 and err == ""
    assert "model full, method em: converged" in out
    assert "log-likelihood" in out
    for name in emsim.PARAMS:
        assert f"  {name}" in out


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_fit_trace_is_monotone(capsys, data_file, tmp_path, suffix) -> None:
    trace_path = tmp_path / f"trace{suffix}"
    result = fit_json(capsys, data_file, "--trace", trace_path)
    trace = read_table(trace_path)
    assert list(trace.columns) == [
        "iteration",
        *emsim.PARAMS,
        "loglik",
        "diff_loglik",
        "loglik_evals",
    ]
    assert len(trace) == result["iterations"] + 1
    np.testing.assert_array_equal(trace["iteration"], np.arange(len(trace)))
    loglik = trace["loglik"].to_numpy()
    assert np.isfinite(loglik).all()
    assert (np.diff(loglik) >= 0).all()  # EM never decreases the likelihood
    assert np.isnan(trace["diff_loglik"].iloc[0])
    np.testing.assert_allclose(trace["diff_loglik"].iloc[1:], np.diff(loglik), rtol=1e-9)
    assert trace["diff_loglik"].iloc[-1] < 1e-5
    assert loglik[-1] == pytest.approx(result["loglik"], rel=1e-15)
    assert trace["pi"].iloc[-1] == result["params"]["pi"]


def test_fit_pi_model_with_known_values(capsys, tmp_path) -> None:
    y = emsim.simulate(3000, (0.0, 2.0), 1.0, 0.8, np.random.default_rng(3))
    path = tmp_path / "y.parquet"
    pd.DataFrame({"Y": y}).to_parquet(path)
    known = "mu1=0,mu2=2,sigma1=1,sigma2=1"
    result = fit_json(capsys, path, "--model", "pi", "--known", known, "--start", "pi=0.5")
    assert result["status"] == "converged"
    assert result["params"] == {
        "pi": result["params"]["pi"],
        "mu1": 0.0,
        "mu2": 2.0,
        "sigma1": 1.0,
        "sigma2": 1.0,
    }
    assert abs(result["params"]["pi"] - 0.8) < 0.03
    assert 0 < result["se"]["pi"] < 0.03
    assert [result["se"][k] for k in ("mu1", "mu2", "sigma1", "sigma2")] == [None] * 4
    # Text output marks the known ones.
    code, out, _ = run(capsys, "fit", path, "--model", "pi", "--known", known)
    assert code == 0 and out.count("(held known)") == 4


def test_fit_equal_var_and_column(capsys, data_file) -> None:
    on_y = fit_json(capsys, data_file, "--model", "equal_var")
    on_y2 = fit_json(capsys, data_file, "--column", "Y2", "--model", "equal_var")  # Y2 = Y + 10
    for result in (on_y, on_y2):
        assert result["status"] == "converged"
        assert result["params"]["sigma1"] == result["params"]["sigma2"]
        assert result["se"]["sigma1"] == result["se"]["sigma2"]
    for name in ("mu1", "mu2"):
        assert on_y2["params"][name] == pytest.approx(on_y["params"][name] + 10.0, abs=1e-4)
    for name in ("pi", "sigma1"):
        assert on_y2["params"][name] == pytest.approx(on_y["params"][name], abs=1e-4)


def test_fit_reports_a_failed_fit_as_a_status(capsys, data_file) -> None:
    result = fit_json(capsys, data_file, "--max-iterations", "2")
    assert result["status"] == "max_iterations"
    assert result["iterations"] == 2


# --- bad input ----------------------------------------------------------------------------

Writer = Callable[[Path], None]


def text(content: str) -> Writer:
    return lambda path: path.write_text(content)


def parquet(values: list) -> Writer:
    return lambda path: pd.DataFrame({"Y": values}).to_parquet(path)


BAD_FIT_ARGS = [
    pytest.param(["--start", "pi0.5"], ["--start", "name=value", "'pi0.5'"], id="start-no-eq"),
    pytest.param(
        ["--start", "pi=abc"], ["--start", "pi=", "'abc'", "not a number"], id="start-nan"
    ),
    pytest.param(["--start", "foo=1"], ["--start", "unknown parameter 'foo'"], id="start-name"),
    pytest.param(["--start", "=1"], ["--start"], id="start-no-name"),
    pytest.param(["--start", "pi=inf"], ["--start", "not finite"], id="start-inf"),
    pytest.param(
        ["--start", "pi=1.5"], ["pi=1.5", "outside [1e-06, 1 - 1e-06]"], id="start-pi-high"
    ),
    pytest.param(["--start", "pi=0"], ["pi=0", "outside [1e-06, 1 - 1e-06]"], id="start-pi-zero"),
    pytest.param(["--start", "sigma1=-1"], ["sigma1=-1", "> 0"], id="start-sigma-neg"),
    pytest.param(["--start", "sigma2=0"], ["sigma2=0", "> 0"], id="start-sigma-zero"),
    pytest.param(["--model", "foo"], ["--model", "invalid choice", "'foo'"], id="model"),
    pytest.param(["--method", "foo"], ["--method", "invalid choice", "'foo'"], id="method"),
    pytest.param(
        ["--model", "pi"], ["model 'pi'", "missing: mu1, mu2, sigma1, sigma2"], id="pi-no-known"
    ),
    pytest.param(
        ["--model", "pi", "--known", "mu1=0,mu2=2,sigma1=1"],
        ["--known", "(missing: sigma2)"],
        id="pi-partial-known",
    ),
    pytest.param(
        ["--model", "pi", "--known", "mu1=0,mu2=2,sigma1=1,sigma2=-1"],
        ["known sigma2=-1", "> 0"],
        id="pi-known-sigma-neg",
    ),
    pytest.param(["--known", "mu1"], ["--known", "name=value"], id="known-syntax"),
    pytest.param(["--tolerance", "0"], ["tolerance must be > 0"], id="tolerance-zero"),
    pytest.param(["--tolerance", "x"], ["--tolerance", "'x'"], id="tolerance-text"),
    pytest.param(
        ["--max-iterations", "0"],
        ["--max-iterations", "0 is not in [1, 2147483647]"],
        id="max-iterations-zero",
    ),
    pytest.param(["--max-iterations", "1.5"], ["--max-iterations", "'1.5'"], id="max-it-float"),
    pytest.param(["--bogus"], ["unrecognized arguments", "--bogus"], id="unknown-option"),
]

BAD_SIMULATE = [
    pytest.param(["--mu", "1"], "sim.csv", ["--mu", "'1'"], id="mu-not-pair"),
    pytest.param(["--mu", "1,2,3"], "sim.csv", ["--mu", "'1,2,3'"], id="mu-triple"),
    pytest.param(["--mu", "1,x"], "sim.csv", ["--mu", "'1,x'"], id="mu-text"),
    pytest.param(["--mu", "0,inf"], "sim.csv", ["--mu", "finite"], id="mu-inf"),
    pytest.param(["--sigma", "-1"], "sim.csv", ["sigma must be > 0"], id="sigma-neg"),
    pytest.param(["--sigma", "1,0"], "sim.csv", ["sigma must be > 0"], id="sigma-zero"),
    pytest.param(["--sigma", "1,2,3"], "sim.csv", ["--sigma", "'1,2,3'"], id="sigma-triple"),
    pytest.param(["--pi", "2"], "sim.csv", ["pi must be in [0, 1]", "2"], id="pi-high"),
    pytest.param(["--pi", "-0.1"], "sim.csv", ["pi must be in [0, 1]"], id="pi-neg"),
    pytest.param(["--pi", "nan"], "sim.csv", ["pi must be in [0, 1]"], id="pi-nan"),
    pytest.param(["--n", "0"], "sim.csv", ["n must be an integer >= 1"], id="n-zero"),
    pytest.param(["--n", "ten"], "sim.csv", ["--n", "'ten'"], id="n-text"),
    pytest.param(["--rng", "mt"], "sim.csv", ["--rng", "invalid choice"], id="rng"),
    pytest.param([], "sim.txt", ["unsupported format", "'.txt'"], id="suffix-txt"),
    pytest.param([], "sim", ["unsupported format", "(none)"], id="no-suffix"),
    pytest.param([], "sub/sim.json", ["unsupported format"], id="suffix-json"),
]


@pytest.mark.parametrize(("extra", "needles"), BAD_FIT_ARGS)
def test_fit_bad_arguments(capsys, tmp_path, data_file, extra, needles) -> None:
    trace = tmp_path / "trace.csv"
    code, out, err = run(capsys, "fit", data_file, "--trace", trace, *extra)
    assert_one_line_error(code, out, err, *needles)
    assert not trace.exists()


def with_replaced(args: list[str], extra: list[str]) -> list[str]:
    """SIM_ARGS with the options in `extra` replacing (or adding to) the defaults."""
    merged = dict(zip(args[::2], args[1::2], strict=True))
    merged.update(zip(extra[::2], extra[1::2], strict=True))
    return [part for item in merged.items() for part in item]


@pytest.mark.parametrize(("extra", "out_name", "needles"), BAD_SIMULATE)
def test_simulate_bad_arguments(capsys, tmp_path, extra, out_name, needles) -> None:
    code, out, err = run(
        capsys, "simulate", *with_replaced(SIM_ARGS, extra), "-o", tmp_path / out_name
    )
    assert_one_line_error(code, out, err, *needles)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temp file or folder


def test_simulate_missing_required_option(capsys, tmp_path) -> None:
    code, out, err = run(capsys, "simulate", "--n", "5", "-o", tmp_path / "s.csv")
    assert_one_line_error(code, out, err, "required", "--mu")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv", [[], ["frobnicate"], ["fit"]], ids=["no-command", "unknown-command", "fit-no-file"]
)
def test_usage_errors(capsys, argv) -> None:
    code, out, err = run(capsys, *argv)
    assert_one_line_error(code, out, err)


def test_help_and_version(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "simulate", "fit"):
        assert command in out
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"emsim {emsim.__version__}"


# --- edge cases that once crashed: each must be bad input (exit 2) or work ------------------


def test_simulate_negative_seed_is_bad_input_or_works(capsys, tmp_path) -> None:
    out_file = tmp_path / "s.csv"
    code, out, err = run(
        capsys, "simulate", *with_replaced(SIM_ARGS, ["--seed", "-1"]), "-o", out_file
    )
    if code != 0:
        assert_one_line_error(code, out, err, "seed")
        assert list(tmp_path.iterdir()) == []


def test_simulate_unwritable_output_is_bad_input(capsys, tmp_path) -> None:
    (tmp_path / "file").write_text("")
    code, out, err = run(capsys, "simulate", *SIM_ARGS, "-o", tmp_path / "file" / "s.csv")
    assert_one_line_error(code, out, err)


def test_fit_trace_into_missing_folder(capsys, tmp_path, data_file) -> None:
    trace = tmp_path / "no" / "such" / "trace.csv"
    code, out, err = run(capsys, "fit", data_file, "--trace", trace)
    if code != 0:
        assert_one_line_error(code, out, err)
    else:
        assert trace.exists()


def test_fit_json_is_strict_json_for_a_nonfinite_fit(capsys, data_file) -> None:
    code, out, _ = run(capsys, "fit", data_file, "--json", "--start", "mu1=1e308,mu2=-1e308")
    assert code == 0

    def reject(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    payload = json.loads(out, parse_constant=reject)
    assert payload["status"] == "nonfinite"


# --- the installed console script ---------------------------------------------------------


@pytest.fixture(scope="module")
def emsim_exe() -> str:
    exe = EMSIM if EMSIM.exists() else shutil.which("emsim")
    if exe is None:
        pytest.skip("the emsim console script is not installed next to this Python")
    return str(exe)


def test_console_script_simulate_then_fit(emsim_exe, tmp_path) -> None:
    out_file = tmp_path / "y.csv"
    done = subprocess.run(
        [emsim_exe, "simulate", *SIM_ARGS, "--rng", "r", "-o", str(out_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    expected = emsim.simulate(50, (0.0, 2.0), 1.0, 0.5, emsim.RRandom(7))
    np.testing.assert_array_equal(pd.read_csv(out_file)["Y"], expected)


def test_console_script_bad_input_exit_code(emsim_exe, tmp_path) -> None:
    done = subprocess.run(
        [emsim_exe, "fit", str(tmp_path / "missing.csv"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "missing.csv: no such file" in done.stderr
