"""Figures of the study: one function per figure, each writing one PNG and returning its path.

Figures are drawn on `matplotlib.figure.Figure` objects rendered by the Agg canvas, never through
pyplot's global state, so they work headless, in parallel Snakemake jobs and leave the caller's
matplotlib and seaborn settings untouched. Every function draws a readable "no data" panel for
empty or degenerate input (no rows, all NaN, one cell, one n) instead of raising, because a
partially failed study should still produce a report that shows what is missing.

All numbers come from the summary tables of `emsim.study.measures`; which rows and values each
figure shows is decided by `emsim.study.figure_data`, and which figures there are and what each
reads by `emsim.study.captions.FIGURES` (each drawn by its entry of `DRAWERS`). The figures of
the performance, convergence and replicates are here; the trace figures are in `figure_traces`,
those of the stopping rule in `figure_stopping`, the shared drawing helpers in `figure_style`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from emsim.study import figure_data as fd
from emsim.study.captions import FACTOR_LABELS, FigureSpec, design_value_label, figure_spec
from emsim.study.figure_data import MODEL_ORDER, ordered
from emsim.study.figure_misspecification import plot_misspecification
from emsim.study.figure_stopping import plot_distance, plot_stopping, plot_zip
from emsim.study.figure_style import (
    DPI,
    METHOD_LINESTYLES,
    METHOD_MARKERS,
    MODEL_MARKERS,
    bottom_legend,
    empty_figure,
    facets,
    figure_size,
    log_n_axis,
    model_colors,
    no_data_panel,
    plain_log_ticks,
    save_png,
    series_legend,
    styled,
)
from emsim.study.figure_traces import plot_seed_trace, plot_traces
from emsim.study.parquet_io import read_metadata
from emsim.study.precision import STOP_FIXED, STOP_MAX, STOP_MET, plan_from_metadata
from emsim.study.summary import SummaryFiles, read_files

__all__ = [
    "DPI",
    "DRAWERS",
    "FigureInputs",
    "draw_all",
    "draw_one",
    "plot_bias",
    "plot_coverage",
    "plot_distance",
    "plot_failures",
    "plot_iterations",
    "plot_misspecification",
    "plot_nested_loop",
    "plot_rate",
    "plot_replicates",
    "plot_rmse",
    "plot_seed_trace",
    "plot_stopping",
    "plot_traces",
    "plot_zip",
]

# --- figures by n (bias, RMSE, coverage) ------------------------------------------------------


def _plot_against_n(
    perf: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    measure: str,
    ylabel: str,
    title: str,
    parameter: str,
    start: str | None,
    reference: Callable[[Axes, pd.DataFrame], None] | None = None,
    sharey: bool = False,
    limits: tuple[float, float] | None = None,
    dpi: int = DPI,
) -> Path:
    """Shared layout of the bias, RMSE and coverage figures: y(n) by model and method
    (`figure_data.against_n`); with `limits`, the y axis is that range and the error bars
    end at it (a share such as coverage cannot leave [0, 1])."""
    start, data = fd.against_n(perf, measure, parameter, start)
    full_title = f"{title} of {parameter} (start: {start})"
    if data.empty:
        return empty_figure(path, full_title, dpi=dpi)
    models = ordered(data["model"], MODEL_ORDER)
    methods = ordered(data["method"], tuple(METHOD_MARKERS))
    colors = model_colors(models)
    series = [(m, k) for m in models for k in methods]
    # Dodge the series in log-n so error bars of different models do not hide each other.
    offsets = np.linspace(-0.06, 0.06, len(series)) if len(series) > 1 else [0.0]
    n_rows = data["pi"].nunique()
    n_cols = data["separation"].nunique()
    fig = Figure(figsize=figure_size(n_rows, n_cols), layout="constrained")
    for ax, facet_title, subset in facets(fig, data, "pi", "separation", sharey=sharey):
        ax.set_title(facet_title, fontsize=9)
        finite = subset[np.isfinite(subset["y"])]
        if finite.empty:
            no_data_panel(ax)
            continue
        for (model, method), offset in zip(series, offsets, strict=True):
            s = finite[(finite["model"] == model) & (finite["method"] == method)]
            if s.empty:
                continue
            s = s.sort_values("n")
            y = s["y"].to_numpy(float)
            err = s["y_error"].to_numpy(float)
            err = np.where(np.isfinite(err), err, 0.0)
            below, above = (err, err) if limits is None else fd.clipped_error(y, err, limits)
            ax.errorbar(
                s["n"].to_numpy(float) * np.exp(offset),
                y,
                yerr=np.vstack([below, above]),
                clip_on=limits is None,
                color=colors[model],
                marker=METHOD_MARKERS.get(method, "D"),
                linestyle=METHOD_LINESTYLES.get(method, ":"),
                markersize=4,
                linewidth=1,
                capsize=2,
            )
        if reference is not None:
            reference(ax, subset)
        if limits is not None:
            ax.set_ylim(*limits)
        log_n_axis(ax, sorted(data["n"].astype(float).unique()))
    for ax in fig.axes:
        if ax.get_subplotspec().is_last_row():
            ax.set_xlabel("n (log scale)")
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(ylabel)
    fig.suptitle(full_title)
    bottom_legend(fig, *series_legend(models, methods, colors))
    return save_png(fig, path, dpi)


@styled
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
        measure="bias",
        ylabel="bias",
        title="Bias",
        parameter=parameter,
        start=start,
        reference=zero,
        dpi=dpi,
    )


@styled
def plot_rmse(
    perf: pd.DataFrame,
    path: str | os.PathLike[str],
    parameter: str = "pi",
    start: str | None = None,
    *,
    dpi: int = DPI,
) -> Path:
    """RMSE x sqrt(n) +- 2 MCSE against n (a flat line is the root-n rate)."""
    return _plot_against_n(
        perf,
        path,
        measure="rmse",
        ylabel=r"RMSE $\times\sqrt{n}$",
        title=r"RMSE $\times\sqrt{n}$",
        parameter=parameter,
        start=start,
        dpi=dpi,
    )


@styled
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
        band = fd.coverage_band(subset["n_rep"], level)
        if band is not None:
            ax.axhspan(*band, color="0.6", alpha=0.25, lw=0)
        ax.axhline(level, color="0.2", linewidth=0.8, linestyle="--")

    return _plot_against_n(
        perf,
        path,
        measure="coverage",
        ylabel="coverage",
        title=f"Coverage of the {level:.0%} interval",
        parameter=parameter,
        start=start,
        reference=nominal,
        sharey=True,
        limits=(0.0, 1.0),
        dpi=dpi,
    )


# --- convergence figures --------------------------------------------------------------------


@styled
def plot_iterations(conv: pd.DataFrame, path: str | os.PathLike[str], *, dpi: int = DPI) -> Path:
    """Median iterations to convergence (median and IQR over cells) against separation."""
    title = "Iterations to convergence against separation"
    data, panels = fd.iterations_panels(conv)
    if not panels:
        return empty_figure(path, title, dpi=dpi)
    n_cols = min(4, len(panels))
    n_rows = -(-len(panels) // n_cols)
    fig = Figure(figsize=figure_size(n_rows, n_cols, w=3.6, h=3.0), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    handles, labels = [], []
    models = ordered(data["model"], MODEL_ORDER)
    colors = model_colors(models)
    for ax, (start, finite) in zip(axes, panels, strict=False):
        ax.set_title(f"start: {start}", fontsize=9)
        if finite.empty:
            no_data_panel(ax)
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
        plain_log_ticks(ax)
        if finite["separation"].nunique() == 1:
            s0 = float(finite["separation"].iloc[0])
            ax.set_xlim(s0 - 0.5, s0 + 0.5)
        if ax.get_legend() is not None:
            h, lab = ax.get_legend_handles_labels()
            if len(h) > len(handles):
                handles, labels = h, lab
            ax.get_legend().remove()
    for i, ax in enumerate(axes[: len(panels)]):
        # The bottom panel of each column (the grid's last row may be partly empty) gets x ticks.
        bottom = i + n_cols >= len(panels)
        ax.xaxis.set_tick_params(labelbottom=bottom)
        ax.set_xlabel(r"separation $|\mu_2-\mu_1|/\sigma_1$" if bottom else "")
        ax.set_ylabel("iterations (median per cell)" if i % n_cols == 0 else "")
    fig.suptitle(title)
    bottom_legend(fig, handles, labels)
    return save_png(fig, path, dpi)


@styled
def plot_rate(conv: pd.DataFrame, path: str | os.PathLike[str], *, dpi: int = DPI) -> Path:
    """Plain EM's empirical rate against the fraction of missing information, identity line."""
    title = "EM convergence rate: empirical against theoretical"
    fig = Figure(figsize=(6, 5.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    data = fd.rate_points(conv)
    if data.empty:
        no_data_panel(ax)
        return save_png(fig, path, dpi)
    models = ordered(data["model"], MODEL_ORDER)
    ax.plot([0, 1], [0, 1], color="0.3", linestyle="--", linewidth=0.8, label="identity")
    sns.scatterplot(
        data=data,
        x="rate_theory_mean",
        y="rate_empirical_mean",
        hue="model",
        hue_order=models,
        palette=model_colors(models),
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
    bottom_legend(fig, handles, [f"model {lab}" if lab in models else lab for lab in labels])
    return save_png(fig, path, dpi)


@styled
def plot_failures(conv: pd.DataFrame, path: str | os.PathLike[str], *, dpi: int = DPI) -> Path:
    """Heatmaps of the share of fits per non-converged status over the grid."""
    title = "Failures by status (% of fits)"
    shares = fd.failure_shares(conv)
    if shares is None:
        return empty_figure(path, title, dpi=dpi)
    if not shares:
        return empty_figure(path, title, "no failures: every fit converged", dpi=dpi)
    first = next(iter(shares.values()))
    n_cells, n_fits = first.shape
    vmax = max(float(np.nanmax(grid.to_numpy())) for grid in shares.values())
    fig = Figure(
        figsize=(2.2 + 0.55 * n_fits * len(shares) + 1.5, max(3.0, 0.28 * n_cells + 2.2)),
        layout="constrained",
    )
    axes = fig.subplots(1, len(shares), squeeze=False, sharey=True)[0]
    annotate = n_cells * n_fits <= 120
    for i, (ax, (column, grid)) in enumerate(zip(axes, shares.items(), strict=True)):
        sns.heatmap(
            grid,
            ax=ax,
            vmin=0.0,
            vmax=max(vmax, 1e-9),
            cmap="rocket_r",
            annot=annotate,
            fmt=".0f",
            annot_kws={"fontsize": 7},
            cbar=i == len(shares) - 1,
            cbar_kws={"label": "% of fits"},
            linewidths=0.5,
            linecolor="white",
        )
        ax.set_title(column.removeprefix("rate_"))
        ax.set_xlabel("model / method")
        ax.set_ylabel("cell" if i == 0 else "")
        ax.tick_params(axis="x", labelrotation=60)
    fig.suptitle(title)
    return save_png(fig, path, dpi)


# --- nested-loop plot -----------------------------------------------------------------------


def _factor_bands(ax: Axes, cells: pd.DataFrame, varying: list[str]) -> None:
    """The nested loop's lower panel: one band per varying factor, outermost at the top, its
    levels stepping over [0, 0.8] of the band along the cells."""
    ax.grid(False)
    if not varying:
        no_data_panel(ax, "one cell: no design factor varies")
        return
    yticks, ylabels = [], []
    x_all = np.arange(len(cells))
    for j, key in enumerate(varying):
        levels = sorted(cells[key].unique())
        rank = cells[key].map({v: i for i, v in enumerate(levels)}).to_numpy(float)
        base = len(varying) - 1 - j
        y = base + 0.8 * rank / max(1, len(levels) - 1)
        ax.step(x_all, y, where="mid", color="0.25", linewidth=1)
        yticks.append(base + 0.4)
        shown = ", ".join(design_value_label(v) for v in levels[:6])
        ylabels.append(f"{FACTOR_LABELS.get(key, key)}: {shown}{', …' if len(levels) > 6 else ''}")
    ax.set_yticks(yticks, ylabels, fontsize=8)
    ax.set_ylim(-0.2, len(varying))


@styled
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
    start, data, cells = fd.nested_loop_rows(perf, parameter, start, method)
    title = f"Nested-loop plot: bias of {parameter} (method {method}, start {start})"
    if data.empty:
        return empty_figure(path, title, dpi=dpi)
    varying = fd.varying_factors(cells)
    n_cells = len(cells)
    fig = Figure(
        figsize=(max(6.5, 0.22 * n_cells + 3), 5.5 + 0.35 * len(varying)), layout="constrained"
    )
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, max(1, len(varying)) * 0.6])
    models = ordered(data["model"], MODEL_ORDER)
    colors = model_colors(models)
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
    _factor_bands(bottom, cells, varying)
    bottom.set_xlabel("cell (sorted by the design factors)")
    bottom.set_xlim(-0.5, n_cells - 0.5)
    return save_png(fig, path, dpi)


# --- replicates per cell ------------------------------------------------------------------

STOP_LABELS: dict[str, str] = {
    STOP_MET: "met every target",
    STOP_MAX: "stopped at max, a target missed",
    STOP_FIXED: "fixed number",
}


def _plan_marks(ax: Axes, plan: tuple[int, int, int]) -> None:
    """An adaptive plan on a replicates panel: min and max as lines, ticks at the rounds."""
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


def _replicates_title(data: pd.DataFrame, plan: tuple[int, int, int] | None, fixed: bool) -> str:
    title = "Replicates per cell"
    if fixed:
        return (
            title + f": all {len(data)} cells ran {int(data['replicates'].iloc[0])} (fixed number)"
        )
    if plan is not None:
        met = int((data["stop_reason"] == STOP_MET).sum())
        at_max = int((data["stop_reason"] == STOP_MAX).sum())
        title += (
            f": {met} of {len(data)} cells met every target, {at_max} stopped at max "
            f"(min {plan[0]}, then as projected in steps of {plan[2]}, max {plan[1]})"
        )
    return title


@styled
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
    data = fd.replicates_rows(reps)
    if data.empty:
        return empty_figure(path, "Replicates per cell", dpi=dpi)
    rows = list(dict.fromkeys(data["row_label"]))
    position = {r: i for i, r in enumerate(rows)}
    sizes = sorted(data["n"].unique())
    reasons = set(data["stop_reason"])
    stops = [s for s in STOP_LABELS if s in reasons] + sorted(reasons - set(STOP_LABELS))
    palette = sns.color_palette("colorblind", 4)
    colors = {STOP_MET: palette[2], STOP_MAX: palette[3], STOP_FIXED: palette[0]}
    values = data["replicates"].astype(int)
    fixed = values.nunique() == 1 and set(stops) <= {STOP_FIXED, ""}
    fig = Figure(
        figsize=(max(6.0, 1.8 + 2.8 * len(sizes)), max(3.2, 1.9 + 0.24 * len(rows))),
        layout="constrained",
    )
    axes = fig.subplots(1, len(sizes), squeeze=False, sharex=True, sharey=True)[0]
    high = max(float(values.max()), float(plan[1])) if plan is not None else float(values.max())
    for ax, n in zip(axes, sizes, strict=True):
        subset = data[data["n"] == n]
        y = subset["row_label"].map(position).to_numpy(float)
        x = subset["replicates"].to_numpy(float)
        bar_colors = [colors.get(s, "0.6") for s in subset["stop_reason"]]
        ax.barh(y, x, height=0.7, color=bar_colors, edgecolor="white", linewidth=0.5)
        if len(rows) <= 60:
            for xi, yi in zip(x, y, strict=True):
                ax.text(xi + 0.01 * high, yi, f"{xi:g}", va="center", ha="left", fontsize=7)
        if plan is not None:
            _plan_marks(ax, plan)
        ax.set_title(f"{FACTOR_LABELS['n']} = {design_value_label(n)}", fontsize=9, pad=14)
        ax.set_xlabel("replicates")
        ax.set_xlim(0, high * 1.12)
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(range(len(rows)), rows, fontsize=7)
    axes[0].set_ylim(len(rows) - 0.5, -0.5)
    handles = [
        Patch(color=colors.get(s, "0.6"), label=STOP_LABELS.get(s, s or "not recorded"))
        for s in stops
    ]
    if len(handles) > 1 or (handles and not fixed):
        bottom_legend(fig, handles, [h.get_label() for h in handles])
    fig.suptitle(_replicates_title(data, plan, fixed), fontsize=10)
    return save_png(fig, path, dpi)


# --- the registry of drawers, and the driver -------------------------------------------------


# The kept traces' columns that no figure draws (the traces figure shows the path in p(Z=1) and
# the log-likelihood): not read, which makes the traces figure's read about half as long.
TRACE_COLUMNS_NOT_DRAWN = frozenset(
    {"est_mu1", "est_mu2", "est_sigma1", "est_sigma2", "diff_loglik"}
)


class FigureInputs:
    """What one figure is drawn from, read on first use: the summary tables its `FigureSpec`
    lists (no other: asking for one it does not list is an error, so the list stays true)
    and, if it reads them, the kept traces."""

    def __init__(
        self,
        spec: FigureSpec,
        summary: SummaryFiles | None,
        traces: Iterable[str | os.PathLike[str]],
    ) -> None:
        self.spec = spec
        self._summary = summary
        self._traces = list(traces)
        self._read: dict[str, tuple[pd.DataFrame, dict[str, str]]] = {}

    def _table(self, name: str) -> tuple[pd.DataFrame, dict[str, str]]:
        if name not in self.spec.tables:
            raise ValueError(
                f"figure {self.spec.name!r} reads table {name!r}, which captions.FIGURES does "
                f"not list for it ({', '.join(self.spec.tables) or 'none'})"
            )
        if name not in self._read:
            path = getattr(self._summary, name)
            exists = path is not None and path.exists()
            self._read[name] = (
                (pq.read_table(path).to_pandas(), read_metadata(path))
                if exists
                else (pd.DataFrame(), {})
            )
        return self._read[name]

    def table(self, name: str) -> pd.DataFrame:
        """Summary table `name`; empty if its file is not given or does not exist."""
        return self._table(name)[0]

    def metadata(self, name: str) -> dict[str, str]:
        """The key-value metadata of summary table `name`; empty without its file."""
        return self._table(name)[1]

    def traces(self) -> pd.DataFrame:
        """The rows of the kept traces files that exist, without the columns no figure draws
        (`TRACE_COLUMNS_NOT_DRAWN`)."""
        if not self.spec.traces:
            raise ValueError(f"figure {self.spec.name!r} does not list the traces as its input")
        return read_files(self._traces, TRACE_COLUMNS_NOT_DRAWN)

    def coverage_level(self) -> float:
        """The level the summary was computed at, as `summary.summarise` recorded it."""
        return float(self.metadata("performance").get("coverage_level", 0.95))


def _draw_replicates(inputs: FigureInputs, path: str | os.PathLike[str], dpi: int) -> Path:
    reps, plan = inputs.table("replicates"), plan_from_metadata(inputs.metadata("replicates"))
    if reps.empty:
        reps = fd.replicates_from_convergence(inputs.table("convergence"))
    return plot_replicates(reps, path, plan=plan, dpi=dpi)


# How each figure of `captions.FIGURES` is drawn from its inputs into a path, at a dpi, with the
# study's em.premature_threshold (the distance figure draws it).
Drawer = Callable[[FigureInputs, "str | os.PathLike[str]", int, float], Path]
DRAWERS: dict[str, Drawer] = {
    "traces": lambda i, path, dpi, _: plot_traces(i.traces(), path, dpi=dpi),
    "bias": lambda i, path, dpi, _: plot_bias(i.table("performance"), path, dpi=dpi),
    "rmse": lambda i, path, dpi, _: plot_rmse(i.table("performance"), path, dpi=dpi),
    "coverage": lambda i, path, dpi, _: plot_coverage(
        i.table("performance"), path, level=i.coverage_level(), dpi=dpi
    ),
    "misspecification": lambda i, path, dpi, _: plot_misspecification(
        i.table("performance"), path, level=i.coverage_level(), dpi=dpi
    ),
    "iterations": lambda i, path, dpi, _: plot_iterations(i.table("convergence"), path, dpi=dpi),
    "rate": lambda i, path, dpi, _: plot_rate(i.table("convergence"), path, dpi=dpi),
    "failures": lambda i, path, dpi, _: plot_failures(i.table("convergence"), path, dpi=dpi),
    "nested_loop": lambda i, path, dpi, _: plot_nested_loop(i.table("performance"), path, dpi=dpi),
    "stopping": lambda i, path, dpi, _: plot_stopping(i.table("stopping_rules"), path, dpi=dpi),
    "distance": lambda i, path, dpi, threshold: plot_distance(
        i.table("stopping_distance"), path, threshold=threshold, dpi=dpi
    ),
    "zip": lambda i, path, dpi, _: plot_zip(
        i.table("zip_pi"),
        i.table("convergence"),
        i.table("performance"),
        path,
        level=i.coverage_level(),
        dpi=dpi,
    ),
    "replicates": lambda i, path, dpi, _: _draw_replicates(i, path, dpi),
}


def draw_one(
    name: str,
    summary: SummaryFiles | None,
    traces: Iterable[str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    *,
    dpi: int = DPI,
    threshold: float = 0.1,
) -> Path:
    """Draw figure `name` of `FIGURE_NAMES` into `out_path` from the inputs it needs alone, so
    that figures can be drawn in separate processes: the summary tables of `summary` that
    `captions.FIGURES` lists for it and the kept traces, the Parquet files `traces`.
    `threshold` is the study's em.premature_threshold (drawn in the distance figure). Missing
    inputs give a "no data" figure, not an error."""
    spec = figure_spec(name)
    return DRAWERS[name](FigureInputs(spec, summary, traces), out_path, dpi, threshold)


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
