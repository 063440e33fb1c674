"""The study's figures by name: their captions and the labels of design cells, shared by the
figures (`figures`) and the report (`report`) without importing matplotlib or seaborn, so that
the report and the workflow's parsing stay light."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

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

# The study's figures, in the order of the report. Each caption is written once, in
# figure_captions/<name>.rst (package data): Snakemake's report shows that file (the figures
# rule names it through `caption_path`) and the HTML report shows the same text (`CAPTIONS`).
FIGURE_NAMES: tuple[str, ...] = (
    "traces",
    "bias",
    "rmse",
    "coverage",
    "iterations",
    "rate",
    "failures",
    "nested_loop",
    "stopping",
    "distance",
    "zip",
    "replicates",
)
_CAPTION_FILES = resources.files("emsim.study") / "figure_captions"


def caption_path(name: str) -> str:
    """The caption file of figure `name` (an absolute path, for Snakemake's report)."""
    if name not in FIGURE_NAMES:
        raise ValueError(f"unknown figure {name!r}; figures are {', '.join(FIGURE_NAMES)}")
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
