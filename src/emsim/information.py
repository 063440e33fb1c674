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

from .engine import MODEL_CODES, PI, information_sums


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
    n_rows = y.shape[0]
    n_est = {"equal_var": 4, "full": 5}[model]
    complete = np.empty((n_rows, n_est, n_est))
    missing = np.empty((n_rows, n_est, n_est))
    information_sums(y, params, MODEL_CODES[model], complete, missing)
    with np.errstate(all="ignore"):
        ok, values, vectors = _positive_definite(complete - missing)
        inverse_diag = np.einsum("rij,rj,rij->ri", vectors, 1.0 / values, vectors)
        se = np.where(ok[:, None], np.sqrt(inverse_diag), np.nan)

        ok_c, values_c, vectors_c = _positive_definite(complete)
        root_inv = np.einsum(
            "rij,rj,rkj->rik", vectors_c, 1.0 / np.sqrt(np.abs(values_c)), vectors_c
        )
        scaled = root_inv @ np.where(np.isfinite(missing), missing, 0.0) @ root_inv
        scaled = np.where(np.isfinite(scaled), scaled, 0.0)
        rate = np.where(ok_c, np.linalg.eigvalsh(scaled)[:, -1], np.nan)
    return se, rate
