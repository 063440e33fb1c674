"""Observed information, standard errors and EM's theoretical rate, analytically.

Louis' identity holds observation by observation: the observed information of y_i is the
conditional expected complete-data information minus the conditional variance of the
complete-data score. With tau = P(Z=1 | y) and g_k the gradient of log(pi_k f_k(y)), that variance
is tau (1 - tau) (g1 - g2)(g1 - g2)^T, so

    I_obs = I_complete - I_missing,   I_missing = sum_i tau_i (1 - tau_i) G_i G_i^T.

EM's rate matrix at the estimate is I_complete^-1 I_missing (Dempster, Laird & Rubin 1977); its
largest eigenvalue is the linear rate at which parameter errors shrink.
"""

from __future__ import annotations

import numpy as np

from .engine import LOG_SQRT_2PI, MU1, MU2, PI, SIGMA1, SIGMA2

# Work on at most this many points at once, so memory stays bounded for big batches.
_BLOCK_POINTS = 1 << 20


def _responsibility(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    z1 = (y - p[:, MU1, None]) / p[:, SIGMA1, None]
    z2 = (y - p[:, MU2, None]) / p[:, SIGMA2, None]
    a = (np.log(p[:, PI]) - np.log(p[:, SIGMA1]) - LOG_SQRT_2PI)[:, None] - 0.5 * z1 * z1
    b = (np.log1p(-p[:, PI]) - np.log(p[:, SIGMA2]) - LOG_SQRT_2PI)[:, None] - 0.5 * z2 * z2
    return 1.0 / (1.0 + np.exp(b - a))


def _information_block(y: np.ndarray, p: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(I_complete, I_missing) for each row, over the model's estimated parameters."""
    pi = p[:, PI, None]
    tau = _responsibility(y, p)
    untau = 1.0 - tau
    pi_curv = (tau / pi**2 + untau / (1.0 - pi) ** 2).sum(axis=1)
    pi_grad = np.broadcast_to(1.0 / pi + 1.0 / (1.0 - pi), y.shape)
    s1, s2 = p[:, SIGMA1, None], p[:, SIGMA2, None]
    e1, e2 = y - p[:, MU1, None], y - p[:, MU2, None]
    if model == "full":
        gap = np.stack(
            [pi_grad, e1 / s1**2, -e2 / s2**2, -1 / s1 + e1**2 / s1**3, 1 / s2 - e2**2 / s2**3],
            axis=-1,
        )
        complete = np.zeros((y.shape[0], 5, 5))
        for k, (w, e, s) in enumerate(((tau, e1, s1), (untau, e2, s2))):
            mu_i, sigma_i = 1 + k, 3 + k
            complete[:, mu_i, mu_i] = (w / s**2).sum(axis=1)
            complete[:, mu_i, sigma_i] = complete[:, sigma_i, mu_i] = (2 * w * e / s**3).sum(axis=1)
            complete[:, sigma_i, sigma_i] = (w * (3 * e**2 / s**4 - 1 / s**2)).sum(axis=1)
    else:
        s = s1
        gap = np.stack([pi_grad, e1 / s**2, -e2 / s**2, (e1**2 - e2**2) / s**3], axis=-1)
        complete = np.zeros((y.shape[0], 4, 4))
        for k, (w, e) in enumerate(((tau, e1), (untau, e2))):
            complete[:, 1 + k, 1 + k] = (w / s**2).sum(axis=1)
            complete[:, 1 + k, 3] = complete[:, 3, 1 + k] = (2 * w * e / s**3).sum(axis=1)
        complete[:, 3, 3] = (3 * (tau * e1**2 + untau * e2**2) / s**4 - 1 / s**2).sum(axis=1)
    complete[:, 0, 0] = pi_curv
    missing = np.einsum("rn,rni,rnj->rij", tau * untau, gap, gap)
    return complete, missing


def _positive_definite(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigen-decompose symmetric matrices; returns (ok, eigenvalues, eigenvectors). Non-finite
    matrices are replaced by the identity before decomposing (and flagged not ok)."""
    finite = np.isfinite(matrices).all(axis=(1, 2))
    safe = np.where(finite[:, None, None], matrices, np.eye(matrices.shape[1]))
    values, vectors = np.linalg.eigh(safe)
    ok = finite & (values[:, 0] > 1e-12 * np.abs(values[:, -1]))
    return ok, values, vectors


def pi_information(stats: np.ndarray, params: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The pi model's (standard error, rate) from the E-step's sums of tau and tau (1 - tau):
    I_complete = sum tau / pi^2 + sum (1 - tau) / (1 - pi)^2 and
    I_missing = sum tau (1 - tau) / (pi (1 - pi))^2, so no extra pass over the data is needed."""
    pi = params[:, PI]
    with np.errstate(all="ignore"):
        complete = stats[:, 0] / pi**2 + (n - stats[:, 0]) / (1.0 - pi) ** 2
        missing = stats[:, 1] / (pi * (1.0 - pi)) ** 2
        observed = complete - missing
        se = np.where(observed > 0, 1.0 / np.sqrt(observed), np.nan)
        rate = np.where(complete > 0, missing / complete, np.nan)
    return se[:, None], rate


def information(y: np.ndarray, params: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (standard errors over the model's estimated parameters, EM's theoretical rate)
    for the models that estimate means and sigmas."""
    n_rows, n = y.shape
    n_est = {"equal_var": 4, "full": 5}[model]
    se = np.full((n_rows, n_est), np.nan)
    rate = np.full(n_rows, np.nan)
    block = max(1, _BLOCK_POINTS // max(n, 1))
    with np.errstate(all="ignore"):
        for lo in range(0, n_rows, block):
            rows = slice(lo, min(lo + block, n_rows))
            complete, missing = _information_block(y[rows], params[rows], model)
            ok, values, vectors = _positive_definite(complete - missing)
            inverse_diag = np.einsum("rij,rj,rij->ri", vectors, 1.0 / values, vectors)
            se[rows] = np.where(ok[:, None], np.sqrt(inverse_diag), np.nan)

            ok_c, values_c, vectors_c = _positive_definite(complete)
            root_inv = np.einsum(
                "rij,rj,rkj->rik", vectors_c, 1.0 / np.sqrt(np.abs(values_c)), vectors_c
            )
            scaled = root_inv @ np.where(np.isfinite(missing), missing, 0.0) @ root_inv
            scaled = np.where(np.isfinite(scaled), scaled, 0.0)
            rate[rows] = np.where(ok_c, np.linalg.eigvalsh(scaled)[:, -1], np.nan)
    return se, rate
