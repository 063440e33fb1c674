"""The study's figures by name (`FIGURES`: each with the tables it reads), their captions and
the labels of design cells, shared by the figures (`figures`), the workflow and the report
(`report`) without importing matplotlib or seaborn, so that the report and the workflow's
parsing stay light."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from emsim.study.schema import SUMMARY_TABLES

if TYPE_CHECKING:
    import pandas as pd

# Design factors shown on facets and in the nested-loop plot, outermost first, with mathtext
# labels (DejaVu's glyph coverage of Unicode sub/superscripts is patchy; mathtext always works).
DESIGN_FACTORS: tuple[tuple[str, str], ...] = (
    ("n", "$n$"),
    ("separation", r"$|\mu_2-\mu_1|/\sigma_1$"),
    ("sigma_ratio", r"$\sigma_2/\sigma_1$"),
    ("pi", r"$\pi$"),
    ("sigma1", r"$\sigma_1$"),
    ("mu1", r"$\mu_1$"),
)
FACTOR_LABELS = dict(DESIGN_FACTORS)


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the study: its name (``results/figures/<name>.png``, the caption file
    ``figure_captions/<name>.rst``) and the inputs it is drawn from alone."""

    name: str
    # The summary tables it reads (of `schema.SUMMARY_TABLES`); `figures.draw_one` reads
    # those and no other, and the figures rule takes their union as inputs.
    tables: tuple[str, ...]
    # Whether it reads the kept traces.
    traces: bool = False


# The study's figures, in the order of the report: the one list of them. Each caption is written
# once, in figure_captions/<name>.rst (package data): Snakemake's report shows that file (the
# figures rule names it through `caption_path`) and the HTML report shows the same text
# (`CAPTIONS`). Each is drawn by `figures.DRAWERS[name]`.
FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("traces", (), traces=True),
    FigureSpec("bias", ("performance",)),
    FigureSpec("rmse", ("performance",)),
    FigureSpec("coverage", ("performance",)),
    FigureSpec("misspecification", ("performance",)),
    FigureSpec("iterations", ("convergence",)),
    FigureSpec("rate", ("convergence",)),
    FigureSpec("failures", ("convergence",)),
    FigureSpec("nested_loop", ("performance",)),
    FigureSpec("stopping", ("stopping_rules",)),
    FigureSpec("distance", ("stopping_distance",)),
    FigureSpec("zip", ("zip_pi", "convergence", "performance")),
    FigureSpec("replicates", ("replicates", "convergence")),
)
FIGURE_NAMES: tuple[str, ...] = tuple(figure.name for figure in FIGURES)
# The figures of the kept traces alone (rule traces_figure, drawn once the fit jobs that keep
# them are done, while the others fit) and those of the summary tables (rule figures).
TRACE_FIGURE_NAMES: tuple[str, ...] = tuple(f.name for f in FIGURES if f.traces)
TABLE_FIGURE_NAMES: tuple[str, ...] = tuple(f.name for f in FIGURES if not f.traces)
# The summary tables some figure reads, in the order of `schema.SUMMARY_TABLES`.
FIGURE_TABLES: tuple[str, ...] = tuple(
    table for table in SUMMARY_TABLES if any(table in figure.tables for figure in FIGURES)
)
_CAPTION_FILES = resources.files("emsim.study") / "figure_captions"


def figure_spec(name: str) -> FigureSpec:
    """The figure called `name`; one clear line if there is none."""
    for figure in FIGURES:
        if figure.name == name:
            return figure
    raise ValueError(f"unknown figure {name!r}; figures are {', '.join(FIGURE_NAMES)}")


def caption_path(name: str) -> str:
    """The caption file of figure `name` (an absolute path, for Snakemake's report)."""
    figure_spec(name)
    return str(_CAPTION_FILES / f"{name}.rst")


# On one line each: the HTML report flows the text itself.
CAPTIONS: dict[str, str] = {
    name: " ".join((_CAPTION_FILES / f"{name}.rst").read_text(encoding="utf-8").split())
    for name in FIGURE_NAMES
}


def design_value_label(value: object) -> str:
    """Compact label for a design value (0.8, 100, 2)."""
    if isinstance(value, float | np.floating):
        return f"{value:g}"
    return str(value)


def add_design_factors(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``separation`` (|mu2 - mu1| / sigma1) and ``sigma_ratio`` (sigma2 / sigma1)."""
    out = frame.copy()
    if {"mu1", "mu2", "sigma1"} <= set(out.columns):
        out["separation"] = ((out["mu2"] - out["mu1"]).abs() / out["sigma1"]).round(6)
    if {"sigma1", "sigma2"} <= set(out.columns):
        out["sigma_ratio"] = (out["sigma2"] / out["sigma1"]).round(6)
    return out


def cell_label(row: pd.Series) -> str:
    """Short readable name of a cell from its design values."""
    parts = [
        f"n={design_value_label(row['n'])}",
        f"Δ/σ={design_value_label(row['separation'])}",
        f"π={design_value_label(row['pi'])}",
    ]
    if "sigma_ratio" in row and row["sigma_ratio"] != 1:
        parts.append(f"σ₂/σ₁={design_value_label(row['sigma_ratio'])}")
    return ", ".join(parts)
