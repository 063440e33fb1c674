"""The limit of a fit's own iteration, found and certified (docs/design.md section 2).

The engine's polish continues every fit that a rule or the cap stopped with SQUAREM (which
follows EM's monotone path to a fixed point of the EM map at a fraction of EM's cost) for a few
dozen E-steps. `find_limits` takes it from there: a point is *certified* as the limit where the
observed information I (Louis' identity) is positive definite, the Newton decrement
sqrt(g' I^-1 g) is below CERTIFIED_DECREMENT standard errors and one EM step moves no parameter
by more than that many of its SEs. Where the point is not yet certified, SQUAREM continues in
rounds of growing length (CONTINUATION_ROUNDS: the iteration crawls where EM's rate is near 1,
and on a ridge the information is not even positive definite on the way). A trust-region
Newton ascent in EM's own metric (`trust_region_limit`) tries to finish the way, at once where
I is positive definite at the polish's end and after each round elsewhere: every step it keeps
raises the log-likelihood, it follows a ridge where I is not positive definite, and it gets in
a median of 15 steps where SQUAREM crawled for thousands of E-steps (the default study's slow
cell). Its end is kept only where it is certified and no lower than
the stop; on 300 slow-cell data sets the distance to it matches that to an independent
long run (from the start, or the fit's own iteration run on in numpy) for 99.7-100% (EM) and
99.3-99.7% (SQUAREM) of stopped fits (`benchmarks/limit_accuracy.py`, docs/design.md section
2). Where I is not positive definite it runs only after a round of the iteration itself, so
that a stationary point that is no maximum (equal components, which EM keeps equal) is found
stalled rather than climbed away from. Plain
Newton (analytic score and information, steps halved until the log-likelihood does not fall)
is tried first from points already within NEWTON_FROM_DECREMENT SEs of the local quadratic
model's maximum, its end accepted only where it is certified, lies no further from its start
than the decrement said, and is no lower than the stop and the iteration's point. An end that
is not certified is never taken: Newton from a ridge point (issue 18: a data set whose limit is
20 SE and 1.04 log-likelihood units past a point whose decrement is 0.09) ends where the
information is not positive definite.

An iteration that stalls (no gain at the working precision) where I is not positive definite
is at a stationary point that is no maximum (`stationary`: a saddle, such as equal components,
which EM keeps equal), and so is a limit whose log-likelihood is one normal's (`on_one_normal`:
there I is singular, though rounding may pass it as positive definite); one that leaves the
parameter space has no limit (`failed`). For a
plain-EM fit that verdict is EM's own: where SQUAREM's extrapolation leaves the parameter space
(a component collapsing onto a few points, on 4 of 300 slow-cell data sets where EM's own
path reaches a maximum), the continuation goes on from where it was with plain EM steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine import (
    MODEL_CODES,
    N_STATS,
    assess_rows,
    information_sums,
    logliks,
    newton_rows,
    pi_information_sums,
    run,
    trust_region_rows,
)
from .information import MIN_SCALED_EIGENVALUE, positive_definite_inverse_diagonal

# A point is the limit when the Newton decrement and one EM step are below this many SEs: far
# below the 0.02 SE to which a distance is reported and the 0.1 SE that decides `premature`.
CERTIFIED_DECREMENT = 1e-4
# Newton may finish only from points whose local quadratic model is this close (in SEs) to
# its maximum; ridge points the iteration later leaves had decrements of 0.03 to 0.09.
NEWTON_FROM_DECREMENT = 1e-2
# SQUAREM cycles of each continuation round: 14,400 in all, beyond the longest run the slow
# cell needed (about 11,000 cycles from the start), spent only on fits not yet certified.
CONTINUATION_ROUNDS = (100, 300, 1000, 3000, 10000)
# The trust-region finish: at most this many steps per attempt (50 ended short on ridges, where
# the rounds' SQUAREM then crawled 14,400 cycles without reaching the limit), from a radius of
# one unit of EM's own metric (about one EM step's reach); the radius shrinks by RADIUS_SHRINK
# where the quadratic model overstates the gain and doubles (up to TRUST_RADIUS_MAX) where it
# holds at the boundary.
TRUST_REGION_STEPS = 200
TRUST_RADIUS_START = 1.0
# A cap on the radius keeps the ascent close to EM's own path: unbounded doublings let it leap
# from a ridge across the basin EM's path takes into another spurious maximum's (slow cell,
# seed 31118: a maximum 1,420 SE away where EM's own long run ends 826 SE away).
TRUST_RADIUS_MAX = 8.0
RADIUS_SHRINK = 0.25
# Halvings of the bracket for the subproblem's multiplier: 2^-60 of it, below rounding.
SHIFT_HALVINGS = 60
# A limit whose log-likelihood is one normal's to within this x (|loglik| + n) is on the
# one-component set (`on_one_normal`): the engine's own rounding scale for a fall that EM
# cannot make (engine.DECREASE_SLACK_REL).
ONE_COMPONENT_SLACK = 1e-10
# Newton stops when every parameter's step is below this many of its standard errors.
STEP_TOLERANCE_SE = 1e-7
MAX_NEWTON_STEPS = 60
MAX_HALVINGS = 40
_NEWTON_SETTINGS = np.array(
    [MAX_NEWTON_STEPS, MAX_HALVINGS, STEP_TOLERANCE_SE, MIN_SCALED_EIGENVALUE], dtype=np.float64
)
_TRUST_REGION_SETTINGS = np.array(
    [
        TRUST_REGION_STEPS,
        TRUST_RADIUS_START,
        TRUST_RADIUS_MAX,
        RADIUS_SHRINK,
        SHIFT_HALVINGS,
        CERTIFIED_DECREMENT,
        MIN_SCALED_EIGENVALUE,
    ],
    dtype=np.float64,
)


def loglik(y: np.ndarray, theta: np.ndarray) -> np.ndarray:
    out = np.empty(theta.shape[0])
    logliks(np.ascontiguousarray(y), np.ascontiguousarray(theta, dtype=np.float64), out)
    return out


@dataclass(frozen=True)
class _Louis:
    """At each row's point, over the model's estimated parameters: the score, the observed
    information and the tau-moments of engine.information_sums, from which one EM step follows."""

    score: np.ndarray
    info: np.ndarray
    moments: np.ndarray


def _louis(y: np.ndarray, theta: np.ndarray, model: str) -> _Louis:
    """Score, information and tau-moments in one compiled pass over the data (the score and EM
    step are sums the information needs anyway: a second numpy pass for them cost 2x the pass)."""
    theta = np.ascontiguousarray(theta, dtype=np.float64)
    if model == "pi":
        sums = np.empty((y.shape[0], 3))
        pi_information_sums(np.ascontiguousarray(y), theta, sums)
        moments = np.zeros((y.shape[0], N_STATS))
        moments[:, 0] = sums[:, 0]
        return _Louis(sums[:, 1:2], sums[:, 2, None, None], moments)
    k = 5 if model == "full" else 4
    complete = np.empty((y.shape[0], k, k))
    missing = np.empty((y.shape[0], k, k))
    moments = np.empty((y.shape[0], N_STATS))
    information_sums(y, theta, MODEL_CODES[model], complete, missing, moments)
    w1, t1, q1, w2, t2, q2 = moments.T
    pi, s1, s2 = theta[:, 0], theta[:, 3], theta[:, 4]
    with np.errstate(all="ignore"):
        scores = [w1 / pi - w2 / (1.0 - pi), t1 / s1**2, t2 / s2**2]
        if model == "full":
            scores += [q1 / s1**3 - w1 / s1, q2 / s2**3 - w2 / s2]
        else:
            scores.append((q1 + q2) / s1**3 - y.shape[1] / s1)
    return _Louis(np.stack(scores, axis=1), complete - missing, moments)


def _valid(theta: np.ndarray) -> np.ndarray:
    return (
        np.isfinite(theta).all(axis=1)
        & (theta[:, 0] > 0.0)
        & (theta[:, 0] < 1.0)
        & (theta[:, 3] > 0.0)
        & (theta[:, 4] > 0.0)
    )


def newton_limit(y: np.ndarray, theta: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(maximiser near each row's theta, done) by safeguarded Newton steps (analytic score and
    information, each step halved until the log-likelihood does not fall), until a step is
    below STEP_TOLERANCE_SE of every parameter's SE; rows not done keep the last point reached.
    Compiled, one row at a time (`engine.newton_rows`); models equal_var and full (the pi
    model's is `_pi_newton`)."""
    theta = np.array(theta, dtype=np.float64, order="C", copy=True)
    done = np.zeros(theta.shape[0], dtype=bool)
    newton_rows(
        np.ascontiguousarray(y, dtype=np.float64), theta, MODEL_CODES[model], _NEWTON_SETTINGS, done
    )
    return theta, done


def _pi_newton(
    y: np.ndarray, theta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, _Louis, np.ndarray]:
    """`newton_limit` for the pi model (a 1 x 1 information), over a stack of rows in numpy,
    and at each row's end the Louis terms (NaN for rows not done) and the log-likelihood: a
    done row's last step was computed where it ended, so its terms are those of `_louis` there
    bit for bit (rows are summed one by one), and Newton's finish need not make that pass over
    the data again, nor the log-likelihood's."""
    theta = np.array(theta, dtype=np.float64, copy=True)
    done = np.zeros(theta.shape[0], dtype=bool)
    ends = _Louis(
        np.full((theta.shape[0], 1), np.nan),
        np.full((theta.shape[0], 1, 1), np.nan),
        np.full((theta.shape[0], N_STATS), np.nan),
    )
    active = _valid(theta)
    current = loglik(y, theta)
    for _ in range(MAX_NEWTON_STEPS):
        rows = np.flatnonzero(active & ~done)
        if rows.size == 0:
            break
        at = _louis(y[rows], theta[rows], "pi")
        score, info = at.score, at.info
        positive, inverse_diag = positive_definite_inverse_diagonal(info)
        with np.errstate(all="ignore"):
            safe = np.where(positive[:, None, None], info, np.eye(1))
            pi_step = np.linalg.solve(safe, score[:, :, None])[:, :, 0]
            size_se = np.max(np.abs(pi_step) / np.sqrt(inverse_diag), axis=1)
        active[rows[~positive]] = False
        step = np.zeros((rows.size, 5))
        step[:, 0] = pi_step[:, 0]
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
        for name in ("score", "info", "moments"):
            getattr(ends, name)[rows[small]] = getattr(at, name)[small]
        active[rows[moving & ~accepted]] = False
    return theta, done, ends, current


def standard_errors(y: np.ndarray, theta: np.ndarray, model: str) -> np.ndarray:
    """Standard errors over the model's estimated parameters (NaN where the observed information
    is not positive definite), from the same information Newton uses."""
    positive, inverse_diag = positive_definite_inverse_diagonal(_louis(y, theta, model).info)
    with np.errstate(invalid="ignore"):
        return np.where(positive[:, None], np.sqrt(inverse_diag), np.nan)


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
    """The certification's measures at each row's theta: for the equal_var and full models in
    one compiled pass per row (`engine.assess_rows`: Louis' terms, the information decomposed
    at unit diagonal by our own Jacobi), for the pi model from its 1 x 1 information."""
    n_rows = theta.shape[0]
    if model == "pi":
        return _assess_pi(y, theta)
    k = len(_ESTIMATED_COLUMNS[model])
    positive = np.zeros(n_rows, dtype=bool)
    decrement, residual = np.empty(n_rows), np.empty(n_rows)
    se = np.empty((n_rows, k))
    assess_rows(
        np.ascontiguousarray(y, dtype=np.float64),
        np.ascontiguousarray(theta, dtype=np.float64),
        MODEL_CODES[model],
        MIN_SCALED_EIGENVALUE,
        positive,
        decrement,
        residual,
        se,
    )
    return Assessment(positive, decrement, residual, se)


def _assess_pi(y: np.ndarray, theta: np.ndarray) -> Assessment:
    """`assess` for the pi model, over a stack of rows in numpy."""
    return _assess_pi_at(_louis(y, theta, "pi"), theta, y.shape[1])


def _assess_pi_at(at: _Louis, theta: np.ndarray, n: int) -> Assessment:
    """`_assess_pi` from the Louis terms at theta (of data sets of n points)."""
    score, info = at.score, at.info
    positive, inverse_diag = positive_definite_inverse_diagonal(info)
    with np.errstate(all="ignore"):
        safe = np.where(positive[:, None, None], info, np.eye(1))
        step = np.linalg.solve(safe, score[:, :, None])[:, :, 0]
        decrement = np.sqrt(np.abs(np.einsum("ri,ri->r", score, step)))
        se = np.where(positive[:, None], np.sqrt(inverse_diag), np.nan)
        # One EM step moves pi to the mean of the tau: sum tau / n.
        moved = at.moments[:, :1] / n - theta[:, :1]
        residual = np.max(np.abs(moved) / se, axis=1)
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


def trust_region_limit(y, theta, model, sigma_floor):
    """(the point reached, its log-likelihood, certified) from each row's theta by a
    trust-region Newton ascent in EM's metric C (the complete-data information): each step
    maximises g'p - p'Ip/2 subject to p'Cp <= radius^2 (Moré and Sorensen's characterisation,
    the multiplier found by bisection). In coordinates q = L'p (C = LL') the curvature
    L^-1 I L^-T has the eigenvalues 1 - (EM's rates), so a step with it replaced by the
    identity is EM's own step. Every accepted step raises the log-likelihood, so, like EM, it
    climbs from the stop; unlike Newton alone it follows a ridge where the observed information
    is not positive definite, in tens of steps where SQUAREM needs thousands of E-steps. A row
    stops where its point is certified (`assess`), where C is not positive definite (a
    component without weight left) or a step is not finite, or where the radius falls below a
    step the log-likelihood can register. Compiled, one row at a time
    (`engine.trust_region_rows`): as numpy calls on a stack of rows each step cost about 60
    calls' overhead for a few 5 x 5 matrices. Not for the pi model (its log-likelihood is
    concave in pi)."""
    theta = np.array(theta, dtype=np.float64, order="C", copy=True)
    value = np.empty(theta.shape[0])
    certified = np.zeros(theta.shape[0], dtype=bool)
    trust_region_rows(
        np.ascontiguousarray(y, dtype=np.float64),
        theta,
        MODEL_CODES[model],
        np.ascontiguousarray(sigma_floor, dtype=np.float64),
        _TRUST_REGION_SETTINGS,
        value,
        certified,
    )
    return theta, value, certified


def _trust_region_finish(y, state, rows, model, sigma_floor, floor_loglik) -> None:
    """The trust-region ascent from the rows' points; keeps its end where it is certified and
    no lower than the stop."""
    theta, value, done = trust_region_limit(
        y[rows], state["params"][rows], model, sigma_floor[rows]
    )
    # Only a certified end can be kept, so only those are assessed again (for their SEs): the
    # ascent gave up on the others, often most of the rows where a component collapses.
    ended = np.flatnonzero(done)
    checked = assess(y[rows[ended]], theta[ended], model)
    slack = 1e-12 * (np.abs(value[ended]) + y.shape[1])
    floor = np.maximum(state["loglik"][rows[ended]], floor_loglik[rows[ended]])
    accept = checked.certified & (value[ended] >= floor - slack)
    chosen = rows[ended[accept]]
    state["params"][chosen] = theta[ended[accept]]
    state["loglik"][chosen] = value[ended[accept]]
    for name in ("positive", "decrement", "residual", "se"):
        getattr(state["assessment"], name)[chosen] = getattr(checked, name)[accept]


def _newton_finish(y, state, rows, model, floor_loglik) -> None:
    """Newton from the rows' points; keeps its end where it is certified, no lower and no
    further than the decrement at the start said (see the module's docstring)."""
    start = state["params"][rows]
    start_decrement = state["assessment"].decrement[rows]
    if model == "pi":
        theta, done, ends, value = _pi_newton(y[rows], start)
        checked = _assess_pi_at(ends, theta, y.shape[1])
    else:
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
    one_normal: np.ndarray | None = None,
) -> Limits:
    """The limit of each row's iteration from `theta` (where the engine's polish ended, with
    its log-likelihood), for stops whose log-likelihood was `stop_loglik`; rows whose theta is
    NaN are left out (NaN results). `method` is the fits' own: a plain-EM fit whose SQUAREM
    continuation leaves the parameter space goes on with plain EM. `one_normal`: each row's
    `one_normal_loglik`, where the caller has it. See the module's docstring."""
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
    _ascent_from_concave(y, state, todo, model, sigma_floor, stop_loglik)
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
        # Only after a round of the iteration itself: at a stationary point that is no maximum
        # (equal components, which EM keeps equal) the ascent would leave where EM stays.
        certified |= todo & state["assessment"].certified
        todo &= ~certified
        climbing = np.flatnonzero(todo)
        if climbing.size and model != "pi":
            _trust_region_finish(y, state, climbing, model, sigma_floor, stop_loglik)
            certified[climbing] |= state["assessment"].certified[climbing]
            todo &= ~certified
    certified |= todo & state["assessment"].certified
    if model != "pi":
        if one_normal is None:
            one_normal = one_normal_loglik(y)
        _uncertify_one_normal(state, certified, stationary, one_normal, y.shape[1])
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


def _uncertify_one_normal(state, certified, stationary, one_normal, n) -> None:
    """Certified limits on the one-component set become stationary points without SEs."""
    held = np.flatnonzero(certified)
    single = held[on_one_normal(state["loglik"][held], one_normal[held], n)]
    certified[single] = False
    stationary[single] = True
    state["assessment"].se[single] = np.nan


def one_normal_loglik(y: np.ndarray) -> np.ndarray:
    """Each row's log-likelihood at one normal's maximum (the mean, and the SD with divisor n),
    as the mixture with both components there."""
    mean = y.mean(axis=1)
    sd = np.sqrt(((y - mean[:, None]) ** 2).mean(axis=1))
    return loglik(y, np.column_stack([np.full(mean.size, 0.5), mean, mean, sd, sd]))


def on_one_normal(value: np.ndarray, single: np.ndarray, n: int) -> np.ndarray:
    """Log-likelihoods `value` (of data sets of n points) that are one normal's maximum
    (`single`, `one_normal_loglik`) to within ONE_COMPONENT_SLACK x (|loglik| + n). Such a
    point is on the one-component set (equal means and sigmas), where the likelihood does not
    depend on pi: the observed information is singular there, though rounding can leave its
    smallest scaled eigenvalue above MIN_SCALED_EIGENVALUE, and EM, which keeps equal
    components equal, stalls on it. It is a stationary point, not a certified maximum, and has
    no SEs (docs/design.md section 2). No maximum with two distinct components lies within that
    slack of it: in the default study their gains over one normal were at least 0.04, those of
    the one-component points at most 4e-12."""
    with np.errstate(invalid="ignore"):
        return np.abs(value - single) <= ONE_COMPONENT_SLACK * (np.abs(single) + n)


def _ascent_from_concave(y, state, todo, model, sigma_floor, stop_loglik) -> None:
    """The ascent at once from the rows of `todo` whose point is concave (I positive definite)
    and not near enough for Newton: no stationary point that is no maximum lies there to be
    climbed away from, and SQUAREM's first round would mostly crawl (slow cell: 4 of 99 fits
    certified after it, 95 by the ascent after it)."""
    if model == "pi":
        return
    checked = state["assessment"]
    concave = todo & checked.positive & ~checked.certified
    rows = np.flatnonzero(concave & (checked.decrement >= NEWTON_FROM_DECREMENT))
    if rows.size:
        _trust_region_finish(y, state, rows, model, sigma_floor, stop_loglik)


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
