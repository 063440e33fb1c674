"""Compile the engine at set-up, and load it before any clock starts (issue 10).

numba compiles a `cache=True` function on its first call in a process unless its cache holds
machine code for this source, these argument types and this CPU; compiling the engine takes
about 2 minutes (112 s on an AMD EPYC core; most of it LLVM optimising `fit_one`, which inlines
the E-step three times). `make venv` runs `emsim warmup` (`warm`), which compiles every entry point
the rest of emsim calls from Python, for the argument types it passes, and saves them in numba's
cache; a later process then only loads them (about 0.1 s). `load_engine` is that load, done by a
command or a fit job before it starts timing, so no timing field counts it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import engine
from .models import METHODS, MODELS


def entry_points() -> list[tuple[object, tuple]]:
    """Every compiled function called from Python, each with arguments of the types emsim
    passes it (C-contiguous, writeable float64 arrays; api._as_data makes all data so)."""
    y = np.array([[-1.0, 0.0, 0.5, 2.0, 3.0]])
    start = np.array([[0.5, 0.0, 2.0, 1.0, 1.0]])
    run = engine.run_args(
        y, start, "full", "em", ("abs",), np.array([1e-5]), 10, np.zeros(1), np.zeros(1, bool)
    )
    n_est = len(MODELS["full"])
    sums = (
        y,
        start.copy(),
        engine.MODEL_CODES["full"],
        np.empty((1, n_est, n_est)),
        np.empty((1, n_est, n_est)),
        np.empty((1, engine.N_STATS)),
    )
    outer = (y, start.copy(), engine.MODEL_CODES["full"], np.empty((1, n_est, n_est)))
    ascent = (
        y,
        start.copy(),
        engine.MODEL_CODES["full"],
        np.zeros(1),
        np.ones(7),
        np.empty(1),
        np.zeros(1, dtype=bool),
    )
    assessed = (
        y,
        start.copy(),
        engine.MODEL_CODES["full"],
        1e-10,
        np.zeros(1, dtype=bool),
        np.empty(1),
        np.empty(1),
        np.empty((1, n_est)),
    )
    newton = (y, start.copy(), engine.MODEL_CODES["full"], np.ones(4), np.zeros(1, dtype=bool))
    return [
        (engine.logliks, (y, start.copy(), np.empty(1))),
        (engine.pi_information_sums, (y, start.copy(), np.empty((1, 3)))),
        (engine.fit_rows, run),
        (engine.information_sums, sums),
        (engine.score_outer_sums, outer),
        (engine.trust_region_rows, ascent),
        (engine.assess_rows, assessed),
        (engine.newton_rows, newton),
    ]


def compiled_entry_points() -> list[object]:
    """The entry points this process compiled rather than loaded from numba's cache."""
    return [d for d, _ in entry_points() if sum(d.stats.cache_misses.values())]


def load_engine() -> float:
    """Load every entry point's machine code from numba's cache (compiling what the cache lacks
    for this CPU); seconds spent. Cheap after the first call in a process."""
    began = time.perf_counter()
    for dispatcher, args in entry_points():
        engine.load(dispatcher, args)
    return time.perf_counter() - began


@dataclass(frozen=True)
class WarmUp:
    compiled: tuple[str, ...]  # the entry points this call compiled (none: all were cached)
    seconds: float
    cache_dir: str


def warm() -> WarmUp:
    """Compile (or load) the engine, then fit tiny data through the public API with every
    model, method and trace setting, read-only data too, and check that no call needed code
    other than what `load_engine` prepared: a second specialization would be compiled on a
    user's clock, not here."""
    from .api import fit

    began = time.perf_counter()
    load_engine()
    y = np.array([-1.2, -0.3, 0.1, 0.4, 1.9, 2.2, 2.8, 3.5])
    readonly = y.copy()
    readonly.flags.writeable = False
    known = {"mu1": 0.0, "mu2": 3.0, "sigma1": 1.0, "sigma2": 1.0}
    for model in MODELS:
        for method in METHODS:
            for data, traced in ((y, False), (y, True), (readonly, False)):
                fit(data, model, method, known=known if model == "pi" else None, trace=traced)
    # The summary's group-by kernels too: a cell summary job must not compile them either.
    from .study.grouping import warm_kernels

    summary_kernels = warm_kernels()
    seconds = time.perf_counter() - began
    for dispatcher, _ in entry_points():
        if len(dispatcher.signatures) != 1:
            raise RuntimeError(
                f"engine.{dispatcher.__name__} was compiled for {len(dispatcher.signatures)} "
                "sets of argument types; emsim passes one (see warmup.entry_points)"
            )
    compiled = tuple(d.__name__ for d in compiled_entry_points()) + summary_kernels
    return WarmUp(compiled, seconds, str(engine.fit_rows.stats.cache_path))


def main() -> int:
    """`emsim warmup`: one line saying what was done."""
    done = warm()
    if done.compiled:
        print(
            f"emsim: compiled the engine for this CPU in {done.seconds:.1f} s "
            f"({', '.join(done.compiled)}); cached in {done.cache_dir}"
        )
    else:
        print(
            f"emsim: the engine was already compiled for this CPU (loaded in "
            f"{done.seconds:.2f} s from {done.cache_dir})"
        )
    return 0
