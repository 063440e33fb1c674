"""The EM trace figures: the seed document's log-likelihood against p(Z=1) for one fit, and the
study's for a kept replicate per cell (which replicate and cells: `figure_data.traces_shown`)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from emsim.study import figure_data as fd
from emsim.study.captions import cell_label
from emsim.study.figure_data import MODEL_ORDER, ordered
from emsim.study.figure_style import (
    DPI,
    MODEL_LINESTYLES,
    MODEL_MARKERS,
    bottom_legend,
    empty_figure,
    model_colors,
    save_png,
    styled,
)

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
    color: tuple | None = None,
) -> None:
    """The seed's geom_point + geom_path(arrow=): a point per iteration, arrows between them;
    coloured by iteration (`norm`, `cmap`), or all in `color` (one path among several)."""
    cmap = mpl.colormaps[cmap] if isinstance(cmap, str) else cmap
    if color is not None:
        cmap = mpl.colors.ListedColormap([color])
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, iteration = x[ok], y[ok], iteration[ok]
    # Long traces get arrows on a subset of segments so the heads stay legible (and the
    # figure quick to draw: each arrow is an artist of its own); a thin line keeps the path.
    segments = np.arange(len(x) - 1)
    if len(segments) > 20:
        segments = np.unique(np.linspace(0, len(x) - 2, 20).astype(int))
        ax.plot(x, y, color=color or "0.55", linewidth=0.6, linestyle=linestyle, zorder=1)
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
    if color is not None and len(x):
        # Without the iteration colours, a ring shows where the path starts.
        ax.scatter(x[:1], y[:1], s=80, facecolors="none", edgecolors=[color], zorder=4)


def _trace_colorbar(fig: Figure, axes, norm: mpl.colors.Normalize, cmap: str) -> None:
    mappable = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(mappable, ax=axes, location="bottom", label="Iteration", shrink=0.6, aspect=40)


@styled
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
        return empty_figure(path, title, dpi=dpi)
    t = trace.sort_values("iteration")
    x, y = t[column].to_numpy(float), t["loglik"].to_numpy(float)
    it = t["iteration"].to_numpy(float)
    if not (np.isfinite(x) & np.isfinite(y)).any():
        return empty_figure(path, title, dpi=dpi)
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    ax = fig.add_subplot()
    norm = mpl.colors.Normalize(vmin=float(np.nanmin(it)), vmax=max(float(np.nanmax(it)), 1.0))
    _draw_trace(ax, x, y, it, norm, "viridis")
    ax.set_xlabel("p(Z=1)")
    ax.set_ylabel("log-likelihood")
    ax.set_title(title)
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    _trace_colorbar(fig, ax, norm, "viridis")
    return save_png(fig, path, dpi)


@styled
def plot_traces(
    traces: pd.DataFrame,
    path: str | os.PathLike[str],
    method: str = "em",
    start: str | None = None,
    max_cells: int = 12,
    *,
    dpi: int = DPI,
) -> Path:
    """The seed's trace figure for a kept replicate per cell, faceted by cell, path per model
    (`figure_data.traces_shown`)."""
    title = "EM paths: log-likelihood against p(Z=1), one kept replicate per cell"
    t, cells, total = fd.traces_shown(traces, method, start, max_cells)
    if t.empty:
        return empty_figure(path, title, dpi=dpi)
    if total > len(cells):
        title += f" ({len(cells)} of {total} cells)"
    n_cols = min(4, len(cells))
    n_rows = int(np.ceil(len(cells) / n_cols))
    fig = Figure(figsize=(3.6 * n_cols + 0.5, 3.1 * n_rows + 1.8), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    norm = mpl.colors.Normalize(vmin=0.0, vmax=max(float(t["iteration"].astype(float).max()), 1.0))
    models = ordered(t["model"], MODEL_ORDER)
    # One colour per model: on an iteration scale up to the cap, every path of a few dozen
    # iterations came out the same colour.
    colors = model_colors(models)
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
                color=colors[model],
            )
        ax.set_xlabel("p(Z=1)")
        ax.set_ylabel("log-likelihood")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)
    for ax in axes[len(cells) :]:
        ax.set_visible(False)
    handles = [
        Line2D(
            [],
            [],
            color=colors[m],
            marker=MODEL_MARKERS.get(m, "D"),
            linestyle=MODEL_LINESTYLES.get(m, "-"),
        )
        for m in models
    ]
    handles.append(Line2D([], [], color="0.3", marker="o", fillstyle="none", linestyle="none"))
    bottom_legend(fig, handles, [f"model {m}" for m in models] + ["start"])
    first = t.iloc[0]
    fig.suptitle(f"{title}\nmethod {first['method']}, start {first['start']}")
    return save_png(fig, path, dpi)
