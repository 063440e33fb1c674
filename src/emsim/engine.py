"""The compiled EM engine: E-step and M-step kernels and the iteration loop (plain EM and
SQUAREM), one dataset at a time, compiled with numba.

All compiled code lives in this one module on purpose: numba's on-disk cache is invalidated only
when the defining file changes, and a cached function embeds the code of the functions it calls,
so a kernel in another file could be edited without the loop noticing.

A whole batch is one compiled call (`fit_rows`, which releases the GIL) and each fit runs to its
own end inside it, so a batch costs what its live fits cost and nothing per iteration is spent
in Python. Each fit ends with exactly one status; nothing here raises on bad numbers.

The parameter vector p holds pi, mu1, mu2, sigma1, sigma2 (PARAMS order). An E-step maps p to
the log-likelihood and the sufficient statistics of the next M-step. Every operation on a row
depends on that row alone, in a fixed order, so a batched fit equals a single fit bit for bit.

The E-step works in log space with the sigmoid form: with a = log(pi f1(y)), b = log((1-pi) f2(y))
and d = a - b, the responsibility is 1 / (1 + exp(-d)) and the log-density is
max(a, b) + log1p(exp(-|d|)): one exp per point, finite for points far from both means. The pi
model's densities never move, so their ratio is exponentiated once per fit (`pi_prepare`) and its
E-step needs one division per point and no exp.

Speed (a full-model E-step costs about 3 numpy `exp` passes over the same points; see
benchmarks/run.py): the E-step processes each row in blocks of at most 512 points, one loop
over a block computing each point's terms in registers and storing them for sums that are fixed
pairwise trees over the block (the trees' first level summed in that loop, so that a block's
terms take 16 KB and stay in a 32 KB L1 cache). Every loop is elementwise, so LLVM vectorises it
without fast-math: exp(-|d|) uses a Cody-Waite reduction and a degree-13 polynomial, with 2^k
built from its bits; the log1p terms of a block (at most 512 points, each 1 + e <= 2) are
multiplied together and logged once. No sum depends on the vector width, so results agree across
CPUs that have FMA (x86-64 since 2013, ARMv8).

Rounding is fixed by the source, not by the compiler: every multiply-add of an iteration (the
exp, a point's log-density, the M-step, SQUAREM's extrapolation) is an explicit fma (`_fma`)
and the sums in the E-step's loop never fuse (`_sum_not_fused`). The only fast-math flag is
`contract`, which lets LLVM fuse any other a * b + c, and it decides that per inlined copy of
the code: with the multiply-adds left to it, SQUAREM's E-steps rounded differently from EM's,
and merely rearranging `_iterate` moved about 2,600 of the default study's statuses (design.md
section 8).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import njit, typeof, types
from numba.extending import intrinsic
from numba.typed import List

from .models import STATUSES

PI, MU1, MU2, SIGMA1, SIGMA2 = range(5)
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

_LOG2E = 1.4426950408889634
# fdlibm's split of ln 2: k * _LN2_HI is exact for |k| < 2^20.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# exp(-708) is still a normal double, so 2^k never needs a subnormal exponent.
_EXP_FLOOR = -708.0
_MAX_BLOCK = 512
# Points per block of information_sums' two loops: its three arrays stay in the L1 cache.
_INFORMATION_BLOCK = 256
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
    k = np.floor(_fma(x, _LOG2E, 0.5))
    r = _fma(-k, _LN2_LO, _fma(-k, _LN2_HI, x))
    p = 1.0 / 6227020800.0
    p = _fma(p, r, 1.0 / 479001600.0)
    p = _fma(p, r, 1.0 / 39916800.0)
    p = _fma(p, r, 1.0 / 3628800.0)
    p = _fma(p, r, 1.0 / 362880.0)
    p = _fma(p, r, 1.0 / 40320.0)
    p = _fma(p, r, 1.0 / 5040.0)
    p = _fma(p, r, 1.0 / 720.0)
    p = _fma(p, r, 1.0 / 120.0)
    p = _fma(p, r, 1.0 / 24.0)
    p = _fma(p, r, 1.0 / 6.0)
    p = _fma(p, r, 0.5)
    p = _fma(p, r, 1.0)
    p = _fma(p, r, 1.0)
    return p, (np.int64(k) + 1023) << 52


@njit(inline="always", **_JIT)
def _tree_sum(t: np.ndarray, size: int) -> float:
    """Sum of t[:size] (a power of two, at least _LANES) by a fixed pairwise tree, the same on
    every CPU and vector width: fold the upper half onto the lower (t[j] + t[j + size / 2])
    down to _LANES partial sums, then add those pairwise. Three levels of the tree are folded
    in one pass where they can be: the same additions in the same order, with one store per
    eight loads instead of one per two, which had made the folds a quarter of an E-step at
    n = 500. Each array gets its own loops: one loop folding eight arrays, whose overlaps
    LLVM has to check at run time, made the whole full-model E-step take 3.35 instead of
    2.6 ns per point at n = 500000."""
    width = size // 2
    while width >= 4 * _LANES:
        half = width // 2
        quarter = width // 4
        for j in range(quarter):
            low = (t[j] + t[j + width]) + (t[j + half] + t[j + half + width])
            k = j + quarter
            high = (t[k] + t[k + width]) + (t[k + half] + t[k + half + width])
            t[j] = low + high
        width //= 8
    if width >= 2 * _LANES:
        half = width // 2
        for j in range(half):
            t[j] = (t[j] + t[j + width]) + (t[j + half] + t[j + half + width])
        width //= 4
    if width >= _LANES:
        for j in range(width):
            t[j] += t[j + width]
    return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]))


@njit(inline="always", **_JIT)
def _tree_product(t: np.ndarray, size: int) -> float:
    """Product of t[:size] by the same tree as _tree_sum; t[:_LANES] keep the lanes' products."""
    width = size // 2
    while width >= 4 * _LANES:
        half = width // 2
        quarter = width // 4
        for j in range(quarter):
            low = (t[j] * t[j + width]) * (t[j + half] * t[j + half + width])
            k = j + quarter
            high = (t[k] * t[k + width]) * (t[k + half] * t[k + half + width])
            t[j] = low * high
        width //= 8
    if width >= 2 * _LANES:
        half = width // 2
        for j in range(half):
            t[j] = (t[j] * t[j + width]) * (t[j + half] * t[j + half + width])
        width //= 4
    if width >= _LANES:
        for j in range(width):
            t[j] *= t[j + width]
    return ((t[0] * t[1]) * (t[2] * t[3])) * ((t[4] * t[5]) * (t[6] * t[7]))


MODEL_CODES = {"pi": 0, "equal_var": 1, "full": 2}
N_STATS = 6


@njit(inline="always", **_JIT)
def make_work(n):
    """Work arrays for the E-steps of data of length n: int64 exponent bits, then nine float
    blocks (eight for the sums, one to pad a short last block). The mixture E-step writes eight
    of them in one loop: only separate allocations made in the same compiled function (it and
    this are inlined into `fit_one`) let LLVM see that they do not overlap. Slices of one array,
    or arrays passed in, would need more run-time overlap checks than LLVM makes, and its loops
    stayed scalar (6 E instead of 3.5 E per E-step at n = 500000). Allocated once per fit."""
    size = _block_size(n)
    return (
        np.empty(size, np.int64),
        np.empty(size),
        np.empty(size),
        np.empty(size),
        np.empty(size),
        np.empty(size),
        np.empty(size),
        np.empty(size),
        np.empty(size),
        np.empty(size),
    )


@njit(**_JIT)
def fill_tail(data, size, tail):
    """Copy the short last block of `data` (if any) into `tail`, padded with its first value to
    the end of `tail`. Done once per fit, so that every E-step runs whole vectors with no scalar
    remainder (which matters at small n) and copies nothing; the pad values are finite, so the
    extra lanes compute harmlessly and are zeroed after (or multiplied by 0, see
    mixture_estep)."""
    lo = data.size - data.size % size
    m = data.size - lo
    for j in range(m):
        tail[j] = data[lo + j]
    for j in range(m, tail.size):
        tail[j] = data[lo]


@njit(inline="always", **_JIT)
def _padded(m):
    step = 2 * _LANES
    return (m + step - 1) // step * step


@njit(inline="always", **_JIT)
def _block(data, lo, size, tail):
    """The block of `data` from `lo` on and the number of lanes to compute: a whole block is a
    slice (which keeps indices provably non-negative, as LLVM needs to vectorise), the short
    last block is `tail` (see fill_tail), computed over its padded length only."""
    if data.size - lo >= size:
        return data[lo : lo + size], size
    return tail, _padded(data.size - lo)


@intrinsic
def _float_of_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 `bits`: a register move, which lets the exp
    be finished in the loop that computes it, without an int64 array to view as floats."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma), whatever code surrounds it (see the module's
    docstring); a CPU without FMA gets the same result from a slower software fma. Compiled
    code only: a jitted function that calls it is callable from Python, it is not."""

    def codegen(context, builder, signature, args):
        return builder.fma(args[0], args[1], args[2])

    return types.float64(types.float64, types.float64, types.float64), codegen


@intrinsic
def _sum_not_fused(typingctx, a, b):
    """a + b, never fused with a multiplication that feeds it (an fma would round once where
    the two-pass E-step, which stored each product before summing, rounded twice). numba gives
    every float operation without flags the `contract` flag; `afn` (which only concerns calls
    of math functions) keeps it off this one."""

    def codegen(context, builder, signature, args):
        return builder.fadd(args[0], args[1], flags=("afn",))

    return types.float64(types.float64, types.float64), codegen


@njit(inline="always", **_JIT)
def _mixture_point(x, mu1, mu2, inv1, inv2, c1, c2):
    """One point's terms of the mixture E-step: (the log-density's max(a, b) part, 1 + e, tau1,
    tau1 z1, tau1 z1^2, tau2, tau2 z2, tau2 z2^2), e = exp(-|d|), computed in registers."""
    z1 = (x - mu1) * inv1
    z2 = (x - mu2) * inv2
    a = _fma(-0.5 * z1, z1, c1)
    b = _fma(-0.5 * z2, z2, c2)
    d = a - b
    poly, bits = _exp_parts(d)
    e = poly * _float_of_bits(bits)
    one_e = _sum_not_fused(1.0, e)
    w = 1.0 / one_e
    ew = e * w
    r1 = w if d >= 0.0 else ew
    r2 = ew if d >= 0.0 else w
    # d - d is 0, or NaN when d is not finite: such a point must poison the sum.
    top = (a if a > b else b) + (d - d)
    return top, one_e, r1, r1 * z1, r1 * z1 * z1, r2, r2 * z2, r2 * z2 * z2


@njit(inline="always", **_JIT)
def _mixture_constants(p):
    """(mu1, mu2, 1 / sigma1, 1 / sigma2, c1, c2) of params p, c_k the log of component k's
    weight over sigma_k sqrt(2 pi): what `_mixture_point` takes besides the point."""
    pi = p[0]
    c1 = math.log(pi) - math.log(p[3]) - LOG_SQRT_2PI
    c2 = math.log1p(-pi) - math.log(p[4]) - LOG_SQRT_2PI
    return p[1], p[2], 1.0 / p[3], 1.0 / p[4], c1, c2


@njit(inline="always", **_JIT)
def mixture_estep(y, p, stats, work):
    """Log-likelihood of the two-normal mixture at p; fills stats with (sum tau1, mean z1,
    mean z1^2, sum tau2, mean z2, mean z2^2), z_k = (y - mu_k) / sigma_k weighted by tau_k."""
    n = y.size
    bits, poly, t_max, t_log, t_w1, t_z1, t_zz1, t_w2, t_z2, pad = work
    size = bits.size
    mu1, mu2, inv1, inv2, c1, c2 = _mixture_constants(p)
    # Scalars, not an array: an allocation per call costs as much as 50 points at small n.
    total_max = total_log = total_w1 = total_z1 = total_zz1 = total_w2 = total_z2 = 0.0
    total_zz2 = 0.0
    for lo in range(0, n, size):
        m = min(size, n - lo)
        block, lanes = _block(y, lo, size, pad)
        tree = size // 2
        if m == size:
            # A whole block: the trees' first level (point j with point j + size / 2) is summed
            # here, so that the block's terms take half the memory and stay in the L1 cache.
            for j in range(tree):
                top, one_e, w1, wz1, wzz1, w2, wz2, wzz2 = _mixture_point(
                    block[j], mu1, mu2, inv1, inv2, c1, c2
                )
                top_k, one_e_k, w1_k, wz1_k, wzz1_k, w2_k, wz2_k, wzz2_k = _mixture_point(
                    block[j + tree], mu1, mu2, inv1, inv2, c1, c2
                )
                t_max[j] = _sum_not_fused(top, top_k)
                t_log[j] = one_e * one_e_k
                t_w1[j] = _sum_not_fused(w1, w1_k)
                t_z1[j] = _sum_not_fused(wz1, wz1_k)
                t_zz1[j] = _sum_not_fused(wzz1, wzz1_k)
                t_w2[j] = _sum_not_fused(w2, w2_k)
                t_z2[j] = _sum_not_fused(wz2, wz2_k)
                poly[j] = _sum_not_fused(wzz2, wzz2_k)
        elif m > tree:
            # The short last block (all of a row at n <= 512) with more than half a block of
            # points, its first level summed in this loop too: a partner j + size / 2 beyond
            # the data is a pad point whose terms are multiplied by 0 (its 1 + e raised to the
            # power 0), which gives exactly the sums of the terms stored with pad lanes as 0
            # (the products exact; `_sum_not_fused` adds them as the stored ones were added).
            # A multiplier, not a branch on the lane: selects made the loop 20% slower.
            paired = min(tree, (m - tree + _LANES - 1) // _LANES * _LANES)
            for j in range(paired):
                top, one_e, w1, wz1, wzz1, w2, wz2, wzz2 = _mixture_point(
                    block[j], mu1, mu2, inv1, inv2, c1, c2
                )
                top_k, one_e_k, w1_k, wz1_k, wzz1_k, w2_k, wz2_k, wzz2_k = _mixture_point(
                    block[j + tree], mu1, mu2, inv1, inv2, c1, c2
                )
                keep = 1.0 if j + tree < m else 0.0
                t_max[j] = _sum_not_fused(top, top_k * keep)
                t_log[j] = one_e * _sum_not_fused(one_e_k * keep, 1.0 - keep)
                t_w1[j] = _sum_not_fused(w1, w1_k * keep)
                t_z1[j] = _sum_not_fused(wz1, wz1_k * keep)
                t_zz1[j] = _sum_not_fused(wzz1, wzz1_k * keep)
                t_w2[j] = _sum_not_fused(w2, w2_k * keep)
                t_z2[j] = _sum_not_fused(wz2, wz2_k * keep)
                poly[j] = _sum_not_fused(wzz2, wzz2_k * keep)
            if paired < tree:
                # Every partner from here on is a pad point, a copy of the block's first
                # point (fill_tail), so its terms times 0 are the same for every lane: they
                # are computed once and the loop computes its own point only (at n = 100, 104
                # points per E-step instead of 128), with the additions of the loop above.
                top_k, one_e_k, w1_k, wz1_k, wzz1_k, w2_k, wz2_k, wzz2_k = _mixture_point(
                    block[tree + paired], mu1, mu2, inv1, inv2, c1, c2
                )
                zero_top, zero_w1, zero_z1 = top_k * 0.0, w1_k * 0.0, wz1_k * 0.0
                zero_zz1, zero_w2, zero_z2 = wzz1_k * 0.0, w2_k * 0.0, wz2_k * 0.0
                zero_zz2 = wzz2_k * 0.0
                one = _sum_not_fused(one_e_k * 0.0, 1.0)
                # Unsigned, so that numba adds no wraparound for negative indices (LLVM cannot
                # tell that `paired` is not negative), which kept this loop from vectorising.
                for j in range(np.uint64(paired), np.uint64(tree)):
                    top, one_e, w1, wz1, wzz1, w2, wz2, wzz2 = _mixture_point(
                        block[j], mu1, mu2, inv1, inv2, c1, c2
                    )
                    t_max[j] = _sum_not_fused(top, zero_top)
                    t_log[j] = one_e * one
                    t_w1[j] = _sum_not_fused(w1, zero_w1)
                    t_z1[j] = _sum_not_fused(wz1, zero_z1)
                    t_zz1[j] = _sum_not_fused(wzz1, zero_zz1)
                    t_w2[j] = _sum_not_fused(w2, zero_w2)
                    t_z2[j] = _sum_not_fused(wz2, zero_z2)
                    poly[j] = _sum_not_fused(wzz2, zero_zz2)
        else:
            tree = size
            for j in range(lanes):
                top, one_e, w1, wz1, wzz1, w2, wz2, wzz2 = _mixture_point(
                    block[j], mu1, mu2, inv1, inv2, c1, c2
                )
                t_max[j] = top
                t_log[j] = one_e
                t_w1[j] = w1
                t_z1[j] = wz1
                t_zz1[j] = wzz1
                t_w2[j] = w2
                t_z2[j] = wz2
                poly[j] = wzz2
            for j in range(m, tree):
                t_max[j] = 0.0
                t_log[j] = 1.0
                t_w1[j] = 0.0
                t_z1[j] = 0.0
                t_zz1[j] = 0.0
                t_w2[j] = 0.0
                t_z2[j] = 0.0
                poly[j] = 0.0
        # The block's 1 + e terms multiply to at most 2^512: one log per block suffices.
        total_log += math.log(_tree_product(t_log, tree))
        total_max += _tree_sum(t_max, tree)
        total_w1 += _tree_sum(t_w1, tree)
        total_z1 += _tree_sum(t_z1, tree)
        total_zz1 += _tree_sum(t_zz1, tree)
        total_w2 += _tree_sum(t_w2, tree)
        total_z2 += _tree_sum(t_z2, tree)
        total_zz2 += _tree_sum(poly, tree)
    stats[0] = total_w1
    stats[1] = total_z1 / total_w1
    stats[2] = total_zz1 / total_w1
    stats[3] = total_w2
    stats[4] = total_z2 / total_w2
    stats[5] = total_zz2 / total_w2
    return total_max + total_log


@njit(**_JIT)
def pi_prepare(y, p, ratio, work):
    """For the pi model, whose densities f1 and f2 never change: fill `ratio` with each point's
    min(f1, f2) / max(f1, f2), negated where f2 is the larger, and return sum log max(f1, f2).
    Then pi f1 + (1 - pi) f2 = max(f1, f2) (pi A + (1 - pi) B) with (A, B) = (1, ratio) or
    (-ratio, 1), so an E-step needs no exp, and the part of the log-likelihood that never moves
    is summed once: nothing large cancels (sum log f2 alone can be -1e9 with a narrow
    component 2), and the rest, log(pi A + (1 - pi) B), is bounded by |log min(pi, 1 - pi)|."""
    bits, poly, t_base, t_check = work[0], work[1], work[2], work[3]
    size = bits.size
    scale = bits.view(np.float64)
    inv1 = 1.0 / p[3]
    inv2 = 1.0 / p[4]
    c1 = -math.log(p[3]) - LOG_SQRT_2PI
    c2 = -math.log(p[4]) - LOG_SQRT_2PI
    base = 0.0
    for lo in range(0, y.size, size):
        block = y[lo : lo + size]
        ratio_block = ratio[lo : lo + size]
        m = block.size
        for j in range(m):
            z1 = (block[j] - p[1]) * inv1
            z2 = (block[j] - p[2]) * inv2
            log_f1 = c1 - 0.5 * z1 * z1
            log_f2 = c2 - 0.5 * z2 * z2
            d = log_f1 - log_f2
            poly[j], bits[j] = _exp_parts(d)
            ratio_block[j] = d
            t_base[j] = log_f1 if log_f1 > log_f2 else log_f2
            # A non-finite d (a point beyond any float distance) poisons every
            # log-likelihood once here, so the E-step needs no per-point check.
            t_check[j] = d - d
        for j in range(m):
            e = poly[j] * scale[j]
            ratio_block[j] = e if ratio_block[j] > 0.0 else -e
        for j in range(m, size):
            t_base[j] = 0.0
            t_check[j] = 0.0
        base += _tree_sum(t_base, size) + _tree_sum(t_check, size)
    return base


# A product of mixing terms (each in [min(pi, 1 - pi), 1]) below this may have lost digits to
# underflow, so it is not logged. A block's product of 512 terms can underflow already at
# pi = 0.25 when its points all lie near component 2 (sorted data); a lane's product of 64 terms
# only when min(pi, 1 - pi) < 3e-5, and then that lane's terms are logged one by one.
_SAFE_PRODUCT = 1e-290


@njit(inline="always", **_JIT)
def _mixing_parts(v, pi, other):
    """pi A and (1 - pi) B of a point whose pi_prepare ratio is v (other = 1 - pi)."""
    return pi * (-v if v < 0.0 else 1.0), other * (1.0 if v < 0.0 else v)


@njit(**_JIT)
def pi_estep(ratio, base, pi, stats, work):
    """Log-likelihood of the pi model from pi_prepare's ratios; stats[0] = sum tau,
    stats[1] = sum tau (1 - tau), all that the pi model's M-step and information need."""
    n = ratio.size
    t_mix, t_w1, t_var, pad = work[1], work[2], work[3], work[9]
    size = t_mix.size
    other = 1.0 - pi
    total_log = 0.0
    total_w1 = 0.0
    total_var = 0.0
    for lo in range(0, n, size):
        m = min(size, n - lo)
        block, lanes = _block(ratio, lo, size, pad)
        for j in range(lanes):
            part1, part2 = _mixing_parts(block[j], pi, other)
            mix = part1 + part2
            inverse = 1.0 / mix
            t_mix[j] = mix
            t_w1[j] = part1 * inverse
            t_var[j] = (part1 * inverse) * (part2 * inverse)
        for j in range(m, size):
            t_mix[j] = 1.0
            t_w1[j] = 0.0
            t_var[j] = 0.0
        product = _tree_product(t_mix, size)
        total_w1 += _tree_sum(t_w1, size)
        total_var += _tree_sum(t_var, size)
        if product >= _SAFE_PRODUCT:
            total_log += math.log(product)
            continue
        for j in range(_LANES):
            if t_mix[j] >= _SAFE_PRODUCT:
                total_log += math.log(t_mix[j])
                continue
            # The tree left in lane j the product of the points j, j + 8, j + 16, ...
            for i in range(j, m, _LANES):
                part1, part2 = _mixing_parts(block[i], pi, other)
                total_log += math.log(part1 + part2)
    stats[0] = total_w1
    stats[1] = total_var
    return base + total_log


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
    out[1] = _fma(p[3], stats[1], p[1])
    out[2] = _fma(p[4], stats[4], p[2])
    # Rounding can push E[z^2] - E[z]^2 a hair below zero for a collapsing component.
    var1 = p[3] * p[3] * max(_fma(-stats[1], stats[1], stats[2]), 0.0)
    var2 = p[4] * p[4] * max(_fma(-stats[4], stats[4], stats[5]), 0.0)
    if model == 1:
        common = math.sqrt(_fma(stats[0], var1, stats[3] * var2) / (stats[0] + stats[3]))
        out[3] = common
        out[4] = common
    else:
        out[3] = math.sqrt(var1)
        out[4] = math.sqrt(var2)


@njit(inline="always", **_JIT)
def _row_terms(params, row):
    """(pi, mu1, mu2, c, 1 / sigma1, 1 / sigma2) of a row's params, c the log-odds constant
    log(pi / sigma1) - log((1 - pi) / sigma2) of the passes over the data below."""
    pi, s1, s2 = params[row, 0], params[row, 3], params[row, 4]
    c = (math.log(pi) - math.log(s1)) - (math.log1p(-pi) - math.log(s2))
    return pi, params[row, 1], params[row, 2], c, 1.0 / s1, 1.0 / s2


@njit(inline="always", **_JIT)
def _point_terms(value, mu1, mu2, c, u1, u2):
    """(y - mu1, y - mu2, tau) of one point at a row's terms (_row_terms)."""
    e1 = value - mu1
    e2 = value - mu2
    z1 = e1 * u1
    z2 = e2 * u2
    return e1, e2, 1.0 / (1.0 + math.exp(-c + 0.5 * (z1 * z1 - z2 * z2)))


@njit(**_JIT)
def information_sums(y, params, model, complete, missing, moments):
    """Per row of y at its fitted params, the two terms of Louis' identity (see information.py)
    over the model's estimated parameters, in one pass over the data: complete receives
    I_complete and missing I_missing = sum tau (1 - tau) G G^T, where G is the gap between the
    two components' complete-data scores (for the models estimating means and sigmas; model
    1 has one common sigma, so 4 parameters, model 2 has 5). moments receives the sums the
    pass needs anyway, (sum tau, sum tau e1, sum tau e1^2, sum (1 - tau), sum (1 - tau) e2,
    sum (1 - tau) e2^2) with e_k = y - mu_k: the score and one EM step follow from them
    (emsim.limit), with no second pass.

    The pass keeps scalar sums only (I_complete needs five moments of tau and 1 - tau; G's
    first entry is constant per row), which LLVM holds in registers: writing the k x k sums
    through array indexing at every point made this 25x an E-step and most of the cost of the
    score rule's checks, the SEs and the limit's certification."""
    n = y.shape[1]
    # Two loops per block: the libm exp call clobbers every vector register, so the loop that
    # calls it spilled and reloaded the 21 running sums at every point (14.6 ns per point at
    # n = 5000; split, 11.1 ns). The sums are the same, in the same order.
    block = _INFORMATION_BLOCK
    gaps1, gaps2, taus = np.empty(block), np.empty(block), np.empty(block)
    for row in range(y.shape[0]):
        pi, mu1, mu2, c, u1, u2 = _row_terms(params, row)
        u1_2, u2_2 = u1 * u1, u2 * u2
        u1_3, u2_3 = u1_2 * u1, u2_2 * u2
        s_tau = s_untau = s_tau_e1 = s_tau_e1sq = s_untau_e2 = s_untau_e2sq = 0.0
        w0 = w1 = w2 = w3 = w4 = 0.0
        w11 = w12 = w13 = w14 = w22 = w23 = w24 = w33 = w34 = w44 = 0.0
        for lo in range(0, n, block):
            m = min(block, n - lo)
            for j in range(m):
                gaps1[j], gaps2[j], taus[j] = _point_terms(y[row, lo + j], mu1, mu2, c, u1, u2)
            for j in range(m):
                e1, e2, tau = gaps1[j], gaps2[j], taus[j]
                untau = 1.0 - tau
                s_tau += tau
                s_untau += untau
                s_tau_e1 += tau * e1
                s_tau_e1sq += tau * e1 * e1
                s_untau_e2 += untau * e2
                s_untau_e2sq += untau * e2 * e2
                g1 = e1 * u1_2
                g2 = -e2 * u2_2
                if model == 2:
                    g3 = -u1 + e1 * e1 * u1_3
                    g4 = u2 - e2 * e2 * u2_3
                else:
                    g3 = (e1 * e1 - e2 * e2) * u1_3
                    g4 = 0.0
                w = tau * untau
                w0 += w
                wg1 = w * g1
                wg2 = w * g2
                wg3 = w * g3
                w1 += wg1
                w2 += wg2
                w3 += wg3
                w4 += w * g4
                w11 += wg1 * g1
                w12 += wg1 * g2
                w13 += wg1 * g3
                w14 += wg1 * g4
                w22 += wg2 * g2
                w23 += wg2 * g3
                w24 += wg2 * g4
                w33 += wg3 * g3
                w34 += wg3 * g4
                w44 += w * g4 * g4
        moments[row, 0] = s_tau
        moments[row, 1] = s_tau_e1
        moments[row, 2] = s_tau_e1sq
        moments[row, 3] = s_untau
        moments[row, 4] = s_untau_e2
        moments[row, 5] = s_untau_e2sq
        full = complete[row]
        lost = missing[row]
        full[:, :] = 0.0
        lost[:, :] = 0.0
        full[0, 0] = s_tau / (pi * pi) + s_untau / ((1.0 - pi) * (1.0 - pi))
        full[1, 1] = s_tau * u1_2
        full[2, 2] = s_untau * u2_2
        full[1, 3] = 2.0 * s_tau_e1 * u1_3
        if model == 2:
            full[3, 3] = 3.0 * s_tau_e1sq * u1_2 * u1_2 - s_tau * u1_2
            full[2, 4] = 2.0 * s_untau_e2 * u2_3
            full[4, 4] = 3.0 * s_untau_e2sq * u2_2 * u2_2 - s_untau * u2_2
        else:
            full[2, 3] = 2.0 * s_untau_e2 * u1_3
            full[3, 3] = 3.0 * (s_tau_e1sq + s_untau_e2sq) * u1_2 * u1_2 - n * u1_2
        g0 = 1.0 / pi + 1.0 / (1.0 - pi)
        lost[0, 0] = g0 * g0 * w0
        lost[0, 1] = g0 * w1
        lost[0, 2] = g0 * w2
        lost[0, 3] = g0 * w3
        lost[1, 1] = w11
        lost[1, 2] = w12
        lost[1, 3] = w13
        lost[2, 2] = w22
        lost[2, 3] = w23
        lost[3, 3] = w33
        if model == 2:
            lost[0, 4] = g0 * w4
            lost[1, 4] = w14
            lost[2, 4] = w24
            lost[3, 4] = w34
            lost[4, 4] = w44
        k = 5 if model == 2 else 4
        for a in range(k):
            for b in range(a):
                full[a, b] = full[b, a]
                lost[a, b] = lost[b, a]


@njit(**_JIT)
def logliks(y, params, out):
    """Per row of y the log-likelihood at its params (all five entries), by the engine's own
    E-step (one vectorised pass; its statistics are discarded): the continuation's and Newton's
    line searches evaluate it at every trial point, where numpy's passes over y cost 6-8
    E-steps."""
    work = make_work(y.shape[1])
    stats = np.empty(N_STATS)
    for row in range(y.shape[0]):
        fill_tail(y[row], work[0].size, work[9])
        out[row] = mixture_estep(y[row], params[row], stats, work)


@njit(**_JIT)
def pi_information_sums(y, params, sums):
    """The pi model's Louis terms per row in one pass: sums receives (sum tau, the score
    sum (tau - pi) / (pi (1 - pi)), the observed information sum (tau - pi)^2 / (pi (1 - pi))^2:
    d2/dpi2 of the log-likelihood is -sum (f1 - f2)^2 / f^2). Blocked like the E-step, with its
    vectorised exp: a scalar exp per point made each call cost 10 E-steps."""
    n = y.shape[1]
    work = make_work(n)
    size = work[0].size
    taus, devs, squares, pad = work[1], work[2], work[3], work[9]
    for row in range(y.shape[0]):
        data = y[row]
        fill_tail(data, size, pad)
        pi = params[row, 0]
        mu1, mu2, inv1, inv2, c1, c2 = _mixture_constants(params[row])
        s_tau = s_dev = s_square = 0.0
        for lo in range(0, n, size):
            m = min(size, n - lo)
            block, lanes = _block(data, lo, size, pad)
            for j in range(lanes):
                tau = _mixture_point(block[j], mu1, mu2, inv1, inv2, c1, c2)[2]
                dev = tau - pi
                taus[j] = tau
                devs[j] = dev
                squares[j] = dev * dev
            for j in range(m, size):
                taus[j] = 0.0
                devs[j] = 0.0
                squares[j] = 0.0
            s_tau += _tree_sum(taus, size)
            s_dev += _tree_sum(devs, size)
            s_square += _tree_sum(squares, size)
        scale = 1.0 / (pi * (1.0 - pi))
        sums[row, 0] = s_tau
        sums[row, 1] = s_dev * scale
        sums[row, 2] = s_square * scale * scale


@njit(**_JIT)
def score_outer_sums(y, params, model, outer):
    """Per row of y at its params, J = sum_i s_i s_i^T over the model's estimated parameters,
    s_i the score of point i (the tau-weighted component scores; see information.py): the
    sandwich's middle matrix, in one pass with scalar sums as in information_sums. Forming the
    rows x n x k scores in numpy and contracting them with einsum cost 300 E per row (E one
    numpy exp pass over the same points); this costs about 20 E."""
    n = y.shape[1]
    for row in range(y.shape[0]):
        pi, mu1, mu2, c, u1, u2 = _row_terms(params, row)
        u1_2, u2_2 = u1 * u1, u2 * u2
        u1_3, u2_3 = u1_2 * u1, u2_2 * u2
        mix = 1.0 / (pi * (1.0 - pi))
        j00 = j01 = j02 = j03 = j04 = j11 = j12 = j13 = j14 = 0.0
        j22 = j23 = j24 = j33 = j34 = j44 = 0.0
        for i in range(n):
            e1, e2, tau = _point_terms(y[row, i], mu1, mu2, c, u1, u2)
            untau = 1.0 - tau
            g0 = (tau - pi) * mix
            j00 += g0 * g0
            if model == 0:
                continue
            g1 = tau * e1 * u1_2
            g2 = untau * e2 * u2_2
            if model == 2:
                g3 = tau * (e1 * e1 * u1_3 - u1)
                g4 = untau * (e2 * e2 * u2_3 - u2)
            else:
                g3 = (tau * e1 * e1 + untau * e2 * e2) * u1_3 - u1
                g4 = 0.0
            j01 += g0 * g1
            j02 += g0 * g2
            j03 += g0 * g3
            j04 += g0 * g4
            j11 += g1 * g1
            j12 += g1 * g2
            j13 += g1 * g3
            j14 += g1 * g4
            j22 += g2 * g2
            j23 += g2 * g3
            j24 += g2 * g4
            j33 += g3 * g3
            j34 += g3 * g4
            j44 += g4 * g4
        meat = outer[row]
        meat[:, :] = 0.0
        meat[0, 0] = j00
        if model == 0:
            continue
        meat[0, 1], meat[0, 2], meat[0, 3] = j01, j02, j03
        meat[1, 1], meat[1, 2], meat[1, 3] = j11, j12, j13
        meat[2, 2], meat[2, 3], meat[3, 3] = j22, j23, j33
        if model == 2:
            meat[0, 4], meat[1, 4], meat[2, 4], meat[3, 4], meat[4, 4] = j04, j14, j24, j34, j44
        k = 5 if model == 2 else 4
        for a in range(k):
            for b in range(a):
                meat[a, b] = meat[b, a]


# --- the limit's trust-region ascent (emsim.limit.trust_region_limit), one row at a time ------
# Compiled without `contract`, so that no multiply-add is fused: the same bits on every CPU,
# whatever its FMA support. The 4 x 4 and 5 x 5 factorisations are written out here (Cholesky,
# cyclic Jacobi) rather than taken from LAPACK, whose builds pick kernels per CPU.
_EXACT = {"cache": True, "nogil": True, "error_model": "numpy"}


@njit(**_EXACT)
def _cholesky_lower(a, k, low):
    """low[:k, :k] = L with L L' = a[:k, :k]; False where a pivot is not positive and finite.
    `newton_decrement` keeps its own factorisation: it runs inside `fit_one`, whose rounding
    (and so every score-rule stop) a call of this uncontracted code would change."""
    for j in range(k):
        total = a[j, j]
        for m in range(j):
            total -= low[j, m] * low[j, m]
        if not (total > 0.0 and total < np.inf):
            return False
        low[j, j] = math.sqrt(total)
        for i in range(j + 1, k):
            part = a[i, j]
            for m in range(j):
                part -= low[i, m] * low[j, m]
            low[i, j] = part / low[j, j]
        for i in range(j):
            low[i, j] = 0.0
    return True


@njit(**_EXACT)
def _lower_inverse(low, k, inverse):
    """inverse[:k, :k] = L^-1 of a lower-triangular L with a positive diagonal."""
    for col in range(k):
        for i in range(col):
            inverse[i, col] = 0.0
        inverse[col, col] = 1.0 / low[col, col]
        for i in range(col + 1, k):
            part = 0.0
            for m in range(col, i):
                part -= low[i, m] * inverse[m, col]
            inverse[i, col] = part / low[i, i]


@njit(**_EXACT)
def symmetric_eigen(a, k, values, vectors):
    """Eigenvalues (ascending, into values[:k]) and unit eigenvectors (columns of
    vectors[:k, :k]) of the symmetric a[:k, :k], which is overwritten: cyclic Jacobi rotations
    in a fixed order until a sweep finds every off-diagonal entry negligible beside its
    diagonal pair (Rutishauser's test), at most 60 sweeps. For matrices of at most 5 x 5 it
    is as accurate as LAPACK's and the same on every machine."""
    for i in range(k):
        for j in range(k):
            vectors[i, j] = 1.0 if i == j else 0.0
    for _ in range(60):
        rotated = False
        for p in range(k - 1):
            for q in range(p + 1, k):
                apq = a[p, q]
                app, aqq = a[p, p], a[q, q]
                if abs(apq) <= 1e-18 * (abs(app) + abs(aqq)) or apq == 0.0:
                    a[p, q] = 0.0
                    a[q, p] = 0.0
                    continue
                rotated = True
                theta = (aqq - app) / (2.0 * apq)
                if abs(theta) > 1e150:
                    t = 0.5 / theta
                else:
                    t = 1.0 / (abs(theta) + math.sqrt(theta * theta + 1.0))
                    if theta < 0.0:
                        t = -t
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                for r in range(k):
                    if r != p and r != q:
                        arp, arq = a[r, p], a[r, q]
                        a[r, p] = c * arp - s * arq
                        a[p, r] = a[r, p]
                        a[r, q] = s * arp + c * arq
                        a[q, r] = a[r, q]
                a[p, p] = app - t * apq
                a[q, q] = aqq + t * apq
                a[p, q] = 0.0
                a[q, p] = 0.0
                for r in range(k):
                    vrp, vrq = vectors[r, p], vectors[r, q]
                    vectors[r, p] = c * vrp - s * vrq
                    vectors[r, q] = s * vrp + c * vrq
        if not rotated:
            break
    for i in range(k):
        values[i] = a[i, i]
    # Insertion sort, ascending, carrying the vectors (stable: ties keep their order).
    for i in range(1, k):
        j = i
        while j > 0 and values[j - 1] > values[j]:
            values[j - 1], values[j] = values[j], values[j - 1]
            for r in range(k):
                vectors[r, j - 1], vectors[r, j] = vectors[r, j], vectors[r, j - 1]
            j -= 1


@njit(**_EXACT)
def _louis_score(theta, moments, n, model, score):
    """The score over the estimated parameters from information_sums' tau-moments."""
    w1, t1, q1, w2, t2, q2 = moments[0], moments[1], moments[2], moments[3], moments[4], moments[5]
    pi, s1, s2 = theta[0], theta[3], theta[4]
    score[0] = w1 / pi - w2 / (1.0 - pi)
    score[1] = t1 / (s1 * s1)
    score[2] = t2 / (s2 * s2)
    if model == 2:
        score[3] = q1 / (s1 * s1 * s1) - w1 / s1
        score[4] = q2 / (s2 * s2 * s2) - w2 / s2
    else:
        score[3] = (q1 + q2) / (s1 * s1 * s1) - n / s1


@njit(**_EXACT)
def _em_change(theta, moments, n, model, change):
    """One EM step's change of each estimated parameter, from the tau-moments at theta: the
    M-step in closed form (a mean moves by the tau-weighted mean of y - mu)."""
    w1, t1, q1, w2, t2, q2 = moments[0], moments[1], moments[2], moments[3], moments[4], moments[5]
    shift1, shift2 = t1 / w1, t2 / w2
    var1 = q1 / w1 - shift1 * shift1
    var2 = q2 / w2 - shift2 * shift2
    change[0] = w1 / n - theta[0]
    change[1] = shift1
    change[2] = shift2
    if model == 2:
        change[3] = math.sqrt(var1) - theta[3]
        change[4] = math.sqrt(var2) - theta[4]
    else:
        change[3] = math.sqrt((w1 * var1 + w2 * var2) / n) - theta[3]


@njit(**_EXACT)
def _newton_at(info, score, k, min_eigenvalue, work, vectors, rows, se):
    """At one point, from the observed information decomposed at unit diagonal (where the
    decision does not depend on the units; information.MIN_SCALED_EIGENVALUE): whether it is
    positive definite and, where it is, the Newton decrement sqrt(g' I^-1 g), with the Newton
    step I^-1 g into rows[2, :k] and the SEs into se[:k] (NaN where not positive definite).
    rows[0] and rows[1] receive the eigenvalues and V' D g (D = diag(I)^-1/2); work and
    vectors are k x k work matrices."""
    values, along, step = rows[0], rows[1], rows[2]
    for i in range(k):
        se[i] = np.nan
    for i in range(k):
        if not (info[i, i] > 0.0):
            return False, np.inf
        for j in range(k):
            if not np.isfinite(info[i, j]):
                return False, np.inf
    for i in range(k):
        for j in range(k):
            work[i, j] = info[i, j] / math.sqrt(info[i, i]) / math.sqrt(info[j, j])
    symmetric_eigen(work, k, values, vectors)
    if not values[0] > min_eigenvalue:
        return False, np.inf
    decrement2 = 0.0
    for j in range(k):
        part = 0.0
        for i in range(k):
            part += vectors[i, j] * (score[i] / math.sqrt(info[i, i]))
        along[j] = part
        decrement2 += part * part / values[j]
    # I^-1 g = D V diag(1 / values) V' D g, and diag(I^-1) the same way.
    for i in range(k):
        part = 0.0
        inverse_diagonal = 0.0
        for j in range(k):
            part += vectors[i, j] * along[j] / values[j]
            inverse_diagonal += vectors[i, j] * vectors[i, j] / values[j]
        step[i] = part / math.sqrt(info[i, i])
        se[i] = math.sqrt(inverse_diagonal / info[i, i])
    decrement = math.sqrt(abs(decrement2))
    return True, decrement if np.isfinite(decrement) else np.inf


@njit(**_EXACT)
def _largest_ratio(top, bottom, k):
    """max_i |top_i| / bottom_i, NaN where any ratio is NaN (as numpy's max)."""
    largest = 0.0
    for i in range(k):
        ratio = abs(top[i]) / bottom[i]
        # A NaN sticks: nothing compares greater than it.
        if np.isnan(ratio) or ratio > largest:
            largest = ratio
    return largest


@njit(**_EXACT)
def _assess_point(
    info, score, theta, moments, n, model, k, min_eigenvalue, work, vectors, rows, se
):
    """limit.assess at one point: (observed information positive definite, Newton decrement,
    one EM step's largest move in SEs), the last two inf where not positive definite or not
    finite; se[:k] receives the SEs. rows: a 4 x k work array (`_newton_at` uses three)."""
    positive, decrement = _newton_at(info, score, k, min_eigenvalue, work, vectors, rows, se)
    if not positive:
        return False, np.inf, np.inf
    change = rows[3]
    _em_change(theta, moments, n, model, change)
    moved = _largest_ratio(change, se, k)
    return True, decrement, moved if np.isfinite(moved) else np.inf


@njit(**_EXACT)
def _louis_at(data, point, model, n, complete, missing, moments, info, score):
    """Louis' terms at point (one row): complete, missing and moments from information_sums,
    info = complete - missing and the score; False where any of them is not finite."""
    information_sums(data, point, model, complete, missing, moments)
    _louis_score(point[0], moments[0], n, model, score)
    k = info.shape[0]
    finite = True
    for i in range(k):
        finite = finite and np.isfinite(score[i])
        for j in range(k):
            info[i, j] = complete[0, i, j] - missing[0, i, j]
            finite = finite and np.isfinite(complete[0, i, j]) and np.isfinite(info[i, j])
    return finite


@njit(**_EXACT)
def assess_rows(y, theta, model, min_eigenvalue, positive, decrement, residual, se):
    """limit.assess for each row of y at theta (models equal_var and full): positive definite,
    Newton decrement and EM residual in SEs (inf where not positive definite), and the SEs."""
    n = y.shape[1]
    k = se.shape[1]
    complete, missing = np.empty((1, k, k)), np.empty((1, k, k))
    moments, point = np.empty((1, N_STATS)), np.empty((1, 5))
    info, score = np.empty((k, k)), np.empty(k)
    work, vectors, rows = np.empty((k, k)), np.empty((k, k)), np.empty((4, k))
    for r in range(y.shape[0]):
        point[0, :] = theta[r]
        _louis_at(y[r : r + 1], point, model, n, complete, missing, moments, info, score)
        positive[r], decrement[r], residual[r] = _assess_point(
            info,
            score,
            point[0],
            moments[0],
            n,
            model,
            k,
            min_eigenvalue,
            work,
            vectors,
            rows,
            se[r],
        )


@njit(**_EXACT)
def _subproblem(score, info, complete, k, radius, halvings, tr, step):
    """The trust-region step in EM's metric C (limit.trust_region_limit's docstring) into
    step[:k]; returns (predicted gain, Newton decrement or inf, True where C is positive
    definite). tr holds the work matrices."""
    low, inverse, curvature, vectors = tr[0], tr[1], tr[2], tr[3]
    g, values, along, q = tr[4, 0], tr[4, 1], tr[4, 2], tr[4, 3]
    if not _cholesky_lower(complete, k, low):
        return 0.0, np.inf, False
    _lower_inverse(low, k, inverse)
    for i in range(k):
        part = 0.0
        for j in range(i + 1):
            part += inverse[i, j] * score[j]
        g[i] = part
    # curvature = L^-1 I L^-T, symmetric by construction of its upper triangle.
    for i in range(k):
        for j in range(i, k):
            part = 0.0
            for a in range(i + 1):
                inner = 0.0
                for b in range(j + 1):
                    inner += info[a, b] * inverse[j, b]
                part += inverse[i, a] * inner
            curvature[i, j] = part
            curvature[j, i] = part
    work = tr[5]
    for i in range(k):
        for j in range(k):
            work[i, j] = curvature[i, j]
    symmetric_eigen(work, k, values, vectors)
    norm_g = 0.0
    for i in range(k):
        part = 0.0
        for j in range(k):
            part += vectors[j, i] * g[j]
        along[i] = part
        norm_g += g[i] * g[i]
    positive = values[0] > 0.0
    decrement = np.inf
    newton_length = 0.0
    if positive:
        total = 0.0
        for i in range(k):
            total += along[i] * along[i] / values[i]
            newton_length += (along[i] / values[i]) ** 2
        decrement = math.sqrt(total)
    shift = 0.0
    if not (positive and math.sqrt(newton_length) <= radius):
        lo = max(0.0, -values[0])
        hi = lo + math.sqrt(norm_g) / radius + 1.0
        for _ in range(halvings):
            middle = 0.5 * (lo + hi)
            total = 0.0
            for i in range(k):
                v = along[i] / (values[i] + middle)
                total += v * v
            if math.sqrt(total) > radius:
                lo = middle
            else:
                hi = middle
        shift = hi
    for i in range(k):
        part = 0.0
        for j in range(k):
            part += vectors[i, j] * (along[j] / (values[j] + shift))
        q[i] = part
    gain = 0.0
    for i in range(k):
        gain += g[i] * q[i]
        part = 0.0
        for j in range(k):
            part += curvature[i, j] * q[j]
        gain -= 0.5 * q[i] * part
    for i in range(k):
        part = 0.0
        for j in range(i, k):
            part += inverse[j, i] * q[j]
        step[i] = part
    return gain, decrement, True


@njit(**_EXACT)
def _valid_point(p, floor):
    for i in range(5):
        if not np.isfinite(p[i]):
            return False
    return 0.0 < p[0] < 1.0 and p[3] > floor and p[4] > floor


@njit(**_EXACT)
def trust_region_rows(y, theta, model, sigma_floor, settings, value, certified):
    """limit.trust_region_limit for each row of y from theta (overwritten with the point
    reached): value receives its log-likelihood, certified whether it is certified. settings:
    steps, starting radius, largest radius, shrink factor, bisection halvings, certification
    limit (SEs), smallest scaled eigenvalue. Each row runs on its own, so a row's result does
    not depend on the rows beside it."""
    n = y.shape[1]
    k = 5 if model == 2 else 4
    steps, radius_start, radius_max = int(settings[0]), settings[1], settings[2]
    shrink, halvings, limit = settings[3], int(settings[4]), settings[5]
    min_eigenvalue = settings[6]
    complete = np.empty((1, k, k))
    missing = np.empty((1, k, k))
    moments = np.empty((1, N_STATS))
    point = np.empty((1, 5))
    one = np.empty(1)
    info = np.empty((k, k))
    score, step, se = np.empty(k), np.empty(k), np.empty(k)
    tr = np.empty((6, k, k))
    work, vectors, rows = np.empty((k, k)), np.empty((k, k)), np.empty((4, k))
    for r in range(y.shape[0]):
        data = y[r : r + 1]
        p = theta[r]
        point[0, :] = p
        logliks(data, point, one)
        value[r] = one[0]
        certified[r] = False
        if not (_valid_point(p, 0.0) and np.isfinite(one[0])):
            continue
        radius = radius_start
        for attempt in range(steps + 1):
            point[0, :] = p
            if not _louis_at(data, point, model, n, complete, missing, moments, info, score):
                break
            # A step checks the point it starts from, so the point the last step reached is
            # checked after it (limit.trust_region_limit).
            last = attempt == steps
            decrement = np.inf
            if not last:
                gain, decrement, factored = _subproblem(
                    score, info, complete[0], k, radius, halvings, tr, step
                )
                finite = np.isfinite(gain)
                for i in range(k):
                    finite = finite and np.isfinite(step[i])
                if not (factored and finite):
                    break
            if last or decrement < limit:
                held, near, moved = _assess_point(
                    info, score, p, moments[0], n, model, k, min_eigenvalue, work, vectors, rows, se
                )
                certified[r] = held and near < limit and moved < limit
                if certified[r] or last:
                    break
            for i in range(4):
                point[0, i] = p[i] + step[i]
            point[0, 4] = p[4] + (step[4] if model == 2 else step[3])
            new_value = -np.inf
            if _valid_point(point[0], sigma_floor[r]):
                logliks(data, point, one)
                new_value = one[0]
            ratio = (new_value - value[r]) / gain
            taken = new_value >= value[r]
            if taken:
                p[:] = point[0]
                value[r] = new_value
            reach = 0.0
            for i in range(k):
                part = 0.0
                for j in range(k):
                    part += complete[0, i, j] * step[j]
                reach += step[i] * part
            reach = math.sqrt(reach)
            if not taken or ratio < 0.25:
                radius = shrink * reach
            elif ratio > 0.75 and reach > 0.99 * radius:
                radius = min(2.0 * radius, radius_max)
            # A radius far below a step the log-likelihood can register: no further progress.
            if radius < 1e-12:
                break


@njit(**_EXACT)
def newton_rows(y, theta, model, settings, done):
    """limit.newton_limit for each row of y from theta (overwritten with the last point
    reached): safeguarded Newton steps, each halved until the log-likelihood does not fall by
    more than rounding in a sum of n terms; done receives whether a step below the tolerance
    (in SEs) ended it. settings: steps, halvings, step tolerance (SEs), smallest scaled
    eigenvalue. A row stops undone where the information is not positive definite or no
    halving keeps the log-likelihood."""
    n = y.shape[1]
    k = 5 if model == 2 else 4
    steps, halvings = int(settings[0]), int(settings[1])
    tolerance, min_eigenvalue = settings[2], settings[3]
    complete, missing = np.empty((1, k, k)), np.empty((1, k, k))
    moments, point, trial = np.empty((1, N_STATS)), np.empty((1, 5)), np.empty((1, 5))
    info, score, se, step = np.empty((k, k)), np.empty(k), np.empty(k), np.empty(5)
    work, vectors, rows = np.empty((k, k)), np.empty((k, k)), np.empty((3, k))
    one = np.empty(1)
    for r in range(y.shape[0]):
        data = y[r : r + 1]
        p = theta[r]
        done[r] = False
        point[0, :] = p
        if not _valid_point(p, 0.0):
            continue
        logliks(data, point, one)
        current = one[0]
        for _ in range(steps):
            point[0, :] = p
            if not _louis_at(data, point, model, n, complete, missing, moments, info, score):
                break
            positive, _ = _newton_at(info, score, k, min_eigenvalue, work, vectors, rows, se)
            if not positive:
                break
            if _largest_ratio(rows[2], se, k) < tolerance:
                done[r] = True
                break
            step[:k] = rows[2]
            if model != 2:
                step[4] = step[3]
            slack = 1e-12 * (abs(current) + n)
            scale = 1.0
            accepted = False
            for _ in range(halvings):
                for i in range(5):
                    trial[0, i] = p[i] + scale * step[i]
                value = -np.inf
                if _valid_point(trial[0], 0.0):
                    logliks(data, trial, one)
                    value = one[0]
                if value >= current - slack:
                    accepted = True
                    break
                scale *= 0.5
            if not accepted:
                break
            p[:] = trial[0]
            current = value


# A fit whose mixing weight leaves [PI_EPS, 1 - PI_EPS] is on the boundary of the parameter space.
PI_EPS = 1e-6
# Rounding in a sum of n log-densities is far below this; a fall larger than it is a fault.
DECREASE_SLACK_REL = 1e-10
# SQUAREM's step-length bound grows (and shrinks after a rejected step) by this factor,
# as in Varadhan & Roland (2008) and their R package's default `mstep`.
SQUAREM_STEP_FACTOR = 4.0

CONVERGED, MAX_ITERATIONS, DEGENERATE, BOUNDARY, NONFINITE, DECREASED = range(6)
_RUNNING = -1
assert STATUSES[DEGENERATE] == "degenerate" and STATUSES[DECREASED] == "decreased"
METHOD_CODES = {"em": 0, "squarem": 1}

# Stopping rules (docs/design.md section 1). With l_k the log-likelihood after iteration k and
# d_k = l_k - l_(k-1), a rule stops after iteration k when
#   abs:    d_k < tol                          (the seed's rule)
#   rel:    d_k < tol |l_k|
#   aitken: d_k / (1 - a_k) < tol, a_k = d_k / d_(k-1) in [0, 1): Aitken's estimate of the gain
#           still to come, l_inf - l_(k-1) (Boehning et al. 1994; McNicholas et al. 2010);
#           it does not stop while a_k is outside [0, 1) (no linear regime yet), and stops at
#           once when d_k <= 0 (nothing left to gain at this precision).
#   score:  sqrt(g' I^-1 g) < tol at the iterate, with g the score and I the observed information
#           positive definite: the Newton decrement, the distance to the maximum of the local
#           quadratic model in its own standard errors (issue 18). I costs about five E-steps,
#           so it is computed only where the rule could stop: once d_k < tol^2 (the gain still
#           to come is sqrt(g' I^-1 g)^2 / 2 and at least d_(k+1), so no earlier iterate can
#           pass), and after a failed check, not before EM's observed rate predicts it
#           halfway to tol, or for SQUAREM, once the log-likelihood has made half the rise
#           the quadratic model says is left or its iterations grew by a tenth
#           (`_next_score_check`).
#   param:  max_j |p_k,j - p_(k-1),j| < tol, the largest parameter change (SQUAREM's R
#           package and turboEM stop on such raw-unit residuals).
STOPPING_CODES = {"abs": 0, "rel": 1, "aitken": 2, "score": 3, "param": 4}
STOP_ABS, STOP_REL, STOP_AITKEN, STOP_SCORE, STOP_PARAM = range(5)

# The polish (docs/design.md section 2): after the stopping rules end a fit, SQUAREM continues
# the same iteration from the last converged stop until a step gains less than POLISH_TOL_REL
# (|l| + n), far below the rounding of any decision made from it, or until POLISH_MAX_EVALS
# E-steps, which is where SQUAREM has done what it does well (fits that EM brought close). Where
# the cap ends it, a crawling fit, Newton's method finishes the way to the limit (emsim.limit):
# a few Newton steps cost less than the hundreds of E-steps SQUAREM needs there. Capped and
# failed fits are not polished: they are failures whatever their distance.
POLISH_TOL_REL = 1e-12
POLISH_MAX_EVALS = 60

# Layout of one fit's output vector (per stopping rule): the fit at its stop, then the limit.
OUT_PARAMS = 0  # 5 values, PARAMS order
OUT_LOGLIK = 5
OUT_LOGLIK_START = 6
OUT_STATUS = 7
OUT_ITERATIONS = 8
OUT_EVALS = 9
OUT_RATE = 10
OUT_STATS = 11  # N_STATS values: the E-step's statistics at the reported parameters
OUT_LIMIT = OUT_STATS + N_STATS  # 5 values: where the polish ended
OUT_LIMIT_LOGLIK = OUT_LIMIT + 5
OUT_LIMIT_STATS = OUT_LIMIT_LOGLIK + 1  # N_STATS values at the limit
OUT_POLISH_EVALS = OUT_LIMIT_STATS + N_STATS
OUT_POLISH_DONE = OUT_POLISH_EVALS + 1  # 1 when the polish met its tolerance, else 0
OUT_SCORE_CHECKS = OUT_POLISH_DONE + 1  # observed-information passes of the score rule
OUT_WIDTH = OUT_SCORE_CHECKS + 1

# Trace columns: iteration, pi, mu1, mu2, sigma1, sigma2, loglik, diff_loglik, loglik_evals.
TRACE_WIDTH = 9
_TRACE_TYPE = types.float64[:, :]


@dataclass
class EngineOutput:
    """One entry per stopping rule asked for: arrays over the rows of the batch."""

    params: np.ndarray  # rows x rules x 5
    loglik: np.ndarray
    loglik_start: np.ndarray
    status: np.ndarray
    iterations: np.ndarray
    loglik_evals: np.ndarray
    rate_empirical: np.ndarray
    stats: np.ndarray  # rows x rules x N_STATS, the E-step's statistics at the reported params
    limit: np.ndarray  # rows x rules x 5
    limit_loglik: np.ndarray
    limit_stats: np.ndarray
    polish_evals: np.ndarray
    polish_done: np.ndarray
    score_checks: np.ndarray  # rows x rules: information passes the score rule made
    path_evals: np.ndarray  # rows: E-steps of the shared path (the rule that stopped last)
    traces: list[np.ndarray | None]  # per row: the whole path's trace, or None
    # Wall time of the compiled call and of unpacking its output; never of loading the engine.
    seconds: float


@njit(**_JIT)
def _invalid(model, p, sigma_floor):
    """The status a parameter vector forces, or _RUNNING. A vanishing or collapsing component
    also makes the next statistics 0/0, so the specific diagnoses come before the generic."""
    if p[0] < PI_EPS or p[0] > 1.0 - PI_EPS:
        return BOUNDARY
    if model != 0 and (p[3] < sigma_floor or p[4] < sigma_floor):
        return DEGENERATE
    for k in range(5):
        if not math.isfinite(p[k]):
            return NONFINITE
    return _RUNNING


@njit(inline="always", **_JIT)
def _estep(model, y, ratio, base, p, stats, work):
    if model == 0:
        return pi_estep(ratio, base, p[0], stats, work)
    return mixture_estep(y, p, stats, work)


@njit(**_JIT)
def _to_unconstrained(p, u):
    u[0] = math.log(p[0]) - math.log1p(-p[0])
    u[1] = p[1]
    u[2] = p[2]
    u[3] = math.log(p[3])
    u[4] = math.log(p[4])


@njit(**_JIT)
def _from_unconstrained(u, p):
    p[0] = 1.0 / (1.0 + math.exp(-u[0]))
    p[1] = u[1]
    p[2] = u[2]
    p[3] = math.exp(u[3])
    p[4] = math.exp(u[4])


@njit(**_JIT)
def _record(trace, row, p, loglik, diff, evals):
    """Store one iterate, doubling the trace when full (its length is not known in advance:
    max_iterations may be huge while the fit stops early)."""
    if row >= trace.shape[0]:
        grown = np.empty((2 * trace.shape[0], TRACE_WIDTH))
        grown[: trace.shape[0]] = trace
        trace = grown
    trace[row, 0] = row
    for k in range(5):
        trace[row, 1 + k] = p[k]
    trace[row, 6] = loglik
    trace[row, 7] = diff
    trace[row, 8] = evals
    return trace


@njit(inline="always", **_JIT)
def _squarem_step_length(u0, u1, u2, step_max):
    """SQUAREM's step length (scheme S3: -|r| / |v|, r = u1 - u0, v = u2 - 2 u1 + u0), clamped
    to [-step_max, -1]; -1 (no extrapolation) where it is not finite. A function of its own
    (like `_extrapolate`) so that the compiled fma stays in compiled code when tests run
    `_iterate`'s pure-Python twin."""
    rr = 0.0
    vv = 0.0
    for k in range(5):
        r = u1[k] - u0[k]
        v = (u2[k] - u1[k]) - r
        rr = _fma(r, r, rr)
        vv = _fma(v, v, vv)
    alpha = -math.sqrt(rr / vv) if vv > 0.0 else -1.0
    if not math.isfinite(alpha):
        alpha = -1.0
    return min(-1.0, max(alpha, -step_max))


@njit(inline="always", **_JIT)
def _extrapolate(u0, u1, u2, alpha, ux):
    """ux = u0 - 2 alpha r + alpha^2 v, SQUAREM's squared extrapolation."""
    for k in range(5):
        r = u1[k] - u0[k]
        v = (u2[k] - u1[k]) - r
        ux[k] = _fma(alpha * alpha, v, _fma(-2.0 * alpha, r, u0[k]))


# The E-steps of one SQUAREM iteration (`_iterate`): at its first EM step, at the extrapolated
# point (whose EM step is the candidate), at the candidate, and at the fallback to its second EM
# step.
_STAGE_FIRST, _STAGE_EXTRAPOLATED, _STAGE_CANDIDATE, _STAGE_RESULT = range(4)


@njit(inline="always", **_JIT)
def _iterate(
    model,
    method,
    n,
    y,
    ratio,
    base,
    p,
    stats,
    loglik,
    new,
    new_stats,
    work,
    floor,
    step_max,
    scratch,
):
    """One iteration from p (with its E-step statistics and log-likelihood) into new and
    new_stats; returns (new log-likelihood, E-steps spent, SQUAREM's next step bound).

    SQUAREM (Varadhan & Roland 2008, scheme S3, as their R package's squarem1): two EM steps, a
    squared extrapolation in unconstrained coordinates (logit pi, log sigma) with the step
    length clamped to [1, step_max], one stabilising EM step from the extrapolated point, and a
    fallback to the second EM step unless the result is valid and does not lower the
    log-likelihood. Its E-steps are stages of one loop around one `_estep` (`_STAGE_*`): each
    call of `_estep` inlines the whole E-step, and a call per E-step (six copies in `fit_one`
    instead of three) made the engine take more than twice as long to compile (267 s against
    121 s, same results)."""
    if method == 0:
        mstep(model, n, p, stats, new)
        return _estep(model, y, ratio, base, new, new_stats, work), 1, step_max
    p1, p2, u0, u1, u2, ux = scratch[0], scratch[1], scratch[2], scratch[3], scratch[4], scratch[5]
    mstep(model, n, p, stats, p1)
    point, stage = p1, _STAGE_FIRST
    evals = 0
    at_bound = False
    while True:
        value = _estep(model, y, ratio, base, point, new_stats, work)
        evals += 1
        if stage == _STAGE_FIRST:
            mstep(model, n, p1, new_stats, p2)
            _to_unconstrained(p, u0)
            _to_unconstrained(p1, u1)
            _to_unconstrained(p2, u2)
            alpha = _squarem_step_length(u0, u1, u2, step_max)
            at_bound = alpha == -step_max
            if alpha >= -1.01:
                new[:] = p2
                point, stage = new, _STAGE_CANDIDATE
                continue
            _extrapolate(u0, u1, u2, alpha, ux)
            _from_unconstrained(ux, p1)
            if _invalid(model, p1, floor) == _RUNNING:
                point, stage = p1, _STAGE_EXTRAPOLATED
                continue
        elif stage == _STAGE_EXTRAPOLATED:
            mstep(model, n, p1, new_stats, new)
            if _invalid(model, new, floor) == _RUNNING:
                point, stage = new, _STAGE_CANDIDATE
                continue
        elif stage == _STAGE_CANDIDATE:
            if math.isfinite(value) and value >= loglik:
                if at_bound:
                    step_max *= SQUAREM_STEP_FACTOR
                return value, evals, step_max
        else:
            if at_bound:
                step_max = max(1.0, step_max / SQUAREM_STEP_FACTOR)
            return value, evals, step_max
        # The extrapolation left the parameter space or lowered the log-likelihood.
        new[:] = p2
        point, stage = new, _STAGE_RESULT


@njit(inline="always", **_JIT)
def _judge(model, n, new, new_loglik, loglik, floor):
    """The status an iteration's result forces (a rejected step is not kept), or _RUNNING."""
    status = _invalid(model, new, floor)
    if status == _RUNNING and not math.isfinite(new_loglik):
        status = NONFINITE
    if status == _RUNNING and new_loglik - loglik < -DECREASE_SLACK_REL * (abs(loglik) + n):
        status = DECREASED
    return status


@njit(inline="always", **_JIT)
def _stops(rule, tolerance, loglik, diff, last_diff, change):
    """Whether a cheap rule stops here (`change`: the largest parameter change of the step);
    the score rule is decided in fit_one, where its checks are spaced."""
    if rule == STOP_ABS:
        return diff < tolerance
    if rule == STOP_REL:
        return diff < tolerance * abs(loglik)
    if rule == STOP_PARAM:
        return change < tolerance
    if diff <= 0.0:
        return True
    if not last_diff > 0.0:
        return False
    rate = diff / last_diff
    if rate >= 1.0:
        return False
    return diff / (1.0 - rate) < tolerance


@njit(inline="always", **_JIT)
def _snapshot(out, p, loglik, loglik_start, status, iteration, evals, rate, stats):
    out[OUT_PARAMS : OUT_PARAMS + 5] = p
    out[OUT_LOGLIK] = loglik
    out[OUT_LOGLIK_START] = loglik_start
    out[OUT_STATUS] = status
    out[OUT_ITERATIONS] = iteration
    out[OUT_EVALS] = evals
    out[OUT_RATE] = rate
    out[OUT_STATS : OUT_STATS + N_STATS] = stats


@njit(**_JIT)
def newton_decrement(y, p, stats, model, complete, missing):
    """sqrt(g' I^-1 g) at p (g the score, from the E-step's statistics at p; I the observed
    information by Louis' identity), or -1 where I is not positive definite. I is scaled to
    unit diagonal first (as information.py does) and factored by Cholesky; a pivot below
    1e-10 counts as not positive definite."""
    n = y.size
    k = 1 if model == 0 else (4 if model == 1 else 5)
    g = np.empty(5)
    pi = p[0]
    if model == 0:
        g[0] = stats[0] / pi - (n - stats[0]) / (1.0 - pi)
        complete[0, 0, 0] = stats[0] / (pi * pi) + (n - stats[0]) / ((1.0 - pi) * (1.0 - pi))
        missing[0, 0, 0] = stats[1] / (pi * (1.0 - pi)) ** 2
    else:
        w1 = stats[0]
        w2 = stats[3]
        g[0] = w1 / pi - w2 / (1.0 - pi)
        g[1] = w1 * stats[1] / p[3]
        g[2] = w2 * stats[4] / p[4]
        if model == 2:
            g[3] = w1 * (stats[2] - 1.0) / p[3]
            g[4] = w2 * (stats[5] - 1.0) / p[4]
        else:
            g[3] = (w1 * (stats[2] - 1.0) + w2 * (stats[5] - 1.0)) / p[3]
        moments = np.empty((1, N_STATS))
        information_sums(y.reshape((1, n)), p.reshape((1, 5)), model, complete, missing, moments)
    a = np.empty((k, k))
    scale = np.empty(k)
    for i in range(k):
        d = complete[0, i, i] - missing[0, i, i]
        if not (d > 0.0 and math.isfinite(d)):
            return -1.0
        scale[i] = 1.0 / math.sqrt(d)
    for i in range(k):
        for j in range(k):
            a[i, j] = (complete[0, i, j] - missing[0, i, j]) * scale[i] * scale[j]
    # In place: a's lower triangle becomes the Cholesky factor L of the scaled information.
    for j in range(k):
        pivot = a[j, j]
        for m in range(j):
            pivot -= a[j, m] * a[j, m]
        if not pivot > 1e-10:
            return -1.0
        a[j, j] = math.sqrt(pivot)
        for i in range(j + 1, k):
            v = a[i, j]
            for m in range(j):
                v -= a[i, m] * a[j, m]
            a[i, j] = v / a[j, j]
    # g' I^-1 g = |L^-1 D g|^2 with D the scaling.
    total = 0.0
    solved = np.empty(k)
    for i in range(k):
        v = g[i] * scale[i]
        for m in range(i):
            v -= a[i, m] * solved[m]
        solved[i] = v / a[i, i]
        total += solved[i] * solved[i]
    return math.sqrt(total) if math.isfinite(total) else -1.0


@njit(inline="always", **_JIT)
def _next_score_check(method, iteration, loglik, decrement, tolerance, diff, last_diff):
    """When the score rule looks again after a check that found `decrement` >= tolerance (-1:
    I not positive definite): at the returned iteration, or (SQUAREM) as soon as the
    log-likelihood reaches the returned value, whichever comes first.

    Plain EM's decrement shrinks by its rate rho = sqrt(d_k / d_(k-1)) per iteration, so it
    cannot reach the tolerance in fewer than about log(tol / decrement) / log(rho) iterations;
    the rule waits half of that (the rate still drifts). SQUAREM follows no such rate. Near a
    maximum the gain still to come is decrement^2 / 2, so no iterate passes before the
    log-likelihood has risen by (decrement^2 - tol^2) / 2: SQUAREM looks again after half
    that rise. Further out the quadratic model overstates the gain (by up to 6x on the slow
    cell's ridges, where the check would then wait past the passing iterate), so SQUAREM also
    looks again after a tenth of its iterations so far: a stop is late by at most a tenth,
    and a fit makes about log(iterations) / log(1.1) checks, not one per iteration. Where I
    was not positive definite (a ridge the iteration may crawl along for thousands of
    iterations) both look again after a tenth of their iterations so far."""
    geometric = iteration + 1 + iteration // 10
    if decrement < 0.0:
        return geometric, np.inf
    if method != 0:
        rise = 0.25 * (decrement * decrement - tolerance * tolerance)
        return geometric, loglik + rise if math.isfinite(rise) else -np.inf
    if not (diff > 0.0 and last_diff > diff) or decrement == 0.0:
        return iteration + 1, np.inf
    rho = math.sqrt(diff / last_diff)
    wait = 0.5 * math.log(tolerance / decrement) / math.log(rho)
    if not math.isfinite(wait) or wait < 1.0:
        return iteration + 1, np.inf
    return iteration + int(min(wait, 1e9)), np.inf


@njit(**_JIT)
def fit_one(y, start, model, method, rules, tolerances, max_iterations, sigma_floor, traced, out):
    """Fit one dataset under each stopping rule of `rules` (codes, with their `tolerances`).
    The rules share one path of iterates, which does not depend on the rule: the path runs
    until every rule has stopped (or it ends), and out[r] (see OUT_*) receives rule r's fit at
    its own stop, exactly what a fit with that rule alone gives. Then the path's limit is found
    once: SQUAREM continues from the furthest converged stop (the one nearest the limit) and
    every converged rule gets that limit (OUT_LIMIT*): the limit belongs to the path, not to a
    rule, so a second rule costs only its own extra iterations. Returns the path's trace (rows
    0..last iteration) or an empty array when not traced.

    Path and polishes go through one loop with one call of `_iterate`: the E-step is inlined
    once, which halves the compile time, and its work arrays stay allocations of this function
    (see make_work)."""
    n = y.size
    n_rules = rules.size
    work = make_work(n)
    p = start.copy()
    new = np.empty(5)
    stats = np.empty(N_STATS)
    new_stats = np.empty(N_STATS)
    scratch = np.empty((6, 5))
    ratio = np.empty(n if model == 0 else 0)
    base = 0.0
    if model == 0:
        base = pi_prepare(y, p, ratio, work)
    fill_tail(ratio if model == 0 else y, work[0].size, work[9])
    trace = np.empty((min(max_iterations + 1, 256) if traced else 0, TRACE_WIDTH))

    loglik = _estep(model, y, ratio, base, p, stats, work)
    loglik_start = loglik
    evals = 1
    if traced:
        trace = _record(trace, 0, p, loglik, np.nan, evals)
    status = _invalid(model, p, sigma_floor)
    if status == _RUNNING and not math.isfinite(loglik):
        status = NONFINITE
    iteration = 0
    last_diff = np.nan
    step_max = 1.0
    stopped = np.zeros(n_rules, np.bool_)
    left = n_rules
    # -1 while on the path; then the rule whose stop is polished, with its own E-step count.
    polishing = -1
    polish_evals = 0
    polish_tolerance = 0.0
    step_method = method
    next_check = np.zeros(n_rules, np.int64)
    check_loglik = np.full(n_rules, np.inf)
    checks = np.zeros(n_rules, np.int64)
    complete = np.empty((1, 5, 5))
    missing = np.empty((1, 5, 5))

    while True:
        if polishing < 0 and (status != _RUNNING or iteration >= max_iterations or left == 0):
            if status == _RUNNING:
                status = MAX_ITERATIONS
            for r in range(n_rules):
                if not stopped[r]:
                    _snapshot(
                        out[r], p, loglik, loglik_start, status, iteration, evals, np.nan, stats
                    )
                _limit(
                    out[r],
                    out[r, OUT_PARAMS : OUT_PARAMS + 5],
                    out[r, OUT_LOGLIK],
                    out[r, OUT_STATS : OUT_STATS + N_STATS],
                    0,
                    False,
                )
            polishing = _furthest_converged(out)
            if polishing == n_rules:
                break
            loglik = _polish_from(out[polishing], p, stats)
            polish_tolerance = POLISH_TOL_REL * (abs(loglik) + n)
            polish_evals = 0
            step_max = 1.0
            step_method = 1
        new_loglik, spent, step_max = _iterate(
            model,
            step_method,
            n,
            y,
            ratio,
            base,
            p,
            stats,
            loglik,
            new,
            new_stats,
            work,
            sigma_floor,
            step_max,
            scratch,
        )
        verdict = _judge(model, n, new, new_loglik, loglik, sigma_floor)
        diff = new_loglik - loglik
        if polishing >= 0:
            polish_evals += spent
            done = verdict == _RUNNING and diff < polish_tolerance
            if verdict == _RUNNING:
                p[:] = new
                stats[:] = new_stats
                loglik = new_loglik
            if done or verdict != _RUNNING or polish_evals >= POLISH_MAX_EVALS:
                _limit(out[polishing], p, loglik, stats, polish_evals, done)
                _share_limit(out, polishing)
                break
            continue

        iteration += 1
        evals += spent
        status = verdict
        if status != _RUNNING:
            # The rejected step is not kept: the fit reports its last valid iterate.
            iteration -= 1
            continue
        change = 0.0
        for j in range(5):
            change = max(change, abs(new[j] - p[j]))
        p[:] = new
        stats[:] = new_stats
        loglik = new_loglik
        if traced:
            trace = _record(trace, iteration, p, loglik, diff, evals)
        for r in range(n_rules):
            if stopped[r]:
                continue
            if rules[r] == STOP_SCORE:
                tol = tolerances[r]
                due = iteration >= next_check[r] or loglik >= check_loglik[r]
                if not (due and diff < tol * tol):
                    continue
                checks[r] += 1
                decrement = newton_decrement(y, p, stats, model, complete, missing)
                if not (decrement >= 0.0 and decrement < tol):
                    next_check[r], check_loglik[r] = _next_score_check(
                        method, iteration, loglik, decrement, tol, diff, last_diff
                    )
                    continue
            elif not _stops(rules[r], tolerances[r], loglik, diff, last_diff, change):
                continue
            # Parameter errors shrink by the rate per iteration, so log-likelihood increments
            # (quadratic in the error) shrink by its square. SQUAREM's follow no such rate.
            rate = np.nan
            if method == 0 and diff > 0.0 and last_diff > 0.0:
                rate = math.sqrt(diff / last_diff)
            _snapshot(out[r], p, loglik, loglik_start, CONVERGED, iteration, evals, rate, stats)
            stopped[r] = True
            left -= 1
        last_diff = diff
    for r in range(n_rules):
        out[r, OUT_SCORE_CHECKS] = checks[r]
    return trace[: iteration + 1] if traced else trace


@njit(inline="always", **_JIT)
def _stopped_by_rule_or_cap(status):
    return status == CONVERGED or status == MAX_ITERATIONS


@njit(inline="always", **_JIT)
def _furthest_converged(out):
    """The rule whose stop (one a rule or the cap made: only those are polished) came last on
    the path, the first such on ties; the number of rules when there is none."""
    found = out.shape[0]
    for r in range(out.shape[0]):
        if _stopped_by_rule_or_cap(out[r, OUT_STATUS]) and (
            found == out.shape[0] or out[r, OUT_ITERATIONS] > out[found, OUT_ITERATIONS]
        ):
            found = r
    return found


@njit(inline="always", **_JIT)
def _share_limit(out, polished):
    """Give every rule the path's rule or cap stopped the limit found from rule `polished`'s
    stop (the score-check count stays each rule's own)."""
    for r in range(out.shape[0]):
        if r != polished and _stopped_by_rule_or_cap(out[r, OUT_STATUS]):
            out[r, OUT_LIMIT:OUT_SCORE_CHECKS] = out[polished, OUT_LIMIT:OUT_SCORE_CHECKS]


@njit(inline="always", **_JIT)
def _polish_from(out, p, stats):
    """Load a rule's stop into p and stats; returns its log-likelihood."""
    p[:] = out[OUT_PARAMS : OUT_PARAMS + 5]
    stats[:] = out[OUT_STATS : OUT_STATS + N_STATS]
    return out[OUT_LOGLIK]


@njit(inline="always", **_JIT)
def _limit(out, p, loglik, stats, polish_evals, done):
    """Where a rule's polish ended (its stop itself, with no E-step, for fits not polished)."""
    limit = p.copy()
    limit_stats = stats.copy()
    out[OUT_LIMIT : OUT_LIMIT + 5] = limit
    out[OUT_LIMIT_LOGLIK] = loglik
    out[OUT_LIMIT_STATS : OUT_LIMIT_STATS + N_STATS] = limit_stats
    out[OUT_POLISH_EVALS] = polish_evals
    out[OUT_POLISH_DONE] = 1.0 if done else 0.0


@njit(**_JIT)
def fit_rows(y, start, model, method, rules, tolerances, max_iterations, sigma_floor, traced, out):
    """fit_one for every row of y; returns the traced rows' traces stacked in row order (row r's
    has its last iteration + 1 rows). The whole batch runs in compiled code without the GIL, so
    fit jobs running as threads of one process do not wait on each other. This is the engine's
    one entry point from Python: a second would compile fit_one, by far the largest function,
    again. It returns one array, not a list of them: a numba list reaching Python compiles its
    accessors afresh in every process (0.2 s)."""
    kept = List.empty_list(_TRACE_TYPE)
    total = 0
    for r in range(y.shape[0]):
        trace = fit_one(
            y[r],
            start[r],
            model,
            method,
            rules,
            tolerances,
            max_iterations,
            sigma_floor[r],
            traced[r],
            out[r],
        )
        if traced[r]:
            kept.append(trace)
            total += trace.shape[0]
    stacked = np.empty((total, TRACE_WIDTH))
    at = 0
    for trace in kept:
        stacked[at : at + trace.shape[0]] = trace
        at += trace.shape[0]
    return stacked


def load(dispatcher, args: tuple) -> None:
    """Give `dispatcher` machine code for exactly these arguments' types now: loaded from
    numba's cache, or compiled where the cache has none for this CPU. A clock started after
    this times the run alone (issue 10: no fit time includes loading or compiling)."""
    if not hasattr(dispatcher, "overloads"):  # a plain Python function (tests run py_func)
        return
    signature = tuple(typeof(a) for a in args)
    if signature not in dispatcher.overloads:
        dispatcher.compile(signature)


def run_args(
    y: np.ndarray,
    start: np.ndarray,
    model: str,
    method: str,
    stopping: tuple[str, ...],
    tolerances: np.ndarray,
    max_iterations: int,
    sigma_floor: np.ndarray,
    traced: np.ndarray,
) -> tuple:
    """The arguments of `fit_rows`, with the types it is compiled for (emsim.warmup builds its
    warm-up call here too, so set-up compiles the very specialization a fit uses)."""
    n_rows = y.shape[0]
    rules = np.array([STOPPING_CODES[rule] for rule in stopping], dtype=np.int64)
    return (
        y,
        start,
        MODEL_CODES[model],
        METHOD_CODES[method],
        rules,
        np.ascontiguousarray(tolerances, dtype=np.float64),
        np.int64(max_iterations),
        sigma_floor,
        traced,
        np.empty((n_rows, rules.size, OUT_WIDTH)),
    )


def run(
    y: np.ndarray,
    start: np.ndarray,
    model: str,
    method: str,
    stopping: tuple[str, ...],
    tolerances: np.ndarray,
    max_iterations: int,
    sigma_floor: np.ndarray,
    traced: np.ndarray,
) -> EngineOutput:
    args = run_args(
        y, start, model, method, stopping, tolerances, max_iterations, sigma_floor, traced
    )
    load(fit_rows, args)
    began = time.perf_counter()
    with np.errstate(all="ignore"):
        stacked = fit_rows(*args)
    out = args[-1]
    n_rows = y.shape[0]
    iterations = out[:, :, OUT_ITERATIONS].astype(np.int64)
    traces: list[np.ndarray | None] = [None] * n_rows
    if traced.any():
        ends = np.cumsum(iterations[traced].max(axis=1) + 1)
        for r, piece in zip(np.flatnonzero(traced), np.split(stacked, ends[:-1]), strict=True):
            traces[r] = piece
    evals = out[:, :, OUT_EVALS].astype(np.int64)
    return EngineOutput(
        params=out[:, :, OUT_PARAMS : OUT_PARAMS + 5],
        loglik=out[:, :, OUT_LOGLIK],
        loglik_start=out[:, :, OUT_LOGLIK_START],
        status=np.array(STATUSES, dtype=object)[out[:, :, OUT_STATUS].astype(np.int64)],
        iterations=iterations,
        loglik_evals=evals,
        rate_empirical=out[:, :, OUT_RATE],
        stats=out[:, :, OUT_STATS : OUT_STATS + N_STATS],
        limit=out[:, :, OUT_LIMIT : OUT_LIMIT + 5],
        limit_loglik=out[:, :, OUT_LIMIT_LOGLIK],
        limit_stats=out[:, :, OUT_LIMIT_STATS : OUT_LIMIT_STATS + N_STATS],
        polish_evals=out[:, :, OUT_POLISH_EVALS].astype(np.int64),
        polish_done=out[:, :, OUT_POLISH_DONE] > 0.5,
        score_checks=out[:, :, OUT_SCORE_CHECKS].astype(np.int64),
        path_evals=evals.max(axis=1),
        traces=traces,
        seconds=time.perf_counter() - began,
    )
