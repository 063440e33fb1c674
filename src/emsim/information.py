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

from typing import NamedTuple

import numpy as np

from .engine import MODEL_CODES, N_STATS, PI, information_sums, score_outer_sums

# A symmetric matrix scaled to unit diagonal (see _scaled) whose smallest eigenvalue is below this
# is treated as not positive definite: its condition number exceeds 1e10, so an inverse (and an
# SE) would be mostly rounding error. The scaled matrix does not depend on the units of the data
# or of any parameter, so neither does the decision.
MIN_SCALED_EIGENVALUE = 1e-10


def _scaled(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(usable, D, D M D) with D = diag(M)^-1/2: M at unit diagonal, which removes the units of
    the parameters (the mean of data in metres and in nanometres give the same scaled matrix).
    Rows with a non-finite entry or a diagonal entry <= 0 are not usable (and get the identity)."""
    k = matrices.shape[1]
    diagonal = np.diagonal(matrices, axis1=1, axis2=2)
    usable = np.isfinite(matrices).all(axis=(1, 2)) & (diagonal > 0).all(axis=1)
    factor = np.where(usable[:, None], 1.0 / np.sqrt(np.where(usable[:, None], diagonal, 1.0)), 1.0)
    scaled = factor[:, :, None] * matrices * factor[:, None, :]
    scaled = np.where(usable[:, None, None], scaled, np.eye(k))
    return usable, factor, scaled


class _Eigen(NamedTuple):
    """Symmetric matrices decomposed at unit diagonal (`_scaled_eigen`), per matrix."""

    positive: np.ndarray  # positive definite (as decided on the scaled matrix)
    factor: np.ndarray  # D = diag(M)^-1/2
    values: np.ndarray  # eigenvalues of D M D; 1 where not positive definite
    vectors: np.ndarray


def _scaled_eigen(matrices: np.ndarray) -> _Eigen:
    """Each symmetric matrix decomposed at unit diagonal (`_scaled`). The SEs and the sandwich
    both invert the observed information from it: one eigh, not one each."""
    usable, factor, scaled = _scaled(matrices)
    values, vectors = np.linalg.eigh(scaled)
    ok = usable & (values[:, 0] > MIN_SCALED_EIGENVALUE)
    return _Eigen(ok, factor, np.where(ok[:, None], values, 1.0), vectors)


def _inverse_diagonal(eigen: _Eigen) -> tuple[np.ndarray, np.ndarray]:
    ok, factor, safe, vectors = eigen
    inverse_diag = np.einsum("rij,rj,rij->ri", vectors, 1.0 / safe, vectors) * factor**2
    return ok, np.where(ok[:, None], inverse_diag, np.nan)


def positive_definite_inverse_diagonal(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per symmetric matrix: (positive definite, diagonal of its inverse; NaN where not)."""
    return _inverse_diagonal(_scaled_eigen(matrices))


def _pi_louis(stats: np.ndarray, params: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The pi model's (complete-data, missing) information from the E-step's sums of tau and
    tau (1 - tau): I_complete = sum tau / pi^2 + sum (1 - tau) / (1 - pi)^2 and I_missing =
    sum tau (1 - tau) / (pi (1 - pi))^2, so no extra pass over the data is needed."""
    pi = params[:, PI]
    with np.errstate(all="ignore"):
        complete = stats[:, 0] / pi**2 + (n - stats[:, 0]) / (1.0 - pi) ** 2
        missing = stats[:, 1] / (pi * (1.0 - pi)) ** 2
    return complete, missing


def pi_information(
    stats: np.ndarray, params: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pi model's (standard error, rate, information positive) (see _pi_louis)."""
    complete, missing = _pi_louis(stats, params, n)
    with np.errstate(all="ignore"):
        observed = complete - missing
        positive = observed > 0
        se = np.where(positive, 1.0 / np.sqrt(observed), np.nan)
        rate = np.where(complete > 0, missing / complete, np.nan)
    return se[:, None], rate, positive


def _louis_sums(y: np.ndarray, params: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(I_complete, I_missing) per row over the model's estimated parameters (means and sigmas
    estimated), from one compiled pass over the data."""
    n_est = {"equal_var": 4, "full": 5}[model]
    complete = np.empty((y.shape[0], n_est, n_est))
    missing = np.empty((y.shape[0], n_est, n_est))
    moments = np.empty((y.shape[0], N_STATS))
    information_sums(y, params, MODEL_CODES[model], complete, missing, moments)
    return complete, missing


def information(
    y: np.ndarray, params: np.ndarray, model: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: (standard errors over the model's estimated parameters, EM's theoretical rate,
    whether the observed information is positive definite) for the models that estimate means
    and sigmas. Standard errors are NaN where the information is not positive definite."""
    complete, missing = _louis_sums(y, params, model)
    return _from_louis_sums(complete, missing, _scaled_eigen(complete - missing))


def information_with_sandwich(
    y: np.ndarray, params: np.ndarray, stats: np.ndarray, model: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`information` (or `pi_information`, from the E-step's stats at params) and the sandwich
    SEs, sharing one pass for the observed information."""
    if model == "pi":
        complete, missing = _pi_louis(stats, params, y.shape[1])
        observed = _scaled_eigen((complete - missing)[:, None, None])
        return (*pi_information(stats, params, y.shape[1]), _sandwich(y, params, model, observed))
    complete, missing = _louis_sums(y, params, model)
    observed = _scaled_eigen(complete - missing)
    return (*_from_louis_sums(complete, missing, observed), _sandwich(y, params, model, observed))


def _from_louis_sums(
    complete: np.ndarray, missing: np.ndarray, observed: _Eigen
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(SEs, EM's rate, positive definite) from the Louis sums and the observed information
    complete - missing decomposed (`_scaled_eigen`)."""
    with np.errstate(all="ignore"):
        positive, inverse_diag = _inverse_diagonal(observed)
        se = np.sqrt(inverse_diag)
        # EM's rate matrix I_complete^-1 I_missing has the eigenvalues of the symmetric
        # C^-1/2 M C^-1/2; both are scaled by I_complete's diagonal first (which leaves the
        # eigenvalues alone) so that the decomposition does not depend on the units either.
        usable, factor, complete_scaled = _scaled(complete)
        values_c, vectors_c = np.linalg.eigh(complete_scaled)
        ok_c = usable & (values_c[:, 0] > MIN_SCALED_EIGENVALUE)
        missing_scaled = factor[:, :, None] * np.where(np.isfinite(missing), missing, 0.0)
        missing_scaled = missing_scaled * factor[:, None, :]
        root_inv = np.einsum(
            "rij,rj,rkj->rik", vectors_c, 1.0 / np.sqrt(np.abs(values_c)), vectors_c
        )
        scaled = root_inv @ missing_scaled @ root_inv
        scaled = np.where(np.isfinite(scaled), scaled, 0.0)
        rate = np.where(ok_c, np.linalg.eigvalsh(scaled)[:, -1], np.nan)
    return se, rate, positive


def _positive_definite_inverse(eigen: _Eigen) -> tuple[np.ndarray, np.ndarray]:
    """Per symmetric matrix decomposed by `_scaled_eigen`: (positive definite, its inverse; NaN
    where not), decided as `positive_definite_inverse_diagonal` decides it."""
    ok, factor, safe, vectors = eigen
    inverse = np.einsum("rij,rj,rkj->rik", vectors, 1.0 / safe, vectors)
    inverse = inverse * factor[:, :, None] * factor[:, None, :]
    return ok, np.where(ok[:, None, None], inverse, np.nan)


def _responsibilities(y: np.ndarray, params: np.ndarray) -> np.ndarray:
    """tau = P(Z = 1 | y) per point, rows x n."""
    pi, mu1, mu2, s1, s2 = (params[:, j, None] for j in range(5))
    log_odds = (
        np.log(pi / (1.0 - pi))
        - np.log(s1 / s2)
        - 0.5 * ((y - mu1) / s1) ** 2
        + 0.5 * ((y - mu2) / s2) ** 2
    )
    return 0.5 * (1.0 + np.tanh(0.5 * log_odds))  # the logistic, without overflow


def _observed_information(y: np.ndarray, params: np.ndarray, model: str) -> np.ndarray:
    """I_obs = I_complete - I_missing per row (Louis' identity, module docstring)."""
    if model == "pi":
        tau = _responsibilities(y, params)
        stats = np.column_stack([tau.sum(axis=1), (tau * (1.0 - tau)).sum(axis=1)])
        complete, missing = _pi_louis(stats, params, y.shape[1])
        return (complete - missing)[:, None, None]
    complete, missing = _louis_sums(y, params, model)
    return complete - missing


def sandwich_se(y: np.ndarray, params: np.ndarray, model: str) -> np.ndarray:
    """Per row, the sandwich (Huber-White) standard errors over the model's estimated
    parameters: sqrt(diag(H^-1 J H^-1)), H the observed information and J = sum_i s_i s_i^T the
    outer products of the points' scores at the estimate. Where the model is true J and H
    estimate the same matrix and the two SEs agree; under misspecification only this one
    describes the estimator's spread (White 1982). NaN where H is not positive definite."""
    return _sandwich(y, params, model, _scaled_eigen(_observed_information(y, params, model)))


def _sandwich(y: np.ndarray, params: np.ndarray, model: str, observed: _Eigen) -> np.ndarray:
    """The sandwich SEs with H, the observed information, decomposed (`_scaled_eigen`)."""
    k = observed.vectors.shape[1]
    outer = np.empty((y.shape[0], k, k))
    score_outer_sums(y, np.ascontiguousarray(params), MODEL_CODES[model], outer)
    with np.errstate(all="ignore"):
        positive, inverse = _positive_definite_inverse(observed)
        covariance = inverse @ outer @ inverse
        variance = np.diagonal(covariance, axis1=1, axis2=2)
        return np.where(positive[:, None] & (variance >= 0), np.sqrt(variance), np.nan)
