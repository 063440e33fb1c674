"""Running the study workflow in temporary folders, for the end-to-end tests (not a test module).

Every run imports emsim from ONE session copy of src/ (tests/conftest.py, fixture `study_src`):
numba finds its on-disk cache through the source file's folder (`__pycache__` beside it, or a
subfolder of NUMBA_CACHE_DIR named after that folder's path), so each copy of src/ at another
path would compile the engine again, for one to three minutes on two cores. A workflow folder
holds a symlink `src` to that copy, and runs put its resolved path on PYTHONPATH, so that the
paths Snakemake records for its code inputs are the same in every folder and in copies of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")

TINY = {
    "study": "tiny test study",
    "seed": 5,
    "replicates": 6,
    "chunk_size": 3,
    "traces": 1,
    "grid": {"n": [40], "mu": [[0, 3]], "sigma": [1], "pi": [0.7]},
    "scenarios": [{"n": 60, "mu": [0, 1.5], "sigma": [1, 1.5], "pi": 0.9}],
    "models": ["pi", "equal_var", "full"],
    "methods": ["em", "squarem"],
    "starts": [
        {"name": "fixed", "strategy": "fixed", "values": {"pi": 0.5}},
        {"name": "random", "strategy": "random", "k": 1},
        {"name": "truth", "strategy": "truth"},
    ],
    "em": {"stopping": ["abs", "aitken"], "tolerance": 1.0e-5, "max_iterations": 300},
}

# An adaptive study (docs/design.md section 10): four cells, the `pi` model, a target bias MCSE
# of pi of 0.01. Its EmpSE of pi is about 0.04 (n = 200) and 0.09 (n = 50), so the cells stop
# after different rounds (two met after round 0; two jump to 60, then 80: one met, one at `max`).
ADAPTIVE = {
    "study": "adaptive test study",
    "seed": 7,
    "replicates": {"min": 20, "max": 80, "step": 20},
    "chunk_size": 20,
    "traces": 1,
    "grid": {"n": [50, 200], "mu": [[0, 2]], "sigma": [1], "pi": [0.5, 0.8]},
    "scenarios": [],
    "models": ["pi"],
    "methods": ["em"],
    "starts": [
        {"name": "fixed", "strategy": "fixed", "values": {"pi": 0.5}},
        {"name": "truth", "strategy": "truth"},
    ],
    "em": {"stopping": ["abs"]},
    "precision": {"bias_mcse": {"pi": 0.01}},
}

KEYS = ["cell_id", "replicate", "model", "method", "stopping", "start"]
JOB_LINE = re.compile(r"^\s*(?:local)?rule (\w+):\s*$", re.MULTILINE)
JOB_STATS = re.compile(r"Job stats:\njob\s+count\n-+\s+-+\n((?:\S+\s+\d+\n)+)")
JOB_COUNT = re.compile(r"^(\S+)\s+(\d+)$", re.MULTILINE)


def copy_src(dest: Path, source: Path = ROOT / "src") -> Path:
    """A copy of `source` with its `__pycache__` folders, so the compiled engine travels with it:
    numba stamps its cache with the source's content (0.68; older versions with its time and
    size, which copytree keeps)."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("*.egg-info"))
    return dest


def make_workdir(path: Path, config: dict, src: Path | None = None) -> Path:
    """A copy of the workflow with `config` as its config.yaml. With `src`, `path/src` links to
    that code (the session's shared copy); without, the caller sets PYTHONPATH itself."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "Snakefile", path / "Snakefile")
    shutil.copytree(ROOT / "workflow", path / "workflow")
    if src is not None:
        (path / "src").symlink_to(Path(src).resolve(), target_is_directory=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def copy_study(workdir: Path, dest: Path) -> Path:
    """A copy of a finished study (code link, config, results and Snakemake's records) for a test
    that changes it: the session's studies are shared by many tests."""
    shutil.copytree(workdir, dest, symlinks=True)
    return dest


def snakemake(workdir: Path, *args: str, cores: int = 2, check: bool = True, threads: bool = True):
    """Run Snakemake in `workdir`. With `threads` (as the default profile, so `make study`,
    runs it) jobs are threads of the Snakemake process; without, each job is its own process."""
    env = dict(os.environ, PYTHONPATH=str((workdir / "src").resolve()), MPLBACKEND="Agg")
    mode = ["--force-use-threads"] if threads else []
    proc = subprocess.run(
        [str(SNAKEMAKE), "--cores", str(cores), *mode, *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{out[-5000:]}")
    return proc.returncode, out


def jobs_of(output: str) -> list[str]:
    """Rules of the jobs Snakemake ran (or, with -n, would run): its "rule X:" lines, or where
    the workflow profile's `quiet: [rules, ...]` leaves them out, its first "Job stats" table."""
    named = JOB_LINE.findall(output)
    if named:
        return named
    table = JOB_STATS.search(output)
    if table is None:
        return []
    jobs: list[str] = []
    for name, count in JOB_COUNT.findall(table.group(1)):
        if name != "total":
            jobs += [name] * int(count)
    return jobs


def read_fits(workdir: Path) -> pd.DataFrame:
    dataset = pads.dataset(workdir / "results" / "fits", format="parquet", partitioning="hive")
    frame = dataset.to_table().to_pandas()
    return frame.drop(columns=["cell"]).sort_values(KEYS, ignore_index=True)


def study_hash(workdir: Path) -> str:
    """The study hash of the study's results/manifest.json."""
    return json.loads((workdir / "results" / "manifest.json").read_text())["study_hash"]


def summary_table(workdir: Path, table: str) -> pd.DataFrame:
    """One of the study's results/summary tables (replicates, precision, ...)."""
    return pd.read_parquet(workdir / "results" / "summary" / f"{table}.parquet")


def without_runtime(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["runtime_s"]).sort_values(KEYS, ignore_index=True)


@contextlib.contextmanager
def edited(path: Path, addition: str) -> Iterator[None]:
    """`path` with `addition` appended, newer than anything, for the block; afterwards its
    content and times exactly as before. For a test that edits the shared code: the other
    studies see it unchanged again (Snakemake compares times, then checksums, of code inputs)."""
    original = path.read_bytes()
    times = path.stat()
    try:
        path.write_bytes(original + addition.encode())
        later = time.time() + 2  # newer than every output, whatever the copy's own time
        os.utime(path, (later, later))
        yield
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
