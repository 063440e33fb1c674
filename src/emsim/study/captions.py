"""The study's figures by name: their captions and the labels of design cells, shared by the
figures (`figures`) and the report (`report`) without importing matplotlib or seaborn, so that
the report and the workflow's parsing stay light."""

from __future__ import annotations

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

# One caption per figure; the HTML report shows them and workflow/report/<name>.rst repeats them
# for Snakemake's report (tests/test_figures_report.py checks that the two agree).
CAPTIONS: dict[str, str] = {
    "traces": (
        "EM paths as in the seed document: log-likelihood against the current estimate of "
        "p(Z=1) for one kept replicate per cell (plain EM, one start), one path per model. "
        "Arrows point from each iteration to the next; points are coloured by iteration."
    ),
    "bias": (
        "Bias of the estimate of pi against the sample size n (log scale), with error bars of "
        "+- 2 Monte Carlo SEs, faceted by the separation abs(mu2 - mu1)/sigma1 (columns) and the "
        "mixing proportion pi (rows); colour = model, marker = method; start 'best'."
    ),
    "rmse": (
        "Root mean squared error of the estimate of pi multiplied by sqrt(n), against n (log "
        "scale), with +- 2 Monte Carlo SEs. A flat line means the usual root-n rate; facets as "
        "in the bias figure."
    ),
    "coverage": (
        "Coverage of the Wald interval for pi (estimate +- z SE from the observed information) "
        "against n, with +- 2 Monte Carlo SEs. The dashed line is the nominal level and the grey "
        "band nominal +- 2 sqrt(C(1-C)/n_rep), the range expected from Monte Carlo error alone."
    ),
    "iterations": (
        "Iterations to convergence (converged fits only) against the separation "
        "abs(mu2 - mu1)/sigma1, log scale, one panel per start. Lines join the median over "
        "cells of each cell's median; bands are the interquartile range over cells (the other "
        "design factors)."
    ),
    "rate": (
        "Plain EM's empirical linear convergence rate (from the last log-likelihood increments) "
        "against the theoretical rate, the fraction of missing information 1 - I_obs/I_complete "
        "at the estimate, averaged over converged fits per cell and start. Points on the "
        "identity line mean the theory predicts EM's speed."
    ),
    "failures": (
        "Percentage of fits ending in each non-converged status, by cell (rows) and model and "
        "method (columns), averaged over the starts (the derived start 'best' excluded)."
    ),
    "nested_loop": (
        "Nested-loop plot (Rücker & Schwarzer 2014) of the bias of the estimate of pi in every "
        "cell (plain EM, start 'best'): cells are ordered by the design factors (outermost "
        "first), bias is drawn as a step line per model with a +- 2 Monte Carlo SE band, and the "
        "step lines underneath show each factor's level."
    ),
    "stopping": (
        "Can the stopping rule be trusted? Share of fits that each stopping rule ended at a "
        "point that is not a usable maximum, by cell (sorted by the design factors) and rule, "
        "with +- 2 Monte Carlo SEs: 'premature' (the limit of the same iteration lies more than "
        "the threshold of standard errors away) and 'saddle' (the observed information is not "
        "positive definite there). Plain EM and SQUAREM (marker), start 'best'."
    ),
    "distance": (
        "Distance from where each stopping rule ended a fit to the limit of the same iteration, "
        "in the limit's standard errors (largest over the estimated parameters; log scale, "
        "distances below 1e-8 drawn at 1e-8), for every start of every cell. The dashed line is "
        "the threshold above which a fit counts as premature."
    ),
    "zip": (
        "Zip plot (Morris, White & Crowther 2019, Fig. 5) of the Wald intervals for pi in up to "
        "three cells (rows: the most premature fits, the lowest coverage, the seed's design) by "
        "stopping rule (columns), plain EM, start 'best': each usable fit's interval, ranked by "
        "|z| = |est - pi| / SE, those missing the truth in red; the dashed line marks the "
        "nominal coverage."
    ),
}
FIGURE_NAMES: tuple[str, ...] = tuple(CAPTIONS)


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
