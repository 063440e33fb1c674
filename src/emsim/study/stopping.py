"""Can the stopping rule be trusted? The study's per-fit diagnostics of where fits stopped,
reduced to two small tables that the figures and the report read (docs/design.md section 6):

- ``stopping_distance``: how far the fits that a stopping rule ended lie from the limit of
  their own iteration, ``distance_to_limit`` in the limit's standard errors, as counts on
  log10 bins per model x method x stopping rule x status;
- ``zip_pi``: every usable fit's estimate and SE of pi for the derived start (``best``, else
  the first start), the raw material of a zip plot of the Wald intervals (Morris, White &
  Crowther 2019, Fig. 5).

Both are built one cell at a time while `summary.summarise` streams the fits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emsim.study.measures import BEST, CONVERGED, with_stopping
from emsim.study.schema import CELL_KEYS, CELL_PARAMS, FIT_ID, PROCEDURE

# Statuses of the fits the rule ended (the others never reached it).
STOPPED_BY_RULE: tuple[str, ...] = (CONVERGED, "premature", "saddle")
# log10 bins of distance_to_limit: below 1e-8 SE counts as at the limit (the polish itself is
# only that precise), above 1e4 SE as far beyond any threshold.
LOG10_EDGES = np.round(np.arange(-8.0, 4.0001, 0.25), 6)
DISTANCE_COLUMNS = (*PROCEDURE, "status", "log10_lo", "log10_hi", "count")
ZIP_COLUMNS = (*CELL_KEYS, *FIT_ID, "replicate", "est_pi", "se_pi")


def distance_counts(fits: pd.DataFrame) -> pd.DataFrame:
    """Counts of log10(distance_to_limit) per model x method x stopping rule x status over the
    fits the rule ended (starts other than the copied ``best``), with open end bins."""
    fits = with_stopping(fits)
    if fits.empty or "distance_to_limit" not in fits.columns:
        return _empty(DISTANCE_COLUMNS)
    rows = fits[fits["status"].isin(STOPPED_BY_RULE) & (fits["start"] != BEST)]
    distance = rows["distance_to_limit"].astype(float)
    rows = rows[np.isfinite(distance)]
    if rows.empty:
        return _empty(DISTANCE_COLUMNS)
    with np.errstate(divide="ignore"):
        log10 = np.log10(rows["distance_to_limit"].to_numpy(dtype=float))
    clipped = np.clip(log10, LOG10_EDGES[0], LOG10_EDGES[-1])
    index = np.clip(
        np.searchsorted(LOG10_EDGES, clipped, side="right") - 1, 0, len(LOG10_EDGES) - 2
    )
    binned = rows.loc[:, [*PROCEDURE, "status"]].assign(_bin=index)
    counts = binned.groupby([*PROCEDURE, "status", "_bin"]).size()
    out = counts.rename("count").reset_index()
    out["log10_lo"] = LOG10_EDGES[out["_bin"].to_numpy()]
    out["log10_hi"] = LOG10_EDGES[out["_bin"].to_numpy() + 1]
    out["count"] = out["count"].astype(np.int64)
    return out.loc[:, list(DISTANCE_COLUMNS)]


def merge_distance_counts(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Sum per-cell counts into the study's."""
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty(DISTANCE_COLUMNS)
    keys = list(DISTANCE_COLUMNS[:-1])
    total = pd.concat(parts, ignore_index=True).groupby(keys, sort=True)["count"].sum()
    return total.reset_index().loc[:, list(DISTANCE_COLUMNS)]


def zip_rows(fits: pd.DataFrame) -> pd.DataFrame:
    """The usable fits' estimate and SE of pi for one start (``best``, else the first)."""
    fits = with_stopping(fits)
    if fits.empty:
        return _empty(ZIP_COLUMNS)
    starts = list(dict.fromkeys(fits["start"]))
    start = BEST if BEST in starts else starts[0]
    se = fits["se_pi"].astype(float)
    keep = (fits["start"] == start) & (fits["status"] == CONVERGED) & np.isfinite(se)
    return fits.loc[keep, list(ZIP_COLUMNS)].reset_index(drop=True)


def merge_zip_rows(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else _empty(ZIP_COLUMNS)


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    ints = {"count", "n", "replicate"}
    floats = {"log10_lo", "log10_hi", "est_pi", "se_pi", *CELL_PARAMS[1:]}
    return pd.DataFrame(
        {
            c: pd.Series(dtype="int64" if c in ints else "float64" if c in floats else "str")
            for c in columns
        }
    )
