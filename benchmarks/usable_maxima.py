"""Are usable fits maxima? An independent local check (docs/design.md section 2: only a fit at
a maximum is `converged`).

Data: `--replicates` data sets of each of four cells (n 50 and 500; mu (0, 1) with pi 0.8 and
mu (0, 2) with pi 0.5 or 0.8; sigma 1) from `--seed` (not the study's), fitted with the
equal_var and the full model by EM and SQUAREM from the truth and the quantile start under
the abs, aitken (1e-5) and score (0.01 SE) rules. From every `converged` fit, moved by
`--size` (0.01) of its SEs along `--directions` random directions, plain EM written here in
numpy runs `--steps` steps. At a maximum no such run can end above the log-likelihood of the
fit's limit (EM never lowers the likelihood, and from that close it stays in the maximum's
basin); at a saddle some direction climbs away. Printed per model and cell: usable fits, those
from which a run ends more than 1e-6 above their limit, and the largest gain seen. (At 0.1 SE
four full-model fits at n = 50, SEs of a mean near 2, had a higher maximum within reach: from
0.01 SE all twenty directions tried came back to each.)

    nice python benchmarks/usable_maxima.py [--replicates 100] [--seed 777] [--size 0.01]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

import emsim
from emsim.api import fit_batch_by_rule

PARAMS = ("pi", "mu1", "mu2", "sigma1", "sigma2")
CELLS = ((50, 1.0, 0.8), (50, 2.0, 0.5), (500, 1.0, 0.8), (500, 2.0, 0.8))
TOLERANCES = {"abs": 1e-5, "aitken": 1e-5, "score": 0.01}


def components(y: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pi, mu1, mu2, s1, s2 = (theta[:, i, None] for i in range(5))
    a = np.log(pi) - np.log(s1) - 0.5 * ((y - mu1) / s1) ** 2
    b = np.log1p(-pi) - np.log(s2) - 0.5 * ((y - mu2) / s2) ** 2
    return a, b


def loglik(y: np.ndarray, theta: np.ndarray) -> np.ndarray:
    a, b = components(y, theta)
    top = np.maximum(a, b)
    inner = top + np.log(np.exp(a - top) + np.exp(b - top))
    return inner.sum(axis=1) - 0.5 * y.shape[1] * np.log(2.0 * np.pi)


def plain_em(y: np.ndarray, theta: np.ndarray, steps: int, model: str) -> np.ndarray:
    n = y.shape[1]
    for _ in range(steps):
        a, b = components(y, theta)
        with np.errstate(over="ignore"):
            tau = 1.0 / (1.0 + np.exp(b - a))
        w = tau.sum(axis=1)
        mu1 = (tau * y).sum(axis=1) / w
        mu2 = ((1.0 - tau) * y).sum(axis=1) / (n - w)
        v1 = (tau * (y - mu1[:, None]) ** 2).sum(axis=1)
        v2 = ((1.0 - tau) * (y - mu2[:, None]) ** 2).sum(axis=1)
        if model == "full":
            s1, s2 = np.sqrt(v1 / w), np.sqrt(v2 / (n - w))
        else:
            s1 = s2 = np.sqrt((v1 + v2) / n)
        theta = np.column_stack([w / n, mu1, mu2, s1, s2])
    return theta


def largest_gain(y, result, model, rng, directions, steps, size) -> np.ndarray:
    """Per usable fit: the most any perturbed EM run ends above the fit's limit."""
    usable = np.flatnonzero(result.status == "converged")
    theta = np.column_stack([result.params[p][usable] for p in PARAMS])
    se = np.nan_to_num(np.column_stack([result.se[p][usable] for p in PARAMS]))
    if model == "equal_var":
        se[:, 4] = 0.0
    limit = result.loglik[usable] + np.nan_to_num(result.loglik_gap_to_limit[usable])
    gain = np.full(usable.size, -np.inf)
    for _ in range(directions):
        direction = rng.normal(size=theta.shape)
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        moved = theta + size * direction * se
        if model == "equal_var":
            moved[:, 4] = moved[:, 3]
        moved[:, 0] = np.clip(moved[:, 0], 1e-6, 1.0 - 1e-6)
        end = plain_em(y[usable], moved, steps, model)
        gain = np.maximum(gain, loglik(y[usable], end) - limit)
    return gain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--directions", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--size", type=float, default=0.01, help="in SEs")
    args = parser.parse_args()
    # A cell's data are the same for both models, whatever the perturbations drew.
    data_seeds = np.random.SeedSequence(args.seed).spawn(len(CELLS) + 1)
    rng = np.random.default_rng(data_seeds.pop())
    found = []
    for model in ("equal_var", "full"):
        for (n, mu2, pi), seed in zip(CELLS, data_seeds, strict=True):
            data_rng = np.random.default_rng(seed)
            truth = {"pi": pi, "mu1": 0.0, "mu2": mu2, "sigma1": 1.0, "sigma2": 1.0}
            y = np.stack(
                [emsim.simulate(n, (0.0, mu2), 1.0, pi, data_rng) for _ in range(args.replicates)]
            )
            for method in ("em", "squarem"):
                for start in (truth, None):
                    by_rule = fit_batch_by_rule(y, model, method, start, None, TOLERANCES)
                    for result in by_rule.values():
                        gain = largest_gain(
                            y, result, model, rng, args.directions, args.steps, args.size
                        )
                        found.append(
                            pd.DataFrame(
                                {"model": model, "cell": f"n {n}, mu2 {mu2}, pi {pi}", "gain": gain}
                            )
                        )
    table = pd.concat(found, ignore_index=True)
    table["climbs"] = table["gain"] > 1e-6
    print(
        f"emsim {emsim.__version__}; seed {args.seed}; "
        f"{args.directions} directions of {args.size} SE x {args.steps} EM steps"
    )
    print(
        table.groupby(["model", "cell"])
        .agg(usable=("gain", "size"), climbing_away=("climbs", "sum"), largest_gain=("gain", "max"))
        .to_string()
    )


if __name__ == "__main__":
    main()
