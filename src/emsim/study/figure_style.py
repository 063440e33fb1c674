"""Shared drawing helpers of the study's figures: seaborn's style without global state, the
"no data" panel, atomic PNG writes, colours and markers of models and methods, facets and
legends."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from emsim.study.captions import FACTOR_LABELS, design_value_label
from emsim.study.figure_data import MODEL_ORDER
from emsim.study.parquet_io import atomic_write

DPI = 120
NO_DATA = "no data"
METHOD_MARKERS = {"em": "o", "squarem": "s"}
METHOD_LINESTYLES = {"em": "-", "squarem": "--"}
MODEL_LINESTYLES = {"pi": "-", "equal_var": "--", "full": ":"}
MODEL_MARKERS = {"pi": "o", "equal_var": "s", "full": "^"}


# --- helpers -------------------------------------------------------------------------------


# Axes titles at the top of their axes, where matplotlib's automatic placement puts them too
# unless tick labels sit on top or a y offset text (a "1e-5" over the axis) overlaps the title,
# which no figure here has: placing them costs a measure of every axis's ticks per panel, about
# a sixth of the figures' CPU on the default study (benchmarks/tail.py figures-cpu), and drew
# the same pixels (tests/test_figures_save.py).
FIXED_TITLES = {"axes.titley": 1.0}


def styled(func: Callable[..., Path]) -> Callable[..., Path]:
    """Draw inside seaborn's style and context without touching global rcParams."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with (
            sns.axes_style("whitegrid"),
            sns.plotting_context("notebook", font_scale=0.85),
            mpl.rc_context(FIXED_TITLES),
        ):
            return func(*args, **kwargs)

    return wrapper


def save_png(fig: Figure, path: str | os.PathLike[str], dpi: int = DPI) -> Path:
    """Write `fig` as a PNG at `dpi`, drawn once: `Figure.savefig` with a layout engine draws
    the figure twice (once, not rendered, to run the constrained layout; then to render), and
    the first draw is about a third of a figure's cost. The Agg canvas's `print_png` runs the
    layout at the start of its one draw, at the figure's dpi, set to `dpi` beforehand as
    savefig sets it: the same pixels and the same file (tests/test_figures_save.py)."""
    path = Path(path)
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    atomic_write(path, lambda tmp: canvas.print_png(tmp, pil_kwargs=PNG_OPTIONS))
    return path


# zlib's fastest level: the same pixels, written in about half the time of Pillow's default
# (level 6), in files about a tenth larger (the figures of the default study, the report that
# embeds them).
PNG_OPTIONS = {"compress_level": 1}


def no_data_panel(ax: Axes, message: str = NO_DATA) -> None:
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


def empty_figure(
    path: str | os.PathLike[str], title: str, message: str = NO_DATA, dpi: int = DPI
) -> Path:
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    no_data_panel(ax, message)
    ax.set_title(title)
    return save_png(fig, path, dpi)


def model_colors(models: list[str]) -> dict[str, tuple]:
    palette = sns.color_palette("colorblind", max(len(MODEL_ORDER), len(models)))
    colors = {m: palette[i] for i, m in enumerate(MODEL_ORDER)}
    extra = [m for m in models if m not in colors]
    for i, m in enumerate(extra, start=len(MODEL_ORDER)):
        colors[m] = palette[i % len(palette)]
    return colors


def facets(
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


def bottom_legend(fig: Figure, handles: list, labels: list[str]) -> None:
    if handles:
        # As many entries per row as fit the figure's width (about 1.9 inches an entry).
        ncol = max(1, min(len(handles), int(fig.get_figwidth() // 1.9)))
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)


def plain_log_ticks(ax: Axes) -> None:
    """Label a log y axis 2, 5, 10, 20 instead of 2x10^0 ...: iteration counts read easier."""
    ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))

    def minor(v: float, _pos: int) -> str:
        # Only 2x and 5x per decade: labelling every minor tick crowds the axis.
        if v <= 0:
            return ""
        lead = round(v / 10 ** np.floor(np.log10(v)))
        return f"{v:g}" if lead in (2, 5) else ""

    ax.yaxis.set_minor_formatter(mpl.ticker.FuncFormatter(minor))


def series_legend(models: list[str], methods: list[str], colors: dict) -> tuple[list, list]:
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


def figure_size(n_rows: int, n_cols: int, w: float = 3.3, h: float = 2.6) -> tuple[float, float]:
    return (max(5.5, w * n_cols), max(3.2, h * n_rows + 1.2))


def log_n_axis(ax: Axes, sizes: list[float]) -> None:
    """A log n axis with ticks at the design's sample sizes, written plainly (100, 1000)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(mpl.ticker.FixedLocator(sizes))
    ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
    if len(sizes) == 1:
        ax.set_xlim(sizes[0] / 2, sizes[0] * 2)
