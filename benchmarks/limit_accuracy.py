"""How well stops are judged in the issue's slow cell (issue 18), against independent long runs.

Cell: n = 5000, mu = (0, 1), sigma = 1, pi = 0.8, the full model, the quantile start at 0.5;
`--replicates` data sets (default 300) from seeds `--seed0`, `--seed0` + 1, ... (not the
issue's). The reference limit of each data set is a long SQUAREM run from the start (cap
200,000 cycles, until a cycle gains nothing), with SEs from the analytic information there:
the engine's iteration run long, not emsim.limit's continuation and certification.

Per method (em, squarem) and rule (abs 1e-5, aitken 1e-5, score 0.01 SE, param 1e-5) at the
cap of 1,000, and SQUAREM + score at the cap of 20,000: usable / premature / saddle /
max_iterations rates with MCSE; the share of stopped fits whose reported distance_to_limit is
within a factor 1.5 (or 0.02 SE) of the distance to the reference; saddles and converged fits
whose reference lies more than 0.1 SE away; median E-steps per fit; and for the score rule the
median ratio of its E-steps to the oracle stop's (the first iterate of the same path within
0.01 SE of the reference).

    nice python benchmarks/limit_accuracy.py [--replicates 300] [--seed0 7000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import emsim
from emsim import engine
from emsim.api import fit_batch_by_rule, quantile_start
from emsim.limit import standard_errors

TOLERANCES = {"abs": 1e-5, "aitken": 1e-5, "score": 0.01, "param": 1e-5}
STOPPED = ("converged", "premature", "saddle", "max_iterations")


def references(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    start = quantile_start(Y, 0.5)
    matrix = np.stack([start[p] for p in emsim.PARAMS], axis=1)
    out = engine.run(
        Y,
        matrix,
        "full",
        "squarem",
        ("abs",),
        np.array([np.finfo(np.float64).tiny]),
        200_000,
        1e-6 * Y.std(axis=1),
        np.zeros(Y.shape[0], dtype=bool),
    )
    limit = np.ascontiguousarray(out.params[:, 0])
    se = standard_errors(Y, limit, "full")
    ok = (out.status[:, 0] == "converged") & np.isfinite(se).all(axis=1)
    return limit, se, ok


def distances(points: np.ndarray, limit: np.ndarray, se: np.ndarray) -> np.ndarray:
    return np.max(np.abs(points - limit) / se, axis=-1)


def rate(mask: np.ndarray) -> str:
    p = mask.mean()
    return f"{p:6.3f} ± {np.sqrt(p * (1 - p) / mask.size):.3f}"


def oracle_ratio(result, limit, se, ok) -> float:
    """Median over fits of the score rule's E-steps / the oracle stop's."""
    ratios = []
    for r, trace in enumerate(result.traces):
        if trace is None or not ok[r]:
            continue
        points = trace[list(emsim.PARAMS)].to_numpy()
        near = np.flatnonzero(distances(points, limit[r], se[r]) < TOLERANCES["score"])
        if near.size and result.status[r] == "converged":
            ratios.append(result.loglik_evals[r] / trace["loglik_evals"].iloc[near[0]])
    return float(np.median(ratios)) if ratios else float("nan")


def report(label: str, result, limit, se, ok) -> None:
    status = result.status
    stop = np.stack([result.params[p] for p in emsim.PARAMS], axis=1)
    expected = distances(stop, limit, se)
    stopped = np.isin(status, STOPPED) & ok
    reported = result.distance_to_limit
    accurate = np.abs(reported - expected) <= np.maximum(0.5 * expected, 0.02)
    within = accurate[stopped]
    far_saddle = int(((status == "saddle") & ok & (expected > 0.1)).sum())
    far_converged = int(((status == "converged") & ok & (expected > 0.1)).sum())
    print(
        f"{label:28s} usable {rate(status == 'converged')}  premature "
        f"{rate(status == 'premature')}  saddle {rate(status == 'saddle')}  max_it "
        f"{rate(status == 'max_iterations')}  dist-ok {within.mean():.3f} "
        f"(of {within.size})  far-saddle {far_saddle}  far-converged {far_converged}  "
        f"median E-steps {np.median(result.loglik_evals):.0f}",
        flush=True,
    )
    if result.stopping == "score" and result.traces:
        print(
            f"{'':28s} score E-steps / oracle (median): {oracle_ratio(result, limit, se, ok):.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=300)
    parser.add_argument("--seed0", type=int, default=7000)
    args = parser.parse_args()
    Y = np.stack(
        [
            emsim.simulate(5000, (0.0, 1.0), 1.0, 0.8, np.random.default_rng(args.seed0 + r))
            for r in range(args.replicates)
        ]
    )
    began = time.perf_counter()
    limit, se, ok = references(Y)
    print(
        f"references: {ok.sum()} of {ok.size} reached a maximum "
        f"({time.perf_counter() - began:.0f} s)"
    )
    for method in ("em", "squarem"):
        began = time.perf_counter()
        results = fit_batch_by_rule(
            Y, "full", method, start={"pi": 0.5}, tolerances=TOLERANCES, trace=True
        )
        seconds = time.perf_counter() - began
        for rule, result in results.items():
            report(f"{method} {rule} cap 1000", result, limit, se, ok)
        print(f"  ({method}: {seconds:.0f} s for all four rules)", flush=True)
    long_cap = emsim.fit_batch(
        Y, "full", "squarem", start={"pi": 0.5}, stopping="score", max_iterations=20_000
    )
    report("squarem score cap 20000", long_cap, limit, se, ok)


if __name__ == "__main__":
    main()
