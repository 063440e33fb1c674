"""Issue 13, "no silent wrong answers": the command line refuses what it would otherwise ignore,
destroy or misread, with one line naming the problem, exit status 2 and nothing written.

Each test here failed before the fix it covers: options ignored (--known, --start), output
paths that destroy (the input, a symlink, a directory, a FIFO, a full disk), huge --n, R seeds
that wrap, a read-only install. Data read wrongly (ragged rows, booleans, dates, NUL bytes) is
tested in tests/test_datafile.py.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_cli import assert_one_line_error, run

import emsim
from emsim import cli, datafile
from emsim.cli import MAX_SIMULATE_N, build_parser, main

SIM = ["--n", "50", "--mu", "0,2", "--sigma", "1", "--pi", "0.5", "--seed", "7"]
PI_KNOWN = "mu1=0,mu2=4,sigma1=1,sigma2=1"


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    y = emsim.simulate(400, (0.0, 4.0), 1.0, 0.6, np.random.default_rng(13))
    path = tmp_path_factory.mktemp("safety") / "d.csv"
    pd.DataFrame({"Y": y}).to_csv(path, index=False, float_format="%.17g")
    return path


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry of `folder` (hidden ones too) with its content, or its kind."""
    found: dict[str, bytes | str] = {}
    for entry in sorted(folder.rglob("*")):
        key = str(entry.relative_to(folder))
        if entry.is_symlink():
            found[key] = f"link to {os.readlink(entry)}"
        elif entry.is_file():
            found[key] = entry.read_bytes()
        else:
            found[key] = stat.filemode(entry.lstat().st_mode)
    return found


# --- 1. options silently ignored ------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "known", "named"),
    [
        ("full", "mu1=0", "--known mu1: model 'full' estimates mu1"),
        ("full", "sigma2=1", "--known sigma2: model 'full' estimates sigma2"),
        ("equal_var", "sigma=1", "--known sigma: model 'equal_var' estimates sigma"),
        ("pi", f"pi=0.5,{PI_KNOWN}", "--known pi: model 'pi' estimates pi"),
    ],
)
def test_known_for_an_estimated_parameter_is_refused(capsys, data_file, model, known, named):
    code, out, err = run(capsys, "fit", data_file, "--model", model, "--known", known)
    assert_one_line_error(code, out, err, named, "(pi model: mu1, mu2, sigma1, sigma2)")


def test_api_refuses_known_for_an_estimated_parameter() -> None:
    y = np.array([0.0, 0.1, 2.0, 2.2, 1.0])
    with pytest.raises(ValueError, match="known mu1: model 'full' estimates mu1"):
        emsim.fit(y, model="full", known={"mu1": 0.0})
    with pytest.raises(ValueError, match="known sigma: model 'equal_var' estimates sigma"):
        emsim.fit_batch(y[None, :], model="equal_var", known={"sigma": 1.0})
    with pytest.raises(ValueError, match="not both"):
        emsim.fit(y, model="full", start={"sigma": 1.0, "sigma2": 2.0})


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--model", "pi", "--known", PI_KNOWN, "--start", "mu1=3"], "--start mu1"),
        (["--model", "pi", "--known", "mu1=0,mu2=4", "--start", "sigma=2"], "--start sigma"),
        (["--start", "sigma=1,sigma1=2"], "--start sigma and --start sigma1"),
        (["--model", "pi", "--known", "mu1=0,mu2=4,sigma=1,sigma2=1"], "--known sigma"),
        (["--start", "pi=0.3,pi=0.6"], "--start: pi is given twice"),
    ],
    ids=["start-held-mu1", "start-held-sigma", "sigma-and-sigma1", "known-both", "duplicate"],
)
def test_start_and_known_that_would_be_ignored_are_refused(capsys, data_file, extra, named):
    code, out, err = run(capsys, "fit", data_file, *extra)
    assert_one_line_error(code, out, err, named)


@pytest.mark.parametrize("model", ["full", "equal_var"])
def test_start_sigma_is_a_common_start_in_every_model(model) -> None:
    y = emsim.simulate(300, (0.0, 4.0), 1.0, 0.6, np.random.default_rng(5))
    common = emsim.fit(y, model=model, start={"sigma": 0.3}, max_iterations=3, trace=True)
    both = emsim.fit(
        y, model=model, start={"sigma1": 0.3, "sigma2": 0.3}, max_iterations=3, trace=True
    )
    assert common.trace["sigma1"].iloc[0] == common.trace["sigma2"].iloc[0] == 0.3
    assert common.params == both.params


def test_known_sigma_means_both_sigmas_for_the_pi_model(capsys, data_file) -> None:
    code, out, err = run(
        capsys, "fit", data_file, "--model", "pi", "--known", "mu1=0,mu2=4,sigma=1", "--json"
    )
    assert code == 0, err
    via_cli = json.loads(out)["params"]
    assert via_cli["sigma1"] == via_cli["sigma2"] == 1.0
    y = pd.read_csv(data_file)["Y"].to_numpy()
    direct = emsim.fit(y, model="pi", known={"mu1": 0, "mu2": 4, "sigma1": 1, "sigma2": 1})
    assert via_cli == direct.params


# --- 2. writes that destroy -----------------------------------------------------------------


def _command(kind: str, target: Path, data: Path) -> list[str | Path]:
    if kind == "simulate":
        return ["simulate", *SIM, "-o", target]
    if kind == "fit":
        return ["fit", data, "--trace", target]
    return ["demo", "--plot", target]


def _make(what: str, folder: Path, name: str, data: Path) -> Path:
    target = folder / name
    if what == "symlink":
        (folder / "real").write_text("keep me\n")
        target.symlink_to(folder / "real")
    elif what == "dangling-symlink":
        target.symlink_to(folder / "nowhere")
    elif what == "directory":
        target.mkdir()
        (target / "inside").write_text("keep me\n")
    elif what == "fifo":
        os.mkfifo(target)
    elif what == "input":
        return data
    elif what == "hardlink-to-input":
        os.link(data, target)
    elif what == "read-only":
        target.write_text("keep me\n")
        target.chmod(0o444)
    return target


REFUSALS = {
    "symlink": "symbolic link",
    "dangling-symlink": "symbolic link",
    "directory": "is a directory",
    "fifo": "not a regular file",
    "input": "is the input data file",
    "hardlink-to-input": "is the input data file",
    "read-only": "is read-only",
}


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        (kind, what)
        for kind in ("simulate", "fit", "demo")
        for what in sorted(REFUSALS)
        if kind == "fit" or "input" not in what  # only fit reads an input file
    ],
)
def test_output_paths_that_would_destroy_are_refused(capsys, tmp_path, kind, what) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    data = folder / "data.csv"
    pd.DataFrame({"Y": [0.0, 0.5, 3.0, 3.2, 1.0]}).to_csv(data, index=False)
    suffix = ".png" if kind == "demo" else ".csv"
    target = _make(what, folder, f"target{suffix}", data)
    before = snapshot(folder)
    began = time.perf_counter()
    code, out, err = run(capsys, *_command(kind, target, data))
    assert_one_line_error(code, out, err, str(target), REFUSALS[what])
    assert snapshot(folder) == before  # nothing written, replaced or left behind
    assert time.perf_counter() - began < 30  # refused before the work, not after


def _full_disk(monkeypatch, owner: object, method: str) -> None:
    """Make `owner.method(path, ...)` write a little, then fail as a full disk does."""

    def fail(self, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(owner, method, fail)


@pytest.mark.parametrize(
    ("kind", "name", "owner", "method"),
    [
        ("simulate", "y.csv", pd.DataFrame, "to_csv"),
        ("simulate", "y.parquet", pd.DataFrame, "to_parquet"),
        ("fit", "trace.csv", pd.DataFrame, "to_csv"),
        ("fit", "trace.parquet", pd.DataFrame, "to_parquet"),
        ("demo", "seed.png", None, "print_png"),
    ],
)
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_a_full_disk_leaves_nothing_behind(
    capsys, monkeypatch, tmp_path, data_file, kind, name, owner, method, existing
) -> None:
    if owner is None:
        # Figures are written by the Agg canvas's print_png (figure_style.save_png).
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        owner = FigureCanvasAgg
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "sub" / name if not existing else folder / name
    if existing:
        target.write_bytes(b"the earlier output\n")
    before = snapshot(folder)
    _full_disk(monkeypatch, owner, method)
    code, out, err = run(capsys, *_command(kind, target, data_file))
    assert_one_line_error(code, out, err, str(target), "No space left on device")
    assert snapshot(folder) == before  # no temp file, hidden or not; no new folder; old file kept


# --- 3. data read wrongly without a word ----------------------------------------------------
# Tested with the data file reader, in tests/test_datafile.py (each bad file also through
# `emsim fit`).


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    return next(a for a in build_parser()._actions if a.dest == "command").choices


def _stated_default(text: str) -> str:
    return text.rsplit("default: ", 1)[1].rstrip(")").strip() if "default: " in text else ""


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_states_its_default(capsys, command) -> None:
    """Every option of every subcommand (the list is read from the parser, so a new command is
    covered too) says it is required or states its default, and a stated default is the one
    the option has."""
    sub = _subcommands()[command]
    options = [a for a in sub._actions if a.dest != "help"]
    for action in options:
        text = action.help or ""
        assert "default" in text or "required" in text, (command, action.dest, text)
        if action.default not in (None, False, argparse.SUPPRESS):
            stated = _stated_default(text)
            if isinstance(action.default, float):
                assert float(stated) == action.default, (command, action.dest, text)
            else:
                assert stated == str(action.default), (command, action.dest, text)
    with pytest.raises(SystemExit):
        main([command, "--help"])
    shown = capsys.readouterr().out
    assert sub.description or "usage: emsim" in shown
    if options:
        assert "default" in shown


def test_every_command_and_top_level_option_has_help() -> None:
    parser = build_parser()
    assert {"demo", "simulate", "fit", "verify", "warmup"} <= set(_subcommands())
    commands = next(a for a in parser._actions if a.dest == "command")
    for choice in commands._choices_actions:
        assert choice.help, choice.dest
    for action in parser._actions:
        assert action is commands or action.help, action.dest


# --- 4. huge n, and MemoryError ------------------------------------------------------------


@pytest.mark.parametrize("n", ["1e10", "10000000000", str(MAX_SIMULATE_N + 1)])
def test_simulate_refuses_n_above_the_limit(capsys, tmp_path, n) -> None:
    argv = ["simulate", "--n", n, *SIM[2:], "-o", tmp_path / "y.csv"]
    code, out, err = run(capsys, *argv)
    assert_one_line_error(code, out, err, "--n", "at most 100_000_000")
    assert list(tmp_path.iterdir()) == []


def test_simulate_accepts_n_written_as_a_float(capsys, tmp_path) -> None:
    target = tmp_path / "y.csv"
    code, out, err = run(capsys, "simulate", "--n", "1e2", *SIM[2:], "-o", target)
    assert (code, err) == (0, "")
    assert len(pd.read_csv(target)) == 100
    code, out, err = run(capsys, "simulate", "--n", "1.5", *SIM[2:], "-o", target)
    assert_one_line_error(code, out, err, "--n", "'1.5'", "whole number")


def test_simulate_help_states_the_limit(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    assert "10^8" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["simulate", "read_csv", "read_plain_csv"])
def test_memory_error_is_one_line(capsys, monkeypatch, tmp_path, data_file, where) -> None:
    def exhausted(*args, **kwargs):
        raise MemoryError

    if where == "simulate":
        monkeypatch.setattr(cli, "simulate", exhausted)
        argv = ["simulate", *SIM, "-o", tmp_path / "y.csv"]
    elif where == "read_csv":  # cells with spaces: pandas reads the column
        spaced = tmp_path.parent / f"{tmp_path.name}-spaced.csv"
        spaced.write_text("Y\n 1.5\n 2.5\n 0.5\n")
        monkeypatch.setattr(pd, "read_csv", exhausted)
        argv = ["fit", spaced]
    else:  # plain numbers: read without pandas
        monkeypatch.setattr(datafile, "plain_numbers", exhausted)
        argv = ["fit", data_file]
    code, out, err = run(capsys, *argv)
    assert_one_line_error(code, out, err, "out of memory")
    assert list(tmp_path.iterdir()) == []


# --- 5. R seeds outside R's range -----------------------------------------------------------


@pytest.mark.parametrize("seed", [2**31, 2**32 + 1, -(2**31), 10**20])
def test_rrandom_refuses_seeds_outside_r_range(seed) -> None:
    with pytest.raises(ValueError, match="outside R's integer range"):
        emsim.RRandom(seed)


def test_rrandom_accepts_r_whole_range() -> None:
    for seed in (2**31 - 1, -(2**31 - 1), 0, -1):
        assert emsim.RRandom(seed).runif(1).shape == (1,)


def test_simulate_refuses_an_r_seed_that_would_wrap(capsys, tmp_path) -> None:
    argv = ["simulate", *SIM[:-2], "--seed", "4294967297", "--rng", "r", "-o", tmp_path / "y.csv"]
    code, out, err = run(capsys, *argv)
    assert_one_line_error(code, out, err, "--seed 4294967297", "R's integer range")
    assert list(tmp_path.iterdir()) == []


# --- 6. a read-only install -----------------------------------------------------------------


def _without_write_override() -> tuple[list[str], tuple[int, int] | None]:
    """A command prefix under which write bits count (root ignores them), and the uid and gid
    the command runs as when they change. As root: root without the capabilities that bypass
    file permissions (setpriv), else the user nobody (runuser), if it can run this Python."""
    if os.geteuid() != 0:
        return [], None
    checks = []
    setpriv = shutil.which("setpriv")
    if setpriv:
        checks.append(([setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"], None))
    runuser = shutil.which("runuser")
    if runuser:
        try:
            import pwd

            entry = pwd.getpwnam("nobody")
            checks.append(([runuser, "-u", "nobody", "--"], (entry.pw_uid, entry.pw_gid)))
        except (ImportError, KeyError):
            pass
    for prefix, ids in checks:
        done = subprocess.run(
            [*prefix, sys.executable, "-c", "pass"], capture_output=True, timeout=60, check=False
        )
        if done.returncode == 0:
            return prefix, ids
    pytest.skip(
        "running as root, and neither setpriv (dropping CAP_DAC_OVERRIDE) nor runuser -u nobody "
        "can run this Python: write bits would not be enforced"
    )


def test_read_only_install_without_writable_home_caches_elsewhere() -> None:
    prefix, ids = _without_write_override()
    top = Path(tempfile.mkdtemp(prefix="emsim-ro-"))
    try:
        top.chmod(0o755)
        package = top / "site" / "emsim"
        shutil.copytree(
            Path(emsim.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
        )
        home = top / "home"
        home.mkdir()
        scratch = top / "tmp"  # the other user's temp folder: writable by it, fresh
        scratch.mkdir()
        if ids is not None:
            os.chown(scratch, *ids)
        scratch.chmod(0o700)
        for folder in (top / "site", home):
            for path in (folder, *folder.rglob("*")):
                path.chmod(path.stat().st_mode & ~0o222)
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")
        }
        env.update(HOME=str(home), TMPDIR=str(scratch), PYTHONPATH=str(top / "site"))
        python = [*prefix, "env", *(f"{k}={v}" for k, v in env.items()), sys.executable]

        def call(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*python, *args], capture_output=True, text=True, timeout=300, check=False
            )

        version = call("-m", "emsim", "--version")
        assert (version.returncode, version.stderr) == (0, ""), version.stderr[-2000:]
        assert version.stdout.strip() == f"emsim {emsim.__version__}"
        # Compile (and cache) one small engine function: it must land in the fallback folder.
        probe = call(
            "-c",
            "import emsim, emsim.engine as e, numba; e._block_size(100); "
            "print(emsim.__file__); print(numba.config.CACHE_DIR)",
        )
        assert probe.returncode == 0, probe.stderr[-2000:]
        where, cache = probe.stdout.split()
        assert Path(where).parent == package
        assert Path(cache).parent == scratch
        assert list(Path(cache).rglob("*.nbi")), "numba wrote no cache index"
        assert not (package / "__pycache__").exists()
    finally:
        for path in (top, *top.rglob("*")):
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o700)
        shutil.rmtree(top, ignore_errors=True)


def test_numba_cache_fallback_uses_only_a_private_folder(tmp_path, monkeypatch) -> None:
    """The cache holds pickles that numba loads: a folder someone else can write, or a symlink
    planted at the expected name, is never used."""
    from emsim._numba_cache import _private_dir, configure_numba_cache

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert not _private_dir(shared)
    planted = tmp_path / "planted"
    planted.symlink_to(tmp_path)
    assert not _private_dir(planted)
    fresh = tmp_path / "a" / "b"
    assert _private_dir(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    # An explicit NUMBA_CACHE_DIR is left alone; so is a package folder numba can write.
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert configure_numba_cache(tmp_path) is None
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    assert configure_numba_cache(tmp_path) is None
    assert "NUMBA_CACHE_DIR" not in os.environ
