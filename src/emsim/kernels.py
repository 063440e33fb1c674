"""E-step and M-step kernels for one dataset (a row of a batch), compiled with numba.

The parameter vector p holds pi, mu1, mu2, sigma1, sigma2 (PARAMS order). An E-step maps p to
the log-likelihood and the sufficient statistics of the next M-step. Every operation on a row
depends on that row alone, in a fixed order, so a batched fit equals a single fit bit for bit.

The E-step works in log space with the sigmoid form: with a = log(pi f1(y)), b = log((1-pi) f2(y))
and d = a - b, the responsibility is 1 / (1 + exp(-d)) and the log-density is
max(a, b) + log1p(exp(-|d|)): one exp per point, finite for points far from both means.

Speed (one fused pass per E-step, near the cost of one numpy `exp` pass): the E-step is compiled
with numba and processes each row in blocks of at most 512 points. Inside a block every loop is
elementwise, so LLVM vectorises it without fast-math: exp(-|d|) uses a Cody-Waite reduction and a
degree-13 polynomial, with 2^k built from its bits; sums are fixed pairwise trees over the block;
the log1p terms of a block (at most 512 points, each 1 + e <= 2) are multiplied together and
logged once. Because no
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


MODEL_CODES = {"pi": 0, "equal_var": 1, "full": 2}
N_STATS = 6
# Eight work arrays for the sums, one to pad a short last block to full length.
_N_SCRATCH = 9


def make_scratch(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Work arrays for the E-step of data of length n: (float blocks, int64 exponent bits)."""
    size = _block_size(n)
    return np.empty((_N_SCRATCH, size)), np.empty(size, np.int64)


@njit(inline="always", **_JIT)
def _full_block(data, lo, size, pad):
    """The `size` values of `data` from `lo` on. A short last block is copied into `pad` and
    filled with its first value (finite, so the extra lanes compute harmlessly and are zeroed
    after): every loop then runs a whole number of vectors, with no scalar remainder, which
    matters at small n. A slice keeps indices provably non-negative, which LLVM needs to
    vectorise."""
    block = data[lo : lo + size]
    if block.size == size:
        return block
    for j in range(block.size):
        pad[j] = block[j]
    for j in range(block.size, size):
        pad[j] = block[0]
    return pad


@njit(**_JIT)
def mixture_estep(y, p, stats, scratch, bits):
    """Log-likelihood of the two-normal mixture at p; fills stats with (sum tau1, mean z1,
    mean z1^2, sum tau2, mean z2, mean z2^2), z_k = (y - mu_k) / sigma_k weighted by tau_k."""
    n = y.size
    size = bits.size
    scale = bits.view(np.float64)
    poly = scratch[0]
    t_max = scratch[1]
    t_log = scratch[2]
    t_w1 = scratch[3]
    t_z1 = scratch[4]
    t_zz1 = scratch[5]
    t_w2 = scratch[6]
    t_z2 = scratch[7]
    pi = p[0]
    mu1 = p[1]
    mu2 = p[2]
    inv1 = 1.0 / p[3]
    inv2 = 1.0 / p[4]
    c1 = math.log(pi) - math.log(p[3]) - LOG_SQRT_2PI
    c2 = math.log1p(-pi) - math.log(p[4]) - LOG_SQRT_2PI
    # Scalars, not an array: an allocation per call costs as much as 50 points at small n.
    total_max = total_log = total_w1 = total_z1 = total_zz1 = total_w2 = total_z2 = 0.0
    total_zz2 = 0.0
    for lo in range(0, n, size):
        m = min(size, n - lo)
        block = _full_block(y, lo, size, scratch[8])
        for j in range(size):
            z1 = (block[j] - mu1) * inv1
            z2 = (block[j] - mu2) * inv2
            d = (c1 - 0.5 * z1 * z1) - (c2 - 0.5 * z2 * z2)
            poly[j], bits[j] = _exp_parts(d)
        # Second pass: once a point's exp is used, its polynomial slot holds the second
        # component's weighted square, so eight work arrays suffice.
        for j in range(size):
            z1 = (block[j] - mu1) * inv1
            z2 = (block[j] - mu2) * inv2
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
            poly[j] = r2 * z2 * z2
        for j in range(m, size):
            t_max[j] = 0.0
            t_log[j] = 1.0
            t_w1[j] = 0.0
            t_z1[j] = 0.0
            t_zz1[j] = 0.0
            t_w2[j] = 0.0
            t_z2[j] = 0.0
            poly[j] = 0.0
        # One pass per tree level for all eight sums (the log terms are multiplied).
        width = size // 2
        while width >= _LANES:
            for j in range(width):
                t_max[j] += t_max[j + width]
                t_log[j] *= t_log[j + width]
                t_w1[j] += t_w1[j + width]
                t_z1[j] += t_z1[j + width]
                t_zz1[j] += t_zz1[j + width]
                t_w2[j] += t_w2[j + width]
                t_z2[j] += t_z2[j + width]
                poly[j] += poly[j + width]
            width //= 2
        # The block's 1 + e terms multiply to at most 2^512: one log per block suffices.
        product = 1.0
        for j in range(_LANES):
            product *= t_log[j]
        total_log += math.log(product)
        for j in range(_LANES):
            total_max += t_max[j]
            total_w1 += t_w1[j]
            total_z1 += t_z1[j]
            total_zz1 += t_zz1[j]
            total_w2 += t_w2[j]
            total_z2 += t_z2[j]
            total_zz2 += poly[j]
    stats[0] = total_w1
    stats[1] = total_z1 / total_w1
    stats[2] = total_zz1 / total_w1
    stats[3] = total_w2
    stats[4] = total_z2 / total_w2
    stats[5] = total_zz2 / total_w2
    return total_max + total_log


@njit(**_JIT)
def pi_prepare(y, p, log_ratio, scratch):
    """For the pi model: fill log_ratio with log f1(y) - log f2(y) (fixed while only pi moves)
    and return sum log f2(y), the rest of the log-likelihood."""
    size = scratch.shape[1]
    inv1 = 1.0 / p[3]
    inv2 = 1.0 / p[4]
    c1 = -math.log(p[3])
    c2 = -math.log(p[4]) - LOG_SQRT_2PI
    t_f2 = scratch[0]
    t_check = scratch[1]
    base = 0.0
    for lo in range(0, y.size, size):
        block = y[lo : lo + size]
        ratio_block = log_ratio[lo : lo + size]
        m = block.size
        for j in range(m):
            z1 = (block[j] - p[1]) * inv1
            z2 = (block[j] - p[2]) * inv2
            log_f2 = c2 - 0.5 * z2 * z2
            ratio = (c1 - 0.5 * z1 * z1) - (log_f2 + LOG_SQRT_2PI)
            ratio_block[j] = ratio
            t_f2[j] = log_f2
            # A non-finite ratio (a point beyond any float distance) poisons every
            # log-likelihood once here, so the E-step needs no per-point check.
            t_check[j] = ratio - ratio
        for j in range(m, size):
            t_f2[j] = 0.0
            t_check[j] = 0.0
        base += _tree_sum(t_f2, size) + _tree_sum(t_check, size)
    return base


@njit(**_JIT)
def pi_estep(log_ratio, base, pi, stats, scratch, bits):
    """Log-likelihood of the pi model; stats[0] = sum tau, stats[1] = sum tau (1 - tau), all
    that the pi model's M-step and information need."""
    n = log_ratio.size
    size = bits.size
    scale = bits.view(np.float64)
    poly = scratch[0]
    t_max = scratch[1]
    t_log = scratch[2]
    t_w1 = scratch[3]
    t_var = scratch[4]
    log1m_pi = math.log1p(-pi)
    shift = math.log(pi) - log1m_pi
    total_max = 0.0
    total_log = 0.0
    total_w1 = 0.0
    total_var = 0.0
    for lo in range(0, n, size):
        m = min(size, n - lo)
        block = _full_block(log_ratio, lo, size, scratch[8])
        for j in range(size):
            poly[j], bits[j] = _exp_parts(block[j] + shift)
        for j in range(size):
            d = block[j] + shift
            e = poly[j] * scale[j]
            w = 1.0 / (1.0 + e)
            ew = e * w
            t_max[j] = d if d > 0.0 else 0.0
            t_log[j] = 1.0 + e
            t_w1[j] = w if d >= 0.0 else ew
            t_var[j] = ew * w
        for j in range(m, size):
            t_max[j] = 0.0
            t_log[j] = 1.0
            t_w1[j] = 0.0
            t_var[j] = 0.0
        # One pass per tree level for all four sums (the log terms are multiplied).
        width = size // 2
        while width >= _LANES:
            for j in range(width):
                t_max[j] += t_max[j + width]
                t_log[j] *= t_log[j + width]
                t_w1[j] += t_w1[j + width]
                t_var[j] += t_var[j + width]
            width //= 2
        # The block's 1 + e terms multiply to at most 2^512: one log per block suffices.
        product = 1.0
        for j in range(_LANES):
            product *= t_log[j]
        total_log += math.log(product)
        for j in range(_LANES):
            total_max += t_max[j]
            total_w1 += t_w1[j]
            total_var += t_var[j]
    stats[0] = total_w1
    stats[1] = total_var
    return base + n * log1m_pi + (total_max + total_log)


@njit(**_JIT)
def mstep(model, n, p, stats, out):
    """EM's M-step from the E-step's statistics. The moments are of z = (y - mu_old) /
    sigma_old, not of y, so the variance update subtracts numbers of order one: data offset by
    1e8 lose nothing, and near convergence the correction shift^2 is tiny."""
    for k in range(5):
        out[k] = p[k]
    if model == 0:
        out[0] = stats[0] / n
        return
    out[0] = stats[0] / (stats[0] + stats[3])
    out[1] = p[1] + p[3] * stats[1]
    out[2] = p[2] + p[4] * stats[4]
    # Rounding can push E[z^2] - E[z]^2 a hair below zero for a collapsing component.
    var1 = p[3] * p[3] * max(stats[2] - stats[1] * stats[1], 0.0)
    var2 = p[4] * p[4] * max(stats[5] - stats[4] * stats[4], 0.0)
    if model == 1:
        common = math.sqrt((stats[0] * var1 + stats[3] * var2) / (stats[0] + stats[3]))
        out[3] = common
        out[4] = common
    else:
        out[3] = math.sqrt(var1)
        out[4] = math.sqrt(var2)
