"""The figures job's worker processes (docs/design.md section 8): forked from a fork server that
imports the plotting code once, longest figures first, and gone with the process that started
them."""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

from emsim.study.worker_pool import server_context, start_worker

if TYPE_CHECKING:
    from emsim.study.summary import SummaryFiles

__all__ = ["FIGURE_CODE", "draw_figure", "figure_cores", "figure_pool", "longest_first"]

# What the fork server imports for the figure workers.
FIGURE_CODE = "emsim.study.figures"


# The figures that take longest to draw (about 2.5, 1.9 and 1.1 s of the 11 s of all twelve on
# a 100-replicate default study, benchmarks/tail.py): submitted first, so that no worker starts
# a long one while the others have finished (longest-processing-time-first).
_SLOWEST_FIGURES: tuple[str, ...] = ("traces", "stopping", "iterations")


def longest_first(names: Iterable[str]) -> list[str]:
    names = list(names)
    first = [name for name in _SLOWEST_FIGURES if name in names]
    return first + [name for name in names if name not in first]


def figure_cores(run_cores: int | None) -> tuple[int, int]:
    """The figures job's processes, and the cores it claims from Snakemake, in a run of
    `run_cores` cores (None where not given, under a cluster executor: then the host's CPUs,
    which Snakemake gives its local rules). As many processes as the run has cores, at most 4;
    one core claimed less (at least one), so that the report's body, ready at the same time
    and the one other job left, is written beside them: on the core the drawing leaves idle
    once fewer figures than processes remain, instead of after the last figure."""
    processes = max(1, min(4, run_cores or os.cpu_count() or 1))
    return processes, max(1, processes - 1)


def figure_pool(workers: int) -> ProcessPoolExecutor:
    """The figure workers, forked from multiprocessing's fork server (`worker_pool`): a fresh
    process (not a fork of Snakemake's, which runs threads of its own) that imports the
    plotting code and the modules the main program uses once, so that each worker does not
    import them again, as a spawned one does (about 2.3 s of CPU each, Snakemake's command line
    included). Each worker exits when this process is gone (`start_worker`). A server
    already started (`job_workers.prepare_workers` in `onstart`, which preloads the plotting
    code where the run draws the figures) is the one used."""
    return ProcessPoolExecutor(
        workers,
        mp_context=server_context(FIGURE_CODE),
        initializer=start_worker,
        initargs=(os.getpid(),),
    )


def draw_figure(
    name: str,
    out_path: str,
    summary: SummaryFiles | None,
    traces: list[str],
    dpi: int,
    threshold: float,
):
    # Imported here, in the drawing process, so that parsing the workflow stays free of
    # matplotlib and seaborn.
    from emsim.study import figures

    return figures.draw_one(name, summary, traces, out_path, dpi=dpi, threshold=threshold)
