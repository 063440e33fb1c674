"""Worker processes forked from one fork server (docs/design.md section 8): the server imports
the code the workers run once, each worker is a fork of it (no imports of its own, no second
load of the compiled engine), and every worker ends with the Snakemake process that started it.

Two users: the fit jobs (`WorkerPool`: a job, a thread of Snakemake, hands its chunk to an idle
worker and waits, so that fit jobs on several cores do not take turns on one GIL) and the
figures job (`figure_workers.figure_pool`, a `ProcessPoolExecutor` on the same server).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

__all__ = [
    "SERVER_IMPORTS",
    "WorkerDied",
    "WorkerPool",
    "die_with_parent",
    "server_context",
    "server_preload",
    "start_server",
    "start_worker",
    "stop_server",
]


# Imported first by the fork server: the imports after it run faster (its docstring).
SERVER_IMPORTS = "emsim.study.server_imports"


def server_preload(*modules: str) -> list[str]:
    """`SERVER_IMPORTS`, `modules`, then the modules the main program took its names from
    (Snakemake's command line: `snakemake.cli`): the server runs the main program's module
    again, which is then quick."""
    main = vars(sys.modules["__main__"]).values()
    used = {getattr(value, "__module__", None) for value in main if callable(value)}
    used |= {value.__name__ for value in main if isinstance(value, type(sys))}
    ours = (SERVER_IMPORTS, *modules)
    return [*ours, *sorted(m for m in used if m and m not in ("__main__", *ours))]


def server_context(*modules: str) -> multiprocessing.context.BaseContext:
    """multiprocessing's fork-server context, its server preloading `modules`
    (`server_preload`) unless it is running already (a server is the process's one)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(server_preload(*modules))
    return context


def start_server(*modules: str) -> None:
    """Start the fork server now, without waiting for its imports: they run in a process of
    their own while Snakemake schedules the first jobs."""
    from multiprocessing import forkserver

    server_context(*modules)
    forkserver.ensure_running()


def stop_server(timeout: float = 10.0) -> None:
    """End the fork server, if this process started one, and wait for it (at most `timeout`
    seconds). It is killed, not asked to exit: its interpreter's exit, which tears down the
    fit and plotting code it imported, took about a second at the end of every run, and it
    holds nothing to save. Its workers have ended by then (the pools join them, and the server
    reaps them), so their CPU time counts in this process's children's (what the benchmarks
    measure a run by) as the server's own does. For a run's end: workers still busy end with
    the server (`die_with_parent`)."""
    from multiprocessing import forkserver

    # multiprocessing has no public way to end its fork server; `_stop` is what its tests use.
    stop = getattr(forkserver._forkserver, "_stop", None)
    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if stop is None or not pid:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    stopping = threading.Thread(target=stop, name="emsim-stop-server", daemon=True)
    stopping.start()
    stopping.join(timeout)


def _parent_of(pid: int) -> int | None:
    """The parent pid of process `pid` (Linux's /proc), or None where it cannot be read."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def die_with_parent(origin: int, interval: float = 0.5) -> None:
    """In a worker: exit as soon as the process `origin` that started it is gone. A Snakemake
    killed with SIGKILL cannot stop its workers, which would otherwise work on as orphans (and
    an idle one would wait for work forever). Checks twice a second from a daemon thread
    whether the worker's parent, the fork server, is still there and still the child of
    `origin` (an orphan is adopted by another process, so its parent pid changes). The fork
    server does not end by itself while its workers live: they hold its pipe open."""
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


def start_worker(origin: int) -> None:
    """First thing in every worker forked from the server (the fit workers' loop, the figure
    pool's initializer): undo what the server's first import set for its own imports
    (`server_imports.undo`), freeze what the worker inherited, and end with the process
    `origin` (`die_with_parent`). The imported code lives as long as the worker, so its
    full garbage collections need not traverse it (`gc.freeze`, which splices lists and
    touches no inherited page): drawing the figures of issue 22's study took 1.02 s of
    collections, 0.44 s with the imports frozen (8.5 -> 7.4 CPU-s in all)."""
    from emsim.study import server_imports

    server_imports.undo()
    gc.freeze()
    die_with_parent(origin)


class WorkerDied(RuntimeError):
    """A worker ended (killed: out of memory, a signal) before it answered; one line."""


def _portable(err: BaseException) -> BaseException:
    """`err` itself where it survives the pipe (the job then fails with today's message),
    else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")
    return err


def _serve(conn: Connection, origin: int) -> None:
    """A worker's loop: run each call sent, answer (True, result) or (False, exception)."""
    start_worker(origin)
    # Ctrl-C reaches the whole process group; Snakemake decides what an interrupt ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            request = conn.recv()
        except EOFError:  # the pool's end is closed: Snakemake is gone
            return
        if request is None:
            return
        func, args = request
        try:
            reply = (True, func(*args))
        except Exception as err:
            reply = (False, _portable(err))
        conn.send(reply)


class _Worker:
    def __init__(self, context: Any, origin: int) -> None:
        here, there = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(there, origin), name="emsim-worker", daemon=True
        )
        self.process.start()
        there.close()
        self.conn = here

    def call(self, func: Callable[..., Any], args: tuple) -> tuple[bool, Any]:
        try:
            self.conn.send((func, args))
            # Either the answer or the worker's end: a killed worker must not hang the job.
            wait([self.conn, self.process.sentinel])
            return self.conn.recv()
        except (EOFError, OSError):
            raise WorkerDied(self._how_it_ended()) from None

    def _how_it_ended(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            why = " (out of memory?)" if name == "SIGKILL" else ""
            return f"worker process {self.process.pid} was killed by {name}{why}"
        return f"worker process {self.process.pid} ended (exit code {code}) before answering"

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.conn.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()


class WorkerPool:
    """Up to `size` worker processes forked from the fork server, started when first needed
    and kept for the next call; each runs one call at a time. `run` blocks its (Snakemake job)
    thread until a worker is free and has answered: the caller needs no queue of its own, as
    Snakemake runs no more jobs at once than it has cores."""

    def __init__(self, size: int, *preload: str) -> None:
        self.size = size
        self._context = server_context(*preload)
        self._origin = os.getpid()
        self._idle: list[_Worker] = []
        self._started = 0
        self._free = threading.Condition()

    def run(self, func: Callable[..., Any], *args: Any) -> Any:
        """`func(*args)` in a worker: its result, or its exception raised here (`WorkerDied`
        where the worker ended without answering, which is then replaced by a new one)."""
        worker = self._take()
        try:
            ok, value = worker.call(func, args)
        except BaseException:
            worker.stop()
            with self._free:
                self._started -= 1
                self._free.notify()
            raise
        with self._free:
            self._idle.append(worker)
            self._free.notify()
        if not ok:
            raise value
        return value

    def _take(self) -> _Worker:
        with self._free:
            while not self._idle and self._started >= self.size:
                self._free.wait()
            while self._idle:
                worker = self._idle.pop()
                if worker.process.is_alive():
                    return worker
                # Ended while idle (killed): not this call's failure; a new one replaces it.
                self._started -= 1
                worker.conn.close()
            self._started += 1
        try:
            return _Worker(self._context, self._origin)
        except BaseException:
            with self._free:
                self._started -= 1
                self._free.notify()
            raise

    def close(self) -> None:
        """Stop the idle workers (busy ones end with Snakemake: `die_with_parent`)."""
        with self._free:
            idle, self._idle = self._idle, []
            self._started -= len(idle)
        for worker in idle:
            worker.stop()
