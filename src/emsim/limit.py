"""Where an iteration ends: Newton's method to the maximum near a point (docs/design.md section 2).

The engine's polish continues a stopped fit with SQUAREM, which reaches the limit in a few
dozen E-steps where EM is fast, but may still crawl where EM's rate is within 1e-3 of 1 (heavily
overlapping components): there its bounded polish can end far from the limit, and a distance
measured from there would call a premature fit usable. From wherever the polish ended, Newton's
method with the analytic observed information (Louis' identity, `information`) and the score
converges quadratically to the maximum of that basin; its steps are halved until the
log-likelihood does not fall and the parameters stay valid.

Vectorised over the rows that need it; a row whose information is not positive definite on the
way (no maximum nearby) is left where it was and reported as not done.
"""

from __future__ import annotations

import numpy as np

from .engine import MODEL_CODES, information_sums
from .information import positive_definite_inverse_diagonal

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
