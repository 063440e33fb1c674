"""An independent reference for the full model, written straight from the densities in numpy
and sharing no code with the engine (not a test module): the log-likelihood and standard errors
from a finite-difference Hessian of it, for the tests that check where EM ends."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp


def loglik(theta: np.ndarray, y: np.ndarray) -> float:
    """The full model's log-likelihood at (pi, mu1, mu2, sigma1, sigma2)."""
    pi, mu1, mu2, s1, s2 = theta
    a = np.log(pi) - np.log(s1) - 0.5 * ((y - mu1) / s1) ** 2
    b = np.log1p(-pi) - np.log(s2) - 0.5 * ((y - mu2) / s2) ** 2
    return float(logsumexp(np.stack([a, b]), axis=0).sum() - y.size * 0.5 * np.log(2 * np.pi))


def responsibilities(theta: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(component 1 | y) at (pi, mu1, mu2, sigma1, sigma2): the E-step."""
    pi, mu1, mu2, s1, s2 = theta
    a = np.log(pi) - np.log(s1) - 0.5 * ((y - mu1) / s1) ** 2
    b = np.log1p(-pi) - np.log(s2) - 0.5 * ((y - mu2) / s2) ** 2
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(b - a))


def hessian_se(theta: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Standard errors at a maximum `theta`: the observed information by central differences
    of `loglik` (steps 1e-4 of each parameter's size, at least 1e-5), inverted."""
    h = 1e-4 * np.maximum(np.abs(theta), 0.1)
    k = theta.size
    hessian = np.empty((k, k))

    def at(i, j, di, dj):
        t = theta.copy()
        t[i] += di * h[i]
        t[j] += dj * h[j]
        return loglik(t, y)

    for i in range(k):
        for j in range(k):
            corners = at(i, j, 1, 1) - at(i, j, 1, -1) - at(i, j, -1, 1) + at(i, j, -1, -1)
            hessian[i, j] = corners / (4 * h[i] * h[j])
    assert np.linalg.eigvalsh(-hessian)[0] > 0, "the reference is no maximum"
    return np.sqrt(np.diag(np.linalg.inv(-hessian)))
