"""The iteration loop shared by every model and method: plain EM and SQUAREM over a batch.

All fits of a batch advance in lockstep; a fit that stops drops out of the work (the batch is
compacted once a quarter of its rows have stopped), so the cost follows the live fits. Each fit
ends with exactly one status; nothing here raises on bad numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kernels import MU1, MU2, PI, SIGMA1, SIGMA2, make_kernel

# A fit whose mixing weight leaves [PI_EPS, 1 - PI_EPS] is on the boundary of the parameter space.
PI_EPS = 1e-6
# Rounding in a sum of n log-densities is far below this; a fall larger than it is a fault.
DECREASE_SLACK_REL = 1e-10
# SQUAREM's step-length bound grows (and shrinks after a rejected step) by this factor,
# as in Varadhan & Roland (2008) and their R package's default `mstep`.
SQUAREM_STEP_FACTOR = 4.0
_COMPACT_WHEN_LIVE_BELOW = 0.75


@dataclass
class EngineOutput:
    params: np.ndarray
    loglik: np.ndarray
    loglik_start: np.ndarray
    status: np.ndarray
    iterations: np.ndarray
    loglik_evals: np.ndarray
    rate_empirical: np.ndarray
    stats: np.ndarray  # the kernel's statistics at the reported parameters
    trace_rows: list[tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]]


def _to_unconstrained(params: np.ndarray) -> np.ndarray:
    u = params.copy()
    u[:, PI] = np.log(params[:, PI]) - np.log1p(-params[:, PI])
    u[:, SIGMA1] = np.log(params[:, SIGMA1])
    u[:, SIGMA2] = np.log(params[:, SIGMA2])
    return u


def _from_unconstrained(u: np.ndarray) -> np.ndarray:
    params = u.copy()
    params[:, PI] = 1.0 / (1.0 + np.exp(-u[:, PI]))
    params[:, SIGMA1] = np.exp(u[:, SIGMA1])
    params[:, SIGMA2] = np.exp(u[:, SIGMA2])
    return params


class _Batch:
    """Per-row state of the live fits; `compact` drops stopped rows from every array at once."""

    def __init__(self, params, loglik, stats, sigma_floor, traced, estimates_sigma):
        n_rows = params.shape[0]
        self.rows = np.arange(n_rows)
        self.params = params
        self.loglik = loglik
        self.stats = stats
        self.sigma_floor = sigma_floor
        self.traced = traced
        self.alive = np.ones(n_rows, dtype=bool)
        self.last_diffs = np.full((n_rows, 2), np.nan)
        self.step_max = np.ones(n_rows)
        self.estimates_sigma = estimates_sigma

    _per_row = ("rows", "params", "loglik", "stats", "sigma_floor", "traced", "alive")
    _per_row += ("last_diffs", "step_max")

    def compact(self, kernel) -> None:
        keep = self.alive
        kernel.take(keep)
        for name in self._per_row:
            setattr(self, name, getattr(self, name)[keep])

    def invalid_params(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks (nonfinite, degenerate, boundary) of parameter rows that must stop a fit."""
        nonfinite = ~np.isfinite(params).all(axis=1)
        if self.estimates_sigma:
            degenerate = (params[:, SIGMA1] < self.sigma_floor) | (
                params[:, SIGMA2] < self.sigma_floor
            )
        else:
            degenerate = np.zeros(params.shape[0], dtype=bool)
        boundary = (params[:, PI] < PI_EPS) | (params[:, PI] > 1.0 - PI_EPS)
        return nonfinite, degenerate, boundary


def run(
    y: np.ndarray,
    start: np.ndarray,
    model: str,
    method: str,
    tolerance: float,
    max_iterations: int,
    sigma_floor: np.ndarray,
    traced: np.ndarray,
) -> EngineOutput:
    n_rows, n = y.shape
    with np.errstate(all="ignore"):
        kernel = make_kernel(y, start, model)
        loglik, stats = kernel.estep(start)
    batch = _Batch(start.copy(), loglik, stats, sigma_floor, traced, model != "pi")

    out = EngineOutput(
        params=start.copy(),
        loglik=loglik.copy(),
        loglik_start=loglik.copy(),
        status=np.full(n_rows, "", dtype=object),
        iterations=np.zeros(n_rows, dtype=np.int64),
        loglik_evals=np.ones(n_rows, dtype=np.int64),
        rate_empirical=np.full(n_rows, np.nan),
        stats=stats.copy(),
        trace_rows=[],
    )
    evals_per_step = 1 if method == "em" else 3

    def record_trace(mask: np.ndarray, iteration: int, diff: np.ndarray) -> None:
        mask = mask & batch.traced
        if mask.any():
            out.trace_rows.append(
                (batch.rows[mask], iteration, batch.params[mask], batch.loglik[mask], diff[mask])
            )

    def finish(mask: np.ndarray, status: str, iterations: int, evals: int) -> None:
        rows = batch.rows[mask]
        out.params[rows] = batch.params[mask]
        out.loglik[rows] = batch.loglik[mask]
        out.stats[rows] = batch.stats[mask]
        out.status[rows] = status
        out.iterations[rows] = iterations
        out.loglik_evals[rows] = evals
        if method == "em":
            latest, previous = batch.last_diffs[mask, 0], batch.last_diffs[mask, 1]
            # Parameter errors shrink by the rate r per iteration, so log-likelihood increments
            # (quadratic in the error) shrink by r^2.
            with np.errstate(all="ignore"):
                rate = np.sqrt(latest / previous)
            usable = (latest > 0) & (previous > 0) & np.isfinite(rate)
            out.rate_empirical[rows] = np.where(usable, rate, np.nan)
        batch.alive[mask] = False

    record_trace(np.ones(n_rows, dtype=bool), 0, np.full(n_rows, np.nan))
    start_bad = ~np.isfinite(batch.loglik)
    nonfinite, degenerate, boundary = batch.invalid_params(batch.params)
    finish(boundary, "boundary", 0, 1)
    finish(batch.alive & degenerate, "degenerate", 0, 1)
    finish(batch.alive & (start_bad | nonfinite), "nonfinite", 0, 1)

    evals = 1
    iteration = 0
    with np.errstate(all="ignore"):
        while iteration < max_iterations and batch.alive.any():
            if batch.alive.sum() < _COMPACT_WHEN_LIVE_BELOW * batch.alive.size:
                batch.compact(kernel)
            iteration += 1
            evals += evals_per_step
            if method == "em":
                new_params = kernel.mstep(batch.params, batch.stats)
                new_loglik, new_stats = kernel.estep(new_params)
            else:
                new_params, new_loglik, new_stats = _squarem_step(kernel, batch)

            diff = new_loglik - batch.loglik
            nonfinite, degenerate, boundary = batch.invalid_params(new_params)
            nonfinite |= ~np.isfinite(new_loglik)
            slack = DECREASE_SLACK_REL * (np.abs(batch.loglik) + n)
            decreased = diff < -slack
            rejected = nonfinite | degenerate | boundary | decreased

            accepted = ~rejected
            batch.params[accepted] = new_params[accepted]
            batch.loglik[accepted] = new_loglik[accepted]
            batch.stats[accepted] = new_stats[accepted]
            batch.last_diffs[accepted, 1] = batch.last_diffs[accepted, 0]
            batch.last_diffs[accepted, 0] = diff[accepted]
            record_trace(batch.alive & accepted, iteration, diff)

            # A vanishing or collapsing component also makes the next statistics 0/0, so the
            # specific diagnoses come before the generic one.
            finish(batch.alive & boundary, "boundary", iteration - 1, evals)
            finish(batch.alive & degenerate, "degenerate", iteration - 1, evals)
            finish(batch.alive & nonfinite, "nonfinite", iteration - 1, evals)
            finish(batch.alive & decreased, "decreased", iteration - 1, evals)
            finish(batch.alive & (diff < tolerance), "converged", iteration, evals)
        finish(batch.alive, "max_iterations", iteration, evals)
    return out


def _squarem_step(kernel, batch: _Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One SQUAREM cycle (Varadhan & Roland 2008, scheme S3): two EM steps, a squared
    extrapolation in unconstrained coordinates (logit pi, log sigma) with the step length clamped
    to [1, step_max], and a fallback to the second EM step unless the extrapolated point is valid
    and its log-likelihood is at least the cycle's starting one."""
    params0 = batch.params
    params1 = kernel.mstep(params0, batch.stats)
    _, stats1 = kernel.estep(params1)
    params2 = kernel.mstep(params1, stats1)
    loglik2, stats2 = kernel.estep(params2)

    u0 = _to_unconstrained(params0)
    r = _to_unconstrained(params1) - u0
    v = _to_unconstrained(params2) - 2.0 * (u0 + r) + u0
    alpha = -np.sqrt((r * r).sum(axis=1) / (v * v).sum(axis=1))
    alpha = np.where(np.isfinite(alpha), alpha, -1.0)
    alpha = np.clip(alpha, -batch.step_max, -1.0)
    extrapolated = _from_unconstrained(u0 - 2.0 * alpha[:, None] * r + (alpha * alpha)[:, None] * v)
    loglik_x, stats_x = kernel.estep(extrapolated)

    nonfinite, degenerate, boundary = batch.invalid_params(extrapolated)
    take = ~(nonfinite | degenerate | boundary) & np.isfinite(loglik_x) & (loglik_x >= batch.loglik)
    at_bound = alpha == -batch.step_max
    batch.step_max = np.where(
        at_bound & take,
        batch.step_max * SQUAREM_STEP_FACTOR,
        np.where(
            at_bound & ~take, np.maximum(1.0, batch.step_max / SQUAREM_STEP_FACTOR), batch.step_max
        ),
    )
    return (
        np.where(take[:, None], extrapolated, params2),
        np.where(take, loglik_x, loglik2),
        np.where(take[:, None], stats_x, stats2),
    )


__all__ = ["MU1", "MU2", "PI", "SIGMA1", "SIGMA2", "EngineOutput", "run"]
