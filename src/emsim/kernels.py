"""E-step and M-step kernels for a batch of datasets of equal length.

A kernel owns the data of the fits still running (one row per dataset) and maps the parameter
matrix P (rows x PARAMS, columns pi, mu1, mu2, sigma1, sigma2) to the log-likelihood and the
sufficient statistics of the next M-step. Every operation is elementwise along a row or a
reduction along it, so one row's numbers never depend on which other rows share the batch: that
is what makes a batched fit equal a single fit bit for bit.

The E-step works in log space with the sigmoid form: with a = log(pi f1(y)), b = log((1-pi) f2(y))
and d = a - b, the responsibility is 1 / (1 + exp(-d)) and the log-density is
max(a, b) + log1p(exp(-|d|)): one exp per point and finite for points far from both means.
"""

from __future__ import annotations

import numpy as np

PI, MU1, MU2, SIGMA1, SIGMA2 = range(5)
LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


def _sigmoid_split(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(r1, r2, log1p(exp(-|d|))) with r1 = sigmoid(d) and r2 = 1 - r1, each to full precision."""
    e = np.exp(-np.abs(d))
    w = 1.0 / (1.0 + e)
    ew = e * w
    positive = d >= 0
    return np.where(positive, w, ew), np.where(positive, ew, w), np.log1p(e)


class PiKernel:
    """Only the mixing weight is unknown: the component log-densities are fixed, so their
    difference is computed once and each iteration costs one exp and one log1p per point."""

    n_stats = 1

    def __init__(self, y: np.ndarray, params: np.ndarray) -> None:
        n = y.shape[1]
        z1 = (y - params[:, MU1, None]) / params[:, SIGMA1, None]
        z2 = (y - params[:, MU2, None]) / params[:, SIGMA2, None]
        log_f2 = -0.5 * z2 * z2 - np.log(params[:, SIGMA2, None])
        self.n = n
        self.log_ratio = (-0.5 * z1 * z1 - np.log(params[:, SIGMA1, None])) - log_f2
        self.base = log_f2.sum(axis=1) - n * LOG_SQRT_2PI

    def take(self, keep: np.ndarray) -> None:
        self.log_ratio = self.log_ratio[keep]
        self.base = self.base[keep]

    def estep(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pi = params[:, PI]
        log1m_pi = np.log1p(-pi)
        d = self.log_ratio + (np.log(pi) - log1m_pi)[:, None]
        r1, _, log1p_term = _sigmoid_split(d)
        loglik = self.base + self.n * log1m_pi + (np.maximum(d, 0.0) + log1p_term).sum(axis=1)
        return loglik, r1.sum(axis=1)[:, None]

    def mstep(self, params: np.ndarray, stats: np.ndarray) -> np.ndarray:
        new = params.copy()
        new[:, PI] = stats[:, 0] / self.n
        return new


class NormalMixtureKernel:
    """Means and standard deviations estimated too (`equal_var` ties the two sigmas).

    The M-step statistics are moments of z = (y - mu_old) / sigma_old rather than of y, so the
    variance update subtracts two numbers of order one instead of order y^2: data offset by 1e8
    lose nothing, and near convergence the correction A^2 is tiny.
    """

    n_stats = 6

    def __init__(self, y: np.ndarray, equal_var: bool) -> None:
        self.y = y
        self.equal_var = equal_var

    def take(self, keep: np.ndarray) -> None:
        self.y = self.y[keep]

    def estep(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pi, sigma1, sigma2 = params[:, PI], params[:, SIGMA1], params[:, SIGMA2]
        z1 = (self.y - params[:, MU1, None]) / sigma1[:, None]
        z2 = (self.y - params[:, MU2, None]) / sigma2[:, None]
        a = (np.log(pi) - np.log(sigma1) - LOG_SQRT_2PI)[:, None] - 0.5 * z1 * z1
        b = (np.log1p(-pi) - np.log(sigma2) - LOG_SQRT_2PI)[:, None] - 0.5 * z2 * z2
        r1, r2, log1p_term = _sigmoid_split(a - b)
        loglik = (np.maximum(a, b) + log1p_term).sum(axis=1)
        stats = np.empty((params.shape[0], 6))
        for k, (r, z) in enumerate(((r1, z1), (r2, z2))):
            weight = r.sum(axis=1)
            rz = r * z
            stats[:, 3 * k] = weight
            stats[:, 3 * k + 1] = rz.sum(axis=1) / weight
            stats[:, 3 * k + 2] = (rz * z).sum(axis=1) / weight
        return loglik, stats

    def mstep(self, params: np.ndarray, stats: np.ndarray) -> np.ndarray:
        new = np.empty_like(params)
        weight1, shift1, second1 = stats[:, 0], stats[:, 1], stats[:, 2]
        weight2, shift2, second2 = stats[:, 3], stats[:, 4], stats[:, 5]
        sigma1, sigma2 = params[:, SIGMA1], params[:, SIGMA2]
        new[:, PI] = weight1 / (weight1 + weight2)
        new[:, MU1] = params[:, MU1] + sigma1 * shift1
        new[:, MU2] = params[:, MU2] + sigma2 * shift2
        # Rounding can push E[z^2] - E[z]^2 a hair below zero for a collapsing component.
        var1 = sigma1 * sigma1 * np.maximum(second1 - shift1 * shift1, 0.0)
        var2 = sigma2 * sigma2 * np.maximum(second2 - shift2 * shift2, 0.0)
        if self.equal_var:
            common = np.sqrt((weight1 * var1 + weight2 * var2) / (weight1 + weight2))
            new[:, SIGMA1] = common
            new[:, SIGMA2] = common
        else:
            new[:, SIGMA1] = np.sqrt(var1)
            new[:, SIGMA2] = np.sqrt(var2)
        return new


def make_kernel(y: np.ndarray, params: np.ndarray, model: str) -> PiKernel | NormalMixtureKernel:
    if model == "pi":
        return PiKernel(y, params)
    return NormalMixtureKernel(y, equal_var=(model == "equal_var"))
