"""The seed document's fit, reproduced: R's data (set.seed(1)) and its progress table."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from .api import fit
from .rrandom import RRandom
from .simulate import simulate
from .warmup import load_engine

SEED_DESIGN = {"n": 500_000, "mu": (0.0, 2.0), "sigma": 1.0, "pi": 0.8, "seed": 1}
SEED_START_PI = 0.5
SEED_TOLERANCE = 1e-5


@dataclass(frozen=True)
class SeedDemo:
    table: pd.DataFrame  # the seed's columns: Iteration, p(Z=1), loglik, diff_loglik
    fit_seconds: float
    # Loading the compiled engine from numba's cache, once per process, before the fit's clock
    # starts (compiling it, where `emsim warmup` has not run for this CPU).
    engine_load_seconds: float
    status: str
    head: pd.Series


def run_seed_demo() -> SeedDemo:
    design = SEED_DESIGN
    y = simulate(design["n"], design["mu"], design["sigma"], design["pi"], RRandom(design["seed"]))
    mu1, mu2 = design["mu"]
    known = {"mu1": mu1, "mu2": mu2, "sigma1": design["sigma"], "sigma2": design["sigma"]}
    engine_load_seconds = load_engine()
    began = time.perf_counter()
    result = fit(
        y,
        model="pi",
        start={"pi": SEED_START_PI},
        known=known,
        tolerance=SEED_TOLERANCE,
        trace=True,
    )
    seconds = time.perf_counter() - began
    trace = result.trace
    table = pd.DataFrame(
        {
            "Iteration": trace["iteration"].astype(int),
            "p(Z=1)": trace["pi"],
            "loglik": trace["loglik"],
            "diff_loglik": trace["diff_loglik"],
        }
    )
    return SeedDemo(table, seconds, engine_load_seconds, result.status, pd.Series(y[:6], name="Y"))
