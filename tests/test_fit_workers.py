"""Fit jobs in a pool of worker processes (emsim.study.worker_pool, job_workers; issue 22).

A fit job on more than one local core hands its chunk to a worker process forked from the fork
server; the rows must be the same bits as in the job's own thread or process, an error in the
worker must fail the job with the message it has in-process, and a worker that is killed must
fail its job at once, not hang it.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from studyrun import ROOT, TINY, make_workdir, read_fits, snakemake, study_hash, without_runtime

from emsim.study import job_workers, jobs
from emsim.study.config import load_study
from emsim.study.worker_pool import WorkerDied, WorkerPool

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
FIT_PROCESS = re.compile(r"fitting in process (\d+)( \(a fit worker\))?")
SUMMARY_PROCESS = re.compile(r"summarising in process (\d+)( \(a fit worker\))?")


def _fit_processes(workdir: Path) -> list[tuple[int, bool]]:
    """(pid, in a fit worker) of every fit job of the study, from its log."""
    found = []
    for log in sorted((workdir / "results" / "logs" / "fit").rglob("*.log")):
        (match,) = FIT_PROCESS.findall(log.read_text())
        found.append((int(match[0]), bool(match[1])))
    return found


def _summary_processes(workdir: Path) -> list[tuple[int, bool]]:
    """(pid, in a fit worker) of every cell summary job of the study, from its log."""
    logs = sorted((workdir / "results" / "logs" / "cells").rglob("*.log"))
    return [
        (int(pid), bool(worker))
        for log in logs
        for pid, worker in SUMMARY_PROCESS.findall(log.read_text())
    ]


def test_fits_in_workers_are_the_bits_of_fits_in_threads(tiny_study, study_src, tmp_path):
    """tiny_study ran on 2 cores with force-use-threads: its fit jobs and cell summaries ran in
    the fit workers, at most two processes for its four fit jobs. The same study on one core
    (the jobs then run in Snakemake's own process) gives the same fit rows, bit for bit, the
    same study hash and the same cell summaries."""
    pooled = _fit_processes(tiny_study)
    assert len(pooled) == 4 and all(worker for _, worker in pooled)
    assert 1 <= len({pid for pid, _ in pooled}) <= 2
    summarised = _summary_processes(tiny_study)
    assert len(summarised) == 2 and all(worker for _, worker in summarised)

    one_core = make_workdir(tmp_path / "cores1", TINY, src=study_src)
    snakemake(one_core, "manifest", "summary", cores=1)
    in_process = _fit_processes(one_core)
    assert len({pid for pid, _ in in_process}) == 1 and not any(w for _, w in in_process)
    assert not {pid for pid, _ in in_process} & {pid for pid, _ in pooled}

    pooled_fits = without_runtime(read_fits(tiny_study))
    pd.testing.assert_frame_equal(
        without_runtime(read_fits(one_core)), pooled_fits, check_exact=True
    )
    assert study_hash(one_core) == study_hash(tiny_study)
    assert not any(worker for _, worker in _summary_processes(one_core))
    cells = sorted((tiny_study / "results" / "cells").rglob("*.parquet"))
    assert len(cells) == 2 * len(jobs.SUMMARY_TABLES)
    for table in cells:
        in_process = one_core / table.relative_to(tiny_study)
        pd.testing.assert_frame_equal(
            _without_timings(pd.read_parquet(in_process)),
            _without_timings(pd.read_parquet(table)),
            check_exact=True,
        )


def _without_timings(frame: pd.DataFrame) -> pd.DataFrame:
    """A summary table without the means of the fits' run times (timings differ by run)."""
    return frame.drop(columns=[c for c in frame.columns if "runtime" in c])


def _boom(message: str) -> None:
    raise KeyError(message)


def _children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(stat.parent.name))
    return children


def _server_pid() -> int:
    from multiprocessing import forkserver

    return forkserver._forkserver._forkserver_pid


def test_a_worker_answers_with_the_callers_exception_and_survives_it():
    pool = WorkerPool(1)
    try:
        assert pool.run(os.getpid) != os.getpid()
        with pytest.raises(KeyError, match="no such key"):
            pool.run(_boom, "no such key")
        first = pool.run(os.getpid)
        assert pool.run(os.getpid) == first  # the same worker, kept for the next call
    finally:
        pool.close()


def test_a_killed_worker_fails_its_call_at_once_and_is_replaced():
    """SIGKILL (what the kernel's OOM killer sends) ends the call with one line naming it,
    within seconds, and the next call gets a new worker; a worker killed while idle is
    replaced without failing anyone's call."""
    pool = WorkerPool(1)
    try:
        pool.run(os.getpid)  # the server and the worker are up
        outcome: dict[str, BaseException] = {}

        def call() -> None:
            try:
                pool.run(time.sleep, 60)
            except BaseException as err:
                outcome["error"] = err

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.5)
        (worker,) = _children_of(_server_pid())
        os.kill(worker, signal.SIGKILL)
        caller.join(timeout=10)
        assert not caller.is_alive()
        assert isinstance(outcome["error"], WorkerDied)
        assert str(outcome["error"]) == (
            f"worker process {worker} was killed by SIGKILL (out of memory?)"
        )

        idle = pool.run(os.getpid)
        assert idle != worker
        os.kill(idle, signal.SIGKILL)
        time.sleep(0.5)
        assert pool.run(os.getpid) not in (idle, worker)
    finally:
        pool.close()


def _fit_in_thread(study, cell: str, outputs: dict, log: Path) -> BaseException | None:
    """`jobs.run_fit` as Snakemake runs it with force-use-threads: in a thread that is not
    the main one; its exception, or None."""
    wildcards = SimpleNamespace(cell=cell, chunk="0")
    return _in_job_thread(lambda: jobs.run_fit(study, wildcards, SimpleNamespace(**outputs), [log]))


def _in_job_thread(job_body) -> BaseException | None:
    """`job_body()` in a thread that is not the main one, as Snakemake runs a job with
    force-use-threads: its exception, or None."""
    outcome: list[BaseException | None] = [None]

    def job() -> None:
        try:
            job_body()
        except BaseException as err:
            outcome[0] = err

    thread = threading.Thread(target=job)
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive()
    return outcome[0]


def test_a_fit_job_failing_in_a_worker_fails_with_its_in_process_message(tmp_path, monkeypatch):
    """The fits file's folder is a file: the write fails. The job fails with the same
    exception and message in a worker as in its own thread, and its log holds the traceback."""
    study = load_study(TINY, SCHEMA)
    cell = study.cells[0].cell_id
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    outputs = {"fits": str(blocker / "fits.parquet"), "traces": str(tmp_path / "traces.parquet")}

    in_thread = _fit_in_thread(study, cell, outputs, tmp_path / "thread.log")
    pool = WorkerPool(1)
    monkeypatch.setattr(job_workers, "_fit_workers", pool)
    try:
        in_worker = _fit_in_thread(study, cell, outputs, tmp_path / "worker.log")
    finally:
        pool.close()
    assert in_thread is not None and in_worker is not None
    assert type(in_worker) is type(in_thread)
    assert str(in_worker) == str(in_thread)
    log = (tmp_path / "worker.log").read_text()
    assert "(a fit worker)" in log
    assert "job failed:\nTraceback" in log and str(in_thread.filename) in log


def test_a_cell_summary_failing_in_a_worker_fails_with_its_in_process_message(
    tiny_study, tmp_path, monkeypatch
):
    """A cell summary given one of its cell's two chunks refuses to summarise (its files do not
    hold the round's replicates): with the same exception and message in a worker as in its
    own thread, logged there with the traceback, and no table written."""
    study = load_study(TINY, SCHEMA)
    cell = study.cells[0].cell_id
    first_chunk = sorted((tiny_study / "results" / "fits" / f"cell={cell}").glob("*.parquet"))[0]
    outputs = {table: str(tmp_path / f"{table}.parquet") for table in jobs.SUMMARY_TABLES}

    def summary(log: Path):
        return lambda: jobs.run_cell_summary(
            study,
            SimpleNamespace(cell=cell, round="0"),
            SimpleNamespace(fits=[str(first_chunk)]),
            outputs,
            SimpleNamespace(coverage_level=0.95),
            [str(log)],
        )

    in_thread = _in_job_thread(summary(tmp_path / "thread.log"))
    pool = WorkerPool(1)
    monkeypatch.setattr(job_workers, "_fit_workers", pool)
    try:
        in_worker = _in_job_thread(summary(tmp_path / "worker.log"))
    finally:
        pool.close()
    assert isinstance(in_thread, RuntimeError) and "its fit files hold 3 replicates" in str(
        in_thread
    )
    assert type(in_worker) is type(in_thread) and str(in_worker) == str(in_thread)
    log = (tmp_path / "worker.log").read_text()
    assert "summarising in process" in log and "(a fit worker)" in log
    assert "job failed:\nTraceback" in log and str(in_thread) in log
    assert not list(tmp_path.glob("*.parquet"))


def test_a_fit_job_whose_worker_is_killed_fails_with_one_line(tmp_path, monkeypatch):
    """The job's worker is killed mid-fit: the job fails with one line naming its cell and chunk
    and the signal, written to its log too, instead of waiting for an answer."""
    study = load_study(dict(TINY, replicates=3000, chunk_size=3000), SCHEMA)
    cell = study.cells[0].cell_id
    outputs = {"fits": str(tmp_path / "fits.parquet"), "traces": str(tmp_path / "traces.parquet")}
    pool = WorkerPool(1)
    monkeypatch.setattr(job_workers, "_fit_workers", pool)
    try:
        pool.run(os.getpid)
        (worker,) = _children_of(_server_pid())
        threading.Timer(1.0, os.kill, (worker, signal.SIGKILL)).start()
        error = _fit_in_thread(study, cell, outputs, tmp_path / "fit.log")
    finally:
        pool.close()
    expected = (
        f"the fit of cell {cell} chunk 0 failed: worker process {worker} was killed by "
        "SIGKILL (out of memory?)"
    )
    assert isinstance(error, WorkerDied) and str(error) == expected
    assert (tmp_path / "fit.log").read_text().splitlines()[-1] == expected
    assert not Path(outputs["fits"]).exists()


def test_a_run_exits_without_waiting_for_the_timers_its_scheduler_left():
    """Snakemake's job rate limiter leaves a non-daemon threading.Timer after each scheduling
    pass, and Python's exit waits for it to fire; `onsuccess` cancels them. Here a process
    with a 60 s timer exits at once after the cancel, and the timer's action never runs."""
    import subprocess
    import sys

    script = (
        "import threading, sys\n"
        "from emsim.study import jobs\n"
        "threading.Timer(60.0, lambda: print('fired')).start()\n"
        "print(jobs.cancel_scheduler_timers())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]


def test_the_run_s_end_freezes_what_it_holds_and_still_collects_what_comes_after():
    """`onstart`, `onsuccess` and `onerror` end with `freeze_heap`: what the process holds then
    (here a cycle with a finalizer) is not collected again, so neither the run's collections
    nor the interpreter's exit traverse it; a cycle made afterwards (the jobs' own objects,
    Snakemake's last steps) is collected as usual."""
    import gc

    from emsim.study import jobs

    collected: list[str] = []

    class Node:
        def __init__(self, name):
            self.name, self.other = name, None

        def __del__(self):
            collected.append(self.name)

    def cycle(name):
        a, b = Node(name), Node(name)
        a.other, b.other = b, a

    gc.collect()
    cycle("before")
    try:
        jobs.freeze_heap()
        assert gc.get_freeze_count() > 0
        cycle("after")
        gc.collect()
        assert collected == ["after", "after"]
    finally:
        gc.unfreeze()
    gc.collect()
    assert sorted(collected) == ["after", "after", "before", "before"]


def run_script(script: Path, text: str):
    """Run `text` as the file `script` in a new Python with this checkout's emsim (a file, not
    `-c`: a worker process finds the functions it is sent in its parent's main module)."""
    import subprocess
    import sys

    script.write_text(text)
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{script.parent}")
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env
    )


_SERVER_IMPORTS = """
import gc, importlib, sys
from emsim.study.worker_pool import WorkerPool, server_preload, start_server, stop_server

def probe():
    importlib.import_module("scipy.stats")
    return f"{gc.isenabled()},{gc.get_freeze_count() > 0}"

if __name__ == "__main__":
    import emsim.study.server_imports as server_imports
    try:
        import scipy.stats
        hidden = False
    except ImportError:
        hidden = True
    print(server_preload("emsim.study.worker_pool")[0], gc.isenabled(), hidden)
    server_imports.undo()
    import scipy.stats
    print(gc.isenabled())
    start_server("emsim.study.worker_pool")
    pool = WorkerPool(1, "emsim.study.worker_pool")
    print(pool.run(probe))
    pool.close()
    stop_server()
"""


def test_the_fork_server_imports_fast_and_its_workers_as_any_process(tmp_path):
    """The fork server imports `server_imports` first: the imports after it run without the
    garbage collector and without scipy.linalg and scipy.stats. A worker forked from it undoes
    both before its first call: it collects garbage and imports scipy as any process, and what
    it inherited is frozen (its full collections do not traverse the imported code)."""
    done = run_script(tmp_path / "server_imports_probe.py", _SERVER_IMPORTS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "emsim.study.server_imports",
        "False",
        "True",
        "True",
        "True,True",
    ]


_BURN = """
import resource, sys, time
from emsim.study.worker_pool import WorkerPool, start_server, stop_server

def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return seconds

if __name__ == "__main__":
    start_server("emsim.study.worker_pool")
    pool = WorkerPool(2, "emsim.study.worker_pool")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = usage.ru_utime + usage.ru_stime
    pool.run(burn, 0.6)
    pool.close()
    began = time.perf_counter()
    stop_server()
    waited = time.perf_counter() - began
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(usage.ru_utime + usage.ru_stime - before, waited)
"""


def test_stopping_the_server_counts_its_workers_cpu_in_the_run(tmp_path):
    """The fork server is killed at a run's end rather than left to tear its interpreter
    down; the CPU its workers spent must still count in the run's children's CPU time, which
    the benchmarks measure a run by."""
    done = run_script(tmp_path / "burn.py", _BURN)
    assert done.returncode == 0, done.stderr
    # The worker burned 0.6 CPU-s (user and system: its clock is a system call).
    children_cpu, _ = map(float, done.stdout.split())
    assert children_cpu >= 0.55, done.stdout
