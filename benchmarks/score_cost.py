"""What the score rule's information checks cost (issue 18), in the issue's slow cell.

Cell: n = 5000, mu = (0, 1), sigma = 1, pi = 0.8, the full model, the quantile start at 0.5;
`--replicates` data sets from seeds `--seed0`, `--seed0` + 1, ... For each method the engine
fits the batch under `abs` (1e-5), under `abs` with a tolerance no step meets (`cap`: every fit
runs to the cap, as most score fits do at the cap of 1,000 in this cell) and under `score`
(0.01 SE), each alone, `--repeats` interleaved rounds (best round kept: the machine is shared).
Reported per method: median E-steps per fit (abs, score), the score rule's information checks
per fit, and seconds per E-step of the engine call (the path, its checks and the engine's
polish; not emsim.limit's continuation); score / cap is what the checks add to every E-step.

    nice python benchmarks/score_cost.py [--replicates 100] [--seed0 9000] [--repeats 2]
"""

from __future__ import annotations

import argparse

import numpy as np

import emsim
from emsim import engine
from emsim.api import quantile_start

# (rule, tolerance) per variant; "cap" never stops before the cap (as most score fits at the
# cap of 1,000 in this cell), so its seconds per E-step compare like with like.
VARIANTS = {
    "abs": ("abs", 1e-5),
    "cap": ("abs", float(np.finfo(np.float64).tiny)),
    "score": ("score", 0.01),
}


def run(Y: np.ndarray, method: str, variant: str, max_iterations: int) -> engine.EngineOutput:
    rule, tolerance = VARIANTS[variant]
    start = quantile_start(Y, 0.5)
    matrix = np.stack([start[p] for p in emsim.PARAMS], axis=1)
    return engine.run(
        Y,
        matrix,
        "full",
        method,
        (rule,),
        np.array([tolerance]),
        max_iterations,
        1e-6 * Y.std(axis=1),
        np.zeros(Y.shape[0], dtype=bool),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--seed0", type=int, default=9000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-iterations", type=int, default=1000)
    args = parser.parse_args()
    Y = np.stack(
        [
            emsim.simulate(5000, (0.0, 1.0), 1.0, 0.8, np.random.default_rng(args.seed0 + r))
            for r in range(args.replicates)
        ]
    )
    run(Y[:2], "em", "score", 10)  # load the engine before anything is timed
    for method in ("em", "squarem"):
        per_eval: dict[str, float] = {}
        for _ in range(args.repeats):
            for rule in VARIANTS:
                out = run(Y, method, rule, args.max_iterations)
                spent = out.path_evals.sum() + out.polish_evals.sum()
                seconds = out.seconds / spent
                per_eval[rule] = min(per_eval.get(rule, np.inf), seconds)
                if rule == "score":
                    checks = out.score_checks[:, 0]
                    evals = out.loglik_evals[:, 0]
                elif rule == "abs":
                    base = out.loglik_evals[:, 0]
        print(
            f"{method:8s} E-steps/fit median abs {np.median(base):.0f} score "
            f"{np.median(evals):.0f}; score checks/fit median {np.median(checks):.0f} "
            f"(mean {checks.mean():.1f}, max {checks.max()}); s per E-step abs "
            f"{per_eval['abs'] * 1e6:.1f} us, cap {per_eval['cap'] * 1e6:.1f} us, score "
            f"{per_eval['score'] * 1e6:.1f} us; score / abs "
            f"{per_eval['score'] / per_eval['abs']:.2f}, score / cap "
            f"{per_eval['score'] / per_eval['cap']:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
