"""Session-wide fixtures: one compiled engine, one finished tiny study, one set of determinism runs.

The end-to-end tests used to copy src/ into every workflow folder and run the same tiny study
once per module; each copy compiled numba's engine again (1-3 minutes on two cores) and the
suite took 25 minutes. Now:

- `study_src`: the engine is compiled (or loaded from the checkout's cache) once in this process,
  then src/ is copied once, cache included, to the folder every workflow run imports from
  (tests/studyrun.py says why it must be one folder). With NUMBA_CACHE_DIR set, numba keys the
  cache by the source's folder, so the copy compiles once more, in its first run, and no more.
- `tiny_study`: TINY run to the end once (`--cores 2`, jobs as threads, chunk_size 3); the
  pipeline, manifest and report tests read it, and a test that changes it works on a copy
  (studyrun.copy_study).
- `determinism_runs`: TINY's fits and manifest again with one core and a process per job, and
  with chunk_size 10; test_pipeline compares their fit rows, test_manifest their manifests.

And every process a test starts keeps its temporary files in the session's folder
(`_processes_temporary_files`), not in /tmp.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from studyrun import ROOT, TINY, copy_src, make_workdir, snakemake

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="session", autouse=True)
def _processes_temporary_files(tmp_path_factory):
    """TMPDIR, for the processes the tests start, is a folder of the session's: the tests that
    kill a run (test_resume, the orphaned workers' tests) left its temporary folders behind
    (multiprocessing's pymp-*, Snakemake's snakemake*), eight in /tmp per suite run. pytest
    removes old sessions' folders; nothing removes /tmp's."""
    folder = tmp_path_factory.mktemp("tmp")
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(folder)
    yield folder
    if before is None:
        del os.environ["TMPDIR"]
    else:
        os.environ["TMPDIR"] = before


def _compile_engine(folder: Path) -> None:
    """One fit chunk of TINY in this process: every engine function a fit job calls, with the
    argument types a fit job passes, compiled into (or loaded from) the checkout's cache."""
    from emsim.study.config import load_study
    from emsim.study.fitjob import fit_chunk

    study = load_study(TINY, SCHEMA)
    task = study.fit_task(study.cells[0].cell_id, 0)
    fit_chunk(task, folder / "fits.parquet", folder / "traces.parquet")


@pytest.fixture(scope="session")
def study_src(tmp_path_factory) -> Path:
    """The src/ every workflow run of the session imports (through workdir/src), compiled."""
    root = tmp_path_factory.mktemp("code")
    _compile_engine(root)
    return copy_src(root / "src")


@pytest.fixture(scope="session")
def tiny_study(study_src, tmp_path_factory) -> Path:
    """TINY, finished: fits, traces, summary, figures, report and manifest. Read-only."""
    workdir = make_workdir(tmp_path_factory.mktemp("tiny") / "w", TINY, src=study_src)
    snakemake(workdir)  # --cores 2, chunk_size 3, jobs as threads
    return workdir


@pytest.fixture(scope="session")
def determinism_runs(study_src, tmp_path_factory) -> dict[str, Path]:
    """TINY's fits and manifest computed otherwise than `tiny_study`: with one core and each job
    its own process ("one_core"), and with chunk_size 10, one fit file per cell ("chunked")."""
    root = tmp_path_factory.mktemp("determinism")
    one_core = make_workdir(root / "cores1", TINY, src=study_src)
    chunked = make_workdir(root / "chunk10", dict(TINY, chunk_size=10), src=study_src)
    # Side by side: the one-core run spends most of its time starting a process per job.
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(snakemake, one_core, "manifest", cores=1, threads=False),
            pool.submit(snakemake, chunked, "manifest", cores=2),
        ]
        for run in runs:
            run.result()
    return {"one_core": one_core, "chunked": chunked}
