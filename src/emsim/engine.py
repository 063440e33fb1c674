"""The iteration loop shared by every model and method: plain EM and SQUAREM, one dataset at a
time, compiled with numba.

Each fit runs to its own end inside compiled code, so a batch costs what its live fits cost
and nothing per iteration is spent in Python. Each fit ends with exactly one status; nothing
here raises on bad numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from .kernels import (
    _JIT,
    MODEL_CODES,
    N_STATS,
    make_scratch,
    mixture_estep,
    mstep,
    pi_estep,
    pi_prepare,
)
from .models import STATUSES

# A fit whose mixing weight leaves [PI_EPS, 1 - PI_EPS] is on the boundary of the parameter space.
PI_EPS = 1e-6
# Rounding in a sum of n log-densities is far below this; a fall larger than it is a fault.
DECREASE_SLACK_REL = 1e-10
# SQUAREM's step-length bound grows (and shrinks after a rejected step) by this factor,
# as in Varadhan & Roland (2008) and their R package's default `mstep`.
SQUAREM_STEP_FACTOR = 4.0

CONVERGED, MAX_ITERATIONS, DEGENERATE, BOUNDARY, NONFINITE, DECREASED = range(6)
_RUNNING = -1
assert STATUSES[DEGENERATE] == "degenerate" and STATUSES[DECREASED] == "decreased"
METHOD_CODES = {"em": 0, "squarem": 1}
# Trace columns: iteration, pi, mu1, mu2, sigma1, sigma2, loglik, diff_loglik, loglik_evals.
TRACE_WIDTH = 9


@dataclass
class EngineOutput:
    params: np.ndarray
    loglik: np.ndarray
    loglik_start: np.ndarray
    status: np.ndarray
    iterations: np.ndarray
    loglik_evals: np.ndarray
    rate_empirical: np.ndarray
    stats: np.ndarray  # the E-step's statistics at the reported parameters
    traces: list[np.ndarray | None]  # per row: (iterations + 1) x TRACE_WIDTH, or None


@njit(**_JIT)
def _invalid(model, p, sigma_floor):
    """The status a parameter vector forces, or _RUNNING. A vanishing or collapsing component
    also makes the next statistics 0/0, so the specific diagnoses come before the generic."""
    if p[0] < PI_EPS or p[0] > 1.0 - PI_EPS:
        return BOUNDARY
    if model != 0 and (p[3] < sigma_floor or p[4] < sigma_floor):
        return DEGENERATE
    for k in range(5):
        if not math.isfinite(p[k]):
            return NONFINITE
    return _RUNNING


@njit(**_JIT)
def _estep(model, y, log_ratio, base, p, stats, scratch, bits):
    if model == 0:
        return pi_estep(log_ratio, base, p[0], stats, scratch, bits)
    return mixture_estep(y, p, stats, scratch, bits)


@njit(**_JIT)
def _to_unconstrained(p, u):
    u[0] = math.log(p[0]) - math.log1p(-p[0])
    u[1] = p[1]
    u[2] = p[2]
    u[3] = math.log(p[3])
    u[4] = math.log(p[4])


@njit(**_JIT)
def _from_unconstrained(u, p):
    p[0] = 1.0 / (1.0 + math.exp(-u[0]))
    p[1] = u[1]
    p[2] = u[2]
    p[3] = math.exp(u[3])
    p[4] = math.exp(u[4])


@njit(**_JIT)
def _record(trace, row, p, loglik, diff, evals):
    trace[row, 0] = row
    for k in range(5):
        trace[row, 1 + k] = p[k]
    trace[row, 6] = loglik
    trace[row, 7] = diff
    trace[row, 8] = evals


@njit(**_JIT)
def fit_one(
    y, start, model, method, tolerance, max_iterations, sigma_floor, traced, scratch, bits, out
):
    """Fit one dataset. `out` receives params (5), loglik, loglik_start, status, iterations,
    loglik evaluations, empirical rate, then the final statistics; returns the trace (rows
    0..iterations) or an empty array when not traced."""
    n = y.size
    p = start.copy()
    new = np.empty(5)
    stats = np.empty(N_STATS)
    new_stats = np.empty(N_STATS)
    log_ratio = np.empty(n if model == 0 else 0)
    base = 0.0
    if model == 0:
        base = pi_prepare(y, p, log_ratio, scratch)
    trace = np.empty((max_iterations + 1 if traced else 0, TRACE_WIDTH))

    loglik = _estep(model, y, log_ratio, base, p, stats, scratch, bits)
    loglik_start = loglik
    evals = 1
    if traced:
        _record(trace, 0, p, loglik, np.nan, evals)
    status = _invalid(model, p, sigma_floor)
    if status == _RUNNING and not math.isfinite(loglik):
        status = NONFINITE
    iteration = 0
    last_diff = np.nan
    previous_diff = np.nan
    step_max = 1.0
    # SQUAREM work vectors (parameters of the two EM steps, unconstrained coordinates).
    p1 = np.empty(5)
    p2 = np.empty(5)
    u0 = np.empty(5)
    u1 = np.empty(5)
    u2 = np.empty(5)
    ux = np.empty(5)

    while status == _RUNNING and iteration < max_iterations:
        iteration += 1
        if method == 0:
            mstep(model, n, p, stats, new)
            new_loglik = _estep(model, y, log_ratio, base, new, new_stats, scratch, bits)
            evals += 1
        else:
            # SQUAREM (Varadhan & Roland 2008, scheme S3, as their R package's squarem1):
            # two EM steps, a squared extrapolation in unconstrained coordinates (logit pi,
            # log sigma) with the step length clamped to [1, step_max], one stabilising EM
            # step from the extrapolated point, and a fallback to the second EM step unless
            # the result is valid and does not lower the log-likelihood.
            mstep(model, n, p, stats, p1)
            _estep(model, y, log_ratio, base, p1, new_stats, scratch, bits)
            mstep(model, n, p1, new_stats, p2)
            evals += 1
            _to_unconstrained(p, u0)
            _to_unconstrained(p1, u1)
            _to_unconstrained(p2, u2)
            rr = 0.0
            vv = 0.0
            for k in range(5):
                r = u1[k] - u0[k]
                v = (u2[k] - u1[k]) - r
                rr += r * r
                vv += v * v
            alpha = -math.sqrt(rr / vv) if vv > 0.0 else -1.0
            if not math.isfinite(alpha):
                alpha = -1.0
            alpha = min(-1.0, max(alpha, -step_max))
            take = True
            if alpha < -1.01:
                for k in range(5):
                    r = u1[k] - u0[k]
                    v = (u2[k] - u1[k]) - r
                    ux[k] = u0[k] - 2.0 * alpha * r + alpha * alpha * v
                _from_unconstrained(ux, p1)
                take = _invalid(model, p1, sigma_floor) == _RUNNING
                if take:
                    _estep(model, y, log_ratio, base, p1, new_stats, scratch, bits)
                    evals += 1
                    mstep(model, n, p1, new_stats, new)
                    take = _invalid(model, new, sigma_floor) == _RUNNING
            else:
                new[:] = p2
            new_loglik = -np.inf
            if take:
                new_loglik = _estep(model, y, log_ratio, base, new, new_stats, scratch, bits)
                evals += 1
                take = math.isfinite(new_loglik) and new_loglik >= loglik
            at_bound = alpha == -step_max
            if not take:
                new[:] = p2
                new_loglik = _estep(model, y, log_ratio, base, new, new_stats, scratch, bits)
                evals += 1
                if at_bound:
                    step_max = max(1.0, step_max / SQUAREM_STEP_FACTOR)
            elif at_bound:
                step_max *= SQUAREM_STEP_FACTOR

        diff = new_loglik - loglik
        status = _invalid(model, new, sigma_floor)
        if status == _RUNNING and not math.isfinite(new_loglik):
            status = NONFINITE
        if status == _RUNNING and diff < -DECREASE_SLACK_REL * (abs(loglik) + n):
            status = DECREASED
        if status != _RUNNING:
            # The rejected step is not kept: the fit reports its last valid iterate.
            iteration -= 1
            break
        p[:] = new
        stats[:] = new_stats
        loglik = new_loglik
        previous_diff = last_diff
        last_diff = diff
        if traced:
            _record(trace, iteration, p, loglik, diff, evals)
        if diff < tolerance:
            status = CONVERGED
    if status == _RUNNING:
        status = MAX_ITERATIONS

    out[0:5] = p
    out[5] = loglik
    out[6] = loglik_start
    out[7] = status
    out[8] = iteration
    out[9] = evals
    # Parameter errors shrink by the rate r per iteration, so log-likelihood increments
    # (quadratic in the error) shrink by r^2. SQUAREM's increments follow no such rate.
    out[10] = np.nan
    if method == 0 and last_diff > 0.0 and previous_diff > 0.0:
        out[10] = math.sqrt(last_diff / previous_diff)
    out[11 : 11 + N_STATS] = stats
    return trace[: iteration + 1] if traced else trace


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
    scratch, bits = make_scratch(n)
    out = np.empty((n_rows, 11 + N_STATS))
    traces: list[np.ndarray | None] = [None] * n_rows
    model_code, method_code = MODEL_CODES[model], METHOD_CODES[method]
    with np.errstate(all="ignore"):
        for r in range(n_rows):
            trace = fit_one(
                y[r],
                start[r],
                model_code,
                method_code,
                tolerance,
                max_iterations,
                sigma_floor[r],
                bool(traced[r]),
                scratch,
                bits,
                out[r],
            )
            if traced[r]:
                traces[r] = trace
    return EngineOutput(
        params=out[:, 0:5],
        loglik=out[:, 5].copy(),
        loglik_start=out[:, 6].copy(),
        status=np.array(STATUSES, dtype=object)[out[:, 7].astype(np.int64)],
        iterations=out[:, 8].astype(np.int64),
        loglik_evals=out[:, 9].astype(np.int64),
        rate_empirical=out[:, 10].copy(),
        stats=out[:, 11:],
        traces=traces,
    )
