"""Which worker processes a run of the workflow starts (the Snakefile's `onstart`,
docs/design.md section 8), the fit jobs' pool of them, and what the run stops at its end.

Locally, with the default profile's force-use-threads, every job is a thread of the one
Snakemake process; a fit job's Python around the compiled EM loop (standard errors, the limit,
starts, rows) holds the GIL, so two fit jobs as threads take turns on it. Here each fit job
hands its chunk to a worker process of a pool of `--cores` processes (`worker_pool`), forked
from a fork server that has imported the fit code, so that fit jobs on several cores run side
by side at no start-up per job. The cells' summaries and hashes run in the same workers
(`jobs.run_cell_summary`, `jobs.run_cell_hashes`): their pandas and Arrow reads, as threads,
held the GIL that Snakemake's scheduler needs.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

from emsim.study.figure_workers import FIGURE_CODE
from emsim.study.worker_pool import WorkerPool, start_server, stop_server

__all__ = [
    "FIT_CODE",
    "cancel_scheduler_timers",
    "fit_workers",
    "freeze_heap",
    "prepare_workers",
    "rules_run_by",
    "runs_fits",
    "stop_workers",
]

# What the fork server imports for the fit workers: the fit job's code and `jobs`, whose
# `fit_job` a worker runs (the engine itself is loaded by each worker's first fit,
# `fitjob.fit_chunk`, while the other workers load theirs).
FIT_CODE: tuple[str, ...] = ("emsim.study.fitjob", "emsim.study.jobs")

# The fit workers of this Snakemake process (`prepare_workers`), or None: fit jobs then run in
# the job's own thread or process.
_fit_workers: WorkerPool | None = None


def fit_workers() -> WorkerPool | None:
    """This process's fit workers, or None where fit jobs run in their own thread or process."""
    return _fit_workers


def rules_run_by(workflow: Any) -> set[str]:
    """The rules of the jobs this run of `workflow` has to run (as its DAG stands at start)."""
    return {job.rule.name for job in workflow.dag.needrun_jobs()}


def runs_fits(rules_to_run: set[str]) -> bool:
    """Whether a run of these rules fits anything: an adaptive study's later rounds join the
    DAG only once a gate asks for them, so a gate to pass counts."""
    return bool(rules_to_run & {"fit", "cell_gate"})


def prepare_workers(workflow: Any) -> bool:
    """Snakemake's `onstart`: start the worker processes' fork server (`worker_pool`) where
    this run has work for them, so that its imports run while Snakemake schedules: the fit
    workers (`_fit_workers`) where fit jobs are threads of this process on more than one core,
    and the figure workers where the run draws the figures on more than one core. Returns
    whether fit jobs run in the fit workers. Under a cluster executor, or locally without
    force-use-threads, each fit job is a process of its own already; on one core a worker
    would only add a process."""
    global _fit_workers
    cores = getattr(workflow.resource_settings, "cores", None) or 1
    rules_to_run = rules_run_by(workflow)
    threads = getattr(workflow, "local_exec", True) and getattr(
        getattr(workflow, "execution_settings", None), "use_threads", False
    )
    # The workers run the fits and the cells' summaries (`jobs.run_fit`, `jobs.run_cell_summary`),
    # and the cells' hashes where a run has them: a run of hashes alone (the manifest code
    # edited) is done sooner in threads than after the fork server's start.
    fits = cores > 1 and threads and (runs_fits(rules_to_run) or "cell_summary" in rules_to_run)
    draws = bool(rules_to_run & {"figures", "traces_figure"})
    preload = [*(FIT_CODE if fits else ()), *((FIGURE_CODE,) if draws else ())]
    if cores < 2 or not preload:
        return False
    start_server(*preload)
    if fits:
        _fit_workers = WorkerPool(cores, *preload)
    return fits


def stop_workers() -> None:
    """Snakemake's `onsuccess` and `onerror`: stop the fit workers (all idle once the run
    ends) and the fork server, which waits for every worker it forked, so that their CPU time
    counts in Snakemake's own (`benchmarks/scale.py` measures a run by it)."""
    if _fit_workers is not None:
        _fit_workers.close()
    stop_server()


def cancel_scheduler_timers() -> int:
    """Snakemake's `onsuccess` and `onerror`, once its scheduler has returned: cancel the timers
    it left. Its job rate limiter (--max-jobs-per-timespan, 100/1s by default, no timespan
    below a second) starts a threading.Timer of one timespan after every scheduling pass, only
    to wake the scheduler again; the timers are not daemons, so Python's exit waited for the
    last of them: a second after the last job of every run (issue 22: the tail). Returns how
    many were cancelled."""
    timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
    for timer in timers:
        timer.cancel()
    return len(timers)


def freeze_heap() -> None:
    """Snakemake's `onstart` (last), `onsuccess` and `onerror` (last): put every object of this
    process in the garbage collector's permanent generation (`gc.freeze`). At the start, what
    the run has imported and its DAG live until its end: the full collections during the run
    (cell summaries, the report's body: threads of this process, which a collection stops)
    then no longer traverse them; six took 0.71 s in a 100-replicate run of issue 22's design.
    At the end, the interpreter's exit does not traverse everything once more: that took 0.39 s
    of the exit of a process that had imported Snakemake, the fit and the plotting code, 0.05 s
    after a freeze (issue 22: the tail). Objects made afterwards are collected as usual; a
    frozen cycle is freed with the process. Nothing here needs a collection at exit: results
    are written atomically and closed, and logging flushes its handlers at exit itself."""
    gc.freeze()
