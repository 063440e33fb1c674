"""Report section 10: the replicate plan, the replicates each cell ran and the Monte Carlo
precision it reached against the study's targets (docs/design.md section 10), with the cells
that stopped at the maximum (or, in a fixed study, ended) without meeting a target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from markupsafe import Markup

from emsim.study.captions import FIGURE_NAMES, add_design_factors
from emsim.study.precision import STOP_FIXED, STOP_MAX, STOP_MET, Precision
from emsim.study.report_cells import cell_labels, design_order
from emsim.study.report_html import (
    MISSING,
    cell_anchor,
    finite,
    format_number,
    html_table,
    percent,
    render,
)
from emsim.study.schema import CELL_KEYS, FIT_ID

if TYPE_CHECKING:
    from emsim.study.rounds import ReplicatePlan
    from emsim.study.starts import StartSpec
    from emsim.study.study import Study

MEASURE_NAMES = {
    "bias_mcse": "MCSE of the bias",
    "coverage_mcse": "MCSE of the coverage",
    "coverage_sandwich_mcse": "MCSE of the sandwich-SE coverage",
}
STOP_NAMES = {
    STOP_MET: "met",
    STOP_MAX: "max (target missed)",
    STOP_FIXED: "fixed",
}
# (measure, parameter, target value) of one precision target.
TargetRow = tuple[str, str, float]


def targets_of(precision: Precision | None, prec: pd.DataFrame) -> list[TargetRow]:
    """The study's precision targets, else those the precision table records (a report drawn
    without its study)."""
    if precision is not None:
        return [(t.measure, t.parameter, t.value) for t in precision.targets]
    if prec.empty:
        return []
    rows = prec.drop_duplicates(["measure", "parameter"])
    return list(zip(rows["measure"], rows["parameter"], rows["target"].astype(float), strict=True))


def target_name(measure: str, parameter: str) -> str:
    return f"{MEASURE_NAMES.get(measure, measure)} of {parameter}"


def start_groups(names: Sequence[str], starts: Sequence[StartSpec]) -> list[str]:
    """`names` of fitted starts as the config names them: a random start whose draws are all
    in `names` by its config name (random1 .. randomk -> random), any other name as it is."""
    members: dict[str, set[str]] = {}
    for spec in starts:
        members.setdefault(spec.group, set()).add(spec.name)
    group_of = {spec.name: spec.group for spec in starts}
    out: list[str] = []
    for name in names:
        group = group_of.get(name)
        shown = group if group is not None and members[group] <= set(names) else name
        if shown not in out:
            out.append(shown)
    return out


def scope_text(precision: Precision, starts: Sequence[StartSpec]) -> str:
    """The performance rows the targets apply to, per design factor ("all" where unrestricted)."""
    chosen = {
        "models": precision.models,
        "methods": precision.methods,
        "stopping": precision.stopping,
        "starts": start_groups(precision.starts, starts) if precision.starts else None,
    }
    return "; ".join(
        f"{key}: {', '.join(map(str, names)) if names else 'all'}" for key, names in chosen.items()
    )


def _reached(row: pd.Series | None) -> str:
    """A target's MCSE reached in a cell, marked met (✓) or missed (✗)."""
    if row is None:
        return MISSING
    if int(row["rows"]) == 0:
        return "no rows"
    mark = "✓" if bool(row["met"]) else "✗"
    value = format_number(row["reached"], 3) if finite(row["reached"]) else "no MCSE"
    return f"{value} {mark}"


def _worst_row(row: pd.Series) -> str:
    parts = [row.get(f"worst_{key}") for key in FIT_ID]
    return " / ".join(str(p) for p in parts if pd.notna(p)) or MISSING


def _replicates_summary(
    counts: pd.Series, stop: pd.Series, plan: ReplicatePlan | None
) -> dict[str, object]:
    """How many replicates the cells ran; for an adaptive `plan`, how many met their targets
    and what share of a fixed study of `plan.maximum` replicates that was."""
    n_cells = len(counts)
    spread = (
        f"{int(counts.iloc[0])} each"
        if counts.nunique() == 1
        else f"from {int(counts.min())} to {int(counts.max())}, median {counts.median():g}"
    )
    summary: dict[str, object] = {
        "cells": n_cells,
        "total": int(counts.sum()),
        "spread": spread,
        "met": int((stop == STOP_MET).sum()),
        "at_max": int((stop == STOP_MAX).sum()),
    }
    if plan is not None:
        high = float(plan.maximum)
        summary["fixed_total"] = int(high * n_cells)
        summary["share"] = percent(counts.sum() / (high * n_cells))
    return summary


def _replicates_table(
    table: pd.DataFrame, stop: pd.Series, targets: list[TargetRow], prec: pd.DataFrame
) -> Markup:
    """One row per cell: its replicates, rounds, why it stopped and each target's MCSE."""
    labels = cell_labels(table)
    shown = pd.DataFrame(
        {
            "cell": table["cell_id"].map(labels),
            "replicates": table["replicates"].astype(float).map(lambda v: f"{int(v)}"),
            "rounds": table["rounds"].map(lambda v: f"{int(v)}" if finite(v) else MISSING),
            "stop": stop.map(lambda v: STOP_NAMES.get(v, v or MISSING)),
        }
    )
    by_target = (
        {key: rows.set_index("cell_id") for key, rows in prec.groupby(["measure", "parameter"])}
        if not prec.empty
        else {}
    )
    for measure, parameter, value in targets:
        rows = by_target.get((measure, parameter))
        shown[f"{target_name(measure, parameter)} (≤ {format_number(value)})"] = [
            _reached(rows.loc[c] if rows is not None and c in rows.index else None)
            for c in table["cell_id"]
        ]
    return html_table(shown, links={"cell": [cell_anchor(c) for c in table["cell_id"]]})


def _missed_targets(
    table: pd.DataFrame, stop: pd.Series, prec: pd.DataFrame, adaptive: bool
) -> dict[str, object]:
    """The targets missed, per cell (in an adaptive study: of the cells stopped at max)."""
    heading = (
        "Cells that stopped at max without meeting a target"
        if adaptive
        else "Targets missed (a fixed study: no more replicates were run)"
    )
    missed = prec[~prec["met"].astype(bool)] if not prec.empty else prec
    if adaptive and not missed.empty:
        missed = missed[missed["cell_id"].isin(table.loc[stop == STOP_MAX, "cell_id"])]
    if missed.empty:
        return {"heading": heading, "table": None}
    labels = cell_labels(table)
    order = {c: i for i, c in enumerate(table["cell_id"])}
    missed = missed.assign(_order=missed["cell_id"].map(order)).sort_values("_order", kind="stable")
    shown = pd.DataFrame(
        {
            "cell": missed["cell_id"].map(lambda c: labels.get(c, c)),
            "replicates": missed["replicates"].map(lambda v: f"{int(v)}"),
            "target": [
                f"{target_name(m, p)} ≤ {format_number(v)}"
                for m, p, v in zip(
                    missed["measure"], missed["parameter"], missed["target"], strict=True
                )
            ],
            # The MCSE that decided: a proportion's is Wilson's, not the performance table's.
            "decision's MCSE (coverage: Wilson)": missed["reached"].map(
                lambda v: format_number(v, 3) if finite(v) else "no MCSE"
            ),
            "rows": missed["rows"].map(lambda v: f"{int(v)}"),
            "worst row": [_worst_row(r) for _, r in missed.iterrows()],
        }
    )
    anchors = [cell_anchor(c) for c in missed["cell_id"]]
    return {
        "heading": heading,
        "table": html_table(shown, links={"cell": anchors}),
        "cells": missed["cell_id"].nunique(),
        "count": len(missed),
    }


def _targets_table(targets: list[TargetRow]) -> Markup:
    return html_table(
        pd.DataFrame(
            {
                "target": [target_name(m, p) for m, p, _ in targets],
                "at most": [format_number(v) for *_, v in targets],
            }
        )
    )


def replicates_section(
    study: Study | None, reps: pd.DataFrame, prec: pd.DataFrame, cells: pd.DataFrame
) -> Markup:
    """Section 10: the replicate plan, the replicates and the MCSE reached per cell and target,
    and the cells that stopped at max (or, in a fixed study, ended) without meeting a target."""
    plan = study.plan if study is not None and study.plan.adaptive else None
    precision = study.precision if study is not None else None
    targets = targets_of(precision, prec)
    context: dict[str, object] = {
        "plan": plan,
        "targets": targets,
        "scope": scope_text(precision, study.starts) if precision is not None else "every row",
        "targets_table": _targets_table(targets),
        "figure_number": FIGURE_NAMES.index("replicates") + 1,
        "no_table": False,
        "from_convergence": False,
        "fixed_all": None,
        "has_precision": not prec.empty,
    }
    if reps.empty:
        if cells.empty or "replicates" not in cells or not cells["replicates"].notna().any():
            return render("sections/replicates.html.j2", **(context | {"no_table": True}))
        reps = cells[[*CELL_KEYS, "replicates"]].assign(rounds=np.nan, stop=None)
        context["from_convergence"] = True
    table = design_order(add_design_factors(reps))
    counts = table["replicates"].astype(float)
    if not targets and counts.nunique() == 1:
        context["fixed_all"] = {"cells": len(table), "replicates": int(counts.iloc[0])}
        return render("sections/replicates.html.j2", **context)
    stop = table["stop"].fillna("") if "stop" in table else pd.Series("", index=table.index)
    context |= {
        "summary": _replicates_summary(counts, stop, plan),
        "table": _replicates_table(table, stop, targets, prec),
        "missed": _missed_targets(table, stop, prec, adaptive=plan is not None),
    }
    return render("sections/replicates.html.j2", **context)
