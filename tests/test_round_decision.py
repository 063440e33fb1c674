"""A cell's next step after a round (`precision.round_decision`, docs/design.md section 10),
with numbers: performance rows whose bias MCSE is computed here from drawn estimates
(sd / sqrt(n)), the targets typed, the plan a `ReplicatePlan`. The expected worst MCSE and step
are computed in each test from the rows it builds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emsim.study.config import replicate_plan
from emsim.study.measures import coverage_z
from emsim.study.precision import (
    ASSESSMENT_COLUMNS,
    GO_ON,
    STOP_FIXED,
    STOP_MAX,
    STOP_MET,
    Precision,
    RoundDecision,
    Target,
    round_decision,
    wilson_interval,
    wilson_mcse,
)
from emsim.study.rounds import ReplicatePlan

CELL = {"cell_id": "c", "n": 50, "mu1": 0.0, "mu2": 2.0, "sigma1": 1.0, "sigma2": 1.0, "pi": 0.5}
ADAPTIVE = ReplicatePlan(minimum=40, maximum=200, step=40, chunk_size=20)


def perf_rows(spread_by_group: dict[tuple[str, str], float], replicates: int) -> pd.DataFrame:
    """One cell's performance rows of `pi`: per (model, start), `replicates` estimates drawn with
    sd `spread` and their bias MCSE (sd / sqrt(n)). Each group also has a row of the common set
    with an MCSE far above any target: a target must never read it."""
    rng = np.random.default_rng(20)
    rows = []
    for (model, start), spread in spread_by_group.items():
        estimates = 0.5 + spread * rng.standard_normal(replicates)
        mcse = float(np.std(estimates, ddof=1) / np.sqrt(replicates))
        for set_, value in (("own", mcse), ("common", 99.0)):
            rows.append(
                {
                    **CELL,
                    "model": model,
                    "method": "em",
                    "stopping": "abs",
                    "start": start,
                    "parameter": "pi",
                    "set": set_,
                    "true_value": 0.5,
                    "bias_mcse": value,
                    "coverage": np.nan if set_ == "own" else 0.5,
                    "n_se": 0 if set_ == "own" else replicates,
                    "coverage_mcse": np.nan if set_ == "own" else 99.0,
                }
            )
    return pd.DataFrame(rows)


def worst_own_mcse(perf: pd.DataFrame) -> tuple[float, str, str]:
    """The largest bias MCSE of pi over the own set, and its row's model and start."""
    own = perf[(perf["set"] == "own") & (perf["parameter"] == "pi")]
    worst = own.loc[own["bias_mcse"].idxmax()]
    return float(worst["bias_mcse"]), worst["model"], worst["start"]


BIAS_PI = Precision(targets=(Target("bias_mcse", "pi", 0.01),))
GROUPS = {("pi", "fixed"): 0.05, ("full", "fixed"): 0.08, ("full", "truth"): 0.12}


def test_mcse_above_the_target_goes_on_and_names_the_worst_row():
    replicates = ADAPTIVE.replicates_through(0)
    perf = perf_rows(GROUPS, replicates)
    reached, model, start = worst_own_mcse(perf)
    assert reached > 0.01  # sd 0.12 / sqrt(40) is about 0.019

    decision = round_decision(BIAS_PI, perf, replicates, ADAPTIVE)

    assert isinstance(decision, RoundDecision) and decision.stop == GO_ON
    row = decision.assessment.iloc[0]
    assert list(decision.assessment.columns) == list(ASSESSMENT_COLUMNS)
    assert row.reached == reached
    assert (bool(row.met), row.rows, row.replicates) == (False, 3, replicates)
    assert (row.worst_model, row.worst_start) == (model, start)


def test_mcse_at_or_below_the_target_stops_the_cell_met():
    replicates = ADAPTIVE.replicates_through(1)
    perf = perf_rows(GROUPS, replicates)
    reached, _, _ = worst_own_mcse(perf)
    loose = Precision(targets=(Target("bias_mcse", "pi", reached),))  # met with equality
    tight = Precision(targets=(Target("bias_mcse", "pi", np.nextafter(reached, 0)),))

    met = round_decision(loose, perf, replicates, ADAPTIVE)
    missed = round_decision(tight, perf, replicates, ADAPTIVE)

    assert met.stop == STOP_MET and bool(met.assessment["met"].all())
    assert missed.stop == GO_ON and not bool(missed.assessment["met"].any())
    assert met.assessment["reached"].tolist() == [reached]


def test_a_target_missed_at_the_plan_s_maximum_stops_at_max():
    last_round = ADAPTIVE.rounds - 1
    replicates = ADAPTIVE.replicates_through(last_round)
    assert replicates == ADAPTIVE.maximum
    perf = perf_rows({("full", "truth"): 0.5}, replicates)
    reached, _, _ = worst_own_mcse(perf)
    assert reached > 0.01  # sd 0.5 / sqrt(200) is about 0.035

    decision = round_decision(BIAS_PI, perf, replicates, ADAPTIVE)

    assert decision.stop == STOP_MAX
    assert decision.assessment["reached"].tolist() == [reached]
    # One round earlier the same rows send the cell on.
    earlier = ADAPTIVE.replicates_through(last_round - 1)
    assert round_decision(BIAS_PI, perf, earlier, ADAPTIVE).stop == GO_ON


def test_a_met_target_at_the_maximum_is_met_not_max():
    perf = perf_rows({("pi", "fixed"): 0.01}, ADAPTIVE.maximum)
    assert worst_own_mcse(perf)[0] < 0.01
    assert round_decision(BIAS_PI, perf, ADAPTIVE.maximum, ADAPTIVE).stop == STOP_MET


@pytest.mark.parametrize("replicates", [{"min": 100, "max": 100}, 100])
def test_a_first_round_that_covers_the_whole_plan_is_a_fixed_study(replicates):
    """`{min: 100, max: 100}` is one round of 100, as `replicates: 100` is: the cell stops as a
    fixed study whatever its targets say, and its assessment still reports them."""
    plan = replicate_plan({"replicates": replicates, "chunk_size": 30})
    assert not plan.adaptive and plan.replicates_through(0) == 100
    perf = perf_rows(GROUPS, 100)
    reached, _, _ = worst_own_mcse(perf)

    decision = round_decision(BIAS_PI, perf, 100, plan)

    assert decision.stop == STOP_FIXED
    assert decision.assessment["reached"].tolist() == [reached]
    assert decision.assessment["met"].tolist() == [reached <= 0.01]


def test_without_targets_the_assessment_is_empty_and_the_plan_decides():
    perf = perf_rows(GROUPS, 40)
    fixed = ReplicatePlan(40, 40, 40, 20)
    steps = [
        round_decision(None, perf, replicates, plan).stop
        for replicates, plan in ((40, ADAPTIVE), (ADAPTIVE.maximum, ADAPTIVE), (40, fixed))
    ]
    assert steps == [GO_ON, STOP_MAX, STOP_FIXED]
    empty = round_decision(None, perf, 40, ADAPTIVE).assessment
    assert empty.empty and list(empty.columns) == list(ASSESSMENT_COLUMNS)


def test_a_cell_without_performance_rows_has_nothing_to_assess():
    """No rows: no target can be measured, so the assessment is empty and holds nothing back."""
    perf = perf_rows(GROUPS, 40).iloc[0:0]
    decision = round_decision(BIAS_PI, perf, 40, ADAPTIVE)
    assert decision.assessment.empty and decision.stop == STOP_MET


def test_a_row_without_mcse_misses_its_target_until_the_maximum():
    """The coverage MCSE of every own row is NaN here (no SEs): the target is missed, since
    more replicates may give it one, and the row named is the first without it."""
    perf = perf_rows(GROUPS, 40)
    coverage = Precision(targets=(Target("coverage_mcse", "pi", 0.05),))
    first_nan = perf[(perf["set"] == "own") & perf["coverage_mcse"].isna()].iloc[0]

    decision = round_decision(coverage, perf, 40, ADAPTIVE)

    row = decision.assessment.iloc[0]
    assert decision.stop == GO_ON and np.isnan(row.reached) and not bool(row.met)
    assert (row.worst_model, row.worst_start) == (first_nan["model"], first_nan["start"])
    assert round_decision(coverage, perf, ADAPTIVE.maximum, ADAPTIVE).stop == STOP_MAX


def test_scope_leaves_out_rows_of_other_starts():
    perf = perf_rows(GROUPS, 40)
    own = perf[perf["set"] == "own"]
    fixed_only = Precision(targets=(Target("bias_mcse", "pi", 1.0),), starts=("fixed",))
    expected = float(own.loc[own["start"] == "fixed", "bias_mcse"].max())

    row = round_decision(fixed_only, perf, 40, ADAPTIVE).assessment.iloc[0]

    assert row.reached == expected and row.rows == int((own["start"] == "fixed").sum())


# --- proportions: the Wilson MCSE (docs/design.md section 10) -----------------------------------


def wilson_bounds(covered: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson score interval as the roots p of (covered / n - p)^2 = z^2 p (1 - p) / n."""
    share = covered / n
    a, b, c = 1.0 + z * z / n, -(2.0 * share + z * z / n), share * share
    low, high = sorted(np.roots([a, b, c]).real)
    return float(low), float(high)


@pytest.mark.parametrize(("covered", "n"), [(100, 100), (0, 100), (95, 100), (1, 3), (930, 1000)])
def test_wilson_mcse_is_the_score_interval_s_half_width_over_z(covered, n):
    z = coverage_z(0.95)
    low, high = wilson_bounds(covered, n, z)
    assert wilson_mcse(covered / n, n) == pytest.approx((high - low) / (2.0 * z), rel=1e-12)
    assert wilson_interval(covered / n, n) == pytest.approx((low, high), rel=1e-12, abs=1e-15)
    if covered == n:  # the closed form at a share of 1: z / (2 (n + z^2))
        assert wilson_mcse(1.0, n) == pytest.approx(z / (2.0 * (n + z * z)), rel=1e-15)
        assert low == pytest.approx(0.963, abs=5e-4)  # what 100 of 100 covering supports


def test_wilson_mcse_tends_to_the_binomial_se_as_n_grows():
    for n in (10**4, 10**6):
        binomial = np.sqrt(0.95 * 0.05 / n)
        assert wilson_mcse(0.95, n) == pytest.approx(binomial, rel=5.0 / n**0.5)


def coverage_rows(covered_by_start: dict[str, np.ndarray]) -> pd.DataFrame:
    """Own-set performance rows of pi's coverage from per-replicate indicators (1 = the
    interval covered), with the performance table's MCSE sqrt(C (1 - C) / n_se)."""
    rows = []
    for start, covered in covered_by_start.items():
        share, n = float(np.mean(covered)), len(covered)
        rows.append(
            {
                **CELL,
                "model": "pi",
                "method": "em",
                "stopping": "abs",
                "start": start,
                "parameter": "pi",
                "set": "own",
                "true_value": 0.5,
                "bias_mcse": 0.001,
                "coverage": share,
                "n_se": n,
                "coverage_mcse": np.sqrt(share * (1.0 - share) / n),
            }
        )
    return pd.DataFrame(rows)


COVERAGE_PI = Precision(targets=(Target("coverage_mcse", "pi", 0.005),))
COVERAGE_PLAN = ReplicatePlan(minimum=100, maximum=1000, step=100, chunk_size=50)


def test_a_first_round_that_covers_100_percent_goes_on():
    """100 of 100 intervals cover: the table's MCSE is 0, but the decision's Wilson MCSE is
    z / (2 (100 + z^2)), about 0.0094, above the target of 0.005: the cell goes on."""
    plan = COVERAGE_PLAN
    perf = coverage_rows({"fixed": np.ones(100)})
    assert perf["coverage_mcse"].tolist() == [0.0]
    z = coverage_z(0.95)

    decision = round_decision(COVERAGE_PI, perf, 100, plan)

    row = decision.assessment.iloc[0]
    assert decision.stop == GO_ON and not bool(row.met)
    assert row.reached == pytest.approx(z / (2.0 * (100 + z * z)), rel=1e-15)
    # 200 of 200 covering support the target: z / (2 (200 + z^2)) is below 0.005.
    wider = round_decision(COVERAGE_PI, coverage_rows({"fixed": np.ones(200)}), 200, plan)
    assert wider.stop == STOP_MET
    assert wider.assessment["reached"].iloc[0] == pytest.approx(z / (2.0 * (200 + z * z)))


def test_the_worst_coverage_row_is_the_one_with_the_largest_wilson_mcse():
    """A row at coverage 1 has table MCSE 0 but is the worst row once judged by Wilson."""
    covered = {"fixed": np.r_[np.ones(390), np.zeros(10)], "truth": np.ones(40)}
    perf = coverage_rows(covered)
    expected = {s: wilson_mcse(np.mean(c), len(c)) for s, c in covered.items()}
    assert expected["truth"] > expected["fixed"]
    assert perf.set_index("start")["coverage_mcse"]["truth"] == 0.0

    row = round_decision(COVERAGE_PI, perf, 400, COVERAGE_PLAN).assessment.iloc[0]

    assert row.worst_start == "truth" and row.reached == pytest.approx(expected["truth"])
