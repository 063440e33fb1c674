"""Group-bys of the summary on one integer code per row instead of several text keys.

A cell's measures group its fit rows by up to twelve keys, most of them Arrow-backed text, and
then by the reported parameter and set; pandas factorises every key again for every group-by,
which was most of a cell summary's time (issue 22: the tail). `group_codes` factorises the keys
once; a group-by on the codes runs the same pandas kernels over the same values in the same
order per group, so every mean, variance and sum is bit for bit the one the text keys gave.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


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
