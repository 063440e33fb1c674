"""The limit of a fit's own iteration, found and certified (docs/design.md section 2).

The engine's polish continues every fit that a rule or the cap stopped with SQUAREM (which
follows EM's monotone path to a fixed point of the EM map at a fraction of EM's cost) for a few
dozen E-steps. `find_limits` takes it from there: a point is *certified* as the limit where the
observed information I (Louis' identity) is positive definite, the Newton decrement
sqrt(g' I^-1 g) is below CERTIFIED_DECREMENT standard errors and one EM step moves no parameter
by more than that many of its SEs. Where the point is not yet certified, SQUAREM continues in
rounds of growing length (CONTINUATION_ROUNDS: the iteration crawls where EM's rate is near 1,
and on a ridge the information is not even positive definite on the way). Newton's method
(analytic score and information, steps halved until the log-likelihood does not fall) only
finishes the way: it is tried from points already within NEWTON_FROM_DECREMENT SEs of the
local quadratic model's maximum, and its end is accepted only where it is certified, lies no
further from its start than the decrement said, and is no lower than the stop and the
iteration's point. Newton from further away can end on a ridge the iteration would leave
(issue 18: a data set whose limit is 20 SE and 1.04 log-likelihood units past a ridge point
whose decrement is 0.09).

An iteration that stalls (no gain at the working precision) where I is not positive definite
is at a stationary point that is no maximum (`stationary`: a saddle, such as equal components,
which EM keeps equal); one that leaves the parameter space has no limit (`failed`). For a
plain-EM fit that verdict is EM's own: where SQUAREM's extrapolation leaves the parameter space
(a component collapsing onto a few points, on 4 of 300 slow-cell data sets where EM's own
path reaches a maximum), the continuation goes on from where it was with plain EM steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine import MODEL_CODES, information_sums, run
from .information import positive_definite_inverse_diagonal

# A point is the limit when the Newton decrement and one EM step are below this many SEs: far
# below the 0.02 SE to which a distance is reported and the 0.1 SE that decides `premature`.
CERTIFIED_DECREMENT = 1e-4
# Newton may finish only from points whose local quadratic model is this close (in SEs) to
# its maximum; ridge points the iteration later leaves had decrements of 0.03 to 0.09.
NEWTON_FROM_DECREMENT = 1e-2
# SQUAREM cycles of each continuation round: 14,400 in all, beyond the longest run the slow
# cell needed (about 11,000 cycles from the start), spent only on fits not yet certified.
CONTINUATION_ROUNDS = (100, 300, 1000, 3000, 10000)
# Newton stops when every parameter's step is below this many of its standard errors.
STEP_TOLERANCE_SE = 1e-7
MAX_NEWTON_STEPS = 60
MAX_HALVINGS = 40
_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


def _log_parts(y: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pi, mu1, mu2, s1, s2 = (theta[:, k : k + 1] for k in range(5))
    with np.errstate(all="ignore"):
        a = np.log(pi) - np.log(s1) - _LOG_SQRT_2PI - 0.5 * ((y - mu1) / s1) ** 2
        b = np.log1p(-pi) - np.log(s2) - _LOG_SQRT_2PI - 0.5 * ((y - mu2) / s2) ** 2
    return a, b


def loglik(y: np.ndarray, theta: np.ndarray) -> np.ndarray:
    a, b = _log_parts(y, theta)
    top = np.maximum(a, b)
    with np.errstate(all="ignore"):
        return (top + np.log1p(np.exp(-np.abs(a - b)))).sum(axis=1)


def _score_information(y: np.ndarray, theta: np.ndarray, model: str):
    """(score, observed information) over the model's estimated parameters, per row."""
    a, b = _log_parts(y, theta)
    with np.errstate(all="ignore"):
        tau = 1.0 / (1.0 + np.exp(b - a))
        untau = 1.0 - tau
        pi, mu1, mu2, s1, s2 = (theta[:, k : k + 1] for k in range(5))
        score_pi = (tau / pi - untau / (1.0 - pi)).sum(axis=1)
        if model == "pi":
            # d2/dpi2 of sum log(pi f1 + (1 - pi) f2) is -sum (f1 - f2)^2 / f^2.
            info = ((tau / pi - untau / (1.0 - pi)) ** 2).sum(axis=1)
            return score_pi[:, None], info[:, None, None]
        e1, e2 = y - mu1, y - mu2
        scores = [score_pi, (tau * e1).sum(axis=1) / s1[:, 0] ** 2]
        scores.append((untau * e2).sum(axis=1) / s2[:, 0] ** 2)
        if model == "full":
            scores.append((tau * (e1**2 / s1**3 - 1.0 / s1)).sum(axis=1))
            scores.append((untau * (e2**2 / s2**3 - 1.0 / s2)).sum(axis=1))
        else:
            scores.append(((tau * e1**2 + untau * e2**2) / s1**3 - 1.0 / s1).sum(axis=1))
    k = len(scores)
    complete = np.empty((y.shape[0], k, k))
    missing = np.empty((y.shape[0], k, k))
    information_sums(y, np.ascontiguousarray(theta), MODEL_CODES[model], complete, missing)
    return np.stack(scores, axis=1), complete - missing


def _expand(step: np.ndarray, model: str) -> np.ndarray:
    """A step over the estimated parameters as a step over (pi, mu1, mu2, sigma1, sigma2)."""
    full = np.zeros((step.shape[0], 5))
    if model == "pi":
        full[:, 0] = step[:, 0]
    elif model == "equal_var":
        full[:, :4] = step
        full[:, 4] = step[:, 3]
    else:
        full[:] = step
    return full


def _valid(theta: np.ndarray) -> np.ndarray:
    return (
        np.isfinite(theta).all(axis=1)
        & (theta[:, 0] > 0.0)
        & (theta[:, 0] < 1.0)
        & (theta[:, 3] > 0.0)
        & (theta[:, 4] > 0.0)
    )


def newton_limit(y: np.ndarray, theta: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(maximiser near each row's theta, done) by safeguarded Newton steps; rows not done keep
    the last point reached."""
    theta = np.array(theta, dtype=np.float64, copy=True)
    done = np.zeros(theta.shape[0], dtype=bool)
    active = _valid(theta)
    current = loglik(y, theta)
    for _ in range(MAX_NEWTON_STEPS):
        rows = np.flatnonzero(active & ~done)
        if rows.size == 0:
            break
        score, info = _score_information(y[rows], theta[rows], model)
        positive, inverse_diag = positive_definite_inverse_diagonal(info)
        with np.errstate(all="ignore"):
            safe = np.where(positive[:, None, None], info, np.eye(info.shape[1]))
            step = np.linalg.solve(safe, score[:, :, None])[:, :, 0]
            size_se = np.max(np.abs(step) / np.sqrt(inverse_diag), axis=1)
        active[rows[~positive]] = False
        step = _expand(step, model)
        small = positive & (size_se < STEP_TOLERANCE_SE)
        moving = positive & ~small
        scale = np.ones(rows.size)
        candidate = theta[rows].copy()
        value = np.full(rows.size, -np.inf)
        accepted = np.zeros(rows.size, dtype=bool)
        # Rounding in a sum of n terms: a step may "lose" that much at the maximum.
        slack = 1e-12 * (np.abs(current[rows]) + y.shape[1])
        waiting = moving.copy()
        for _ in range(MAX_HALVINGS):
            trying = np.flatnonzero(waiting)
            if trying.size == 0:
                break
            candidate[trying] = theta[rows[trying]] + scale[trying, None] * step[trying]
            ok = _valid(candidate[trying])
            value[trying] = -np.inf
            if ok.any():
                value[trying[ok]] = loglik(y[rows[trying[ok]]], candidate[trying[ok]])
            good = trying[value[trying] >= current[rows[trying]] - slack[trying]]
            accepted[good] = True
            waiting[good] = False
            scale[waiting] *= 0.5
        update = moving & accepted
        theta[rows[update]] = candidate[update]
        current[rows[update]] = value[update]
        done[rows[small]] = True
        active[rows[moving & ~accepted]] = False
    return theta, done


def standard_errors(y: np.ndarray, theta: np.ndarray, model: str) -> np.ndarray:
    """Standard errors over the model's estimated parameters (NaN where the observed information
    is not positive definite), from the same information Newton uses."""
    _, info = _score_information(y, theta, model)
    positive, inverse_diag = positive_definite_inverse_diagonal(info)
    with np.errstate(invalid="ignore"):
        return np.where(positive[:, None], np.sqrt(inverse_diag), np.nan)


def em_step(y: np.ndarray, theta: np.ndarray, model: str) -> np.ndarray:
    """One EM step from each row's theta (numpy; the engine's M-step in closed form)."""
    a, b = _log_parts(y, theta)
    with np.errstate(all="ignore"):
        tau = 1.0 / (1.0 + np.exp(b - a))
        new = np.array(theta, dtype=np.float64, copy=True)
        new[:, 0] = tau.mean(axis=1)
        if model == "pi":
            return new
        untau = 1.0 - tau
        w1, w2 = tau.sum(axis=1), untau.sum(axis=1)
        new[:, 1] = (tau * y).sum(axis=1) / w1
        new[:, 2] = (untau * y).sum(axis=1) / w2
        var1 = (tau * (y - new[:, 1:2]) ** 2).sum(axis=1) / w1
        var2 = (untau * (y - new[:, 2:3]) ** 2).sum(axis=1) / w2
        if model == "equal_var":
            var1 = var2 = (w1 * var1 + w2 * var2) / y.shape[1]
        new[:, 3], new[:, 4] = np.sqrt(var1), np.sqrt(var2)
    return new


_ESTIMATED_COLUMNS = {"pi": [0], "equal_var": [0, 1, 2, 3], "full": [0, 1, 2, 3, 4]}


@dataclass(frozen=True)
class Assessment:
    """At each row's point: information positive definite, Newton decrement and EM residual
    (both in SEs; inf where I is not positive definite) and SEs over the estimated
    parameters."""

    positive: np.ndarray
    decrement: np.ndarray
    residual: np.ndarray
    se: np.ndarray

    @property
    def certified(self) -> np.ndarray:
        return (
            self.positive
            & (self.decrement < CERTIFIED_DECREMENT)
            & (self.residual < CERTIFIED_DECREMENT)
        )


def assess(y: np.ndarray, theta: np.ndarray, model: str) -> Assessment:
    score, info = _score_information(y, theta, model)
    positive, inverse_diag = positive_definite_inverse_diagonal(info)
    k = info.shape[1]
    with np.errstate(all="ignore"):
        safe = np.where(positive[:, None, None], info, np.eye(k))
        step = np.linalg.solve(safe, score[:, :, None])[:, :, 0]
        decrement = np.sqrt(np.abs(np.einsum("ri,ri->r", score, step)))
        se = np.where(positive[:, None], np.sqrt(inverse_diag), np.nan)
        moved = em_step(y, theta, model)[:, _ESTIMATED_COLUMNS[model]]
        residual = np.max(np.abs(moved - theta[:, _ESTIMATED_COLUMNS[model]]) / se, axis=1)
    decrement = np.where(positive & np.isfinite(decrement), decrement, np.inf)
    residual = np.where(positive & np.isfinite(residual), residual, np.inf)
    return Assessment(positive, decrement, residual, se)


@dataclass(frozen=True)
class Limits:
    """Per row: where the iteration's continuation ended, its log-likelihood and SEs (over the
    estimated parameters; NaN where I is not positive definite), and how it ended: `certified`
    (a maximum, the limit), `stationary` (stalled where I is not positive definite) or
    `failed` (left the parameter space); none of the three: the budget ran out."""

    params: np.ndarray
    loglik: np.ndarray
    se: np.ndarray
    certified: np.ndarray
    stationary: np.ndarray
    failed: np.ndarray
    evals: np.ndarray


def _newton_finish(y, state, rows, model, floor_loglik) -> None:
    """Newton from the rows' points; keeps its end where it is certified, no lower and no
    further than the decrement at the start said (see the module's docstring)."""
    start = state["params"][rows]
    start_decrement = state["assessment"].decrement[rows]
    theta, done = newton_limit(y[rows], start, model)
    checked = assess(y[rows], theta, model)
    value = loglik(y[rows], theta)
    with np.errstate(all="ignore"):
        columns = _ESTIMATED_COLUMNS[model]
        moved = np.max(np.abs(theta[:, columns] - start[:, columns]) / checked.se, axis=1)
    slack = 1e-12 * (np.abs(value) + y.shape[1])
    accept = (
        done
        & checked.certified
        & (value >= np.maximum(state["loglik"][rows], floor_loglik[rows]) - slack)
        & (moved <= 2.0 * start_decrement + 1e-3)
    )
    chosen = rows[accept]
    state["params"][chosen] = theta[accept]
    state["loglik"][chosen] = value[accept]
    for name in ("positive", "decrement", "residual", "se"):
        getattr(state["assessment"], name)[chosen] = getattr(checked, name)[accept]


def find_limits(
    y: np.ndarray,
    theta: np.ndarray,
    theta_loglik: np.ndarray,
    stop_loglik: np.ndarray,
    model: str,
    sigma_floor: np.ndarray,
    method: str = "squarem",
) -> Limits:
    """The limit of each row's iteration from `theta` (where the engine's polish ended, with
    its log-likelihood), for stops whose log-likelihood was `stop_loglik`; rows whose theta is
    NaN are left out (NaN results). `method` is the fits' own: a plain-EM fit whose SQUAREM
    continuation leaves the parameter space goes on with plain EM. See the module's
    docstring."""
    n_rows = theta.shape[0]
    state = {"params": np.array(theta, dtype=np.float64, copy=True)}
    state["loglik"] = np.array(theta_loglik, dtype=np.float64, copy=True)
    certified = np.zeros(n_rows, dtype=bool)
    stationary = np.zeros(n_rows, dtype=bool)
    failed = np.zeros(n_rows, dtype=bool)
    plain = np.zeros(n_rows, dtype=bool)
    evals = np.zeros(n_rows, dtype=np.int64)
    todo = np.isfinite(theta).all(axis=1)
    se_width = len(_ESTIMATED_COLUMNS[model])
    state["assessment"] = Assessment(
        np.zeros(n_rows, dtype=bool),
        np.full(n_rows, np.inf),
        np.full(n_rows, np.inf),
        np.full((n_rows, se_width), np.nan),
    )
    _reassess(y, state, np.flatnonzero(todo), model)
    for cycles in CONTINUATION_ROUNDS:
        certified |= todo & state["assessment"].certified
        todo &= ~certified
        near = np.flatnonzero(todo & (state["assessment"].decrement < NEWTON_FROM_DECREMENT))
        if near.size:
            _newton_finish(y, state, near, model, stop_loglik)
            certified[near] |= state["assessment"].certified[near]
            todo &= ~certified
        rows = np.flatnonzero(todo)
        if rows.size == 0:
            break
        stalled = np.zeros(rows.size, dtype=bool)
        left = np.zeros(rows.size, dtype=bool)
        for steps, chosen in (("squarem", ~plain[rows]), ("em", plain[rows])):
            if chosen.any():
                stalled[chosen], left[chosen] = _continue(
                    y, state, rows[chosen], model, sigma_floor, cycles, evals, steps
                )
        # SQUAREM's extrapolation can carry a plain-EM fit where EM's own path does not go (a
        # component collapsing onto a few points); EM itself goes on from where it was.
        retry = left & ~plain[rows] & (method == "em")
        plain[rows[retry]] = True
        left &= ~retry
        failed[rows[left]] = True
        _reassess(y, state, rows[~left], model)
        stationary[rows] = stalled & ~state["assessment"].positive[rows]
        todo &= ~(failed | stationary)
    certified |= todo & state["assessment"].certified
    params = state["params"]
    params[~np.isfinite(theta).all(axis=1)] = np.nan
    return Limits(
        params,
        state["loglik"],
        state["assessment"].se,
        certified,
        stationary & ~certified,
        failed,
        evals,
    )


def _reassess(y, state, rows, model) -> None:
    if rows.size == 0:
        return
    checked = assess(y[rows], state["params"][rows], model)
    for name in ("positive", "decrement", "residual", "se"):
        getattr(state["assessment"], name)[rows] = getattr(checked, name)


def _continue(y, state, rows, model, sigma_floor, cycles, evals, steps="squarem"):
    """`cycles` more iterations of `steps` (SQUAREM cycles or plain EM steps) from the rows'
    points (the engine itself, restarted there; SQUAREM's step-length bound starts afresh).
    Returns (stalled: an iteration gained nothing at the working precision, left: the
    iteration left the parameter space). A crawling iteration gains 1e-7 or less per cycle
    for thousands of cycles, so any positive gain goes on."""
    tolerance = np.finfo(np.float64).tiny
    out = run(
        np.ascontiguousarray(y[rows]),
        np.ascontiguousarray(state["params"][rows]),
        model,
        steps,
        ("abs",),
        np.array([tolerance]),
        int(cycles),
        np.ascontiguousarray(sigma_floor[rows]),
        np.zeros(rows.size, dtype=bool),
    )
    status = out.status[:, 0]
    left = (status != "converged") & (status != "max_iterations")
    # The engine's own polish continued from its stop: take the point furthest along.
    ended = np.where(left[:, None], out.params[:, 0], out.limit[:, 0])
    value = np.where(left, out.loglik[:, 0], out.limit_loglik[:, 0])
    keep = ~left
    state["params"][rows[keep]] = ended[keep]
    state["loglik"][rows[keep]] = value[keep]
    evals[rows] += out.loglik_evals[:, 0] + out.polish_evals[:, 0]
    return status == "converged", left
