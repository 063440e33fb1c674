"""Figures of the study: one function per figure, each writing one PNG and returning its path.

Figures are drawn on `matplotlib.figure.Figure` objects rendered by the Agg canvas, never through
pyplot's global state, so they work headless, in parallel Snakemake jobs and leave the caller's
matplotlib and seaborn settings untouched. Every function draws a readable "no data" panel for
empty or degenerate input (no rows, all NaN, one cell, one n) instead of raising, because a
partially failed study should still produce a report that shows what is missing.

All numbers come from the summary tables of `emsim.study.measures`; nothing is recomputed here
except presentation helpers (separation, selection of the start to show).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from statistics import NormalDist

import matplotlib as mpl
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from emsim.models import DEFAULT_STOPPING, MODELS, STATUSES, STOPPING_RULES
from emsim.study.captions import (
    DESIGN_FACTORS,
    FACTOR_LABELS,
    FIGURE_NAMES,
    add_design_factors,
    cell_label,
    design_value_label,
)
from emsim.study.measures import BEST, CONVERGED
from emsim.study.parquet_io import atomic_write, read_metadata
from emsim.study.precision import STOP_FIXED, STOP_MAX, STOP_MET, plan_from_metadata
from emsim.study.schema import CELL_KEYS
from emsim.study.summary import SummaryFiles, read_files

DPI = 120
NO_DATA = "no data"
MODEL_ORDER: tuple[str, ...] = tuple(MODELS)
METHOD_MARKERS = {"em": "o", "squarem": "s"}
METHOD_LINESTYLES = {"em": "-", "squarem": "--"}
MODEL_LINESTYLES = {"pi": "-", "equal_var": "--", "full": ":"}
MODEL_MARKERS = {"pi": "o", "equal_var": "s", "full": "^"}


# --- helpers -------------------------------------------------------------------------------


def _styled(func: Callable[..., Path]) -> Callable[..., Path]:
    """Draw inside seaborn's style and context without touching global rcParams."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
            return func(*args, **kwargs)

    return wrapper


def _save(fig: Figure, path: str | os.PathLike[str], dpi: int = DPI) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    return path


def _no_data(ax: Axes, message: str = NO_DATA) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.text(
        0.5,
        0.5,
        message,
        ha="center",
        va="center",
        transform=ax.transAxes,
        fontsize=12,
        color="0.35",
    )


def _empty_figure(
    path: str | os.PathLike[str], title: str, message: str = NO_DATA, dpi: int = DPI
) -> Path:
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    _no_data(ax, message)
    ax.set_title(title)
    return _save(fig, path, dpi)


def _ordered(values: pd.Series, order: tuple[str, ...]) -> list:
    present = list(dict.fromkeys(values.dropna().tolist()))
    known = [v for v in order if v in present]
    return known + sorted(v for v in present if v not in order)


def _model_colors(models: list[str]) -> dict[str, tuple]:
    palette = sns.color_palette("colorblind", max(len(MODEL_ORDER), len(models)))
    colors = {m: palette[i] for i, m in enumerate(MODEL_ORDER)}
    extra = [m for m in models if m not in colors]
    for i, m in enumerate(extra, start=len(MODEL_ORDER)):
        colors[m] = palette[i % len(palette)]
    return colors


def choose_start(frame: pd.DataFrame, start: str | None = None) -> str | None:
    """The start to show: `start` if given, else ``best`` if present, else the first by name."""
    if start is not None:
        return start
    starts = frame["start"].dropna().unique().tolist() if "start" in frame else []
    if BEST in starts:
        return BEST
    return sorted(starts)[0] if starts else None


def _facets(
    fig: Figure, data: pd.DataFrame, row: str | None, col: str | None, *, sharey: bool = False
) -> Iterator[tuple[Axes, str, pd.DataFrame]]:
    """Lay out a row x col grid of axes and yield (ax, facet title, rows of that facet)."""
    rows = sorted(data[row].dropna().unique()) if row else [None]
    cols = sorted(data[col].dropna().unique()) if col else [None]
    rows, cols = rows or [None], cols or [None]
    axes = fig.subplots(len(rows), len(cols), squeeze=False, sharex=True, sharey=sharey)
    for i, rv in enumerate(rows):
        for j, cv in enumerate(cols):
            subset = data
            title = []
            if cv is not None:
                subset = subset[subset[col] == cv]
                title.append(f"{FACTOR_LABELS.get(col, col)} = {design_value_label(cv)}")
            if rv is not None:
                subset = subset[subset[row] == rv]
                title.append(f"{FACTOR_LABELS.get(row, row)} = {design_value_label(rv)}")
            yield axes[i, j], ", ".join(title), subset


def _bottom_legend(fig: Figure, handles: list, labels: list[str]) -> None:
    if handles:
        # As many entries per row as fit the figure's width (about 1.9 inches an entry).
        ncol = max(1, min(len(handles), int(fig.get_figwidth() // 1.9)))
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)


def _plain_log_ticks(ax: Axes) -> None:
    """Label a log y axis 2, 5, 10, 20 instead of 2x10^0 ...: iteration counts read easier."""
    ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))

    def minor(v: float, _pos: int) -> str:
        # Only 2x and 5x per decade: labelling every minor tick crowds the axis.
        if v <= 0:
            return ""
        lead = round(v / 10 ** np.floor(np.log10(v)))
        return f"{v:g}" if lead in (2, 5) else ""

    ax.yaxis.set_minor_formatter(mpl.ticker.FuncFormatter(minor))


def _series_legend(models: list[str], methods: list[str], colors: dict) -> tuple[list, list]:
    handles = [Line2D([], [], color=colors[m], marker="o", linestyle="-") for m in models]
    labels = [f"model {m}" for m in models]
    if len(methods) > 1:
        handles += [
            Line2D(
                [],
                [],
                color="0.3",
                marker=METHOD_MARKERS.get(m, "D"),
                linestyle=METHOD_LINESTYLES.get(m, ":"),
            )
            for m in methods
        ]
        labels += [f"method {m}" for m in methods]
    return handles, labels


def _figure_size(n_rows: int, n_cols: int, w: float = 3.3, h: float = 2.6) -> tuple[float, float]:
    return (max(5.5, w * n_cols), max(3.2, h * n_rows + 1.2))


# --- figures by n (bias, RMSE, coverage) ------------------------------------------------------


def _plot_against_n(
    perf: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    value: Callable[[pd.DataFrame], pd.Series],
    error: Callable[[pd.DataFrame], pd.Series],
    ylabel: str,
    title: str,
    parameter: str,
    start: str | None,
    reference: Callable[[Axes, pd.DataFrame], None] | None = None,
    sharey: bool = False,
    dpi: int = DPI,
) -> Path:
    """Shared layout of the bias, RMSE and coverage figures: y(n) by model and method."""
    perf = one_rule_own_set(perf)
    start = choose_start(perf, start)
    full_title = f"{title} of {parameter} (start: {start})"
    if perf.empty or "parameter" not in perf:
        return _empty_figure(path, full_title, dpi=dpi)
    data = add_design_factors(perf[(perf["parameter"] == parameter) & (perf["start"] == start)])
    if data.empty:
        return _empty_figure(path, full_title, dpi=dpi)
    data = data.assign(_y=value(data), _err=error(data))
    models = _ordered(data["model"], MODEL_ORDER)
    methods = _ordered(data["method"], tuple(METHOD_MARKERS))
    colors = _model_colors(models)
    series = [(m, k) for m in models for k in methods]
    # Dodge the series in log-n so error bars of different models do not hide each other.
    offsets = np.linspace(-0.06, 0.06, len(series)) if len(series) > 1 else [0.0]
    n_rows = data["pi"].nunique()
    n_cols = data["separation"].nunique()
    fig = Figure(figsize=_figure_size(n_rows, n_cols), layout="constrained")
    for ax, facet_title, subset in _facets(fig, data, "pi", "separation", sharey=sharey):
        ax.set_title(facet_title, fontsize=9)
        finite = subset[np.isfinite(subset["_y"])]
        if finite.empty:
            _no_data(ax)
            continue
        for (model, method), offset in zip(series, offsets, strict=True):
            s = finite[(finite["model"] == model) & (finite["method"] == method)]
            if s.empty:
                continue
            s = s.sort_values("n")
            x = s["n"].to_numpy(float) * np.exp(offset)
            err = s["_err"].to_numpy(float)
            ax.errorbar(
                x,
                s["_y"],
                yerr=np.where(np.isfinite(err), err, 0.0),
                color=colors[model],
                marker=METHOD_MARKERS.get(method, "D"),
                linestyle=METHOD_LINESTYLES.get(method, ":"),
                markersize=4,
                linewidth=1,
                capsize=2,
            )
        if reference is not None:
            reference(ax, subset)
        ax.set_xscale("log")
        # Ticks at the design's sample sizes, written plainly (100, 1000), not as powers.
        sizes = sorted(data["n"].astype(float).unique())
        ax.xaxis.set_major_locator(mpl.ticker.FixedLocator(sizes))
        ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        if len(sizes) == 1:
            ax.set_xlim(sizes[0] / 2, sizes[0] * 2)
    for ax in fig.axes:
        if ax.get_subplotspec().is_last_row():
            ax.set_xlabel("n (log scale)")
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(ylabel)
    fig.suptitle(full_title)
    _bottom_legend(fig, *_series_legend(models, methods, colors))
    return _save(fig, path, dpi)


@_styled
def plot_bias(
    perf: pd.DataFrame,
    path: str | os.PathLike[str],
    parameter: str = "pi",
    start: str | None = None,
    *,
    dpi: int = DPI,
) -> Path:
    """Bias +- 2 MCSE against n, faceted by separation (columns) and pi (rows), hue = model."""

    def zero(ax: Axes, _subset: pd.DataFrame) -> None:
        ax.axhline(0.0, color="0.2", linewidth=0.8, linestyle="--")

    return _plot_against_n(
        perf,
        path,
        value=lambda d: d["bias"],
        error=lambda d: 2 * d["bias_mcse"],
        ylabel="bias",
        title="Bias",
        parameter=parameter,
        start=start,
        reference=zero,
        dpi=dpi,
    )


@_styled
def plot_rmse(
    perf: pd.DataFrame,
    path: str | os.PathLike[str],
    parameter: str = "pi",
    start: str | None = None,
    *,
    dpi: int = DPI,
) -> Path:
    """RMSE x sqrt(n) +- 2 MCSE against n (a flat line is the root-n rate)."""

    def scaled(column: str) -> Callable[[pd.DataFrame], pd.Series]:
        return lambda d: d[column] * np.sqrt(d["n"].astype(float))

    return _plot_against_n(
        perf,
        path,
        value=scaled("rmse"),
        error=lambda d: 2 * scaled("rmse_mcse")(d),
        ylabel=r"RMSE $\times\sqrt{n}$",
        title=r"RMSE $\times\sqrt{n}$",
        parameter=parameter,
        start=start,
        dpi=dpi,
    )


@_styled
def plot_coverage(
    perf: pd.DataFrame,
    path: str | os.PathLike[str],
    parameter: str = "pi",
    start: str | None = None,
    level: float = 0.95,
    *,
    dpi: int = DPI,
) -> Path:
    """Coverage +- 2 MCSE against n with the nominal line and its Monte Carlo band."""

    def nominal(ax: Axes, subset: pd.DataFrame) -> None:
        n_rep = subset["n_rep"].astype(float)
        n_rep = float(n_rep[n_rep > 0].median()) if (n_rep > 0).any() else np.nan
        if np.isfinite(n_rep):
            half = 2.0 * np.sqrt(level * (1.0 - level) / n_rep)
            ax.axhspan(level - half, min(1.0, level + half), color="0.6", alpha=0.25, lw=0)
        ax.axhline(level, color="0.2", linewidth=0.8, linestyle="--")

    return _plot_against_n(
        perf,
        path,
        value=lambda d: d["coverage"],
        error=lambda d: 2 * d["coverage_mcse"],
        ylabel="coverage",
        title=f"Coverage of the {level:.0%} interval",
        parameter=parameter,
        start=start,
        reference=nominal,
        sharey=True,
        dpi=dpi,
    )


# --- convergence figures --------------------------------------------------------------------


@_styled
def plot_iterations(conv: pd.DataFrame, path: str | os.PathLike[str], *, dpi: int = DPI) -> Path:
    """Median iterations to convergence (median and IQR over cells) against separation."""
    conv = one_rule_own_set(conv)
    title = "Iterations to convergence against separation"
    if conv.empty:
        return _empty_figure(path, title, dpi=dpi)
    data = add_design_factors(conv)
    starts = _ordered(data["start"], (BEST,))
    n_cols = min(4, len(starts))
    n_rows = -(-len(starts) // n_cols)
    fig = Figure(figsize=_figure_size(n_rows, n_cols, w=3.6, h=3.0), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax in axes[len(starts) :]:
        ax.set_visible(False)
    handles, labels = [], []
    models = _ordered(data["model"], MODEL_ORDER)
    colors = _model_colors(models)
    for ax, start in zip(axes, starts, strict=False):
        subset = data[data["start"] == start]
        ax.set_title(f"start: {start}", fontsize=9)
        finite = subset[
            np.isfinite(subset["iterations_median"].astype(float))
            & (subset["iterations_median"].astype(float) > 0)
        ]
        if finite.empty:
            _no_data(ax)
            continue
        sns.lineplot(
            data=finite,
            x="separation",
            y="iterations_median",
            hue="model",
            style="method",
            hue_order=[m for m in models if m in set(finite["model"])],
            palette=colors,
            estimator="median",
            errorbar=("pi", 50),
            markers=True,
            dashes=True,
            ax=ax,
        )
        ax.set_yscale("log")
        _plain_log_ticks(ax)
        if finite["separation"].nunique() == 1:
            s0 = float(finite["separation"].iloc[0])
            ax.set_xlim(s0 - 0.5, s0 + 0.5)
        if ax.get_legend() is not None:
            h, lab = ax.get_legend_handles_labels()
            if len(h) > len(handles):
                handles, labels = h, lab
            ax.get_legend().remove()
    for i, ax in enumerate(axes[: len(starts)]):
        # The bottom panel of each column (the grid's last row may be partly empty) gets x ticks.
        bottom = i + n_cols >= len(starts)
        ax.xaxis.set_tick_params(labelbottom=bottom)
        ax.set_xlabel(r"separation $|\mu_2-\mu_1|/\sigma_1$" if bottom else "")
        ax.set_ylabel("iterations (median per cell)" if i % n_cols == 0 else "")
    fig.suptitle(title)
    _bottom_legend(fig, handles, labels)
    return _save(fig, path, dpi)


@_styled
def plot_rate(conv: pd.DataFrame, path: str | os.PathLike[str], *, dpi: int = DPI) -> Path:
    """Plain EM's empirical rate against the fraction of missing information, identity line."""
    conv = one_rule_own_set(conv)
    title = "EM convergence rate: empirical against theoretical"
    needed = {"rate_empirical_mean", "rate_theory_mean", "method", "model"}
    fig = Figure(figsize=(6, 5.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    data = conv[conv["method"] == "em"] if needed <= set(conv.columns) else conv.iloc[0:0]
    if not data.empty:
        x = data["rate_theory_mean"].astype(float)
        y = data["rate_empirical_mean"].astype(float)
        data = data[np.isfinite(x) & np.isfinite(y)]
    if data.empty:
        _no_data(ax)
        return _save(fig, path, dpi)
    models = _ordered(data["model"], MODEL_ORDER)
    ax.plot([0, 1], [0, 1], color="0.3", linestyle="--", linewidth=0.8, label="identity")
    sns.scatterplot(
        data=data,
        x="rate_theory_mean",
        y="rate_empirical_mean",
        hue="model",
        hue_order=models,
        palette=_model_colors(models),
        style="model",
        markers=MODEL_MARKERS,
        alpha=0.8,
        ax=ax,
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel(r"theoretical rate $1 - I_{obs}/I_{complete}$ (mean)")
    ax.set_ylabel("empirical rate (mean)")
    handles, labels = ax.get_legend_handles_labels()
    ax.get_legend().remove()
    _bottom_legend(fig, handles, [f"model {lab}" if lab in models else lab for lab in labels])
    return _save(fig, path, dpi)


@_styled
def plot_failures(conv: pd.DataFrame, path: str | os.PathLike[str], *, dpi: int = DPI) -> Path:
    """Heatmaps of the share of fits per non-converged status over the grid."""
    conv = one_rule_own_set(conv)
    title = "Failures by status (% of fits)"
    statuses = [s for s in STATUSES if s != CONVERGED]
    columns = [f"rate_{s}" for s in statuses]
    if conv.empty or not set(columns) <= set(conv.columns):
        return _empty_figure(path, title, dpi=dpi)
    data = add_design_factors(conv[conv["start"] != BEST])
    if data.empty:
        return _empty_figure(path, title, dpi=dpi)
    data = data.assign(fit=data["model"].astype(str) + " / " + data["method"].astype(str))
    keys = [k for k, _ in DESIGN_FACTORS if k in data.columns]
    cells = data.drop_duplicates("cell_id").sort_values(keys, kind="stable").set_index("cell_id")
    labels = {cid: cell_label(row) for cid, row in cells.iterrows()}
    models = _ordered(data["model"], MODEL_ORDER)
    fits = [f"{m} / {k}" for m in models for k in _ordered(data["method"], ("em", "squarem"))]
    fits = [f for f in fits if f in set(data["fit"])]
    # Mean over starts: every start of a cell has the same number of replicates.
    means = data.groupby(["cell_id", "fit"])[columns].mean() * 100.0
    shown = [c for c in columns if (means[c] > 0).any()]
    n_cells = len(cells)
    if not shown:
        fig = Figure(figsize=(6, 3.5), layout="constrained")
        ax = fig.add_subplot()
        _no_data(ax, "no failures: every fit converged")
        ax.set_title(title)
        return _save(fig, path, dpi)
    vmax = float(np.nanmax(means[shown].to_numpy()))
    fig = Figure(
        figsize=(2.2 + 0.55 * len(fits) * len(shown) + 1.5, max(3.0, 0.28 * n_cells + 2.2)),
        layout="constrained",
    )
    axes = fig.subplots(1, len(shown), squeeze=False, sharey=True)[0]
    annotate = n_cells * len(fits) <= 120
    for i, (ax, column) in enumerate(zip(axes, shown, strict=True)):
        grid = means[column].unstack("fit").reindex(index=cells.index, columns=fits)
        grid.index = [labels[c] for c in grid.index]
        sns.heatmap(
            grid,
            ax=ax,
            vmin=0.0,
            vmax=max(vmax, 1e-9),
            cmap="rocket_r",
            annot=annotate,
            fmt=".0f",
            annot_kws={"fontsize": 7},
            cbar=i == len(shown) - 1,
            cbar_kws={"label": "% of fits"},
            linewidths=0.5,
            linecolor="white",
        )
        ax.set_title(column.removeprefix("rate_"))
        ax.set_xlabel("model / method")
        ax.set_ylabel("cell" if i == 0 else "")
        ax.tick_params(axis="x", labelrotation=60)
    fig.suptitle(title)
    return _save(fig, path, dpi)


# --- nested-loop plot -----------------------------------------------------------------------


@_styled
def plot_nested_loop(
    perf: pd.DataFrame,
    path: str | os.PathLike[str],
    parameter: str = "pi",
    start: str | None = None,
    method: str = "em",
    *,
    dpi: int = DPI,
) -> Path:
    """Nested-loop plot (Rücker & Schwarzer 2014) of the bias over every cell of the grid."""
    perf = one_rule_own_set(perf)
    start = choose_start(perf, start)
    title = f"Nested-loop plot: bias of {parameter} (method {method}, start {start})"
    if perf.empty or "parameter" not in perf:
        return _empty_figure(path, title, dpi=dpi)
    data = perf[
        (perf["parameter"] == parameter) & (perf["start"] == start) & (perf["method"] == method)
    ]
    data = add_design_factors(data)
    if data.empty or not np.isfinite(data["bias"].astype(float)).any():
        return _empty_figure(path, title, dpi=dpi)
    keys = [k for k, _ in DESIGN_FACTORS if k in data.columns]
    cells = data.drop_duplicates("cell_id").sort_values(keys, kind="stable")
    varying = [k for k in keys if cells[k].nunique() > 1]
    n_cells = len(cells)
    fig = Figure(
        figsize=(max(6.5, 0.22 * n_cells + 3), 5.5 + 0.35 * len(varying)), layout="constrained"
    )
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, max(1, len(varying)) * 0.6])
    models = _ordered(data["model"], MODEL_ORDER)
    colors = _model_colors(models)
    x_all = np.arange(n_cells)
    for model in models:
        s = data[data["model"] == model].set_index("cell_id")
        bias = s["bias"].reindex(cells["cell_id"]).to_numpy(float)
        band = 2 * s["bias_mcse"].reindex(cells["cell_id"]).to_numpy(float)
        top.step(x_all, bias, where="mid", color=colors[model], label=f"model {model}")
        # Points at the cell centres keep a cell visible whose neighbours are missing.
        top.plot(x_all, bias, "o", markersize=2.5, color=colors[model])
        top.fill_between(
            x_all, bias - band, bias + band, step="mid", color=colors[model], alpha=0.2, linewidth=0
        )
        if n_cells == 1:  # a step line and band of one point are invisible
            top.errorbar(x_all, bias, yerr=np.nan_to_num(band), fmt="o", color=colors[model])
    top.axhline(0.0, color="0.2", linewidth=0.8, linestyle="--")
    top.set_ylabel(f"bias of {parameter}")
    top.set_title(title)
    top.legend(loc="best", frameon=False, fontsize=8)
    # One band per varying factor, outermost at the top; levels scaled to [0, 0.8] of the band.
    bottom.grid(False)
    yticks, ylabels = [], []
    for j, key in enumerate(varying):
        levels = sorted(cells[key].unique())
        rank = cells[key].map({v: i for i, v in enumerate(levels)}).to_numpy(float)
        base = len(varying) - 1 - j
        y = base + 0.8 * rank / max(1, len(levels) - 1)
        bottom.step(x_all, y, where="mid", color="0.25", linewidth=1)
        yticks.append(base + 0.4)
        shown = ", ".join(design_value_label(v) for v in levels[:6]) + (
            ", …" if len(levels) > 6 else ""
        )
        ylabels.append(f"{FACTOR_LABELS.get(key, key)}: {shown}")
    if not varying:
        _no_data(bottom, "one cell: no design factor varies")
    else:
        bottom.set_yticks(yticks, ylabels, fontsize=8)
        bottom.set_ylim(-0.2, len(varying))
    bottom.set_xlabel("cell (sorted by the design factors)")
    bottom.set_xlim(-0.5, n_cells - 0.5)
    return _save(fig, path, dpi)


# --- EM traces ------------------------------------------------------------------------------


def _draw_trace(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    iteration: np.ndarray,
    norm: mpl.colors.Normalize,
    cmap,
    marker: str = "o",
    linestyle: str = "-",
) -> None:
    """The seed's geom_point + geom_path(arrow=): a point per iteration, arrows between them."""
    cmap = mpl.colormaps[cmap] if isinstance(cmap, str) else cmap
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, iteration = x[ok], y[ok], iteration[ok]
    # Long traces get arrows on a subset of segments so the heads stay legible (and the
    # figure quick to draw: each arrow is an artist of its own); a thin line keeps the path.
    segments = np.arange(len(x) - 1)
    if len(segments) > 20:
        segments = np.unique(np.linspace(0, len(x) - 2, 20).astype(int))
        ax.plot(x, y, color="0.55", linewidth=0.6, linestyle=linestyle, zorder=1)
    for i in segments:
        arrow = ax.annotate(
            "",
            xy=(x[i + 1], y[i + 1]),
            xytext=(x[i], y[i]),
            arrowprops={
                "arrowstyle": "->",
                "color": cmap(norm(iteration[i])),
                "linewidth": 0.9,
                "linestyle": linestyle,
                "shrinkA": 2,
                "shrinkB": 2,
            },
        )
        # Arrows lie inside the axes: leaving them out of the layout saves measuring
        # thousands of them (it took most of the traces figure's time).
        arrow.set_in_layout(False)
    ax.scatter(
        x, y, c=iteration, cmap=cmap, norm=norm, s=18, marker=marker, zorder=3, edgecolors="none"
    )


def _trace_colorbar(fig: Figure, axes, norm: mpl.colors.Normalize, cmap: str) -> None:
    mappable = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(mappable, ax=axes, location="bottom", label="Iteration", shrink=0.6, aspect=40)


@_styled
def plot_seed_trace(
    trace: pd.DataFrame,
    path: str | os.PathLike[str],
    title: str = "EM for p(Z=1): log-likelihood along the iterations",
    *,
    dpi: int = DPI,
) -> Path:
    """The seed document's figure for one fit: loglik against p(Z=1), coloured by iteration.

    `trace` has columns ``iteration``, ``pi`` (or ``est_pi``) and ``loglik``.
    """
    column = "pi" if "pi" in trace.columns else "est_pi"
    needed = {"iteration", column, "loglik"}
    if trace.empty or not needed <= set(trace.columns):
        return _empty_figure(path, title, dpi=dpi)
    t = trace.sort_values("iteration")
    x, y = t[column].to_numpy(float), t["loglik"].to_numpy(float)
    it = t["iteration"].to_numpy(float)
    if not (np.isfinite(x) & np.isfinite(y)).any():
        return _empty_figure(path, title, dpi=dpi)
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    ax = fig.add_subplot()
    norm = mpl.colors.Normalize(vmin=float(np.nanmin(it)), vmax=max(float(np.nanmax(it)), 1.0))
    _draw_trace(ax, x, y, it, norm, "viridis")
    ax.set_xlabel("p(Z=1)")
    ax.set_ylabel("log-likelihood")
    ax.set_title(title)
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    _trace_colorbar(fig, ax, norm, "viridis")
    return _save(fig, path, dpi)


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


@_styled
def plot_traces(
    traces: pd.DataFrame,
    path: str | os.PathLike[str],
    method: str = "em",
    start: str | None = None,
    max_cells: int = 12,
    *,
    dpi: int = DPI,
) -> Path:
    """The seed's trace figure for a kept replicate per cell, faceted by cell, path per model."""
    traces = one_rule_own_set(traces)
    title = "EM paths: log-likelihood against p(Z=1), one kept replicate per cell"
    needed = {"cell_id", "replicate", "model", "method", "start", "iteration", "est_pi", "loglik"}
    if traces.empty or not needed <= set(traces.columns):
        return _empty_figure(path, title, dpi=dpi)
    t = add_design_factors(select_traces(traces, method, start))
    t = t[np.isfinite(t["est_pi"].astype(float)) & np.isfinite(t["loglik"].astype(float))]
    if t.empty:
        return _empty_figure(path, title, dpi=dpi)
    keys = [k for k, _ in DESIGN_FACTORS if k in t.columns]
    cells = t.drop_duplicates("cell_id").sort_values(keys, kind="stable")
    total = len(cells)
    if total > max_cells:
        # Evenly spaced along the design order so that every factor's range stays visible.
        cells = cells.iloc[np.unique(np.linspace(0, total - 1, max_cells).astype(int))]
        title += f" ({max_cells} of {total} cells)"
    n_cols = min(4, len(cells))
    n_rows = int(np.ceil(len(cells) / n_cols))
    fig = Figure(figsize=(3.6 * n_cols + 0.5, 3.1 * n_rows + 1.8), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    it = t["iteration"].astype(float)
    norm = mpl.colors.Normalize(vmin=0.0, vmax=max(float(it.max()), 1.0))
    models = _ordered(t["model"], MODEL_ORDER)
    for ax, (_, cell) in zip(axes, cells.iterrows(), strict=False):
        ax.set_title(cell_label(cell), fontsize=9)
        s = t[t["cell_id"] == cell["cell_id"]]
        for model in models:
            m = s[s["model"] == model].sort_values("iteration")
            if m.empty:
                continue
            _draw_trace(
                ax,
                m["est_pi"].to_numpy(float),
                m["loglik"].to_numpy(float),
                m["iteration"].to_numpy(float),
                norm,
                "viridis",
                marker=MODEL_MARKERS.get(model, "D"),
                linestyle=MODEL_LINESTYLES.get(model, "-"),
            )
        ax.set_xlabel("p(Z=1)")
        ax.set_ylabel("log-likelihood")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)
    for ax in axes[len(cells) :]:
        ax.set_visible(False)
    visible = [ax for ax in axes if ax.get_visible()]
    _trace_colorbar(fig, visible, norm, "viridis")
    handles = [
        Line2D(
            [],
            [],
            color="0.3",
            marker=MODEL_MARKERS.get(m, "D"),
            linestyle=MODEL_LINESTYLES.get(m, "-"),
        )
        for m in models
    ]
    _bottom_legend(fig, handles, [f"model {m}" for m in models])
    first = t.iloc[0]
    fig.suptitle(f"{title}\nmethod {first['method']}, start {first['start']}")
    return _save(fig, path, dpi)


# --- can the stopping rule be trusted? ----------------------------------------------------

STOPPING_ORDER: tuple[str, ...] = STOPPING_RULES
NOT_USABLE_STOPS: tuple[str, ...] = ("premature", "saddle")


def primary_stopping(frame: pd.DataFrame) -> str | None:
    """The rule the other figures show: the seed's if the study has it, else the first."""
    if "stopping" not in frame.columns or frame.empty:
        return None
    rules = _ordered(frame["stopping"], STOPPING_ORDER)
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


def _cell_order(data: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    data = add_design_factors(data)
    keys = [k for k, _ in DESIGN_FACTORS if k in data.columns]
    cells = data.drop_duplicates("cell_id").sort_values(keys, kind="stable").set_index("cell_id")
    return list(cells.index), {cid: cell_label(row) for cid, row in cells.iterrows()}


@_styled
def plot_stopping(conv: pd.DataFrame, path: str | os.PathLike[str], *, dpi: int = DPI) -> Path:
    """Premature and saddle rates (with +- 2 MCSE) by cell and stopping rule, per model."""
    title = "Fits the stopping rule ended short of a maximum (% of fits, +- 2 MCSE)"
    needed = {"stopping", *(f"rate_{s}" for s in NOT_USABLE_STOPS)}
    needed |= {f"rate_{s}_mcse" for s in NOT_USABLE_STOPS}
    if conv.empty or not needed <= set(conv.columns):
        return _empty_figure(path, title, dpi=dpi)
    start = choose_start(conv)
    data = conv[conv["start"] == start]
    if data.empty:
        return _empty_figure(path, title, dpi=dpi)
    order, labels = _cell_order(data)
    position = {cid: i for i, cid in enumerate(order)}
    models = _ordered(data["model"], MODEL_ORDER)
    rules = _ordered(data["stopping"], STOPPING_ORDER)
    methods = _ordered(data["method"], tuple(METHOD_MARKERS))
    palette = dict(zip(rules, sns.color_palette("colorblind", len(rules)), strict=True))
    fig = Figure(
        figsize=(
            max(6.0, 1.2 + 3.2 * len(models)),
            2.2 + 0.22 * len(order) * len(NOT_USABLE_STOPS),
        ),
        layout="constrained",
    )
    axes = fig.subplots(len(NOT_USABLE_STOPS), len(models), squeeze=False, sharey=True)
    offsets = np.linspace(-0.3, 0.3, max(len(rules) * len(methods), 1))
    for i, status in enumerate(NOT_USABLE_STOPS):
        for j, model in enumerate(models):
            ax = axes[i][j]
            rows = data[data["model"] == model]
            k = 0
            for rule in rules:
                for method in methods:
                    sub = rows[(rows["stopping"] == rule) & (rows["method"] == method)]
                    y = sub["cell_id"].map(position).to_numpy(dtype=float) + offsets[k]
                    x = 100.0 * sub[f"rate_{status}"].to_numpy(dtype=float)
                    err = 200.0 * sub[f"rate_{status}_mcse"].to_numpy(dtype=float)
                    ax.errorbar(
                        x,
                        y,
                        xerr=err,
                        fmt=METHOD_MARKERS.get(method, "o"),
                        ms=3.5,
                        color=palette[rule],
                        elinewidth=0.8,
                        capsize=0,
                        linestyle="none",
                    )
                    k += 1
            ax.set_title(f"{status} · model {model}", fontsize=9)
            ax.set_xlabel("% of fits")
            ax.set_xlim(left=0)
            ax.set_yticks(range(len(order)))
            ax.set_yticklabels([labels[c] for c in order] if j == 0 else [], fontsize=7)
            ax.invert_yaxis() if i == 0 and j == 0 else None
    handles = [Line2D([], [], color=palette[r], marker="o", linestyle="none") for r in rules]
    handles += [
        Line2D([], [], color="0.3", marker=METHOD_MARKERS.get(m, "o"), linestyle="none")
        for m in methods
    ]
    _bottom_legend(fig, handles, [f"rule {r}" for r in rules] + [f"method {m}" for m in methods])
    fig.suptitle(f"{title}; start {start}", fontsize=10)
    return _save(fig, path, dpi)


@_styled
def plot_distance(
    counts: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    threshold: float = 0.1,
    dpi: int = DPI,
) -> Path:
    """Histograms of log10 distance_to_limit by stopping rule, per model x method."""
    title = "Distance to the limit of the iteration where the rule stopped (SEs)"
    if counts.empty or not {"log10_lo", "count", "stopping"} <= set(counts.columns):
        return _empty_figure(path, title, dpi=dpi)
    models = _ordered(counts["model"], MODEL_ORDER)
    methods = _ordered(counts["method"], tuple(METHOD_MARKERS))
    rules = _ordered(counts["stopping"], STOPPING_ORDER)
    palette = dict(zip(rules, sns.color_palette("colorblind", len(rules)), strict=True))
    fig = Figure(figsize=(1.5 + 3.0 * len(models), 1.2 + 2.3 * len(methods)), layout="constrained")
    axes = fig.subplots(len(methods), len(models), squeeze=False, sharex=True)
    for i, method in enumerate(methods):
        for j, model in enumerate(models):
            ax = axes[i][j]
            rows = counts[(counts["model"] == model) & (counts["method"] == method)]
            for rule in rules:
                sub = rows[rows["stopping"] == rule].groupby("log10_lo")["count"].sum()
                if sub.empty:
                    continue
                share = 100.0 * sub / sub.sum()
                ax.step(share.index + 0.125, share.to_numpy(), where="mid", color=palette[rule])
            ax.axvline(np.log10(threshold), color="0.3", linestyle="--", linewidth=0.9)
            ax.set_title(f"model {model} · {method}", fontsize=9)
            ax.set_xlabel("log10 distance (SE)")
            ax.set_ylabel("% of fits" if j == 0 else "")
    handles = [Line2D([], [], color=palette[r]) for r in rules]
    _bottom_legend(fig, handles, [f"rule {r}" for r in rules])
    fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi)


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


@_styled
def plot_zip(
    zips: pd.DataFrame,
    conv: pd.DataFrame,
    perf: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    level: float = 0.95,
    method: str = "em",
    dpi: int = DPI,
) -> Path:
    """Zip plots of the Wald intervals for pi: cells (rows) x stopping rules (columns)."""
    title = "Zip plot of the Wald intervals for pi"
    if zips.empty:
        return _empty_figure(path, title, dpi=dpi)
    data = zips[zips["method"] == method] if method in set(zips["method"]) else zips
    models = _ordered(data["model"], MODEL_ORDER)
    model = models[-1]  # the richest model: where the stopping rule matters most
    data = data[data["model"] == model]
    cells = zip_cells(data, conv, perf)
    rules = _ordered(data["stopping"], STOPPING_ORDER)
    if not cells or not rules:
        return _empty_figure(path, title, dpi=dpi)
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    _, labels = _cell_order(data[data["cell_id"].isin(cells)])
    fig = Figure(figsize=(1.5 + 3.0 * len(rules), 0.8 + 2.6 * len(cells)), layout="constrained")
    axes = fig.subplots(len(cells), len(rules), squeeze=False)
    for i, cell in enumerate(cells):
        for j, rule in enumerate(rules):
            ax = axes[i][j]
            rows = data[(data["cell_id"] == cell) & (data["stopping"] == rule)]
            if rows.empty:
                _no_data(ax)
                continue
            truth = float(rows["pi"].iloc[0])
            est, se = rows["est_pi"].to_numpy(float), rows["se_pi"].to_numpy(float)
            order = np.argsort(np.abs(est - truth) / se, kind="stable")
            est, se = est[order], se[order]
            centile = 100.0 * (np.arange(len(est)) + 0.5) / len(est)
            covers = np.abs(est - truth) <= z * se
            for mask, color in ((covers, "0.55"), (~covers, "#c0392b")):
                ax.hlines(
                    centile[mask],
                    (est - z * se)[mask],
                    (est + z * se)[mask],
                    color=color,
                    linewidth=0.6,
                )
            ax.axvline(truth, color="black", linewidth=0.9)
            ax.axhline(100.0 * level, color="0.2", linestyle="--", linewidth=0.9)
            ax.set_ylim(0, 100)
            ax.set_title(
                f"{labels.get(cell, cell)} · rule {rule}\ncoverage {100 * covers.mean():.1f}% "
                f"of {len(est)}",
                fontsize=8,
            )
            ax.set_xlabel("pi")
            ax.set_ylabel("centile of |z|" if j == 0 else "")
    fig.suptitle(f"{title}: model {model}, method {method}", fontsize=10)
    return _save(fig, path, dpi)


# --- replicates per cell ------------------------------------------------------------------

STOP_LABELS: dict[str, str] = {
    STOP_MET: "met every target",
    STOP_MAX: "stopped at max, a target missed",
    STOP_FIXED: "fixed number",
}


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


@_styled
def plot_replicates(
    reps: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    plan: tuple[int, int, int] | None = None,
    dpi: int = DPI,
) -> Path:
    """Replicates each cell ran, one panel per n (cells of the other design factors as rows,
    aligned across panels), coloured by why the cell stopped; with an adaptive `plan`
    (min, max, step) the round boundaries are marked and min and max drawn as lines."""
    title = "Replicates per cell"
    if reps.empty or not {"replicates", "n"} <= set(reps.columns):
        return _empty_figure(path, title, dpi=dpi)
    data = add_design_factors(reps)
    data = data[np.isfinite(data["replicates"].astype(float))]
    if data.empty:
        return _empty_figure(path, title, dpi=dpi)
    keys = [k for k, _ in DESIGN_FACTORS if k in data.columns]
    data = data.sort_values(keys, kind="stable")
    # A cell's row: its design values other than n, shared by the panels of every n.
    data = data.assign(
        _row=[cell_label(row).split(", ", 1)[-1] for _, row in data.iterrows()],
        _stop=data["stop"].fillna("") if "stop" in data.columns else "",
    )
    if data["n"].nunique() == len(data):  # one cell per n: nothing to align, show n too
        data["_row"] = [cell_label(row) for _, row in data.iterrows()]
    rows = list(dict.fromkeys(data["_row"]))
    position = {r: i for i, r in enumerate(rows)}
    sizes = sorted(data["n"].unique())
    stops = [s for s in STOP_LABELS if s in set(data["_stop"])]
    stops += sorted(s for s in set(data["_stop"]) if s not in STOP_LABELS)
    palette = sns.color_palette("colorblind", 4)
    colors = {STOP_MET: palette[2], STOP_MAX: palette[3], STOP_FIXED: palette[0]}
    values = data["replicates"].astype(int)
    fixed = values.nunique() == 1 and set(stops) <= {STOP_FIXED, ""}
    fig = Figure(
        figsize=(max(6.0, 1.8 + 2.8 * len(sizes)), max(3.2, 1.9 + 0.24 * len(rows))),
        layout="constrained",
    )
    axes = fig.subplots(1, len(sizes), squeeze=False, sharex=True, sharey=True)[0]
    high = float(values.max())
    if plan is not None:
        high = max(high, float(plan[1]))
    annotate = len(rows) <= 60
    for ax, n in zip(axes, sizes, strict=True):
        subset = data[data["n"] == n]
        y = subset["_row"].map(position).to_numpy(float)
        x = subset["replicates"].to_numpy(float)
        ax.barh(
            y,
            x,
            height=0.7,
            color=[colors.get(s, "0.6") for s in subset["_stop"]],
            edgecolor="white",
            linewidth=0.5,
        )
        if annotate:
            for xi, yi in zip(x, y, strict=True):
                ax.text(xi + 0.01 * high, yi, f"{xi:g}", va="center", ha="left", fontsize=7)
        if plan is not None:
            low, top, step = plan
            for bound, label in ((low, "min"), (top, "max")):
                ax.axvline(bound, color="0.25", linestyle="--", linewidth=0.9)
                ax.text(
                    bound,
                    1.0,
                    f" {label} {bound}",
                    transform=ax.get_xaxis_transform(),
                    va="bottom",
                    ha="center",
                    fontsize=7,
                    color="0.25",
                )
            rounds = [0, *range(low, top, step), top]
            if len(rounds) <= 13:
                ax.set_xticks(rounds)
        ax.set_title(f"{FACTOR_LABELS['n']} = {design_value_label(n)}", fontsize=9, pad=14)
        ax.set_xlabel("replicates")
        ax.set_xlim(0, high * 1.12)
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(range(len(rows)), rows, fontsize=7)
    axes[0].set_ylim(len(rows) - 0.5, -0.5)
    if fixed:
        title += f": all {len(data)} cells ran {int(values.iloc[0])} (fixed number)"
    elif plan is not None:
        met = int((data["_stop"] == STOP_MET).sum())
        at_max = int((data["_stop"] == STOP_MAX).sum())
        title += (
            f": {met} of {len(data)} cells met every target, {at_max} stopped at max "
            f"(min {plan[0]}, +{plan[2]} per round, max {plan[1]})"
        )
    handles = [
        Patch(color=colors.get(s, "0.6"), label=STOP_LABELS.get(s, s or "not recorded"))
        for s in stops
    ]
    if len(handles) > 1 or (handles and not fixed):
        _bottom_legend(fig, handles, [h.get_label() for h in handles])
    fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi)


# --- driver ---------------------------------------------------------------------------------


def _read_summary(path: Path | None) -> tuple[pd.DataFrame, dict[str, str]]:
    if path is None or not path.exists():
        return pd.DataFrame(), {}
    return pq.read_table(path).to_pandas(), read_metadata(path)


def draw_one(
    name: str,
    summary: SummaryFiles,
    traces: Iterable[str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    *,
    dpi: int = DPI,
    threshold: float = 0.1,
) -> Path:
    """Draw figure `name` of `FIGURE_NAMES` into `out_path` from the inputs it needs alone, so
    that figures can be drawn in separate processes: the summary tables of `summary` and the
    kept traces, the Parquet files `traces`. `threshold` is the study's em.premature_threshold
    (drawn in the distance figure). Missing inputs give a "no data" figure, not an error."""
    if name == "traces":
        return plot_traces(one_rule_own_set(read_files(traces)), out_path, dpi=dpi)
    conv, _ = _read_summary(summary.convergence)
    if name == "stopping":
        return plot_stopping(conv, out_path, dpi=dpi)
    if name in ("iterations", "rate", "failures"):
        plot = {"iterations": plot_iterations, "rate": plot_rate, "failures": plot_failures}
        return plot[name](one_rule_own_set(conv), out_path, dpi=dpi)
    if name == "replicates":
        reps, reps_meta = _read_summary(summary.replicates)
        if reps.empty:
            reps = replicates_from_convergence(conv)
        return plot_replicates(reps, out_path, plan=plan_from_metadata(reps_meta), dpi=dpi)
    perf, meta = _read_summary(summary.performance)
    # The level the summary was computed at, as `summary.summarise` recorded it.
    level = float(meta.get("coverage_level", 0.95))
    if name == "distance":
        counts, _ = _read_summary(summary.stopping_distance)
        return plot_distance(counts, out_path, threshold=threshold, dpi=dpi)
    if name == "zip":
        zips, _ = _read_summary(summary.zip_pi)
        return plot_zip(zips, conv, perf, out_path, level=level, dpi=dpi)
    perf = one_rule_own_set(perf)
    if name == "coverage":
        return plot_coverage(perf, out_path, level=level, dpi=dpi)
    if name in ("bias", "rmse", "nested_loop"):
        plot = {"bias": plot_bias, "rmse": plot_rmse, "nested_loop": plot_nested_loop}
        return plot[name](perf, out_path, dpi=dpi)
    raise ValueError(f"unknown figure {name!r}; figures are {', '.join(FIGURE_NAMES)}")


def draw_all(
    summary: SummaryFiles,
    traces: Iterable[str | os.PathLike[str]],
    out_paths: Mapping[str, str | os.PathLike[str]],
    *,
    dpi: int = DPI,
    threshold: float = 0.1,
) -> dict[str, Path]:
    """Draw each figure of `out_paths` (figure name of `FIGURE_NAMES` -> PNG path) into its
    path, in one process; return the paths by name. `summary`, `traces` and `threshold` are
    those of `draw_one`; missing inputs give "no data" figures, not errors.
    """
    traces = list(traces)
    return {
        name: draw_one(name, summary, traces, path, dpi=dpi, threshold=threshold)
        for name, path in out_paths.items()
    }
