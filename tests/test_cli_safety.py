"""Issue 13, "no silent wrong answers": the command line refuses what it would otherwise ignore,
destroy or misread, with one line naming the problem, exit status 2 and nothing written.

Each test here failed before the fix it covers: options ignored (--known, --start), output
paths that destroy (the input, a symlink, a directory, a FIFO, a full disk), data read wrongly
(ragged rows, booleans, dates, NUL bytes), huge --n, R seeds that wrap, a read-only install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import emsim

# --- 1. options silently ignored ------------------------------------------------------------


def test_api_refuses_known_for_an_estimated_parameter() -> None:
    y = np.array([0.0, 0.1, 2.0, 2.2, 1.0])
    with pytest.raises(ValueError, match="known mu1: model 'full' estimates mu1"):
        emsim.fit(y, model="full", known={"mu1": 0.0})
    with pytest.raises(ValueError, match="known sigma: model 'equal_var' estimates sigma"):
        emsim.fit_batch(y[None, :], model="equal_var", known={"sigma": 1.0})
    with pytest.raises(ValueError, match="not both"):
        emsim.fit(y, model="full", start={"sigma": 1.0, "sigma2": 2.0})


@pytest.mark.parametrize("model", ["full", "equal_var"])
def test_start_sigma_is_a_common_start_in_every_model(model) -> None:
    y = emsim.simulate(300, (0.0, 4.0), 1.0, 0.6, np.random.default_rng(5))
    common = emsim.fit(y, model=model, start={"sigma": 0.3}, max_iterations=3, trace=True)
    both = emsim.fit(
        y, model=model, start={"sigma1": 0.3, "sigma2": 0.3}, max_iterations=3, trace=True
    )
    assert common.trace["sigma1"].iloc[0] == common.trace["sigma2"].iloc[0] == 0.3
    assert common.params == both.params


# --- 2. writes that destroy -----------------------------------------------------------------


# --- 3. data read wrongly without a word ----------------------------------------------------


# --- 4. huge n, and MemoryError ------------------------------------------------------------


# --- 5. R seeds outside R's range -----------------------------------------------------------


@pytest.mark.parametrize("seed", [2**31, 2**32 + 1, -(2**31), 10**20])
def test_rrandom_refuses_seeds_outside_r_range(seed) -> None:
    with pytest.raises(ValueError, match="outside R's integer range"):
        emsim.RRandom(seed)


def test_rrandom_accepts_r_whole_range() -> None:
    for seed in (2**31 - 1, -(2**31 - 1), 0, -1):
        assert emsim.RRandom(seed).runif(1).shape == (1,)


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
