"""Which rows and values each figure of the study shows: pure functions from the summary tables
(and the kept traces) to the frames that `emsim.study.figures` draws, without drawing.

Nothing here computes a measure: the numbers come from the summary tables of
`emsim.study.measures`. What is decided here is the selection (the primary stopping rule, the
start shown, the representative cells, the kept replicate of the traces), the order of the
cells and series, and the presentation scale (twice the MCSE as error bars, RMSE times root n,
shares in percent). An empty or degenerate input gives an empty result, never an error, so
that each figure can draw its "no data" panel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from emsim.models import DEFAULT_STOPPING, MODELS, STATUSES, STOPPING_RULES
from emsim.study.captions import DESIGN_FACTORS, add_design_factors, cell_label
from emsim.study.measures import BEST, CONVERGED
from emsim.study.schema import CELL_KEYS, PROCEDURE

MODEL_ORDER: tuple[str, ...] = tuple(MODELS)
METHOD_ORDER: tuple[str, ...] = ("em", "squarem")
STOPPING_ORDER: tuple[str, ...] = STOPPING_RULES
# The panels of the stopping figure, from the `stopping_rules` table: the column (its MCSE is
# "<column>_mcse"), the axis label, the factor to the shown scale and whether the axis is log.
STOPPING_PANELS: tuple[tuple[str, str, float, bool], ...] = (
    ("rate_converged", "usable (% of fits)", 100.0, False),
    ("rate_premature", "premature (% of fits)", 100.0, False),
    ("rate_saddle", "saddle (% of fits)", 100.0, False),
    ("distance_median", "median distance to the limit (SE)", 1.0, True),
    ("loglik_evals_mean", "E-steps per fit (mean)", 1.0, True),
)
# Where a log axis of the stopping figure starts: the distance histogram's lowest bin, as the
# limit itself is only that precise.
LOG_FLOOR = 1e-8
# The measures drawn against n: the summary column and whether it is scaled by root n (so that
# the root-n rate is a flat line).
AGAINST_N: dict[str, tuple[str, bool]] = {
    "bias": ("bias", False),
    "rmse": ("rmse", True),
    "coverage": ("coverage", False),
}


# --- shared selection ------------------------------------------------------------------------


def ordered(values: pd.Series, order: Sequence[str]) -> list:
    """The distinct values present, those of `order` first in its order, the others sorted."""
    present = list(dict.fromkeys(values.dropna().tolist()))
    known = [v for v in order if v in present]
    return known + sorted(v for v in present if v not in order)


def choose_start(frame: pd.DataFrame, start: str | None = None) -> str | None:
    """The start to show: `start` if given, else ``best`` if present, else the first by name."""
    if start is not None:
        return start
    starts = frame["start"].dropna().unique().tolist() if "start" in frame else []
    if BEST in starts:
        return BEST
    return sorted(starts)[0] if starts else None


def primary_stopping(frame: pd.DataFrame) -> str | None:
    """The rule the other figures show: the seed's if the study has it, else the first."""
    if "stopping" not in frame.columns or frame.empty:
        return None
    rules = ordered(frame["stopping"], STOPPING_ORDER)
    return DEFAULT_STOPPING if DEFAULT_STOPPING in rules else rules[0]


def one_rule_own_set(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the figures of one fit per cell x model x method x start draw: the primary
    stopping rule and, for performance, each method's own usable fits."""
    out = frame
    if "set" in out.columns:
        out = out[out["set"] == "own"]
    rule = primary_stopping(out)
    if rule is not None:
        out = out[out["stopping"] == rule]
    return out


def design_sorted_cells(data: pd.DataFrame) -> pd.DataFrame:
    """One row per cell of `data`, sorted by the design factors, outermost first."""
    keys = [k for k, _ in DESIGN_FACTORS if k in data.columns]
    return data.drop_duplicates("cell_id").sort_values(keys, kind="stable")


def cell_order(data: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """The cells of `data` in design order, and each one's label."""
    cells = design_sorted_cells(add_design_factors(data)).set_index("cell_id")
    return list(cells.index), {cid: cell_label(row) for cid, row in cells.iterrows()}


# --- performance against n, nested loop --------------------------------------------------------


def against_n(
    perf: pd.DataFrame, measure: str, parameter: str = "pi", start: str | None = None
) -> tuple[str | None, pd.DataFrame]:
    """The start shown and the rows of a figure against n (`AGAINST_N`): one parameter and
    start of the primary rule's own set, with the design factors, ``y`` (the measure, times
    root n for the RMSE) and ``y_error`` (twice its MCSE, on the same scale)."""
    column, root_n = AGAINST_N[measure]
    perf = one_rule_own_set(perf)
    start = choose_start(perf, start)
    if perf.empty or "parameter" not in perf:
        return start, pd.DataFrame()
    data = add_design_factors(perf[(perf["parameter"] == parameter) & (perf["start"] == start)])
    if data.empty:
        return start, data
    scale = np.sqrt(data["n"].astype(float)) if root_n else 1.0
    return start, data.assign(y=data[column] * scale, y_error=2 * data[f"{column}_mcse"] * scale)


def clipped_error(
    y: np.ndarray, error: np.ndarray, limits: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The lengths of error bars of half-width `error` around `y` below and above, cut where
    they would leave `limits` (a share's bar ends at 0 and 1, where the share does)."""
    low, high = limits
    below = np.clip(np.minimum(error, y - low), 0.0, None)
    above = np.clip(np.minimum(error, high - y), 0.0, None)
    return below, above


def coverage_band(n_rep: pd.Series, level: float) -> tuple[float, float] | None:
    """The nominal coverage's Monte Carlo band, level +- 2 sqrt(level (1 - level) / R) capped
    at 1, for R the median replicates of the fit groups that have any; None if none has."""
    n_rep = n_rep.astype(float)
    if not (n_rep > 0).any():
        return None
    half = 2.0 * np.sqrt(level * (1.0 - level) / float(n_rep[n_rep > 0].median()))
    return level - half, min(1.0, level + half)


def nested_loop_rows(
    perf: pd.DataFrame, parameter: str = "pi", start: str | None = None, method: str = "em"
) -> tuple[str | None, pd.DataFrame, pd.DataFrame]:
    """The start shown, the rows (one parameter, start and method of the primary rule's own
    set, with the design factors; empty if no bias is finite) and the cells in design order."""
    perf = one_rule_own_set(perf)
    start = choose_start(perf, start)
    if perf.empty or "parameter" not in perf:
        return start, pd.DataFrame(), pd.DataFrame()
    chosen = (perf["parameter"] == parameter) & (perf["start"] == start)
    data = add_design_factors(perf[chosen & (perf["method"] == method)])
    if data.empty or not np.isfinite(data["bias"].astype(float)).any():
        return start, pd.DataFrame(), pd.DataFrame()
    return start, data, design_sorted_cells(data)


def varying_factors(cells: pd.DataFrame) -> list[str]:
    """The design factors that take more than one value among `cells`, outermost first."""
    return [k for k, _ in DESIGN_FACTORS if k in cells.columns and cells[k].nunique() > 1]


# --- convergence -------------------------------------------------------------------------------


def iterations_panels(conv: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, pd.DataFrame]]]:
    """The primary rule's convergence rows with the design factors, and per start (``best``
    first) the rows whose median iterations are finite and positive (a log axis)."""
    data = add_design_factors(one_rule_own_set(conv))
    if data.empty:
        return data, []
    panels = []
    for start in ordered(data["start"], (BEST,)):
        rows = data[data["start"] == start]
        iterations = rows["iterations_median"].astype(float)
        panels.append((start, rows[np.isfinite(iterations) & (iterations > 0)]))
    return data, panels


def rate_points(conv: pd.DataFrame) -> pd.DataFrame:
    """Plain EM's fit groups of the primary rule whose mean empirical and theoretical rates are
    both finite."""
    conv = one_rule_own_set(conv)
    needed = {"rate_empirical_mean", "rate_theory_mean", "method", "model"}
    if not needed <= set(conv.columns):
        return conv.iloc[0:0]
    data = conv[conv["method"] == "em"]
    x = data["rate_theory_mean"].astype(float)
    y = data["rate_empirical_mean"].astype(float)
    return data[np.isfinite(x) & np.isfinite(y)]


FAILURE_COLUMNS: tuple[str, ...] = tuple(f"rate_{s}" for s in STATUSES if s != CONVERGED)


def failure_shares(conv: pd.DataFrame) -> dict[str, pd.DataFrame] | None:
    """Per failure status that any fit had (`FAILURE_COLUMNS`), the % of fits of each cell
    (rows, labelled, design order) x model / method (columns), the mean over the real starts;
    an empty dict if every fit converged, None without data."""
    conv = one_rule_own_set(conv)
    if conv.empty or not set(FAILURE_COLUMNS) <= set(conv.columns):
        return None
    data = add_design_factors(conv[conv["start"] != BEST])
    if data.empty:
        return None
    data = data.assign(fit=data["model"].astype(str) + " / " + data["method"].astype(str))
    cells = design_sorted_cells(data).set_index("cell_id")
    models = ordered(data["model"], MODEL_ORDER)
    fits = [f"{m} / {k}" for m in models for k in ordered(data["method"], METHOD_ORDER)]
    fits = [f for f in fits if f in set(data["fit"])]
    # Mean over starts: every start of a cell has the same number of replicates.
    means = data.groupby(["cell_id", "fit"])[list(FAILURE_COLUMNS)].mean() * 100.0
    shares = {}
    for column in FAILURE_COLUMNS:
        if (means[column] > 0).any():
            grid = means[column].unstack("fit").reindex(index=cells.index, columns=fits)
            grid.index = [cell_label(row) for _, row in cells.iterrows()]
            shares[column] = grid
    return shares


def stopping_rows(rules: pd.DataFrame) -> pd.DataFrame:
    """The `stopping_rules` rows (every cell x model x method x stopping rule, the real starts
    pooled) with the design factors; empty without every panel's column and MCSE."""
    needed = {"cell_id", *PROCEDURE} | {c for c, *_ in STOPPING_PANELS}
    needed |= {f"{c}_mcse" for c, *_ in STOPPING_PANELS}
    if rules.empty or not needed <= set(rules.columns):
        return pd.DataFrame()
    return add_design_factors(rules)


def stopping_panel(rows: pd.DataFrame, column: str, scale: float, log: bool) -> pd.DataFrame:
    """One panel's points: ``x`` (the column times `scale`) and the lengths of its error bar
    below and above (``minus``, ``plus``: 2 MCSE, none where the MCSE is unknown), kept within
    the axis: a log axis from `LOG_FLOOR` up, a share (the linear panels) within [0, `scale`]."""
    x = rows[column].to_numpy(dtype=float) * scale
    half = np.nan_to_num(2.0 * rows[f"{column}_mcse"].to_numpy(dtype=float) * scale)
    floor, ceiling = (LOG_FLOOR, np.inf) if log else (0.0, scale)
    x = np.where(np.isfinite(x), np.maximum(x, floor), np.nan)
    return pd.DataFrame(
        {"x": x, "minus": np.minimum(half, x - floor), "plus": np.minimum(half, ceiling - x)},
        index=rows.index,
    )


def distance_shares(counts: pd.DataFrame) -> pd.DataFrame:
    """The histogram of log10 distance_to_limit per model x method x stopping rule, as the %
    of that group's fits in each bin (``log10_lo``, ``share``), bins in order."""
    keys = list(PROCEDURE)
    if counts.empty or not {"log10_lo", "count", *keys} <= set(counts.columns):
        return pd.DataFrame(columns=[*keys, "log10_lo", "share"])
    summed = counts.groupby([*keys, "log10_lo"])["count"].sum().reset_index()
    total = summed.groupby(keys)["count"].transform("sum")
    return summed.assign(share=100.0 * summed["count"] / total).drop(columns="count")


# --- zip plot ------------------------------------------------------------------------------


def zip_rows(zips: pd.DataFrame, method: str = "em") -> tuple[str | None, pd.DataFrame]:
    """The model shown (the richest of those present: where the stopping rule matters most)
    and its zip rows of `method` (of every method if the study has not that one)."""
    if zips.empty:
        return None, zips
    data = zips[zips["method"] == method] if method in set(zips["method"]) else zips
    models = ordered(data["model"], MODEL_ORDER)
    if not models:
        return None, data.iloc[0:0]
    return models[-1], data[data["model"] == models[-1]]


def zip_cells(zips: pd.DataFrame, conv: pd.DataFrame, perf: pd.DataFrame) -> list[str]:
    """Up to three representative cells: the most premature fits, the lowest coverage of pi
    (primary rule, own set), and the one closest to the seed's design (mu = (0, 2), pi 0.8,
    the largest n)."""
    chosen: list[str] = []
    present = set(zips["cell_id"]) if not zips.empty else set()
    if not conv.empty and "rate_premature" in conv.columns:
        by_cell = conv[conv["cell_id"].isin(present)].groupby("cell_id")["rate_premature"].mean()
        if not by_cell.empty and by_cell.max() > 0:
            chosen.append(str(by_cell.idxmax()))
    own = one_rule_own_set(perf) if not perf.empty else perf
    if not own.empty:
        cov = own[(own["parameter"] == "pi") & own["cell_id"].isin(present)]
        cov = cov.groupby("cell_id")["coverage"].mean().dropna()
        if not cov.empty and str(cov.idxmin()) not in chosen:
            chosen.append(str(cov.idxmin()))
    if present:
        cells = zips.drop_duplicates("cell_id").copy()
        gap = (cells["mu1"] - 0.0).abs() + (cells["mu2"] - 2.0).abs() + (cells["pi"] - 0.8).abs()
        cells = cells.assign(_gap=gap.round(9), _n=-cells["n"]).sort_values(["_gap", "_n"])
        seed_like = str(cells["cell_id"].iloc[0])
        if seed_like not in chosen:
            chosen.append(seed_like)
    return chosen[:3]


def zip_intervals(rows: pd.DataFrame, z: float) -> pd.DataFrame:
    """One panel of the zip plot: the Wald intervals est +- z se of pi (``lo``, ``hi``, cut
    at 0 and 1, the range of pi), ordered by |est - pi| / se, each at its centile of that
    order, and whether it covers pi (from the whole interval, as the coverage measure has it)."""
    truth = float(rows["pi"].iloc[0])
    est, se = rows["est_pi"].to_numpy(float), rows["se_pi"].to_numpy(float)
    order = np.argsort(np.abs(est - truth) / se, kind="stable")
    est, se = est[order], se[order]
    return pd.DataFrame(
        {
            "lo": np.clip(est - z * se, 0.0, 1.0),
            "hi": np.clip(est + z * se, 0.0, 1.0),
            "centile": 100.0 * (np.arange(len(est)) + 0.5) / len(est),
            "covers": np.abs(est - truth) <= z * se,
        }
    )


# --- traces --------------------------------------------------------------------------------


def select_traces(
    traces: pd.DataFrame, method: str = "em", start: str | None = None
) -> pd.DataFrame:
    """One kept replicate per cell (the lowest), one method and start, every model."""
    if traces.empty:
        return traces
    t = traces[traces["method"] == method] if method in set(traces["method"]) else traces
    if start is None:
        starts = sorted(t["start"].dropna().unique())
        start = "fixed" if "fixed" in starts else (starts[0] if starts else None)
    t = t[t["start"] == start]
    first = t.groupby("cell_id")["replicate"].transform("min")
    return t[t["replicate"] == first]


TRACE_COLUMNS = frozenset(
    {"cell_id", "replicate", "model", "method", "start", "iteration", "est_pi", "loglik"}
)


def traces_shown(
    traces: pd.DataFrame, method: str = "em", start: str | None = None, max_cells: int = 12
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The trace rows drawn (`select_traces` of the primary rule, finite points, with the
    design factors), the cells shown (at most `max_cells`, evenly spaced along the design
    order so that every factor's range stays visible) and how many cells had traces."""
    traces = one_rule_own_set(traces)
    if traces.empty or not TRACE_COLUMNS <= set(traces.columns):
        return pd.DataFrame(), pd.DataFrame(), 0
    t = add_design_factors(select_traces(traces, method, start))
    t = t[np.isfinite(t["est_pi"].astype(float)) & np.isfinite(t["loglik"].astype(float))]
    cells = design_sorted_cells(t)
    total = len(cells)
    if total > max_cells:
        cells = cells.iloc[np.unique(np.linspace(0, total - 1, max_cells).astype(int))]
    return t, cells, total


# --- replicates ------------------------------------------------------------------------------


def replicates_from_convergence(conv: pd.DataFrame) -> pd.DataFrame:
    """Each cell's replicates from the convergence table (the most of any fit group, the derived
    start excluded), for a summary without the `replicates` table; why a cell stopped is not
    known there (``stop`` is None)."""
    if conv.empty or "n_rep" not in conv.columns:
        return pd.DataFrame()
    rows = conv[conv["start"] != BEST]
    if rows.empty:
        return pd.DataFrame()
    reps = rows.groupby("cell_id")["n_rep"].max()
    cells = rows.drop_duplicates("cell_id")[list(CELL_KEYS)].set_index("cell_id")
    return cells.assign(replicates=reps, stop=None).reset_index()


def replicates_rows(reps: pd.DataFrame) -> pd.DataFrame:
    """The cells with a finite count of replicates in design order, with ``row_label`` (their
    design values but n, which the panels show: a cell of every n shares a row; with one cell
    per n, every value) and ``stop_reason`` ("" when not recorded)."""
    if reps.empty or not {"replicates", "n"} <= set(reps.columns):
        return pd.DataFrame()
    data = add_design_factors(reps)
    data = data[np.isfinite(data["replicates"].astype(float))]
    if data.empty:
        return data
    data = data.sort_values([k for k, _ in DESIGN_FACTORS if k in data.columns], kind="stable")
    labels = [cell_label(row) for _, row in data.iterrows()]
    one_per_n = data["n"].nunique() == len(data)
    return data.assign(
        row_label=labels if one_per_n else [label.split(", ", 1)[-1] for label in labels],
        stop_reason=data["stop"].fillna("") if "stop" in data.columns else "",
    )


# --- misspecification ---------------------------------------------------------------------------

# The model the misspecification figure shows: the full model, whose pseudo-true values move
# most when the components' shape is wrong (the report's table shows every model).
MISSPECIFICATION_MODEL = "full"


def scenario_label(row: pd.Series) -> str:
    """A family scenario without its n: the family and the cell's other design values."""
    mu = f"μ=({row['mu1']:g}, {row['mu2']:g})"
    sigma = f"σ=({row['sigma1']:g}, {row['sigma2']:g})"
    return f"{row['family']}, {mu}, {sigma}, π={row['pi']:g}"


def misspecified_rows(perf: pd.DataFrame) -> pd.DataFrame:
    """The performance rows of the non-normal families (`family` other than normal): the primary
    rule's own set at the start shown (`choose_start`), with ``scenario`` (`scenario_label`)
    and ``dgm_value``, the parameter's data-generating value (NaN for equal_var's common
    sigma in a cell with unequal sigmas). Empty for a study of normal components only."""
    if perf.empty or "family" not in perf.columns:
        return pd.DataFrame()
    rows = one_rule_own_set(perf[perf["family"] != "normal"])
    start = choose_start(rows)
    rows = rows[rows["start"] == start]
    if rows.empty:
        return pd.DataFrame()
    column = rows["parameter"].where(rows["parameter"] != "sigma", "sigma1")
    design = rows.loc[:, ["pi", "mu1", "mu2", "sigma1", "sigma2"]].astype(float)
    dgm = design.to_numpy()[np.arange(len(rows)), design.columns.get_indexer(column)]
    unequal = (rows["parameter"] == "sigma") & (rows["sigma1"] != rows["sigma2"])
    out = rows.assign(dgm_value=np.where(unequal, np.nan, dgm))
    return out.assign(scenario=out.apply(scenario_label, axis=1))
