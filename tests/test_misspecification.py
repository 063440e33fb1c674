"""Misspecification (issue 21): the performance table's sandwich-SE measures, recomputed here
from the fit rows with Morris, White & Crowther (2019, Table 6) in plain loops."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from emsim.study.config import load_study
from emsim.study.measures import (
    PERFORMANCE_COLUMNS,
    SE_MEASURES,
    SE_TYPES,
    performance,
    se_column,
)
from emsim.study.precision import assess

pytestmark = pytest.mark.filterwarnings("error")

CELL = {
    "cell_id": "c1",
    "n": 200,
    "mu1": 0.0,
    "mu2": 4.0,
    "sigma1": 1.0,
    "sigma2": 1.0,
    "pi": 0.8,
    "family": "normal",
}
# The pi model's fits: an estimate, its observed SE and its sandwich SE per replicate; the
# 4th has no sandwich SE (NaN), so the sandwich measures are over 4 fits and the observed over 5.
ESTIMATES = [0.74, 0.79, 0.83, 0.86, 0.90]
OBSERVED_SES = [0.03, 0.02, 0.05, 0.02, 0.04]
SANDWICH_SES = [0.04, 0.03, 0.04, math.nan, 0.06]
Z = statistics.NormalDist().inv_cdf(0.975)


def fits(sandwich: bool = True) -> pd.DataFrame:
    rows = []
    for r, (est, se, sw) in enumerate(zip(ESTIMATES, OBSERVED_SES, SANDWICH_SES, strict=True)):
        row = {**CELL, "replicate": r, "model": "pi", "method": "em", "stopping": "abs"}
        row |= {"start": "fixed", "status": "converged", "est_pi": est, "se_pi": se}
        if sandwich:
            row["se_sandwich_pi"] = sw
        rows.append(row)
    # A failed fit: counted in n_rep, in no measure.
    rows.append({**rows[0], "replicate": 5, "status": "max_iterations", "est_pi": 0.1})
    return pd.DataFrame(rows)


def se_measures(est: list[float], se: list[float], theta: float) -> dict:
    """Coverage, model SE, its relative error and their MCSEs over the fits with a finite SE."""
    pairs = [(e, s) for e, s in zip(est, se, strict=True) if math.isfinite(s)]
    n = len(pairs)
    cov = sum(abs(e - theta) <= Z * s for e, s in pairs) / n
    se2 = [s * s for _, s in pairs]
    modse = math.sqrt(statistics.fmean(se2))
    empse = statistics.stdev([e for e, _ in pairs])
    var_se2 = statistics.variance(se2)
    return {
        "n_se": n,
        "coverage": cov,
        "coverage_mcse": math.sqrt(cov * (1 - cov) / n),
        "modse": modse,
        "modse_mcse": math.sqrt(var_se2 / (4 * n * modse**2)),
        "relerr_modse": 100 * (modse / empse - 1),
        "relerr_modse_mcse": 100
        * (modse / empse)
        * math.sqrt(var_se2 / (4 * n * modse**4) + 1 / (2 * (n - 1))),
    }


def own_pi(perf: pd.DataFrame) -> pd.Series:
    rows = perf[(perf["set"] == "own") & (perf["parameter"] == "pi")]
    assert len(rows) == 1
    return rows.iloc[0]


def test_se_column_names_each_types_measure():
    assert se_column("coverage_mcse", "observed") == "coverage_mcse"
    assert se_column("coverage_mcse", "sandwich") == "coverage_sandwich_mcse"
    assert se_column("n_se", "sandwich") == "n_se_sandwich"
    for se_type in SE_TYPES:
        for measure in ("n_se", *SE_MEASURES, *(f"{m}_mcse" for m in SE_MEASURES)):
            assert se_column(measure, se_type) in PERFORMANCE_COLUMNS
    with pytest.raises(ValueError, match="se_type 'robust'"):
        se_column("coverage", "robust")


@pytest.mark.parametrize(
    ("se_type", "ses"), [("observed", OBSERVED_SES), ("sandwich", SANDWICH_SES)]
)
def test_each_se_types_measures_match_the_formulas(se_type, ses):
    row = own_pi(performance(fits()))
    expected = se_measures(ESTIMATES, ses, CELL["pi"])
    for measure, value in expected.items():
        column = se_column(measure, se_type)
        assert row[column] == pytest.approx(value, rel=1e-12, abs=1e-15), column
    # The test's own numbers: 2 of 5 observed intervals cover 0.8, 4 of 4 sandwich ones do.
    assert expected["coverage"] == {"observed": 0.4, "sandwich": 1.0}[se_type]


def test_bias_empse_and_mse_are_one_per_row_whatever_the_se():
    row = own_pi(performance(fits()))
    assert row["n_rep"] == 6 and row["n_ok"] == 5
    assert row["bias"] == pytest.approx(statistics.fmean(ESTIMATES) - CELL["pi"])
    assert row["empse"] == pytest.approx(statistics.stdev(ESTIMATES))
    mse = statistics.fmean([(e - CELL["pi"]) ** 2 for e in ESTIMATES])
    assert row["mse"] == pytest.approx(mse)


def test_fit_rows_without_sandwich_ses_keep_the_observed_measures():
    with_sandwich = performance(fits(sandwich=True))
    without = performance(fits(sandwich=False))
    sandwich_columns = [se_column(m, "sandwich") for m in SE_MEASURES]
    sandwich_columns += [f"{c}_mcse" for c in sandwich_columns] + ["n_se_sandwich"]
    observed_columns = [c for c in PERFORMANCE_COLUMNS if c not in sandwich_columns]
    pd.testing.assert_frame_equal(with_sandwich[observed_columns], without[observed_columns])
    assert (without["n_se_sandwich"] == 0).all()
    assert without[sandwich_columns[:-1]].isna().all().all()
    assert np.issubdtype(with_sandwich["n_se_sandwich"].dtype, np.integer)


def test_a_sandwich_coverage_target_is_judged_by_its_own_wilson_mcse():
    """coverage_mcse keeps judging the observed SE's intervals; a configured
    coverage_sandwich_mcse judges the sandwich's (docs/design.md section 10)."""
    perf = performance(fits())
    config = {
        "scenarios": [{"n": 200, "mu": [0, 4], "sigma": 1, "pi": 0.8}],
        "models": ["pi"],
        "starts": [{"name": "fixed", "strategy": "fixed", "values": {"pi": 0.5}}],
        "precision": {"coverage_mcse": 0.5, "coverage_sandwich_mcse": 0.5},
    }
    precision = load_study(config).precision
    out = assess(perf, precision, replicates=6).set_index("measure")
    z2 = statistics.NormalDist().inv_cdf(0.975) ** 2
    for measure, covered, n in (("coverage_mcse", 0.4, 5), ("coverage_sandwich_mcse", 1.0, 4)):
        wilson = math.sqrt(n * covered * (1 - covered) + z2 / 4) / (n + z2)
        assert out.loc[measure, "reached"] == pytest.approx(wilson, rel=1e-12), measure


def family_perf(family: str, pi_empse: float, pseudo_pi: float) -> pd.DataFrame:
    """Performance rows of two cells (n 500, 5000) of the full model in `family`."""
    rows = []
    for n in (500, 5000):
        for parameter in ("pi", "mu1", "mu2", "sigma1", "sigma2"):
            row = {**CELL, "cell_id": f"{family}{n}", "n": n, "family": family}
            row |= {"model": "full", "method": "em", "stopping": "abs", "start": "best"}
            row |= {"parameter": parameter, "set": "own", "n_rep": 100, "n_ok": 100}
            row |= {"true_value": pseudo_pi if parameter == "pi" else CELL[parameter] + 0.1}
            row |= {"bias": 0.01, "bias_mcse": 0.002, "empse": pi_empse, "empse_mcse": 0.01}
            for se_type, cov in (("observed", 0.8), ("sandwich", 0.94)):
                for m in SE_MEASURES:
                    row[se_column(m, se_type)] = cov
                    row[se_column(f"{m}_mcse", se_type)] = 0.02
            rows.append(row)
    return pd.DataFrame(rows)


def test_report_section_shows_families_and_flags_weakly_identified_scenarios():
    from emsim.study.figure_data import misspecified_rows
    from emsim.study.report_misspecification import misspecification_section

    normal = family_perf("normal", 0.01, 0.8)
    assert misspecified_rows(normal).empty
    assert "draws normal components" in misspecification_section(normal, {})
    perf = pd.concat(
        [normal, family_perf("t(df=5)", 0.18, 0.486), family_perf("t(df=4)", 0.01, 0.79)],
        ignore_index=True,
    )
    rows = misspecified_rows(perf)
    assert set(rows["family"]) == {"t(df=5)", "t(df=4)"}
    # The data-generating value of each row is its cell's design value.
    assert (rows["dgm_value"] == rows.apply(lambda r: r[r["parameter"]], axis=1)).all()
    html = str(misspecification_section(perf, {}))
    weak_note = html[html.index("Weakly identified:") :].split("</p>")[0]
    assert "t(df=5)" in weak_note and "t(df=4)" not in weak_note
    # pi's pseudo-true 0.486 against its data-generating 0.8 in the distance table.
    assert "-0.314" in html


def test_report_section_flags_cells_whose_estimand_is_not_the_global_fixed_point():
    from emsim.study.report_misspecification import misspecification_section

    perf = pd.concat(
        [family_perf("t(df=5)", 0.01, 0.79), family_perf("t(df=4)", 0.01, 0.79)],
        ignore_index=True,
    )
    keys = perf.loc[:, ["cell_id", "model", "parameter"]]
    local = perf["family"] == "t(df=5)"
    estimands = keys.assign(
        pseudo_true_global=np.where(local, 0.5136, perf["true_value"]),
        pseudo_true_is_global=~local,
    )
    html = str(misspecification_section(perf, {}, estimands))
    note = html[html.index("Local, not global:") :].split("</p>")[0]
    assert "t(df=5)" in note and "t(df=4)" not in note
    assert "0.5136" in html
    # One marked pseudo-true per t(5) row of the per-cell table (2 cells x 5 parameters).
    assert html.count(" (local)") == 10
    # Without the table (or its new columns) nothing is flagged.
    for table in (None, estimands.drop(columns="pseudo_true_is_global")):
        assert "Local, not global" not in str(misspecification_section(perf, {}, table))


def test_misspecification_figure_draws_families_and_says_when_there_are_none(tmp_path):
    from emsim.study.figure_misspecification import plot_misspecification

    perf = pd.concat([family_perf("normal", 0.01, 0.8), family_perf("t(df=5)", 0.18, 0.486)])
    drawn = plot_misspecification(perf.reset_index(drop=True), tmp_path / "m.png", dpi=40)
    empty = plot_misspecification(family_perf("normal", 0.01, 0.8), tmp_path / "e.png", dpi=40)
    assert drawn.stat().st_size > empty.stat().st_size > 0


def test_every_figure_module_is_a_code_input_of_the_figures_rule():
    """Editing figure_misspecification.py (or any figure module) must redraw the figures."""
    from pathlib import Path

    from emsim.study import jobs

    study_dir = Path(jobs.__file__).parent
    figure_modules = {p.stem for p in study_dir.glob("figure*.py")}
    assert "figure_misspecification" in figure_modules
    assert figure_modules <= set(jobs.FIGURE_MODULES)
    inputs = {jobs.module_path(name) for name in jobs.FIGURE_MODULES}
    assert str(study_dir / "figure_misspecification.py") in inputs
