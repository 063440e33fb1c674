"""Group-bys of the summary on one integer code per row instead of several text keys.

A cell's measures group its fit rows by up to twelve keys, most of them Arrow-backed text, and
then by the reported parameter and set; pandas factorises every key again for every group-by,
which was most of a cell summary's time (issue 22: the tail). `group_codes` factorises the keys
once; a group-by on the codes runs the same pandas kernels over the same values in the same
order per group, so every mean, variance and sum is bit for bit the one the text keys gave.

The group moments of a cell's measures (`measures._group_moments`: a few hundred columns of
per-fit pieces) are reduced by compiled loops (`grouped_reductions`) that are pandas' own
group-by kernels for data whose groups are not contiguous, written out: the same
Kahan-compensated sum (its compensation reset where an infinity made it NaN), Welford's running
variance with divisor count - 1, and NaN skipped, in row order, so every value is bit for bit
pandas' (`tests/test_grouping.py` holds them to pandas on adversarial data). Through pandas,
building the wide frame and one group-by per reduction was about half of a cell summary's time.
Compiled without `contract`: a fused multiply-add would round where pandas' C code rounds twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from numba import njit

_KERNEL = {"cache": True, "nogil": True, "error_model": "numpy"}


def group_codes(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """(code of each row's group, the groups' key values) for ``frame.groupby(keys, sort=False,
    dropna=False)``: codes are 0, 1, ... in order of the groups' first rows, and row g of the
    key table holds group g's keys as its first row has them (a missing key is a group)."""
    keys = list(keys)
    if frame.empty:
        return np.zeros(0, np.int64), frame.loc[:, keys].reset_index(drop=True)
    codes = frame.groupby(keys, sort=False, dropna=False).ngroup().to_numpy(np.int64)
    first = np.unique(codes, return_index=True)[1]
    return codes, frame.loc[:, keys].iloc[first].reset_index(drop=True)


def with_keys(keys: pd.DataFrame, aggregated: pd.DataFrame) -> pd.DataFrame:
    """The key table beside the per-code aggregates (indexed 0 .. groups - 1, as a group-by on
    `group_codes` returns them): the frame ``groupby(keys).agg(...).reset_index()`` gives."""
    body = aggregated.reset_index(drop=True)
    return pd.concat([keys.reset_index(drop=True), body], axis=1)


@njit(**_KERNEL)
def _running_moments(values, codes, n_groups):
    """Per group and column: (Kahan-compensated sum, count, Welford's sum of squared
    deviations) of the values that are not NaN, in row order; each as pandas' kernel keeps it."""
    n, k = values.shape
    total = np.zeros((n_groups, k))
    compensation = np.zeros((n_groups, k))
    counts = np.zeros((n_groups, k), np.int64)
    mean = np.zeros((n_groups, k))
    squares = np.zeros((n_groups, k))
    for i in range(n):
        g = codes[i]
        for j in range(k):
            value = values[i, j]
            if value == value:
                counts[g, j] += 1
                y = value - compensation[g, j]
                t = total[g, j] + y
                c = t - total[g, j] - y
                # An infinity makes the compensation NaN, which would turn the sum NaN.
                compensation[g, j] = c if c == c else 0.0
                total[g, j] = t
                before = mean[g, j]
                mean[g, j] += (value - before) / counts[g, j]
                squares[g, j] += (value - mean[g, j]) * (value - before)
    return total, counts, squares


@njit(**_KERNEL)
def _firsts(values, codes, n_groups):
    n, k = values.shape
    out = np.full((n_groups, k), np.nan)
    for i in range(n):
        g = codes[i]
        for j in range(k):
            value = values[i, j]
            if value == value and out[g, j] != out[g, j]:
                out[g, j] = value
    return out


def _as_rows(values: np.ndarray, dtype=np.float64) -> np.ndarray:
    """`values` as a C-ordered 2-d array of `dtype` (one column for 1-d values)."""
    return np.ascontiguousarray(values.reshape(len(values), -1), dtype=dtype)


REDUCTIONS = ("sum", "mean", "var", "count", "first")


def grouped_reductions(
    values: np.ndarray, codes: np.ndarray, n_groups: int, hows: Iterable[str]
) -> dict[str, np.ndarray]:
    """Per group (rows: `codes`, 0 .. n_groups - 1) and column of `values` (rows x columns),
    pandas' ``groupby(codes).<how>()`` for each of `hows` (`REDUCTIONS`), NaN skipped: ``sum``
    (integers exactly, as int64; floats by the compensated sum; 0 for a group without a
    value), ``mean`` (that sum over the count; NaN without a value), ``var`` (divisor count - 1;
    NaN for fewer than two values), ``count`` (int64) and ``first``. Every reduction but
    ``first`` comes from one pass over the values."""
    hows = list(dict.fromkeys(hows))
    out: dict[str, np.ndarray] = {}
    floats = _as_rows(values)
    if "first" in hows:
        out["first"] = _firsts(floats, codes, n_groups)
    if "sum" in hows and values.dtype.kind in "biu":
        integers = _as_rows(values, np.int64)
        out["sum"] = np.zeros((n_groups, integers.shape[1]), np.int64)
        np.add.at(out["sum"], codes, integers)  # integers: exact in any order
    moments = [how for how in hows if how not in out]
    if moments:
        total, counts, squares = _running_moments(floats, codes, n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            derived = {
                "sum": total,
                "count": counts,
                "mean": np.where(counts > 0, total / counts, np.nan),
                "var": np.where(counts > 1, squares / (counts - 1), np.nan),
            }
        out |= {how: derived[how] for how in moments}
    return out


def warm_kernels() -> tuple[str, ...]:
    """Compile (or load from numba's cache) every kernel for the types the reductions pass
    (`emsim warmup`, so that no summary job compiles them); the names of those compiled."""
    codes = np.zeros(1, np.int64)
    grouped_reductions(np.zeros(1), codes, 1, REDUCTIONS)
    kernels = (_running_moments, _firsts)
    return tuple(k.__name__ for k in kernels if sum(k.stats.cache_misses.values()))
