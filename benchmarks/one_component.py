"""Fits that end on the one-component set, judged by an independent long run (docs/design.md
section 2, `saddle`).

Where the two fitted components coincide (equal means and sigmas) the mixture is one normal:
the likelihood does not depend on pi, the observed information is singular and EM, which keeps
equal components equal, stalls. Rounding can leave the information's smallest scaled
eigenvalue above the positive-definiteness threshold, so until emsim 0.3.0 such fits could be
labelled `converged` (7,570 of the default study's equal_var SQUAREM + score fits).

Data: `--replicates` data sets per n in {50, 500} of the overlapping cell (mu (0, 1), sigma 1,
pi 0.8), drawn from `--seed` (not the study's), fitted with the equal_var model by EM and
SQUAREM from the truth and the quantile start under the abs (1e-5) and score (0.01 SE) rules.
Independently of emsim's limit code (plain numpy):
- a fit is *on the one-component set* where its log-likelihood is within 1e-6 of one normal's
  maximum (mean and SD with divisor n) and its means are within 0.01 SD of each other;
- from each such fit, plain EM (`usable_maxima.plain_em`) runs `--steps` steps from the means
  moved apart by +-0.05 SD (both signs); the fit *climbs away* where either run ends at least
  1e-6 higher with means more than 0.05 SD apart: the point is no maximum.
Printed: status counts of the fits on the one-component set (none may be `converged`), the
share of them that climb away, and the smallest gain over one normal among `converged` fits.

    nice python benchmarks/one_component.py [--replicates 100] [--seed 20261207] [--steps 20000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import emsim
from emsim.api import fit_batch_by_rule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from usable_maxima import loglik, plain_em

TOLERANCES = {"abs": 1e-5, "score": 0.01}
TRUTH = {"pi": 0.8, "mu1": 0.0, "mu2": 1.0, "sigma1": 1.0, "sigma2": 1.0}


def normal_loglik(y: np.ndarray) -> np.ndarray:
    variance = ((y - y.mean(axis=1, keepdims=True)) ** 2).mean(axis=1)
    return -0.5 * y.shape[1] * (np.log(2.0 * np.pi * variance) + 1.0)


def climbs_away(y, fits: pd.DataFrame, steps: int) -> np.ndarray:
    sd = y.std(axis=1)
    sigma = fits.sigma.values
    theta = np.column_stack([fits.pi.values, fits.mu1.values, fits.mu2.values, sigma, sigma])
    base = loglik(y, theta)
    away = np.zeros(len(fits), dtype=bool)
    for sign in (1.0, -1.0):
        moved = theta.copy()
        moved[:, 1] += sign * 0.05 * sd
        moved[:, 2] -= sign * 0.05 * sd
        end = plain_em(y, moved, steps, "equal_var")
        gain = loglik(y, end) - base
        away |= (gain > 1e-6) & (np.abs(end[:, 1] - end[:, 2]) > 0.05 * sd)
    return away


def fits_of(y: np.ndarray, n: int) -> pd.DataFrame:
    frames = []
    for method in ("em", "squarem"):
        for start in ("truth", "quantile"):
            begin = TRUTH if start == "truth" else None
            by_rule = fit_batch_by_rule(y, "equal_var", method, begin, None, TOLERANCES)
            for rule, result in by_rule.items():
                frames.append(
                    pd.DataFrame(
                        {
                            "n": n,
                            "row": np.arange(y.shape[0]),
                            "method": method,
                            "start": start,
                            "rule": rule,
                            "status": result.status,
                            "loglik": result.loglik,
                            "pi": result.params["pi"],
                            "mu1": result.params["mu1"],
                            "mu2": result.params["mu2"],
                            "sigma": result.params["sigma1"],
                        }
                    )
                )
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args()
    seeds = np.random.SeedSequence(args.seed).spawn(2)
    print(f"emsim {emsim.__version__}; equal_var, mu (0, 1), sigma 1, pi 0.8; seed {args.seed}")
    for n, seed in zip((50, 500), seeds, strict=True):
        rng = np.random.default_rng(seed)
        y = np.stack([emsim.simulate(n, (0.0, 1.0), 1.0, 0.8, rng) for _ in range(args.replicates)])
        fits = fits_of(y, n)
        rows = fits.row.values
        sd = y.std(axis=1)[rows]
        gain = fits.loglik.values - normal_loglik(y)[rows]
        fits["one_component"] = (np.abs(gain) < 1e-6) & (np.abs(fits.mu1 - fits.mu2) < 0.01 * sd)
        on = fits[fits.one_component]
        # One independent run per distinct point (the rules and starts often share it).
        points = on.drop_duplicates(["row", "pi", "mu1", "mu2", "sigma"])
        away = climbs_away(y[points.row.values], points, args.steps)
        usable_gain = gain[(fits.status == "converged").values]
        print(f"\nn = {n}: {len(fits)} fits, {len(on)} on the one-component set")
        print(on.groupby(["method", "rule"]).status.value_counts().unstack(fill_value=0))
        print(
            f"distinct one-component points: {len(points)}, climbing away under plain EM "
            f"({args.steps} steps from +-0.05 SD): {int(away.sum())}"
        )
        print(
            f"converged fits: {usable_gain.size}, smallest gain over one normal "
            f"{usable_gain.min() if usable_gain.size else float('nan'):.3g}"
        )


if __name__ == "__main__":
    main()
