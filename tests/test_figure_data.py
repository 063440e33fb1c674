"""Which rows and values each figure shows (`emsim.study.figure_data`), on small summary frames
built here: the selections, orders and presentation scales, with the expected values computed
in the tests."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from emsim.study import figure_data as fd

DESIGN = {"mu1": 0.0, "sigma1": 1.0, "sigma2": 1.0, "family": "normal"}


def cell(cell_id: str, n: int, mu2: float, pi: float) -> dict:
    return {"cell_id": cell_id, "n": n, **DESIGN, "mu2": mu2, "pi": pi}


def perf_rows() -> pd.DataFrame:
    """Two cells x two stopping rules x own/common set x starts fixed/best x pi/mu1, one model
    and method; every measure a distinct number."""
    rows = []
    cells = [cell("a", 100, 2.0, 0.5), cell("b", 400, 2.0, 0.5)]
    combos = itertools.product(cells, ("abs", "rel"), ("own", "common"), ("fixed", "best"))
    for k, (c, rule, kind, start) in enumerate(combos):
        for parameter in ("pi", "mu1"):
            rows.append(
                {
                    **c,
                    "model": "full",
                    "method": "em",
                    "stopping": rule,
                    "set": kind,
                    "start": start,
                    "parameter": parameter,
                    "n_rep": 50 + k,
                    "bias": 0.01 * (k + 1),
                    "bias_mcse": 0.001 * (k + 1),
                    "rmse": 0.1 * (k + 1),
                    "rmse_mcse": 0.002 * (k + 1),
                    "coverage": 0.9,
                    "coverage_mcse": 0.01,
                }
            )
    return pd.DataFrame(rows)


def test_ordered_puts_the_known_order_first_then_sorts_the_rest():
    values = pd.Series(["zeta", "full", None, "pi", "alpha", "full"])
    assert fd.ordered(values, fd.MODEL_ORDER) == ["pi", "full", "alpha", "zeta"]


def test_primary_rule_and_own_set():
    perf = perf_rows()
    kept = fd.one_rule_own_set(perf)
    assert set(kept["stopping"]) == {"abs"} and set(kept["set"]) == {"own"}
    assert len(kept) == len(perf) // 4
    # Without the seed's rule, the first of the study's rules in STOPPING_ORDER.
    no_abs = perf.assign(stopping=perf["stopping"].map({"abs": "aitken", "rel": "rel"}))
    assert fd.primary_stopping(no_abs) == "rel"
    assert fd.primary_stopping(pd.DataFrame()) is None
    # A table without `set` (convergence) keeps all its rows of the rule.
    conv = perf.drop(columns="set")
    assert len(fd.one_rule_own_set(conv)) == len(perf) // 2


def test_choose_start():
    perf = perf_rows()
    assert fd.choose_start(perf) == "best"
    assert fd.choose_start(perf[perf["start"] != "best"]) == "fixed"
    assert fd.choose_start(perf, "fixed") == "fixed"
    assert fd.choose_start(pd.DataFrame()) is None


@pytest.mark.parametrize("measure", ["bias", "rmse", "coverage"])
def test_against_n_selects_one_parameter_and_start_and_scales(measure):
    perf = perf_rows()
    start, data = fd.against_n(perf, measure, parameter="pi")
    expected = perf[
        (perf["stopping"] == "abs")
        & (perf["set"] == "own")
        & (perf["start"] == "best")
        & (perf["parameter"] == "pi")
    ]
    assert start == "best"
    assert list(data["cell_id"]) == ["a", "b"] and len(data) == len(expected)
    root_n = np.sqrt(expected["n"].to_numpy(float)) if measure == "rmse" else 1.0
    np.testing.assert_array_equal(data["y"], expected[measure].to_numpy() * root_n)
    np.testing.assert_array_equal(
        data["y_error"], 2 * expected[f"{measure}_mcse"].to_numpy() * root_n
    )
    assert list(data["separation"]) == [2.0, 2.0]
    # A start the study does not have: no rows, and the start it was asked for.
    start, data = fd.against_n(perf, measure, start="truth")
    assert start == "truth" and data.empty
    assert fd.against_n(pd.DataFrame(), measure)[1].empty


def test_coverage_band_uses_the_median_replicates_of_groups_that_have_any():
    half = 2 * np.sqrt(0.95 * 0.05 / 200)
    low, high = fd.coverage_band(pd.Series([0, 100, 300, np.nan]), 0.95)
    assert low == pytest.approx(0.95 - half) and high == pytest.approx(0.95 + half)
    # Few replicates: the band is capped at 1.
    assert fd.coverage_band(pd.Series([4]), 0.95)[1] == 1.0
    assert fd.coverage_band(pd.Series([0, np.nan]), 0.95) is None


def test_nested_loop_rows_and_varying_factors():
    perf = perf_rows()
    start, data, cells = fd.nested_loop_rows(perf, "pi")
    assert start == "best"
    assert list(cells["cell_id"]) == ["a", "b"]
    assert fd.varying_factors(cells) == ["n"]
    assert set(data["method"]) == {"em"} and set(data["parameter"]) == {"pi"}
    # No finite bias: nothing to draw.
    _, data, cells = fd.nested_loop_rows(perf.assign(bias=np.nan), "pi")
    assert data.empty and cells.empty
    assert fd.nested_loop_rows(perf, "pi", method="squarem")[1].empty


def conv_rows() -> pd.DataFrame:
    rows = []
    cells = [cell("a", 100, 1.0, 0.5), cell("b", 100, 3.0, 0.5)]
    for k, (c, start, method) in enumerate(
        itertools.product(cells, ("fixed", "truth", "best"), ("em", "squarem"))
    ):
        rows.append(
            {
                **c,
                "model": "full",
                "method": method,
                "stopping": "abs",
                "start": start,
                "n_rep": 20,
                "iterations_median": float(k),
                "rate_empirical_mean": 0.5,
                "rate_theory_mean": 0.4 if k != 2 else np.nan,
                **{column: 0.0 for column in fd.FAILURE_COLUMNS},
                "rate_premature": 0.01 * k,
                "rate_premature_mcse": 0.001,
                "rate_saddle": 0.0,
                "rate_saddle_mcse": 0.0,
            }
        )
    return pd.DataFrame(rows)


def test_iterations_panels_best_first_and_only_positive_medians():
    conv = conv_rows()
    data, panels = fd.iterations_panels(conv)
    assert len(data) == len(conv)
    assert [start for start, _ in panels] == ["best", "fixed", "truth"]
    fixed = dict(panels)["fixed"]
    # Row 0 (cell a, fixed, em) has median 0: not on a log axis.
    assert sorted(fixed["iterations_median"]) == [1.0, 6.0, 7.0]
    assert fd.iterations_panels(conv.iloc[:0])[1] == []


def test_rate_points_are_plain_em_with_both_rates_finite():
    points = fd.rate_points(conv_rows())
    assert set(points["method"]) == {"em"}
    # Row 2 (cell a, truth, em) has no theoretical rate.
    assert len(points) == 6 - 1
    assert fd.rate_points(conv_rows().drop(columns="rate_theory_mean")).empty


def test_failure_shares_are_percent_means_over_the_real_starts():
    conv = conv_rows().assign(rate_premature=0.0)
    conv["rate_degenerate"] = [0.1, 0.0, 0.3, 0.0, 0.9, 0.9, 0.0, 0.0, 0.0, 0.2, 0.9, 0.9]
    shares = fd.failure_shares(conv)
    assert list(shares) == ["rate_degenerate"]
    grid = shares["rate_degenerate"]
    assert list(grid.columns) == ["full / em", "full / squarem"]
    assert len(grid.index) == 2 and grid.index[0].startswith("n=100, Δ/σ=1")
    # Cell a, em: the fixed and truth starts' 0.1 and 0.3 (best's 0.9 left out), in percent.
    assert grid.iloc[0, 0] == pytest.approx(20.0)
    assert grid.iloc[0, 1] == pytest.approx(0.0)
    assert grid.iloc[1, 1] == pytest.approx(10.0)
    assert fd.failure_shares(conv_rows().assign(rate_premature=0.0)) == {}
    assert fd.failure_shares(conv_rows().iloc[:0]) is None


def rule_rows() -> pd.DataFrame:
    """`stopping_rules` rows: two cells x two rules, one model and method."""
    rows = []
    for k, (c, rule) in enumerate(
        itertools.product([cell("b", 400, 2.0, 0.5), cell("a", 100, 1.0, 0.8)], ("abs", "score"))
    ):
        rows.append(
            {
                **c,
                "model": "full",
                "method": "squarem",
                "stopping": rule,
                "rate_converged": 0.5 + 0.1 * k,
                "rate_converged_mcse": 0.02,
                "rate_premature": 0.01 * k,
                "rate_premature_mcse": 0.01,
                "rate_saddle": 0.0,
                "rate_saddle_mcse": 0.0,
                "distance_median": [0.3, 1e-12, 0.004, np.nan][k],
                "distance_median_mcse": [0.2, 1e-12, np.nan, np.nan][k],
                "loglik_evals_mean": 100.0 * (k + 1),
                "loglik_evals_mean_mcse": 5.0,
            }
        )
    return pd.DataFrame(rows)


def test_stopping_rows_and_panels():
    """Issue 18: the stopping figure's points per cell x rule, with 2 MCSE bars kept on the
    axis: shares in percent from 0, log axes from LOG_FLOOR; cells labelled by design."""
    rows = fd.stopping_rows(rule_rows())
    assert len(rows) == 4 and {"separation", "sigma_ratio"} <= set(rows.columns)
    order, labels = fd.cell_order(rows)
    assert order == ["a", "b"] and labels["a"] == "n=100, Δ/σ=1, π=0.8"
    assert fd.stopping_rows(rule_rows().drop(columns="distance_median_mcse")).empty
    assert fd.stopping_rows(rule_rows().iloc[:0]).empty
    shares = fd.stopping_panel(rows, "rate_premature", 100.0, log=False)
    np.testing.assert_allclose(shares["x"], [0.0, 1.0, 2.0, 3.0])
    # 2 MCSE = 2 points, cut at 0 below
    np.testing.assert_allclose(shares["minus"], [0.0, 1.0, 2.0, 2.0])
    np.testing.assert_allclose(shares["plus"], [2.0, 2.0, 2.0, 2.0])
    usable = fd.stopping_panel(
        rows.assign(rate_converged=[0.5, 0.99, 1.0, 0.2]), "rate_converged", 100.0, log=False
    )
    # 2 MCSE = 4 points, cut at 100 above
    np.testing.assert_allclose(usable["plus"], [4.0, 1.0, 0.0, 4.0])
    distance = fd.stopping_panel(rows, "distance_median", 1.0, log=True)
    np.testing.assert_allclose(distance["x"], [0.3, fd.LOG_FLOOR, 0.004, np.nan])
    # 0.3 - 0.4 would leave the log axis: the bar stops at the floor; no MCSE, no bar
    np.testing.assert_allclose(distance["minus"], [0.3 - fd.LOG_FLOOR, 0.0, 0.0, np.nan])
    np.testing.assert_allclose(distance["plus"], [0.4, 2e-12, 0.0, np.nan])
    assert [c for c, *_ in fd.STOPPING_PANELS] == [
        "rate_converged",
        "rate_premature",
        "rate_saddle",
        "distance_median",
        "loglik_evals_mean",
    ]


def test_distance_shares_are_percent_of_each_group_per_bin():
    counts = pd.DataFrame(
        {
            "model": ["full"] * 5,
            "method": ["em"] * 5,
            "stopping": ["abs", "abs", "abs", "rel", "rel"],
            "status": ["converged", "premature", "converged", "converged", "converged"],
            "log10_lo": [-1.0, -1.0, 0.0, -2.0, -1.0],
            "count": [3, 1, 4, 5, 15],
        }
    )
    shares = fd.distance_shares(counts)
    abs_rule = shares[shares["stopping"] == "abs"]
    assert list(abs_rule["log10_lo"]) == [-1.0, 0.0]
    assert list(abs_rule["share"]) == pytest.approx([50.0, 50.0])
    assert list(shares[shares["stopping"] == "rel"]["share"]) == pytest.approx([25.0, 75.0])
    assert fd.distance_shares(counts.iloc[:0]).empty


def test_zip_intervals_order_by_z_and_mark_coverage():
    rows = pd.DataFrame(
        {"pi": 0.5, "est_pi": [0.8, 0.5, 0.45, 0.6], "se_pi": [0.1, 0.1, 0.1, 0.02]}
    )
    z = 1.96
    shown = fd.zip_intervals(rows, z)
    # |z| = 3, 0, 0.5, 5: order 0.5 (0), 0.45 (0.5), 0.8 (3), 0.6 (5).
    np.testing.assert_allclose(
        shown["lo"], [0.5 - z * 0.1, 0.45 - z * 0.1, 0.8 - z * 0.1, 0.6 - z * 0.02]
    )
    np.testing.assert_allclose(
        shown["hi"], [0.5 + z * 0.1, 0.45 + z * 0.1, 0.8 + z * 0.1, 0.6 + z * 0.02]
    )
    assert list(shown["covers"]) == [True, True, False, False]
    assert list(shown["centile"]) == [12.5, 37.5, 62.5, 87.5]


def test_zip_rows_and_cells():
    zips = pd.DataFrame(
        [
            {**cell(cid, n, mu2, pi), "model": model, "method": method, "stopping": "abs"}
            for cid, n, mu2, pi in (
                ("a", 100, 2.0, 0.8),
                ("b", 400, 2.0, 0.8),
                ("c", 100, 4.0, 0.5),
            )
            for model in ("pi", "full")
            for method in ("em", "squarem")
        ]
    )
    model, rows = fd.zip_rows(zips)
    assert model == "full" and set(rows["model"]) == {"full"} and set(rows["method"]) == {"em"}
    conv = pd.DataFrame({"cell_id": ["a", "b", "c"], "rate_premature": [0.0, 0.0, 0.2]})
    perf = pd.DataFrame(
        {
            "cell_id": ["a", "b", "c", "a"],
            "parameter": ["pi", "pi", "pi", "mu1"],
            "coverage": [0.8, 0.95, 0.9, 0.1],
            "stopping": "abs",
            "set": "own",
        }
    )
    # The most premature (c), the lowest coverage of pi (a), the seed-like of largest n (b).
    assert fd.zip_cells(rows, conv, perf) == ["c", "a", "b"]
    model, rows = fd.zip_rows(zips.iloc[:0])
    assert model is None and rows.empty


def trace_rows(cells: int) -> pd.DataFrame:
    rows = []
    for i, replicate, start, iteration in itertools.product(
        range(cells), (3, 1), ("fixed", "truth"), range(3)
    ):
        rows.append(
            {
                **cell(f"c{i:02d}", 100 + i, 2.0, 0.5),
                "replicate": replicate,
                "model": "full",
                "method": "em",
                "stopping": "abs",
                "start": start,
                "iteration": iteration,
                "est_pi": 0.5 if iteration < 2 else np.nan,
                "loglik": -10.0 + iteration,
            }
        )
    return pd.DataFrame(rows)


def test_traces_shown_keep_the_lowest_replicate_of_start_fixed_and_space_the_cells():
    t, cells, total = fd.traces_shown(trace_rows(15))
    assert total == 15
    assert set(t["replicate"]) == {1} and set(t["start"]) == {"fixed"}
    # The point with no estimate is left out: two of the three iterations per cell.
    assert len(t) == 15 * 2
    expected = np.unique(np.linspace(0, 14, 12).astype(int))
    assert list(cells["cell_id"]) == [f"c{i:02d}" for i in expected]
    t, cells, total = fd.traces_shown(trace_rows(3), start="truth")
    assert set(t["start"]) == {"truth"} and total == len(cells) == 3
    assert fd.traces_shown(pd.DataFrame())[2] == 0


def test_replicates_rows_and_from_convergence():
    conv = conv_rows()
    conv.loc[conv["start"] == "fixed", "n_rep"] = 30
    conv.loc[conv["start"] == "best", "n_rep"] = 99
    reps = fd.replicates_from_convergence(conv)
    assert list(reps["replicates"]) == [30, 30] and reps["stop"].isna().all()
    reps = pd.concat(
        [reps, pd.DataFrame([{**cell("c", 400, 1.0, 0.5), "replicates": 8, "stop": "met"}])],
        ignore_index=True,
    )
    rows = fd.replicates_rows(reps)
    # Cells a and c share their design but n: the same row label, n left to the panels.
    assert list(rows["cell_id"]) == ["a", "b", "c"]
    labels = dict(zip(rows["cell_id"], rows["row_label"], strict=True))
    assert labels["a"] == labels["c"] and "n=" not in labels["a"]
    assert list(rows["stop_reason"]) == ["", "", "met"]
    # One cell per n: the labels show n too.
    single = fd.replicates_rows(reps[reps["cell_id"] != "b"])
    assert all(label.startswith("n=") for label in single["row_label"])
    assert fd.replicates_rows(reps.assign(replicates=np.nan)).empty
