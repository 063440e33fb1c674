"""Can the stopping rule be trusted? The figure of each rule's stops by cell (usable, premature
and saddle shares, median distance to the limit, E-steps per fit), the distance to the limit
where each rule stopped, and zip plots of the Wald intervals for pi (which rows:
`emsim.study.figure_data`)."""

from __future__ import annotations

import os
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from emsim.study import figure_data as fd
from emsim.study.figure_data import MODEL_ORDER, STOPPING_ORDER, ordered
from emsim.study.figure_style import (
    DPI,
    METHOD_MARKERS,
    bottom_legend,
    empty_figure,
    no_data_panel,
    save_png,
    styled,
)
from emsim.study.precision import wilson_interval

# --- can the stopping rule be trusted? ----------------------------------------------------


def _wilson_bars(points: pd.DataFrame, rows: pd.DataFrame, column: str, scale: float):
    """A share's bar is its 95% Wilson interval over the `n_fits` fits, not +- 2 binomial MCSE,
    which is 0 at a share of 0 and, for a rare status (1 in 3000), reaches below 0 and is cut
    there (docs/design.md section 10)."""
    low, high = wilson_interval(rows[column], rows["n_fits"])
    x = points["x"].to_numpy(dtype=float)
    return points.assign(
        minus=np.nan_to_num(x - low * scale).clip(min=0.0),
        plus=np.nan_to_num(high * scale - x).clip(min=0.0),
    )


def _panel_by_cell(
    ax: Axes, rows: pd.DataFrame, panel: tuple, position: dict, palette: dict, methods: list
) -> None:
    """One panel of the stopping figure: a point (+- 2 MCSE; a share's Wilson interval) per
    cell x stopping rule (colour)
    x method (marker), dodged around the cell's row."""
    column, _, scale, log = panel
    rules = list(palette)
    offsets = np.linspace(-0.3, 0.3, max(len(rules) * len(methods), 1))
    for k, (rule, method) in enumerate((r, m) for r in rules for m in methods):
        sub = rows[(rows["stopping"] == rule) & (rows["method"] == method)]
        if sub.empty:
            continue
        points = fd.stopping_panel(sub, column, scale, log)
        if column.startswith("rate_"):
            points = _wilson_bars(points, sub, column, scale)
        ax.errorbar(
            points["x"].to_numpy(),
            sub["cell_id"].map(position).to_numpy(dtype=float) + offsets[k],
            xerr=np.vstack([points["minus"].to_numpy(), points["plus"].to_numpy()]),
            fmt=METHOD_MARKERS.get(method, "o"),
            ms=3.5,
            color=palette[rule],
            elinewidth=0.8,
            capsize=0,
            linestyle="none",
        )
    if log:
        ax.set_xscale("log")
    else:
        ax.set_xlim(left=0)


@styled
def plot_stopping(rules: pd.DataFrame, path: str | os.PathLike[str], *, dpi: int = DPI) -> Path:
    """Per model (rows of panels) and cell (rows within a panel, labelled): the usable,
    premature and saddle shares, the median distance to the limit and the E-steps per fit
    (+- 2 MCSE; the shares their 95% Wilson interval) of each stopping rule and method, the real
    starts pooled."""
    title = (
        "Where each stopping rule ended the fits (+- 2 MCSE, shares: 95% Wilson interval; "
        "real starts pooled)"
    )
    data = fd.stopping_rows(rules)
    if data.empty:
        return empty_figure(path, title, dpi=dpi)
    order, labels = fd.cell_order(data)
    position = {cid: i for i, cid in enumerate(order)}
    models = ordered(data["model"], MODEL_ORDER)
    stopping = ordered(data["stopping"], STOPPING_ORDER)
    methods = ordered(data["method"], tuple(METHOD_MARKERS))
    palette = dict(zip(stopping, sns.color_palette("colorblind", len(stopping)), strict=True))
    panels = fd.STOPPING_PANELS
    fig = Figure(
        figsize=(2.0 + 2.4 * len(panels), 1.4 + (0.6 + 0.24 * len(order)) * len(models)),
        layout="constrained",
    )
    axes = fig.subplots(len(models), len(panels), squeeze=False, sharey=True)
    for i, model in enumerate(models):
        for j, panel in enumerate(panels):
            ax = axes[i][j]
            _panel_by_cell(ax, data[data["model"] == model], panel, position, palette, methods)
            ax.set_title(f"model {model}", fontsize=9)
            ax.set_xlabel(panel[1], fontsize=8)
            # The panels share the y axis (and its ticks): the labels are set once, and only
            # hidden beside the first column, not emptied, which would empty them everywhere.
            ax.tick_params(axis="y", labelleft=j == 0, labelsize=7)
    axes[0][0].set_yticks(range(len(order)), [labels[c] for c in order])
    axes[0][0].set_ylim(len(order) - 0.5, -0.5)  # the first cell on top
    handles = [Line2D([], [], color=palette[r], marker="o", linestyle="none") for r in stopping]
    handles += [
        Line2D([], [], color="0.3", marker=METHOD_MARKERS.get(m, "o"), linestyle="none")
        for m in methods
    ]
    bottom_legend(fig, handles, [f"rule {r}" for r in stopping] + [f"method {m}" for m in methods])
    fig.suptitle(title, fontsize=10)
    return save_png(fig, path, dpi)


@styled
def plot_distance(
    counts: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    threshold: float = 0.1,
    dpi: int = DPI,
) -> Path:
    """Histograms of log10 distance_to_limit by stopping rule, per model x method."""
    title = "Distance to the limit of the iteration where the rule stopped (SEs)"
    shares = fd.distance_shares(counts)
    if shares.empty:
        return empty_figure(path, title, dpi=dpi)
    models = ordered(shares["model"], MODEL_ORDER)
    methods = ordered(shares["method"], tuple(METHOD_MARKERS))
    rules = ordered(shares["stopping"], STOPPING_ORDER)
    palette = dict(zip(rules, sns.color_palette("colorblind", len(rules)), strict=True))
    fig = Figure(figsize=(1.5 + 3.0 * len(models), 1.2 + 2.3 * len(methods)), layout="constrained")
    axes = fig.subplots(len(methods), len(models), squeeze=False, sharex=True)
    for i, method in enumerate(methods):
        for j, model in enumerate(models):
            ax = axes[i][j]
            rows = shares[(shares["model"] == model) & (shares["method"] == method)]
            for rule in rules:
                bins = rows[rows["stopping"] == rule]
                if bins.empty:
                    continue
                x = bins["log10_lo"].to_numpy(float) + 0.125
                ax.step(x, bins["share"].to_numpy(), where="mid", color=palette[rule])
            ax.axvline(np.log10(threshold), color="0.3", linestyle="--", linewidth=0.9)
            ax.set_title(f"model {model} · {method}", fontsize=9)
            ax.set_xlabel("log10 distance (SE)")
            ax.set_ylabel("% of fits" if j == 0 else "")
    handles = [Line2D([], [], color=palette[r]) for r in rules]
    bottom_legend(fig, handles, [f"rule {r}" for r in rules])
    fig.suptitle(title, fontsize=10)
    return save_png(fig, path, dpi)


@styled
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
    model, data = fd.zip_rows(zips, method)
    if model is None:
        return empty_figure(path, title, dpi=dpi)
    cells = fd.zip_cells(data, conv, perf)
    rules = ordered(data["stopping"], STOPPING_ORDER)
    if not cells or not rules:
        return empty_figure(path, title, dpi=dpi)
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    _, labels = fd.cell_order(data[data["cell_id"].isin(cells)])
    fig = Figure(figsize=(1.5 + 3.0 * len(rules), 0.8 + 2.6 * len(cells)), layout="constrained")
    axes = fig.subplots(len(cells), len(rules), squeeze=False)
    for i, cell in enumerate(cells):
        for j, rule in enumerate(rules):
            ax = axes[i][j]
            rows = data[(data["cell_id"] == cell) & (data["stopping"] == rule)]
            if rows.empty:
                no_data_panel(ax)
                continue
            shown = fd.zip_intervals(rows, z)
            for covers, color in ((True, "0.55"), (False, "#c0392b")):
                sub = shown[shown["covers"] == covers]
                ax.hlines(sub["centile"], sub["lo"], sub["hi"], color=color, linewidth=0.6)
            ax.axvline(float(rows["pi"].iloc[0]), color="black", linewidth=0.9)
            ax.axhline(100.0 * level, color="0.2", linestyle="--", linewidth=0.9)
            ax.set_ylim(0, 100)
            ax.set_title(
                f"{labels.get(cell, cell)} · rule {rule}\ncoverage "
                f"{100 * shown['covers'].mean():.1f}% of {len(shown)}",
                fontsize=8,
            )
            ax.set_xlabel("pi")
            ax.set_ylabel("centile of |z|" if j == 0 else "")
    fig.suptitle(f"{title}: model {model}, method {method}", fontsize=10)
    return save_png(fig, path, dpi)
