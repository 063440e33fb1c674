"""The figures job's worker processes (docs/design.md section 8): forked from a fork server that
imports the plotting code once, longest figures first, and gone with the process that started
them."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emsim.study.summary import SummaryFiles

__all__ = ["draw_figure", "figure_pool", "longest_first", "start_figure_server"]


# The figures that take longest to draw (about 2.5, 1.9 and 1.1 s of the 11 s of all twelve on
# a 100-replicate default study, benchmarks/tail.py): submitted first, so that no worker starts
# a long one while the others have finished (longest-processing-time-first).
_SLOWEST_FIGURES: tuple[str, ...] = ("traces", "stopping", "iterations")


def longest_first(names: Iterable[str]) -> list[str]:
    names = list(names)
    first = [name for name in _SLOWEST_FIGURES if name in names]
    return first + [name for name in names if name not in first]


def start_figure_server() -> None:
    """Start `figure_pool`'s fork server now, without waiting for it: it imports the plotting
    code (about 2.5 s of CPU) in a process of its own while the fits run, not after the last
    fit, where the figures job would wait for it (issue 22: the tail). The server is the
    process's one; it ends with the process that started it."""
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(_server_preload())
    forkserver.ensure_running()


def figure_pool(workers: int) -> ProcessPoolExecutor:
    """The figure workers, forked from multiprocessing's fork server: a fresh process (not a
    fork of Snakemake's, which runs threads of its own) that imports the plotting code and the
    modules the main program uses once (`_server_preload`), so that each worker does not
    import them again, as a spawned one does (about 2.3 s of CPU each, Snakemake's command line
    included: a worker runs the main program's module again). Each worker exits when this
    process is gone (`_die_with_parent`). A server already started (`start_figure_server`)
    is the one used."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_server_preload())
    return ProcessPoolExecutor(
        workers, mp_context=context, initializer=_die_with_parent, initargs=(os.getpid(),)
    )


def _server_preload() -> list[str]:
    """The plotting code, and the modules the main program took its names from (Snakemake's
    command line: `snakemake.cli`): a worker runs the main program's module again, which is
    then quick."""
    import sys

    main = vars(sys.modules["__main__"]).values()
    used = {getattr(value, "__module__", None) for value in main if callable(value)}
    used |= {value.__name__ for value in main if isinstance(value, type(sys))}
    return ["emsim.study.figures", *sorted(m for m in used if m and m != "__main__")]


def _parent_of(pid: int) -> int | None:
    """The parent pid of process `pid` (Linux's /proc), or None where it cannot be read."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _die_with_parent(origin: int, interval: float = 0.5) -> None:
    """In a figure worker: exit as soon as the process `origin` that started the pool is gone.
    A Snakemake killed with SIGKILL cannot stop its workers, which would otherwise draw on as
    orphans (and a worker idle in the pool waits for work forever). Checks twice a second from
    a daemon thread whether the worker's parent, the fork server, is still there and still the
    child of `origin` (an orphan is adopted by another process, so its parent pid changes).
    The fork server does not end by itself while its workers live: they hold its pipe open."""
    server = os.getppid()

    def gone() -> bool:
        if os.getppid() != server:
            return True
        return server != origin and _parent_of(server) not in (origin, None)

    def watch() -> None:
        while not gone():
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="emsim-parent-watch", daemon=True).start()


def draw_figure(
    name: str, out_path: str, summary: SummaryFiles, traces: list[str], dpi: int, threshold: float
):
    # Imported here, in the drawing process, so that parsing the workflow stays free of
    # matplotlib and seaborn.
    from emsim.study import figures

    return figures.draw_one(name, summary, traces, out_path, dpi=dpi, threshold=threshold)
