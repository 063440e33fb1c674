"""The E-step's sums are one fixed pairwise tree per block (engine._tree_sum's docstring), the
same whatever the data length, CPU or vector width: results must not depend on how the engine
folds or fuses the tree's levels. Checked bit for bit against the tree written out in numpy over
the engine's own per-point terms, for lengths that take every path of mixture_estep (whole
blocks, a short last block of more and of at most half a block, several blocks)."""

import math

import numpy as np
import pytest
from numba import njit

from emsim import engine


@njit(cache=False)
def _point_terms(y, p):
    """Each point's eight E-step terms, as mixture_estep computes them."""
    mu1, mu2, inv1, inv2, c1, c2 = engine._mixture_constants(p)
    out = np.empty((y.size, 8))
    for i in range(y.size):
        terms = engine._mixture_point(y[i], mu1, mu2, inv1, inv2, c1, c2)
        for k in range(8):
            out[i, k] = terms[k]
    return out


@njit(cache=False)
def _engine_estep(y, p, stats):
    work = engine.make_work(y.size)
    engine.fill_tail(y, work[0].size, work[9])
    return engine.mixture_estep(y, p, stats, work)


def _tree(values: np.ndarray, size: int, pad: float, product: bool) -> float:
    """The documented tree: pad to `size`, fold the upper half onto the lower down to 8
    lanes, then ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7))."""
    t = np.full(size, pad)
    t[: values.size] = values
    combine = np.multiply if product else np.add
    while t.size > 8:
        t = combine(t[: t.size // 2], t[t.size // 2 :])
    pairs = combine(t[0::2], t[1::2])
    quads = combine(pairs[0::2], pairs[1::2])
    return float(combine(quads[0], quads[1]))


def _reference_estep(y: np.ndarray, p: np.ndarray) -> tuple[float, np.ndarray]:
    terms = _point_terms(y, p)
    size = engine._block_size(y.size)
    totals = np.zeros(8)
    for lo in range(0, y.size, size):
        block = terms[lo : lo + size]
        totals[1] += math.log(_tree(block[:, 1], size, 1.0, product=True))
        for k in (0, 2, 3, 4, 5, 6, 7):
            totals[k] += _tree(block[:, k], size, 0.0, product=False)
    top, log_part, w1, z1, zz1, w2, z2, zz2 = totals
    return top + log_part, np.array([w1, z1 / w1, zz1 / w1, w2, z2 / w2, zz2 / w2])


@pytest.mark.parametrize(
    "n", [5, 8, 9, 16, 17, 50, 64, 65, 72, 100, 127, 128, 300, 500, 512, 513, 1030, 1300]
)
def test_estep_sums_are_the_documented_tree_bit_for_bit(n):
    rng = np.random.default_rng(n)
    y = np.concatenate([rng.normal(0.0, 1.0, n - n // 4), rng.normal(2.5, 0.7, n // 4)])
    rng.shuffle(y)
    p = np.array([0.65, 0.1, 2.2, 1.1, 0.8])
    stats = np.empty(engine.N_STATS)
    loglik = _engine_estep(y, p, stats)
    expected_loglik, expected_stats = _reference_estep(y, p)
    assert loglik == expected_loglik
    np.testing.assert_array_equal(stats, expected_stats)


@pytest.mark.parametrize("size", [8, 16, 32, 64, 128, 256, 512])
def test_tree_folds_match_the_documented_tree(size):
    rng = np.random.default_rng(size)
    values = rng.normal(size=size) * 10.0 ** rng.integers(-8, 8, size=size)
    summed = njit(cache=False)(lambda t: engine._tree_sum(t, t.size))(values.copy())
    multiplied = njit(cache=False)(lambda t: engine._tree_product(t, t.size))(
        1.0 + np.abs(values) % 1.0
    )
    assert summed == _tree(values, size, 0.0, product=False)
    assert multiplied == _tree(1.0 + np.abs(values) % 1.0, size, 1.0, product=True)
