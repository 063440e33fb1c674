"""The misspecification figure (issue 21): per non-normal family scenario, the bias against the
pseudo-true value and the coverage of the observed-information and sandwich intervals against
n, each +- 2 MCSE. The rows come from `figure_data.misspecified_rows`; the numbers from the
performance table (docs/design.md section 6)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from emsim.study import figure_data as fd
from emsim.study.figure_style import (
    DPI,
    bottom_legend,
    empty_figure,
    figure_size,
    log_n_axis,
    save_png,
    styled,
)
from emsim.study.measures import PARAMETER_ORDER, SE_TYPES, se_column

__all__ = ["plot_misspecification"]

NO_FAMILY = "no non-normal family in this study"
# The coverage of each SE type: the sandwich solid (the interval meant to hold under
# misspecification), the observed information's dashed.
SE_LINESTYLES = {"observed": "--", "sandwich": "-"}


def _series(ax: Axes, rows: pd.DataFrame, column: str, color, offset: float, style: str) -> None:
    rows = rows.sort_values("n")
    n = rows["n"].to_numpy(dtype=float) * 10**offset
    y = rows[column].to_numpy(dtype=float)
    error = 2 * rows[f"{column}_mcse"].to_numpy(dtype=float)
    ax.errorbar(
        n,
        y,
        yerr=np.nan_to_num(error),
        color=color,
        linestyle=style,
        marker="o",
        markersize=3.5,
        linewidth=1.2,
        capsize=2,
    )


def _panels(ax_bias: Axes, ax_cov: Axes, rows: pd.DataFrame, colors: dict, level: float) -> None:
    parameters = [p for p in PARAMETER_ORDER if p in set(rows["parameter"])]
    offsets = np.linspace(-0.04, 0.04, len(parameters)) if len(parameters) > 1 else [0.0]
    for parameter, offset in zip(parameters, offsets, strict=True):
        of = rows[rows["parameter"] == parameter]
        _series(ax_bias, of, "bias", colors[parameter], offset, "-")
        for se_type in SE_TYPES:
            column = se_column("coverage", se_type)
            _series(ax_cov, of, column, colors[parameter], offset, SE_LINESTYLES[se_type])
    band = fd.coverage_band(rows["n_rep"], level)
    if band is not None:
        ax_cov.axhspan(*band, color="0.6", alpha=0.25, lw=0)
    ax_cov.axhline(level, color="0.2", linewidth=0.8, linestyle=":")
    ax_cov.set_ylim(-0.02, 1.02)
    ax_bias.axhline(0.0, color="0.2", linewidth=0.8, linestyle=":")
    sizes = sorted(rows["n"].astype(float).unique())
    for ax in (ax_bias, ax_cov):
        log_n_axis(ax, sizes)


@styled
def plot_misspecification(
    perf: pd.DataFrame, path: str | os.PathLike[str], level: float = 0.95, *, dpi: int = DPI
) -> Path:
    """Per family scenario (a row of panels): bias against the pseudo-true value and coverage
    with observed (dashed) and sandwich (solid) SEs against n, +- 2 MCSE, of the full model
    (else the first model) at the start shown; a "no data" figure without a non-normal family."""
    title = "Misspecified components: bias against the pseudo-true value and coverage"
    data = fd.misspecified_rows(perf)
    if data.empty:
        return empty_figure(path, title, NO_FAMILY, dpi=dpi)
    models = fd.ordered(data["model"], fd.MODEL_ORDER)
    model = fd.MISSPECIFICATION_MODEL if fd.MISSPECIFICATION_MODEL in models else models[0]
    method = fd.ordered(data["method"], fd.METHOD_ORDER)[0]
    data = data[(data["model"] == model) & (data["method"] == method)]
    scenarios = list(dict.fromkeys(data.sort_values(["family", "mu2", "pi"])["scenario"]))
    parameters = [p for p in PARAMETER_ORDER if p in set(data["parameter"])]
    colors = dict(zip(parameters, sns.color_palette("colorblind", len(parameters)), strict=True))
    fig = Figure(figsize=figure_size(len(scenarios), 2, w=4.2), layout="constrained")
    axes = fig.subplots(len(scenarios), 2, squeeze=False, sharex="row")
    for (ax_bias, ax_cov), scenario in zip(axes, scenarios, strict=True):
        _panels(ax_bias, ax_cov, data[data["scenario"] == scenario], colors, level)
        ax_bias.set_title(scenario, fontsize=8, loc="left")
        ax_bias.set_ylabel("bias vs pseudo-true")
        ax_cov.set_ylabel("coverage")
    for ax in axes[-1]:
        ax.set_xlabel("$n$")
    handles = [Line2D([], [], color=colors[p], marker="o", label=p) for p in parameters]
    handles += [
        Line2D([], [], color="0.3", linestyle=SE_LINESTYLES[t], label=f"{t} SE") for t in SE_TYPES
    ]
    fig.suptitle(f"{title}\n(model {model}, method {method}, start {data['start'].iloc[0]})")
    bottom_legend(fig, handles, [h.get_label() for h in handles])
    return save_png(fig, path, dpi)
