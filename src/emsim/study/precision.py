"""Precision targets: does a cell have enough replicates? (docs/design.md section 10).

The config's ``precision`` block states Monte Carlo SEs to reach: of the bias (EmpSE / sqrt(n_ok),
per parameter) and of the coverage. A proportion such as the coverage is judged by its Wilson
MCSE (`wilson_mcse`), not by the performance table's sqrt(C (1 - C) / n_se), which is 0 at a
coverage of exactly 0 or 1 and would meet any target after one round. A target applies to the cell's
performance rows of the own set (section 6) for its parameter, restricted to the models, methods,
stopping rules and starts the block names (all of them by default, with the derived `best`),
and leaving out rows where the measure has no true value to be measured against (equal_var's
`sigma` in a cell with unequal sigmas). It is *met* when its MCSE is at most the target in every
one of those rows; a row whose MCSE cannot be computed (fewer than two usable fits, or fewer than
two with an SE) misses it, since more replicates may give it one.

After each round a cell's assessment (`assess`) says, per target, the worst MCSE reached and the
row that has it; `decide` turns that into the cell's next step, and `projected_replicates` into
how far a cell that goes on jumps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emsim.study.measures import OWN_SET, coverage_z
from emsim.study.rounds import ReplicatePlan
from emsim.study.schema import (
    ASSESSMENT_SCHEMA,
    CELL_KEYS,
    FIT_ID,
    PLAN_METADATA,
    REPLICATES_SCHEMA,
)

__all__ = [
    "ASSESSMENT_COLUMNS",
    "ASSESSMENT_SCHEMA",
    "GO_ON",
    "MEASURES",
    "PLAN_METADATA",
    "REPLICATES_SCHEMA",
    "STOP_FIXED",
    "STOP_MAX",
    "STOP_MET",
    "Precision",
    "RoundDecision",
    "Target",
    "assess",
    "decide",
    "decision_mcse",
    "gate_through",
    "plan_from_metadata",
    "plan_metadata",
    "projected_replicates",
    "replicates_row",
    "round_decision",
    "wilson_interval",
    "wilson_mcse",
]

# The config keys of the targets and the performance column each one bounds.
# The coverage target judges the observed SE's intervals; `coverage_sandwich_mcse` those of the
# sandwich SE (section 6), for a study that configures it.
MEASURES: dict[str, str] = {
    "bias_mcse": "bias_mcse",
    "coverage_mcse": "coverage_mcse",
    "coverage_sandwich_mcse": "coverage_sandwich_mcse",
}
# A cell's state after a round: every target met; `max` replicates reached without that; one
# round only (a fixed study); or on to the next round.
STOP_MET, STOP_MAX, STOP_FIXED, GO_ON = "met", "max", "fixed", "continue"
# The Arrow schemas of the `precision` and `replicates` tables and the `replicates` table's
# metadata keys of the plan are contracts: they live in `schema` and are re-exported here.
ASSESSMENT_COLUMNS: tuple[str, ...] = tuple(ASSESSMENT_SCHEMA.names)
# The measures whose target bounds the MCSE of a proportion: the performance columns of the
# proportion and of the number of fits it is a share of. The decision judges them by the Wilson
# MCSE at this level: 100 replicates that all cover then support a coverage above about 0.963
# (the interval's lower end), which is what the MCSE has to say, and no less.
PROPORTIONS: dict[str, tuple[str, str]] = {
    "coverage_mcse": ("coverage", "n_se"),
    "coverage_sandwich_mcse": ("coverage_sandwich", "n_se_sandwich"),
}
WILSON_LEVEL = 0.95


def wilson_mcse(proportion, count, level: float = WILSON_LEVEL):
    """The Wilson score interval's half-width at `level` over its z: sqrt(n p (1 - p) + z^2 / 4)
    / (n + z^2) for a share p of n. Near sqrt(p (1 - p) / n) when n p (1 - p) is large, but not 0
    at p = 0 or 1 (there it is z / (2 (n + z^2)))."""
    z2 = coverage_z(level) ** 2
    p = np.asarray(proportion, dtype=float)
    n = np.asarray(count, dtype=float)
    return np.sqrt(n * p * (1.0 - p) + z2 / 4.0) / (n + z2)


def wilson_interval(proportion, count, level: float = WILSON_LEVEL):
    """The Wilson score interval (low, high) at `level` for a share p of n: centred at
    (n p + z^2 / 2) / (n + z^2), z `wilson_mcse` either side; within [0, 1], and not empty at
    p = 0 or 1 (a rate of 1 in 3000 is not known to +- its own size)."""
    z = coverage_z(level)
    p = np.asarray(proportion, dtype=float)
    n = np.asarray(count, dtype=float)
    centre = (n * p + z * z / 2.0) / (n + z * z)
    half = z * wilson_mcse(p, n, level)
    return centre - half, centre + half


def decision_mcse(rows: pd.DataFrame, measure: str) -> np.ndarray:
    """The MCSE `measure` that the decision compares with its target, per performance row: the
    table's own column, except for a proportion, whose Wilson MCSE replaces it (NaN where the
    table's is NaN: too few fits to judge)."""
    table = rows[MEASURES[measure]].to_numpy(dtype=float)
    if measure not in PROPORTIONS:
        return table
    share, count = PROPORTIONS[measure]
    wilson = wilson_mcse(rows[share].to_numpy(dtype=float), rows[count].to_numpy(dtype=float))
    return np.where(np.isnan(table), np.nan, wilson)


def plan_metadata(minimum: int, maximum: int, step: int) -> dict[str, str]:
    """The plan's entries of the replicates table's metadata (`PLAN_METADATA`)."""
    return dict(zip(PLAN_METADATA, map(str, (minimum, maximum, step)), strict=True))


def plan_from_metadata(meta: Mapping[str, str]) -> tuple[int, int, int] | None:
    """(min, max, step) of an adaptive plan from the replicates table's metadata; None for a
    fixed study or a table that does not record it."""
    try:
        low, high, step = (int(meta[key]) for key in PLAN_METADATA)
    except (KeyError, ValueError):
        return None
    return (low, high, step) if low < high else None


def replicates_row(
    cell: Mapping, replicates: int, rounds: int, stop: str, assessment: pd.DataFrame
) -> pd.DataFrame:
    """A cell's row of the `replicates` table."""
    row = {
        **{key: cell[key] for key in CELL_KEYS},
        "replicates": int(replicates),
        "rounds": int(rounds),
        "stop": stop,
        "targets": len(assessment),
        "targets_met": int(assessment["met"].sum()) if len(assessment) else 0,
    }
    return pd.DataFrame([row], columns=REPLICATES_SCHEMA.names)


@dataclass(frozen=True)
class Target:
    measure: str  # a key of MEASURES
    parameter: str  # a reported parameter (measures.PARAMETER_ORDER)
    value: float


@dataclass(frozen=True)
class Precision:
    """The validated ``precision`` block: its targets and the rows they apply to (None = all).
    Parsed once, with the rest of the config, by `config.load_study` (``study.precision``)."""

    targets: tuple[Target, ...]
    models: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    stopping: tuple[str, ...] | None = None
    starts: tuple[str, ...] | None = None

    def scope(self, perf: pd.DataFrame) -> pd.Series:
        """Which performance rows the targets apply to (before the parameter and truth)."""
        keep = perf["set"] == OWN_SET
        for column, allowed in (
            ("model", self.models),
            ("method", self.methods),
            ("stopping", self.stopping),
            ("start", self.starts),
        ):
            if allowed is not None:
                keep &= perf[column].isin(allowed)
        return keep


def assess(perf: pd.DataFrame, precision: Precision, replicates: int) -> pd.DataFrame:
    """One row per target for one cell's performance rows (ASSESSMENT_COLUMNS): the largest
    MCSE (`decision_mcse`) over the rows it applies to (`reached`, NaN when one of them has
    none), whether it is met, how many rows it applies to and which row is the worst (the first
    without an MCSE, else the one with the largest). A target that applies to no row of the
    cell is met (there is nothing to measure), with ``rows`` 0."""
    if perf.empty:
        return ASSESSMENT_SCHEMA.empty_table().to_pandas()
    cell = perf.iloc[0]
    in_scope = precision.scope(perf)
    rows = []
    for target in precision.targets:
        chosen = perf[
            in_scope & (perf["parameter"] == target.parameter) & perf["true_value"].notna()
        ]
        mcse = decision_mcse(chosen, target.measure)
        worst = None
        if len(mcse) == 0:
            reached, met = np.nan, True
        elif np.isnan(mcse).any():
            reached, met = np.nan, False
            worst = chosen.iloc[int(np.flatnonzero(np.isnan(mcse))[0])]
        else:
            i = int(np.argmax(mcse))
            reached, met = float(mcse[i]), bool(mcse[i] <= target.value)
            worst = chosen.iloc[i]
        rows.append(
            {
                **{key: cell[key] for key in CELL_KEYS},
                "replicates": int(replicates),
                "measure": target.measure,
                "parameter": target.parameter,
                "target": target.value,
                "reached": reached,
                "met": met,
                "rows": len(mcse),
                **{f"worst_{key}": (None if worst is None else worst[key]) for key in FIT_ID},
            }
        )
    return pd.DataFrame(rows, columns=list(ASSESSMENT_COLUMNS))


def decide(assessment: pd.DataFrame | None, replicates: int, maximum: int, adaptive: bool) -> str:
    """The cell's state after a round with `replicates` replicates done: STOP_FIXED in a study of
    one round, STOP_MET when every target is met, STOP_MAX when `maximum` is reached without
    that, else GO_ON."""
    if not adaptive:
        return STOP_FIXED
    if assessment is not None and bool(assessment["met"].all()):
        return STOP_MET
    return STOP_MAX if replicates >= maximum else GO_ON


def projected_replicates(
    assessment: pd.DataFrame | None, replicates: int, plan: ReplicatePlan
) -> int:
    """The replicates a cell that goes on after `replicates` runs through next: R (MCSE /
    target)^2 for its most missed target, as an MCSE falls like 1 / sqrt(R), put on the plan's
    grid (`ReplicatePlan.next_stop`: rounded up to the next grid point, at least one `step` on,
    at most `max`). A missed target without an MCSE projects nothing: one step."""
    wanted = float(replicates)
    if assessment is not None and len(assessment):
        missed = assessment[~assessment["met"].astype(bool)]
        ratio = missed["reached"].to_numpy(dtype=float) / missed["target"].to_numpy(dtype=float)
        if np.isnan(ratio).any():
            wanted = float("nan")
        elif len(ratio):
            wanted = replicates * float(np.max(ratio)) ** 2
    return plan.next_stop(replicates, wanted)


def gate_through(state: Mapping, assessment: pd.DataFrame, plan: ReplicatePlan) -> int | None:
    """A cell's gate after a round: from its replicates row (``stop``, ``replicates``) and its
    assessment, the replicates it runs through next (`projected_replicates`), or None when it
    stops."""
    if state["stop"] != GO_ON:
        return None
    return projected_replicates(assessment, int(state["replicates"]), plan)


@dataclass(frozen=True)
class RoundDecision:
    """A cell's next step after a round and the assessment it rests on."""

    stop: str  # STOP_MET, STOP_MAX, STOP_FIXED or GO_ON
    assessment: pd.DataFrame  # ASSESSMENT_COLUMNS: one row per target, none without targets
    # The replicates its next round runs through (`projected_replicates`); None unless GO_ON.
    next_replicates: int | None = None


def round_decision(
    precision: Precision | None,
    performance: pd.DataFrame,
    replicates: int,
    plan: ReplicatePlan,
) -> RoundDecision:
    """What a cell does after a round that brought it to `replicates` replicates: its
    performance rows assessed against the targets (`assess`), and the step `decide` takes from
    that under `plan`. Without targets the assessment has no rows and an adaptive cell runs on
    to the plan's maximum, one step per round; with targets, a cell that goes on jumps to the
    count its most missed target projects (`projected_replicates`)."""
    if precision is None:
        assessment = ASSESSMENT_SCHEMA.empty_table().to_pandas()
    else:
        assessment = assess(performance, precision, replicates)
    stop = decide(
        assessment if precision is not None else None, replicates, plan.maximum, plan.adaptive
    )
    if stop != GO_ON:
        return RoundDecision(stop, assessment)
    return RoundDecision(stop, assessment, projected_replicates(assessment, replicates, plan))
