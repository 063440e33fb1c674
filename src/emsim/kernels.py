"""E-step and M-step kernels for a batch of datasets of equal length.

A kernel owns the data of the fits still running (one row per dataset) and maps the parameter
matrix P (rows x PARAMS, columns pi, mu1, mu2, sigma1, sigma2) to the log-likelihood and the
sufficient statistics of the next M-step. Every operation on a row depends on that row alone,
in a fixed order, so one row's numbers never depend on which other rows share the batch: a
batched fit equals a single fit bit for bit.

The E-step works in log space with the sigmoid form: with a = log(pi f1(y)), b = log((1-pi) f2(y))
and d = a - b, the responsibility is 1 / (1 + exp(-d)) and the log-density is
max(a, b) + log1p(exp(-|d|)): one exp per point, finite for points far from both means.

Speed (one fused pass per E-step, near the cost of one numpy `exp` pass): the E-step is compiled
with numba and processes each row in blocks of at most 512 points. Inside a block every loop is
elementwise, so LLVM vectorises it without fast-math: exp(-|d|) uses a Cody-Waite reduction and a
degree-13 polynomial, with 2^k built from its bits; sums are fixed pairwise trees over the block;
the log1p terms of a block are multiplied together and logged once per 64 points. Because no
step depends on the vector width or on fast-math, results are the same on every x86-64 CPU.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

PI, MU1, MU2, SIGMA1, SIGMA2 = range(5)
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

_LOG2E = 1.4426950408889634
# fdlibm's split of ln 2: k * _LN2_HI is exact for |k| < 2^20.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# exp(-708) is still a normal double, so 2^k never needs a subnormal exponent.
_EXP_FLOOR = -708.0
_MAX_BLOCK = 512
_LANES = 8

_JIT = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract"}}


@njit(**_JIT)
def _block_size(n: int) -> int:
    size = 16
    while size < n and size < _MAX_BLOCK:
        size *= 2
    return size


@njit(inline="always", **_JIT)
def _exp_parts(d: float) -> tuple[float, int]:
    """exp(-|d|) as (polynomial, IEEE bits of 2^k); multiply the polynomial by the bits' float."""
    x = -abs(d)
    x = x if x > _EXP_FLOOR else _EXP_FLOOR
    k = np.floor(x * _LOG2E + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p, (np.int64(k) + 1023) << 52


@njit(inline="always", **_JIT)
def _tree_sum(t: np.ndarray, size: int) -> float:
    width = size // 2
    while width >= _LANES:
        for j in range(width):
            t[j] += t[j + width]
        width //= 2
    total = 0.0
    for j in range(_LANES):
        total += t[j]
    return total


@njit(inline="always", **_JIT)
def _tree_log_product(t: np.ndarray, size: int) -> float:
    """Sum of log(t) over a block: multiply down to 8 lanes (each at most 2^64), then 8 logs."""
    width = size // 2
    while width >= _LANES:
        for j in range(width):
            t[j] *= t[j + width]
        width //= 2
    total = 0.0
    for j in range(_LANES):
        total += math.log(t[j])
    return total


@njit(**_JIT)
def _mixture_estep(y, params, loglik, stats):
    rows, n = y.shape
    size = _block_size(n)
    poly = np.empty(size)
    bits = np.empty(size, np.int64)
    scale = bits.view(np.float64)
    t_max = np.empty(size)
    t_log = np.empty(size)
    t_w1 = np.empty(size)
    t_z1 = np.empty(size)
    t_zz1 = np.empty(size)
    t_w2 = np.empty(size)
    t_z2 = np.empty(size)
    t_zz2 = np.empty(size)
    for row in range(rows):
        pi = params[row, 0]
        mu1 = params[row, 1]
        mu2 = params[row, 2]
        inv1 = 1.0 / params[row, 3]
        inv2 = 1.0 / params[row, 4]
        c1 = math.log(pi) - math.log(params[row, 3]) - LOG_SQRT_2PI
        c2 = math.log1p(-pi) - math.log(params[row, 4]) - LOG_SQRT_2PI
        total = np.zeros(8)
        y_row = y[row]
        for lo in range(0, n, size):
            # A slice keeps indices provably non-negative, which LLVM needs to vectorise.
            y_block = y_row[lo : lo + size]
            m = y_block.size
            for j in range(m):
                z1 = (y_block[j] - mu1) * inv1
                z2 = (y_block[j] - mu2) * inv2
                d = (c1 - 0.5 * z1 * z1) - (c2 - 0.5 * z2 * z2)
                poly[j], bits[j] = _exp_parts(d)
            for j in range(m):
                z1 = (y_block[j] - mu1) * inv1
                z2 = (y_block[j] - mu2) * inv2
                a = c1 - 0.5 * z1 * z1
                b = c2 - 0.5 * z2 * z2
                d = a - b
                e = poly[j] * scale[j]
                w = 1.0 / (1.0 + e)
                ew = e * w
                r1 = w if d >= 0.0 else ew
                r2 = ew if d >= 0.0 else w
                # d - d is 0, or NaN when d is not finite: such a point must poison the sum.
                t_max[j] = (a if a > b else b) + (d - d)
                t_log[j] = 1.0 + e
                t_w1[j] = r1
                t_z1[j] = r1 * z1
                t_zz1[j] = r1 * z1 * z1
                t_w2[j] = r2
                t_z2[j] = r2 * z2
                t_zz2[j] = r2 * z2 * z2
            for j in range(m, size):
                t_max[j] = 0.0
                t_log[j] = 1.0
                t_w1[j] = 0.0
                t_z1[j] = 0.0
                t_zz1[j] = 0.0
                t_w2[j] = 0.0
                t_z2[j] = 0.0
                t_zz2[j] = 0.0
            total[0] += _tree_sum(t_max, size)
            total[1] += _tree_log_product(t_log, size)
            total[2] += _tree_sum(t_w1, size)
            total[3] += _tree_sum(t_z1, size)
            total[4] += _tree_sum(t_zz1, size)
            total[5] += _tree_sum(t_w2, size)
            total[6] += _tree_sum(t_z2, size)
            total[7] += _tree_sum(t_zz2, size)
        loglik[row] = total[0] + total[1]
        stats[row, 0] = total[2]
        stats[row, 1] = total[3] / total[2]
        stats[row, 2] = total[4] / total[2]
        stats[row, 3] = total[5]
        stats[row, 4] = total[6] / total[5]
        stats[row, 5] = total[7] / total[5]


@njit(**_JIT)
def _pi_estep(log_ratio, base, params, loglik, stats):
    rows, n = log_ratio.shape
    size = _block_size(n)
    poly = np.empty(size)
    bits = np.empty(size, np.int64)
    scale = bits.view(np.float64)
    t_max = np.empty(size)
    t_log = np.empty(size)
    t_w1 = np.empty(size)
    t_var = np.empty(size)
    for row in range(rows):
        pi = params[row, 0]
        log1m_pi = math.log1p(-pi)
        shift = math.log(pi) - log1m_pi
        total_max = 0.0
        total_log = 0.0
        total_w1 = 0.0
        total_var = 0.0
        ratio_row = log_ratio[row]
        for lo in range(0, n, size):
            ratio_block = ratio_row[lo : lo + size]
            m = ratio_block.size
            for j in range(m):
                poly[j], bits[j] = _exp_parts(ratio_block[j] + shift)
            for j in range(m):
                d = ratio_block[j] + shift
                e = poly[j] * scale[j]
                w = 1.0 / (1.0 + e)
                ew = e * w
                t_max[j] = (d if d > 0.0 else 0.0) + (d - d)
                t_log[j] = 1.0 + e
                t_w1[j] = w if d >= 0.0 else ew
                t_var[j] = ew * w
            for j in range(m, size):
                t_max[j] = 0.0
                t_log[j] = 1.0
                t_w1[j] = 0.0
                t_var[j] = 0.0
            total_max += _tree_sum(t_max, size)
            total_log += _tree_log_product(t_log, size)
            total_w1 += _tree_sum(t_w1, size)
            total_var += _tree_sum(t_var, size)
        loglik[row] = base[row] + n * log1m_pi + (total_max + total_log)
        # sum tau and sum tau (1 - tau): all the pi model's information needs (information.py).
        stats[row, 0] = total_w1
        stats[row, 1] = total_var


class PiKernel:
    """Only the mixing weight is unknown: the component log-densities are fixed, so their
    difference is computed once and an iteration is one exp per point."""

    n_stats = 2

    def __init__(self, y: np.ndarray, params: np.ndarray) -> None:
        n = y.shape[1]
        z1 = (y - params[:, MU1, None]) / params[:, SIGMA1, None]
        z2 = (y - params[:, MU2, None]) / params[:, SIGMA2, None]
        log_f2 = -0.5 * z2 * z2 - np.log(params[:, SIGMA2, None])
        self.n = n
        self.log_ratio = np.ascontiguousarray(
            (-0.5 * z1 * z1 - np.log(params[:, SIGMA1, None])) - log_f2
        )
        self.base = log_f2.sum(axis=1) - n * LOG_SQRT_2PI

    def take(self, keep: np.ndarray) -> None:
        self.log_ratio = self.log_ratio[keep]
        self.base = self.base[keep]

    def estep(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = params.shape[0]
        loglik = np.empty(rows)
        stats = np.empty((rows, 2))
        _pi_estep(self.log_ratio, self.base, np.ascontiguousarray(params), loglik, stats)
        return loglik, stats

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
        self.y = np.ascontiguousarray(y)
        self.equal_var = equal_var

    def take(self, keep: np.ndarray) -> None:
        self.y = self.y[keep]

    def estep(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = params.shape[0]
        loglik = np.empty(rows)
        stats = np.empty((rows, 6))
        _mixture_estep(self.y, np.ascontiguousarray(params), loglik, stats)
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
