"""Can the stopping rule be trusted? The study's per-fit diagnostics of where fits stopped,
reduced to three small tables that the figures and the report read (docs/design.md section 6):

- ``stopping_distance``: how far the fits that a stopping rule or the iteration cap ended lie
  from the limit of their own iteration, ``distance_to_limit`` in the limit's standard errors,
  as counts on log10 bins per model x method x stopping rule x status;
- ``stopping_rules``: per cell x model x method x stopping rule over the real starts, the usable,
  premature, saddle and capped shares, the median distance and the E-steps per fit, each with
  its Monte Carlo SE (report section 9 and the stopping figure);
- ``zip_pi``: every usable fit's estimate and SE of pi for the derived start (``best``, else
  the first start), the raw material of a zip plot of the Wald intervals (Morris, White &
  Crowther 2019, Fig. 5).

All are built one cell at a time while `summary.summarise` streams the fits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emsim.study.grouping import group_codes, with_keys
from emsim.study.measures import BEST, CONVERGED, quantile_mcse, with_stopping
from emsim.study.schema import CELL_KEYS, FIT_ID, PROCEDURE

# Statuses of the fits a rule or the cap ended: each has the limit of its iteration and so a
# distance (docs/design.md section 1). The capped fits are in: where the rule never fires, how
# far the cap left the fit from its limit is the same question (the other statuses never
# reached a stop and have no distance).
STOPPED_BY_RULE: tuple[str, ...] = (CONVERGED, "premature", "saddle", "max_iterations")
# The shares of fits per status in `stopping_rules`, each with its binomial MCSE.
RULE_STATUSES: tuple[str, ...] = (CONVERGED, "premature", "saddle", "max_iterations")
RULE_COLUMNS: tuple[str, ...] = (
    *CELL_KEYS,
    *PROCEDURE,
    "n_fits",
    *(f"rate_{status}" for status in RULE_STATUSES),
    *(f"rate_{status}_mcse" for status in RULE_STATUSES),
    "n_distance",
    "distance_median",
    "distance_median_mcse",
    "loglik_evals_mean",
    "loglik_evals_mean_mcse",
    "loglik_evals_median",
    "loglik_evals_median_mcse",
)
# log10 bins of distance_to_limit: below 1e-8 SE counts as at the limit (the polish itself is
# only that precise), above 1e4 SE as far beyond any threshold.
LOG10_EDGES = np.round(np.arange(-8.0, 4.0001, 0.25), 6)
DISTANCE_COLUMNS = (*PROCEDURE, "status", "log10_lo", "log10_hi", "count")
ZIP_COLUMNS = (*CELL_KEYS, *FIT_ID, "replicate", "est_pi", "se_pi")


def distance_counts(fits: pd.DataFrame) -> pd.DataFrame:
    """Counts of log10(distance_to_limit) per model x method x stopping rule x status over the
    fits a rule or the cap ended (`STOPPED_BY_RULE`; starts other than the copied ``best``),
    with open end bins."""
    fits = with_stopping(fits)
    if fits.empty or "distance_to_limit" not in fits.columns:
        return _empty(DISTANCE_COLUMNS)
    stopped = fits["status"].isin(STOPPED_BY_RULE) & (fits["start"] != BEST)
    rows = fits.loc[stopped, [*PROCEDURE, "status", "distance_to_limit"]]
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


def median_bins(counts: pd.DataFrame) -> pd.DataFrame:
    """Per model x method x stopping rule of the `distance_counts` table, the bin holding the
    median distance of all its fits (``log10_lo``, ``log10_hi``, ``n_distance``): the study's
    median to a quarter decade, as the per-cell medians do not pool."""
    keys = list(PROCEDURE)
    if counts.empty:
        return pd.DataFrame(columns=[*keys, "log10_lo", "log10_hi", "n_distance"])
    bins = counts.groupby([*keys, "log10_lo", "log10_hi"], sort=True)["count"].sum().reset_index()
    grouped = bins.groupby(keys, sort=False)["count"]
    total = grouped.transform("sum")
    # The lower median's rank (1-based), (N + 1) // 2: the first bin whose running count
    # reaches it holds the median.
    reached = grouped.cumsum() >= (total + 1) // 2
    first = bins[reached].groupby(keys, sort=False).head(1)
    return (
        first.assign(n_distance=total[first.index].astype(np.int64))
        .drop(columns="count")
        .reset_index(drop=True)
    )


def _binomial_mcse(p: pd.Series, n: pd.Series) -> pd.Series:
    return np.sqrt(p * (1.0 - p) / n.where(n > 0))


def rule_summary(fits: pd.DataFrame) -> pd.DataFrame:
    """The `stopping_rules` rows of one cell's fits: per cell x model x method x stopping rule,
    over every fit of the real starts (the copied ``best`` excluded), the share of each status
    of `RULE_STATUSES` (binomial MCSE), the median `distance_to_limit` of the fits with one
    among those a rule or the cap ended (`STOPPED_BY_RULE`) and the E-steps per fit
    (`loglik_evals`, the polish excluded), mean and median, each with its MCSE (sd / sqrt(n),
    `measures.quantile_mcse`)."""
    fits = with_stopping(fits)
    if fits.empty:
        return _empty(RULE_COLUMNS)
    rows = fits[fits["start"] != BEST]
    if rows.empty:
        return _empty(RULE_COLUMNS)
    distance = rows["distance_to_limit"].astype(float) if "distance_to_limit" in rows else np.nan
    stopped = rows["status"].isin(STOPPED_BY_RULE)
    codes, keys = group_codes(rows, [*CELL_KEYS, *PROCEDURE])
    work = pd.DataFrame(
        {
            "_distance": pd.Series(distance, index=rows.index).where(stopped),
            "_evals": rows["loglik_evals"].astype(float),
            **{f"rate_{s}": (rows["status"] == s).astype(float) for s in RULE_STATUSES},
        }
    )
    grouped = work.groupby(codes, sort=False)
    out = grouped.agg(
        n_fits=("_evals", "size"),
        **{f"rate_{s}": (f"rate_{s}", "mean") for s in RULE_STATUSES},
        n_distance=("_distance", "count"),
        distance_median=("_distance", "median"),
        loglik_evals_mean=("_evals", "mean"),
        loglik_evals_median=("_evals", "median"),
    )
    for status in RULE_STATUSES:
        out[f"rate_{status}_mcse"] = _binomial_mcse(out[f"rate_{status}"], out["n_fits"])
    evals = grouped["_evals"].agg(["std", "count"])
    out["loglik_evals_mean_mcse"] = evals["std"].where(evals["count"] >= 2) / np.sqrt(
        evals["count"]
    )
    for column, source in (("distance_median", "_distance"), ("loglik_evals_median", "_evals")):
        out[f"{column}_mcse"] = grouped[source].agg(
            lambda values: quantile_mcse(values.to_numpy(dtype=float), 0.5)
        )
    out = with_keys(keys, out)
    for column in ("n_fits", "n_distance"):
        out[column] = out[column].astype(np.int64)
    return out.loc[:, list(RULE_COLUMNS)]


def merge_rule_summaries(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The study's `stopping_rules` from its cells' (rows concatenated, in cell order)."""
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else _empty(RULE_COLUMNS)


def zip_rows(fits: pd.DataFrame) -> pd.DataFrame:
    """The usable fits' estimate and SE of pi for one start (``best``, else the first)."""
    fits = with_stopping(fits)
    if fits.empty:
        return _empty(ZIP_COLUMNS)
    start = BEST if (fits["start"] == BEST).any() else fits["start"].iloc[0]
    se = fits["se_pi"].astype(float)
    keep = (fits["start"] == start) & (fits["status"] == CONVERGED) & np.isfinite(se)
    return fits.loc[keep, list(ZIP_COLUMNS)].reset_index(drop=True)


def merge_zip_rows(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else _empty(ZIP_COLUMNS)


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    ints = {"count", "n", "replicate", "n_fits", "n_distance"}
    texts = {"cell_id", *FIT_ID, "status"}
    return pd.DataFrame(
        {
            c: pd.Series(dtype="int64" if c in ints else "str" if c in texts else "float64")
            for c in columns
        }
    )
