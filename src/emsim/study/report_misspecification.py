"""Report section 14, misspecification (issue 21): per non-normal family scenario, how far the
best normal mixture (the pseudo-true value) is from the data-generating values, and per cell
the bias against the pseudo-true value and the coverage with observed and sandwich SEs, from
the performance table (docs/design.md section 6). Rows chosen as in the figure
(`figure_data.misspecified_rows`). From the estimands table it flags the cells whose estimand
(population EM's fixed point from the data-generating values) is not the highest fixed point
found: their measures describe the local solution."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from markupsafe import Markup

from emsim.study.figure_data import misspecified_rows
from emsim.study.measures import PARAMETER_ORDER, se_column
from emsim.study.report_html import format_number, html_table, render, with_mcse

# A scenario's full-model fits are flagged weakly identified when the empirical SE of pi, at
# the scenario's largest n, is above this: pi is then not pinned to better than about +- 0.2
# however many points are drawn at that n (t(5) at mu (0, 2): 0.18 at n = 20,000).
WEAK_EMPSE_PI = 0.1
# ... or when the pseudo-true mixture has another shape than the data-generating one: its
# mixing weight moved by more than this.
SHAPE_PI_SHIFT = 0.1


def _parameter_rank(rows: pd.DataFrame) -> pd.Series:
    return rows["parameter"].map({p: i for i, p in enumerate(PARAMETER_ORDER)})


def _weak_scenarios(rows: pd.DataFrame) -> set[str]:
    """The scenarios whose full model is weakly identified (`WEAK_EMPSE_PI`, `SHAPE_PI_SHIFT`)."""
    pi = rows[(rows["model"] == "full") & (rows["parameter"] == "pi")]
    weak = set()
    for scenario, of in pi.groupby("scenario", sort=False):
        largest = of[of["n"] == of["n"].max()]
        spread = largest["empse"].max()
        shift = (of["true_value"] - of["dgm_value"]).abs().max()
        if (np.isfinite(spread) and spread > WEAK_EMPSE_PI) or shift > SHAPE_PI_SHIFT:
            weak.add(str(scenario))
    return weak


# The estimands table's columns this section reads.
HIGHEST = ["cell_id", "model", "parameter", "pseudo_true_global", "pseudo_true_is_global"]


def _with_highest(rows: pd.DataFrame, estimands: pd.DataFrame | None) -> pd.DataFrame:
    """`rows` with the highest fixed point found (``pseudo_true_global``) and whether the
    estimand is it (``pseudo_true_is_global``), from the estimands table; without that table
    (a summary written before it had them) the estimand counts as the global one."""
    if estimands is None or estimands.empty or not set(HIGHEST) <= set(estimands.columns):
        return rows.assign(pseudo_true_global=rows["true_value"], pseudo_true_is_global=True)
    out = rows.merge(estimands.loc[:, HIGHEST], on=["cell_id", "model", "parameter"], how="left")
    out["pseudo_true_global"] = out["pseudo_true_global"].fillna(out["true_value"])
    # A row the table does not have (NaN) counts as global, as above.
    out["pseudo_true_is_global"] = out["pseudo_true_is_global"].ne(False)
    return out


def _local_only(rows: pd.DataFrame) -> list[str]:
    """'scenario, model' of each scenario x model with a cell whose estimand is not global."""
    local = rows.loc[~rows["pseudo_true_is_global"], ["scenario", "model"]].drop_duplicates()
    return [f"{scenario}, {model} model" for scenario, model in local.itertuples(index=False)]


def _estimand_table(rows: pd.DataFrame, weak: set[str]) -> Markup:
    cells = rows.drop_duplicates(["scenario", "model", "parameter"])
    cells = cells.assign(_rank=_parameter_rank(cells)).sort_values(
        ["family", "scenario", "model", "_rank"], kind="stable"
    )
    table = pd.DataFrame(
        {
            "scenario": cells["scenario"].map(
                lambda s: f"{s} (weakly identified)" if s in weak else s
            ),
            "model": cells["model"],
            "parameter": cells["parameter"],
            "data-generating": cells["dgm_value"].map(format_number),
            "pseudo-true": cells["true_value"].map(format_number),
            "pseudo-true - data-generating": (cells["true_value"] - cells["dgm_value"]).map(
                format_number
            ),
            "highest fixed point": cells["pseudo_true_global"]
            .map(format_number)
            .where(~cells["pseudo_true_is_global"], "the pseudo-true"),
        }
    )
    return html_table(table)


def _cell_table(rows: pd.DataFrame, labels: Mapping[str, str]) -> Markup:
    rows = rows.assign(_rank=_parameter_rank(rows)).sort_values(
        ["family", "scenario", "model", "n", "method", "_rank"], kind="stable"
    )
    observed, sandwich = (se_column("coverage", t) for t in ("observed", "sandwich"))
    table = pd.DataFrame(
        {
            "cell": rows["cell_id"].map(lambda c: labels.get(c, c)),
            "family": rows["family"],
            "model": rows["model"],
            "method": rows["method"],
            "parameter": rows["parameter"],
            "pseudo-true": rows["true_value"].map(format_number)
            + rows["pseudo_true_is_global"].map({True: "", False: " (local)"}),
            "bias": with_mcse(rows, "bias"),
            "empirical SE": with_mcse(rows, "empse"),
            "coverage % (observed SE)": with_mcse(rows, observed, 100.0),
            "coverage % (sandwich SE)": with_mcse(rows, sandwich, 100.0),
            "rel. error sandwich SE %": with_mcse(rows, se_column("relerr_modse", "sandwich")),
        }
    )
    return html_table(table)


def misspecification_section(
    perf: pd.DataFrame, labels: Mapping[str, str], estimands: pd.DataFrame | None = None
) -> Markup:
    """The section's HTML: a note when the study has no non-normal family, else the estimand
    table (one row per scenario x model x parameter, with the highest fixed point where the
    estimand is not it, from `estimands`) and the per-cell table."""
    rows = misspecified_rows(perf)
    if rows.empty:
        return render("sections/misspecification.html.j2", estimands=None)
    rows = _with_highest(rows, estimands)
    weak = _weak_scenarios(rows)
    return render(
        "sections/misspecification.html.j2",
        estimands=_estimand_table(rows, weak),
        cells=_cell_table(rows, labels),
        weak=sorted(weak),
        local_only=_local_only(rows),
        start=rows["start"].iloc[0],
        stopping=rows["stopping"].iloc[0],
        weak_empse=WEAK_EMPSE_PI,
        shape_shift=SHAPE_PI_SHIFT,
    )
