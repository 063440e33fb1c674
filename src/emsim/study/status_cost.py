"""What a cell's replicates cost, for `emsim status`'s ETA (docs/design.md section 7).

A cell none of whose chunks has finished is costed from the cells that have finished chunks,
by a model that knows the two things a cell's cost depends on: its sample size n (an E-step
visits every point) and how well its components are separated (overlapping components need
far more E-steps). Separation enters through `separation_steps`: EM's population rate at the
cell's data-generating values, the largest eigenvalue lambda of the fraction of missing
information I_complete^-1 I_missing of the full model, turned into the E-steps that plain EM
needs to shrink its error by a factor e, 1 / (1 - lambda) (about -1 / log lambda), capped at
the study's `max_iterations`. It is computed here by quadrature of the normal mixture (no
sample, no engine: a few milliseconds a cell); a cell of another family is costed as the
normal mixture with its mu, sigma and pi.

The model (`fit_cost_model`): a replicate costs `fixed + exp(a) * n^g * steps^b` job
seconds. `fixed` is the finished chunks' mean seconds per replicate outside EM (the footers'
job minus EM seconds: simulating, starting values, writing the rows); the EM seconds per
replicate of each cell with finished chunks are fitted by weighted least squares in
log n and log steps (weights: replicates). A term the finished cells do not identify (all of
one n, or of one separation) takes its prior: g = 1 (an E-step's work grows as n), b = 0.
A fitted exponent outside its plausible range (g in [0.25, 1.5], b in [0, 1]: few cells can
pull a line anywhere) is set to its prior too, and the rest refitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CostModel", "fit_cost_model", "population_rate", "separation_steps"]

# The exponents' priors and the range a fit may move them in (see the module's note).
N_POWER_PRIOR, N_POWER_RANGE = 1.0, (0.25, 1.5)
STEPS_POWER_PRIOR, STEPS_POWER_RANGE = 0.0, (0.0, 1.0)
_QUADRATURE_POINTS = 4001


def population_rate(pi: float, mu1: float, mu2: float, sigma1: float, sigma2: float) -> float:
    """EM's population rate for the full model at these values: the largest eigenvalue of
    I_complete^-1 I_missing, both expected over the normal mixture (the missing information
    E[tau (1 - tau) G G'], G the gap between the components' complete-data scores, section 5),
    by the trapezoid rule over +-10 sigma around both means."""
    low = min(mu1 - 10 * sigma1, mu2 - 10 * sigma2)
    high = max(mu1 + 10 * sigma1, mu2 + 10 * sigma2)
    x = np.linspace(low, high, _QUADRATURE_POINTS)
    z1, z2 = (x - mu1) / sigma1, (x - mu2) / sigma2
    f1 = pi * np.exp(-0.5 * z1**2) / (sigma1 * math.sqrt(2 * math.pi))
    f2 = (1 - pi) * np.exp(-0.5 * z2**2) / (sigma2 * math.sqrt(2 * math.pi))
    density = f1 + f2
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.where(density > 0, f1 / density, 0.0)
    gap = np.stack(
        [
            np.full_like(x, 1 / pi + 1 / (1 - pi)),
            z1 / sigma1,
            -z2 / sigma2,
            (z1**2 - 1) / sigma1,
            -(z2**2 - 1) / sigma2,
        ]
    )
    weight = tau * (1 - tau) * density * (x[1] - x[0])
    missing = (gap * weight) @ gap.T
    # I_complete at the true values is diagonal; scaled to a unit diagonal, the rate matrix
    # has the eigenvalues of the symmetric C^-1/2 M C^-1/2.
    complete = np.array(
        [
            1 / (pi * (1 - pi)),
            pi / sigma1**2,
            (1 - pi) / sigma2**2,
            2 * pi / sigma1**2,
            2 * (1 - pi) / sigma2**2,
        ]
    )
    root = 1 / np.sqrt(complete)
    return float(np.linalg.eigvalsh(root[:, None] * missing * root[None, :])[-1])


def separation_steps(cell, max_iterations: int) -> float:
    """E-steps plain EM needs per factor e of error at the cell's values, 1 / (1 - rate), in
    [1, max_iterations]: the cell's separation as a cost (3.6 for |mu2 - mu1| / sigma = 4,
    245 for 2, the cap for 1 at pi = 0.8)."""
    rate = population_rate(cell.pi, cell.mu1, cell.mu2, cell.sigma1, cell.sigma2)
    if not math.isfinite(rate) or rate >= 1 - 1.0 / max_iterations:
        return float(max_iterations)
    return min(max(1.0 / (1.0 - rate), 1.0), float(max_iterations))


@dataclass(frozen=True)
class CostModel:
    """Job seconds of one replicate of a cell: `fixed + exp(log_scale) * n^n_power *
    steps^steps_power` (steps: `separation_steps`)."""

    fixed: float
    log_scale: float
    n_power: float = N_POWER_PRIOR
    steps_power: float = STEPS_POWER_PRIOR

    def replicate_seconds(self, n: int, steps: float = 1.0) -> float:
        return self.fixed + math.exp(
            self.log_scale + self.n_power * math.log(n) + self.steps_power * math.log(steps)
        )


def fit_cost_model(chunks) -> CostModel | None:
    """The model fitted to finished chunks (each with `cell_id`, `n`, `steps`, `replicates`,
    `job_seconds`, `em_seconds`); None without any."""
    if not chunks:
        return None
    replicates = sum(c.replicates for c in chunks)
    fixed = max(sum(c.job_seconds - c.em_seconds for c in chunks), 0.0) / replicates
    cells: dict[str, list] = {}
    for c in chunks:
        entry = cells.setdefault(c.cell_id, [c.n, c.steps, 0, 0.0])
        entry[2] += c.replicates
        entry[3] += c.em_seconds
    rows = np.array([[n, s, r, max(em / r, 1e-9)] for n, s, r, em in cells.values()])
    log_n, log_steps, weight, log_em = (
        np.log(rows[:, 0]),
        np.log(rows[:, 1]),
        rows[:, 2],
        np.log(rows[:, 3]),
    )
    priors = {"n": N_POWER_PRIOR, "steps": STEPS_POWER_PRIOR}
    powers: dict[str, float | None] = {"n": None, "steps": None}
    for name, column in (("n", log_n), ("steps", log_steps)):
        if np.ptp(column) < 1e-9:
            powers[name] = priors[name]
    # Two cells cannot fit an intercept and two slopes: the separation's slope goes first.
    if len(rows) < 3 and powers["n"] is None and powers["steps"] is None:
        powers["steps"] = priors["steps"]
    while True:
        log_scale, fitted = _weighted_fit(log_em, weight, log_n, log_steps, powers)
        outside = [
            name
            for name, (low, high) in (("n", N_POWER_RANGE), ("steps", STEPS_POWER_RANGE))
            if name in fitted and not low <= fitted[name] <= high
        ]
        if not outside:
            break
        for name in outside:
            powers[name] = priors[name]
    both = {**fitted, **{k: v for k, v in powers.items() if v is not None}}
    return CostModel(fixed, log_scale, both["n"], both["steps"])


def _weighted_fit(log_em, weight, log_n, log_steps, powers) -> tuple[float, dict[str, float]]:
    """(intercept, {name: exponent} of the exponents not fixed in `powers`): weighted least
    squares of log EM seconds per replicate, the fixed exponents' terms moved to the left."""
    target = log_em.copy()
    columns, names = [np.ones_like(log_em)], []
    for name, column in (("n", log_n), ("steps", log_steps)):
        if powers[name] is None:
            columns.append(column)
            names.append(name)
        else:
            target -= powers[name] * column
    design = np.column_stack(columns)
    root = np.sqrt(weight)
    solution = np.linalg.lstsq(design * root[:, None], target * root, rcond=None)[0]
    return float(solution[0]), dict(zip(names, map(float, solution[1:]), strict=True))
