"""The summary's compiled group-by kernels (`emsim.study.grouping`) against pandas' own group-by,
bit for bit: a cell's measures must stay the values pandas gave them (issue 22 replaced the
pandas group-bys of `measures._aggregate_pieces` by these kernels for speed only)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emsim.study.grouping import REDUCTIONS, grouped_reductions


def first_appearance_codes(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0, 1, ... in order of first appearance (as `group_codes` numbers)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse]


def adversarial(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    """Values whose sums need the compensation (magnitudes 1e-8 to 1e8 around large offsets),
    with NaN (skipped), and infinities (which reset the compensation) in some columns."""
    scale = 10.0 ** rng.integers(-8, 9, size=(rows, columns))
    values = rng.normal(size=(rows, columns)) * scale
    values += rng.choice([0.0, 1e6, -3.3], size=(rows, columns))
    values[rng.random((rows, columns)) < rng.random() * 0.5] = np.nan
    values[:, 0][rng.random(rows) < 0.02] = np.inf
    return values


def pandas_reduction(values: np.ndarray, codes: np.ndarray, how: str) -> np.ndarray:
    frame = pd.DataFrame(values)
    return getattr(frame.groupby(codes, sort=False), how)().to_numpy()


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("trial", range(40))
def test_kernels_give_pandas_group_by_values_bit_for_bit(trial):
    rng = np.random.default_rng(trial)
    rows = int(rng.integers(3, 3000))
    kinds = int(rng.integers(2, 60))
    labels = rng.integers(0, kinds, rows)
    # Groups that are not contiguous (codes 0, 1, ..., 0): contiguous ones take pandas' other
    # path (ufunc.reduceat), and `measures._group_moments` never gives those to the kernels.
    labels[1] = (labels[0] + 1) % kinds
    labels[-1] = labels[0]
    codes = first_appearance_codes(labels)
    assert not np.all(np.diff(codes) >= 0)
    values = adversarial(rng, rows, int(rng.integers(1, 6)))
    n_groups = int(codes.max()) + 1
    # All at once (one pass) and each alone must both be pandas'.
    together = grouped_reductions(values, codes, n_groups, REDUCTIONS)
    for how in REDUCTIONS:
        expected = pandas_reduction(values, codes, how)
        assert same_bits(together[how], expected), how
        assert same_bits(grouped_reductions(values, codes, n_groups, [how])[how], expected), how
    flags = (values > 0).astype(np.int64)
    summed = grouped_reductions(flags, codes, n_groups, ["sum"])["sum"]
    assert same_bits(summed, pandas_reduction(flags, codes, "sum"))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 4),
            st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(np.nan)),
        ),
        min_size=2,
        max_size=40,
    )
)
def test_kernels_agree_with_pandas_on_small_groups(pairs):
    """Small groups, single values, all-NaN groups, infinities of both signs, signed zeros."""
    labels = np.array([label for label, _ in pairs])
    codes = first_appearance_codes(labels)
    if np.all(np.diff(codes) >= 0):
        return  # pandas' contiguous-groups path, which the kernels do not stand in for
    values = np.array([[value] for _, value in pairs])
    n_groups = int(codes.max()) + 1
    with np.errstate(all="ignore"):
        got = grouped_reductions(values, codes, n_groups, REDUCTIONS)
    for how in REDUCTIONS:
        expected = pandas_reduction(values, codes, how)
        assert same_bits(got[how], expected), (how, got[how], expected)
