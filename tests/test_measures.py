"""Performance and convergence measures (docs/design.md section 6) against hand-computed values.

Every expected number is recomputed here from the formulas with the `statistics` module and plain
loops, independently of the vectorised pandas code under test.
"""

from __future__ import annotations

import math
import statistics
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import emsim
from emsim.study import stopping, summary
from emsim.study.measures import (
    add_best_start,
    convergence,
    failure_table,
    performance,
    quantile_mcse,
    quantile_ranks,
)
from emsim.study.summary import summarise

# Any warning at all (pandas, numpy) is a failure here: sparse groups must be silent.
pytestmark = pytest.mark.filterwarnings("error")

PERFORMANCE_COLUMNS = (
    "cell_id, n, mu1, mu2, sigma1, sigma2, pi, family, model, method, stopping, start, "
    "parameter, set, true_value, n_rep, n_ok, n_se, bias, bias_mcse, empse, empse_mcse, "
    "mse, mse_mcse, rmse, rmse_mcse, coverage, coverage_mcse, modse, modse_mcse, relerr_modse, "
    "relerr_modse_mcse, n_se_sandwich, coverage_sandwich, coverage_sandwich_mcse, "
    "modse_sandwich, modse_sandwich_mcse, relerr_modse_sandwich, relerr_modse_sandwich_mcse"
).split(", ")
STATUSES = (
    "converged, max_iterations, degenerate, boundary, nonfinite, decreased, saddle, premature"
).split(", ")
CONVERGENCE_COLUMNS = [
    *"cell_id, n, mu1, mu2, sigma1, sigma2, pi, family".split(", "),
    *"model, method, stopping, start, n_rep".split(", "),
    "failure_rate",
    "failure_rate_mcse",
    *(f"rate_{s}" for s in STATUSES),
    *(
        "iterations_mean, iterations_median, iterations_p90, loglik_evals_mean, runtime_mean_s, "
        "rate_empirical_mean, rate_theory_mean, polish_evals_mean"
    ).split(", "),
    *(f"rate_{s}_mcse" for s in STATUSES),
    *(
        "iterations_mean_mcse, iterations_median_mcse, iterations_p90_mcse, "
        "loglik_evals_mean_mcse, runtime_mean_s_mcse"
    ).split(", "),
]
FIT_COLUMNS = (
    "cell_id, n, mu1, mu2, sigma1, sigma2, pi, family, replicate, model, method, stopping, start, "
    "status, iterations, loglik_evals, runtime_s, loglik, loglik_start, est_pi, est_mu1, est_mu2, "
    "est_sigma1, est_sigma2, swapped, se_pi, se_mu1, se_mu2, se_sigma1, se_sigma2, "
    "rate_empirical, rate_theory, best_start_gap, distance_to_limit, loglik_gap_to_limit, "
    "polish_evals"
).split(", ")

# The oracle starts of these tests' fits (a study finds its own by strategy).
ORACLES = ("truth",)
CELL = {
    "cell_id": "c1",
    "n": 100,
    "mu1": 0.0,
    "mu2": 2.0,
    "sigma1": 1.0,
    "sigma2": 1.0,
    "pi": 0.8,
    "family": "normal",
}


def fit_row(**overrides) -> dict:
    """One fit row of docs/design.md section 5; estimates default to the truth."""
    row = {
        **CELL,
        "replicate": 0,
        "model": "pi",
        "method": "em",
        "stopping": "abs",
        "start": "fixed",
        "status": "converged",
        "iterations": 10,
        "loglik_evals": 11,
        "runtime_s": 0.01,
        "loglik": -150.0,
        "loglik_start": -170.0,
        "swapped": False,
        "rate_empirical": 0.5,
        "rate_theory": 0.5,
        "best_start_gap": np.nan,
        "distance_to_limit": 0.0,
        "loglik_gap_to_limit": 0.0,
        "polish_evals": 3,
    }
    row.update({k: v for k, v in overrides.items() if k in CELL})
    for p in ("pi", "mu1", "mu2", "sigma1", "sigma2"):
        row[f"est_{p}"] = row[p]
        row[f"se_{p}"] = np.nan
    row.update(overrides)
    return row


def frame(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(rows)
    assert set(out.columns) == set(FIT_COLUMNS)
    return out[FIT_COLUMNS]


def own(perf: pd.DataFrame) -> pd.DataFrame:
    """The rows over each group's own usable fits (the common set is tested on its own)."""
    return perf[perf["set"] == "own"]


def one(df: pd.DataFrame, **where) -> pd.Series:
    if "set" in df.columns:
        where.setdefault("set", "own")
    mask = np.ones(len(df), dtype=bool)
    for key, value in where.items():
        mask &= (df[key] == value).to_numpy()
    assert mask.sum() == 1, where
    return df[mask].iloc[0]


# Hand-computable replicates of the pi model: four converged, one failure that must be ignored.
ESTIMATES = [0.70, 0.80, 0.85, 0.95]
SES = [0.05, 0.10, 0.02, 0.10]
TRUTH = 0.8


def pi_model_fits() -> pd.DataFrame:
    rows = [
        fit_row(replicate=r, est_pi=e, se_pi=s, iterations=10 + r)
        for r, (e, s) in enumerate(zip(ESTIMATES, SES, strict=True))
    ]
    rows.append(
        fit_row(replicate=4, status="max_iterations", est_pi=0.1, se_pi=0.5, iterations=1000)
    )
    return frame(rows)


def expected_measures(est: list[float], se: list[float], theta: float, z: float) -> dict:
    """Morris, White & Crowther (2019) Table 6, straight from the formulas."""
    n = len(est)
    mean = statistics.fmean(est)
    sd = statistics.stdev(est)
    sq = [(e - theta) ** 2 for e in est]
    mse = statistics.fmean(sq)
    mse_mcse = math.sqrt(sum((s - mse) ** 2 for s in sq) / (n * (n - 1)))
    rmse = math.sqrt(mse)
    covered = [abs(e - theta) <= z * s for e, s in zip(est, se, strict=True)]
    cov = sum(covered) / n
    modse = math.sqrt(statistics.fmean([s * s for s in se]))
    var_se2 = statistics.variance([s * s for s in se])
    return {
        "bias": mean - theta,
        "bias_mcse": sd / math.sqrt(n),
        "empse": sd,
        "empse_mcse": sd / math.sqrt(2 * (n - 1)),
        "mse": mse,
        "mse_mcse": mse_mcse,
        "rmse": rmse,
        "rmse_mcse": mse_mcse / (2 * rmse),
        "coverage": cov,
        "coverage_mcse": math.sqrt(cov * (1 - cov) / n),
        "modse": modse,
        "modse_mcse": math.sqrt(var_se2 / (4 * n * modse**2)),
        "relerr_modse": 100 * (modse / sd - 1),
        "relerr_modse_mcse": 100
        * (modse / sd)
        * math.sqrt(var_se2 / (4 * n * modse**4) + 1 / (2 * (n - 1))),
    }


def test_performance_columns_are_the_contract():
    perf = performance(add_best_start(pi_model_fits(), oracle_starts=ORACLES))
    conv = convergence(add_best_start(pi_model_fits(), oracle_starts=ORACLES))
    assert list(perf.columns) == PERFORMANCE_COLUMNS
    assert list(conv.columns) == CONVERGENCE_COLUMNS


def test_performance_matches_formulas():
    perf = performance(pi_model_fits())
    row = one(perf, start="fixed", parameter="pi")
    z = 1.959963984540054
    expected = expected_measures(ESTIMATES, SES, TRUTH, z)
    assert row["n_rep"] == 5
    assert row["n_ok"] == 4
    assert row["true_value"] == TRUTH
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    # The hand numbers themselves, as a sanity check of the test: 2 of 4 intervals cover.
    assert expected["coverage"] == 0.5
    assert expected["bias"] == pytest.approx(0.025)


def test_coverage_level_is_configurable():
    # At 50% the z is 0.6745: the 3rd replicate (|0.05| <= 0.6745 * 0.02 fails) drops out.
    perf = performance(pi_model_fits(), coverage_level=0.5)
    row = one(perf, parameter="pi")
    z = statistics.NormalDist().inv_cdf(0.75)
    expected = expected_measures(ESTIMATES, SES, TRUTH, z)
    assert row["coverage"] == pytest.approx(expected["coverage"])
    assert row["coverage"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="coverage level"):
        performance(pi_model_fits(), coverage_level=1.0)


def test_parameters_per_model_and_equal_var_sigma():
    rows = []
    ests = [(0.7, 0.1, 2.1, 0.9), (0.9, -0.1, 1.9, 1.2), (0.8, 0.0, 2.3, 1.05)]
    for model in ("equal_var", "full"):
        for r, (p, m1, m2, s) in enumerate(ests):
            rows.append(
                fit_row(
                    model=model,
                    replicate=r,
                    est_pi=p,
                    est_mu1=m1,
                    est_mu2=m2,
                    est_sigma1=s,
                    est_sigma2=s if model == "equal_var" else s + 0.1,
                    se_pi=0.1,
                    se_mu1=0.1,
                    se_mu2=0.1,
                    se_sigma1=0.2,
                    se_sigma2=0.2 if model == "equal_var" else 0.3,
                )
            )
    perf = own(performance(frame(rows)))
    eq = perf[perf["model"] == "equal_var"]
    full = perf[perf["model"] == "full"]
    assert eq["parameter"].tolist() == ["pi", "mu1", "mu2", "sigma"]
    assert full["parameter"].tolist() == ["pi", "mu1", "mu2", "sigma1", "sigma2"]
    sigma = one(eq, parameter="sigma")
    sds = [e[3] for e in ests]
    assert sigma["true_value"] == 1.0
    assert sigma["bias"] == pytest.approx(statistics.fmean(sds) - 1.0)
    assert sigma["empse"] == pytest.approx(statistics.stdev(sds))
    assert sigma["modse"] == pytest.approx(0.2)
    sigma2 = one(full, parameter="sigma2")
    assert sigma2["bias"] == pytest.approx(statistics.fmean(sds) + 0.1 - 1.0)
    assert sigma2["modse"] == pytest.approx(0.3)
    mu2 = one(full, parameter="mu2")
    assert mu2["true_value"] == 2.0
    assert mu2["bias"] == pytest.approx(statistics.fmean([2.1, 1.9, 2.3]) - 2.0)


def test_equal_var_in_unequal_sigma_cell_has_a_pseudo_true_sigma():
    rows = [
        fit_row(
            model="equal_var",
            replicate=r,
            sigma2=2.0,
            est_sigma1=s,
            est_sigma2=s,
            se_sigma1=0.1,
            se_sigma2=0.1,
        )
        for r, s in enumerate([1.4, 1.5, 1.7])
    ]
    perf = performance(frame(rows))
    row = one(perf, parameter="sigma")
    # The model is misspecified: the target is the common sigma of the best equal-variance
    # mixture (issue 21; before, there was no truth and these were NaN).
    theta = emsim.pseudo_true("equal_var", "normal", (0.0, 2.0), (1.0, 2.0), 0.8)
    assert row["true_value"] == theta["sigma1"]
    assert one(perf, parameter="mu2")["true_value"] == theta["mu2"]
    assert row["bias"] == pytest.approx(statistics.fmean([1.4, 1.5, 1.7]) - theta["sigma1"])
    assert row["empse"] == pytest.approx(statistics.stdev([1.4, 1.5, 1.7]))
    assert row["modse"] == pytest.approx(0.1)


def test_sparse_groups_give_nan_without_warnings():
    rows = [
        # one usable replicate
        fit_row(start="one", replicate=0, est_pi=0.75, se_pi=0.1),
        fit_row(start="one", replicate=1, status="degenerate", est_pi=np.nan),
        # none usable
        fit_row(start="none", replicate=0, status="nonfinite", est_pi=np.nan, loglik=np.nan),
        fit_row(start="none", replicate=1, status="boundary", est_pi=1.0),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        perf = performance(frame(rows))
        conv = convergence(frame(rows))
        best = add_best_start(frame(rows), oracle_starts=ORACLES)
    single = one(perf, start="one")
    assert (single["n_rep"], single["n_ok"]) == (2, 1)
    assert single["bias"] == pytest.approx(-0.05)
    assert single["mse"] == pytest.approx(0.0025)
    assert single["rmse"] == pytest.approx(0.05)
    for name in ("bias_mcse", "empse", "empse_mcse", "mse_mcse", "rmse_mcse", "relerr_modse"):
        assert math.isnan(single[name]), name
    none = one(perf, start="none")
    assert (none["n_rep"], none["n_ok"]) == (2, 0)
    assert none["n_se_sandwich"] == 0
    measured = PERFORMANCE_COLUMNS[PERFORMANCE_COLUMNS.index("bias") :]
    numeric = none[[c for c in measured if c != "n_se_sandwich"]].astype(float)
    assert numeric.isna().all()
    c = one(conv, start="none")
    assert c["failure_rate"] == 1.0
    assert c["failure_rate_mcse"] == 0.0
    assert math.isnan(c["iterations_mean"]) and math.isnan(c["iterations_p90"])
    assert math.isnan(c["rate_empirical_mean"])
    assert len(best) == 6


def test_convergence_matches_formulas():
    statuses = ["converged"] * 6 + ["max_iterations", "max_iterations", "degenerate", "decreased"]
    iterations = [5, 7, 9, 11, 20, 40, 1000, 1000, 3, 8]
    rates = [0.2, 0.3, 0.4, 0.5, 0.6, np.nan, 0.9, 0.9, 0.1, 0.1]
    rows = [
        fit_row(
            replicate=r,
            status=s,
            iterations=i,
            loglik_evals=i + 1,
            runtime_s=0.001 * i,
            rate_empirical=q,
            rate_theory=0.45,
        )
        for r, (s, i, q) in enumerate(zip(statuses, iterations, rates, strict=True))
    ]
    row = one(convergence(frame(rows)), start="fixed")
    ok_iters = iterations[:6]
    f = 4 / 10
    assert row["n_rep"] == 10
    assert row["failure_rate"] == pytest.approx(f)
    assert row["failure_rate_mcse"] == pytest.approx(math.sqrt(f * (1 - f) / 10))
    assert row["rate_converged"] == pytest.approx(0.6)
    assert row["rate_max_iterations"] == pytest.approx(0.2)
    assert row["rate_degenerate"] == pytest.approx(0.1)
    assert row["rate_decreased"] == pytest.approx(0.1)
    assert row["rate_boundary"] == 0.0 and row["rate_nonfinite"] == 0.0
    assert row["iterations_mean"] == pytest.approx(statistics.fmean(ok_iters))
    assert row["iterations_median"] == pytest.approx(statistics.median(ok_iters))
    p90 = statistics.quantiles(ok_iters, n=10, method="inclusive")[-1]
    assert row["iterations_p90"] == pytest.approx(p90)
    assert row["loglik_evals_mean"] == pytest.approx(statistics.fmean(i + 1 for i in iterations))
    assert row["runtime_mean_s"] == pytest.approx(0.001 * statistics.fmean(iterations))
    assert row["rate_empirical_mean"] == pytest.approx(statistics.fmean(rates[:5]))
    assert row["rate_theory_mean"] == pytest.approx(0.45)
    # MCSEs: a mean's sd / sqrt(n) over the values it averages; the median's from the
    # order-statistic interval (6 converged fits: ranks 1 and 6); p90 needs 36 values.
    n_all = len(iterations)
    assert row["iterations_mean_mcse"] == pytest.approx(statistics.stdev(ok_iters) / math.sqrt(6))
    evals_sd = statistics.stdev(i + 1 for i in iterations)
    assert row["loglik_evals_mean_mcse"] == pytest.approx(evals_sd / math.sqrt(n_all))
    runtime_sd = statistics.stdev(0.001 * i for i in iterations)
    assert row["runtime_mean_s_mcse"] == pytest.approx(runtime_sd / math.sqrt(n_all))
    assert binomial_ranks(6, 0.5) == (1, 6)
    z = statistics.NormalDist().inv_cdf(0.975)
    assert row["iterations_median_mcse"] == pytest.approx((40 - 5) / (2 * z))
    assert math.isnan(row["iterations_p90_mcse"])


def binomial_ranks(n: int, p: float, level: float = 0.95) -> tuple[int, int] | None:
    """The ranks of the order-statistic interval by their definition (docs/design.md section 6),
    with the binomial probabilities summed term by term in exact rational arithmetic."""
    from fractions import Fraction

    q = Fraction(p).limit_denominator(1000)
    tail = Fraction(1 - level).limit_denominator(1000) / 2

    def below(r: int) -> Fraction:  # P(B < r)
        return sum(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(r))

    lows = [j for j in range(1, n + 1) if below(j) <= tail]
    highs = [k for k in range(1, n + 1) if 1 - below(k) <= tail]
    if not lows or not highs:
        return None
    return max(lows), min(highs)


@pytest.mark.parametrize("p", [0.5, 0.9])
def test_quantile_ranks_match_the_binomial_definition(p):
    for n in (*range(1, 45), 60, 101, 250):
        assert quantile_ranks(n, p) == binomial_ranks(n, p), n
    # Where the ranks first exist: P(B = 0) and P(B = n) must be at most 2.5%.
    first = next(n for n in range(1, 100) if quantile_ranks(n, p) is not None)
    assert first == {0.5: 6, 0.9: 36}[p]


@pytest.mark.parametrize(("n", "p"), [(40, 0.5), (60, 0.9), (300, 0.9)])
def test_quantile_interval_covers_the_quantile_at_its_level(n, p):
    """Simulated with a fixed seed: [x_(j), x_(k)] holds the true p-quantile of an exponential
    as often as the binomial sum says, and that is at least 95%."""
    j, k = quantile_ranks(n, p)
    from fractions import Fraction

    q = Fraction(p).limit_denominator(1000)
    exact = float(sum(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(j, k)))
    assert exact >= 0.95
    rng = np.random.default_rng(20240521)
    sims = 4000
    draws = np.sort(rng.exponential(size=(sims, n)), axis=1)
    truth = -math.log(1 - p)
    covered = (draws[:, j - 1] <= truth) & (truth <= draws[:, k - 1])
    se = math.sqrt(exact * (1 - exact) / sims)
    assert abs(covered.mean() - exact) < 4 * se


def test_quantile_mcse_estimates_the_quantiles_standard_error():
    """Over normal samples of 2000, the MCSE of the median and of p90 averages to the
    asymptotic SE sqrt(p (1 - p) / n) / f(q_p) within 5%; too few values give NaN."""
    rng = np.random.default_rng(7)
    n, normal = 2000, statistics.NormalDist()
    samples = rng.normal(size=(200, n))
    for p in (0.5, 0.9):
        asymptotic = math.sqrt(p * (1 - p) / n) / normal.pdf(normal.inv_cdf(p))
        mean_mcse = statistics.fmean(quantile_mcse(x, p) for x in samples)
        assert mean_mcse == pytest.approx(asymptotic, rel=0.05)
    values = np.array([3.0, 1.0, np.nan, 2.0, 5.0, 4.0, 6.0])
    z = normal.inv_cdf(0.975)
    # NaN is dropped: 6 values, ranks 1 and 6 of the sorted 1 .. 6.
    assert quantile_mcse(values, 0.5) == pytest.approx((6.0 - 1.0) / (2 * z))
    assert math.isnan(quantile_mcse(values[:5], 0.5))
    assert math.isnan(quantile_mcse(np.arange(35.0), 0.9))


def test_convergence_quantile_mcses_use_the_converged_fits():
    """A group of 60 fits, 50 converged: the p90's MCSE comes from the ranks of 50 values."""
    iterations = [int(i) for i in np.random.default_rng(3).integers(5, 200, size=60)]
    rows = [
        fit_row(replicate=r, iterations=i, status="converged" if r < 50 else "max_iterations")
        for r, i in enumerate(iterations)
    ]
    row = one(convergence(frame(rows)), start="fixed")
    ok = sorted(iterations[:50])
    z = statistics.NormalDist().inv_cdf(0.975)
    for column, p in (("iterations_median", 0.5), ("iterations_p90", 0.9)):
        j, k = binomial_ranks(50, p)
        assert row[f"{column}_mcse"] == pytest.approx((ok[k - 1] - ok[j - 1]) / (2 * z))
    assert row["iterations_mean_mcse"] == pytest.approx(statistics.stdev(ok) / math.sqrt(50))


def best_fixture() -> pd.DataFrame:
    rows = []
    for method in ("em", "squarem"):
        rows += [
            fit_row(method=method, replicate=0, start="fixed", loglik=-10.0, est_pi=0.6),
            fit_row(
                method=method,
                replicate=0,
                start="quantile",
                loglik=-5.0,
                status="nonfinite",
                est_pi=np.nan,
            ),
            fit_row(
                method=method,
                replicate=0,
                start="random1",
                loglik=-7.0,
                est_pi=0.79,
                status="max_iterations",
            ),
            # an oracle start is a reference, never `best`, even with the highest loglik
            fit_row(method=method, replicate=0, start="truth", loglik=-6.0, est_pi=0.8),
            # replicate 1: a tie goes to the first row; replicate 2: every start nonfinite
            fit_row(method=method, replicate=1, start="fixed", loglik=-3.0, est_pi=0.81),
            fit_row(method=method, replicate=1, start="quantile", loglik=-3.0, est_pi=0.82),
            fit_row(method=method, replicate=1, start="truth", loglik=-4.5, est_pi=0.83),
            fit_row(
                method=method,
                replicate=2,
                start="fixed",
                loglik=np.nan,
                status="nonfinite",
                est_pi=np.nan,
            ),
            fit_row(
                method=method,
                replicate=2,
                start="truth",
                loglik=np.nan,
                status="nonfinite",
                est_pi=np.nan,
            ),
        ]
    return frame(rows)


def test_add_best_start():
    fits = best_fixture()
    out = add_best_start(fits, oracle_starts=ORACLES)
    assert len(out) == len(fits) + 6
    assert list(out.columns) == FIT_COLUMNS
    best = out[out["start"] == "best"]
    for method in ("em", "squarem"):
        b0 = one(best, method=method, replicate=0)
        # the highest loglik is the nonfinite start's, which does not count
        assert b0["loglik"] == -7.0 and b0["est_pi"] == 0.79 and b0["status"] == "max_iterations"
        assert b0["best_start_gap"] == 0.0
        b1 = one(best, method=method, replicate=1)
        assert b1["est_pi"] == 0.81
        b2 = one(best, method=method, replicate=2)
        assert b2["status"] == "nonfinite" and math.isnan(b2["best_start_gap"])
        gaps = out[(out["method"] == method) & (out["start"] != "best")]
        assert one(gaps, replicate=0, start="fixed")["best_start_gap"] == pytest.approx(3.0)
        assert math.isnan(one(gaps, replicate=0, start="quantile")["best_start_gap"])
        assert one(gaps, replicate=0, start="random1")["best_start_gap"] == 0.0
        # negative: the estimator `best` missed a higher maximum that the oracle start found
        assert one(gaps, replicate=0, start="truth")["best_start_gap"] == pytest.approx(-1.0)
        assert one(gaps, replicate=1, start="quantile")["best_start_gap"] == 0.0
        assert one(gaps, replicate=1, start="truth")["best_start_gap"] == pytest.approx(1.5)
    # idempotent: existing best rows are replaced, not duplicated
    again = add_best_start(out, oracle_starts=ORACLES)
    pd.testing.assert_frame_equal(again, out)
    # best counts every replicate, so its failures show up in the convergence table
    conv = convergence(out)
    b = one(conv, start="best", method="em")
    assert b["n_rep"] == 3
    assert b["rate_converged"] == pytest.approx(1 / 3)
    assert b["rate_nonfinite"] == pytest.approx(1 / 3)


def study_fits(seed: int = 3) -> pd.DataFrame:
    """Two cells x 6 replicates x 2 models x 2 methods x 2 starts with random outcomes."""
    rng = np.random.default_rng(seed)
    rows = []
    cells = [
        {
            "cell_id": "n50_a",
            "n": 50,
            "mu1": 0.0,
            "mu2": 1.0,
            "sigma1": 1.0,
            "sigma2": 1.0,
            "pi": 0.5,
        },
        {
            "cell_id": "007",
            "n": 500,
            "mu1": 0.0,
            "mu2": 3.0,
            "sigma1": 1.0,
            "sigma2": 2.0,
            "pi": 0.8,
        },
    ]
    for cell in cells:
        for r in range(6):
            for model in ("pi", "full"):
                for method in ("em", "squarem"):
                    for start in ("fixed", "truth"):
                        status = rng.choice(["converged"] * 4 + ["max_iterations", "nonfinite"])
                        est = {
                            p: cell[p] + rng.normal(0, 0.1)
                            for p in ("pi", "mu1", "mu2", "sigma1", "sigma2")
                        }
                        se = {f"se_{p}": abs(rng.normal(0.1, 0.02)) for p in est}
                        rows.append(
                            fit_row(
                                **cell,
                                replicate=r,
                                model=model,
                                method=method,
                                start=start,
                                status=status,
                                loglik=rng.normal(-100, 2),
                                iterations=int(rng.integers(3, 50)),
                                **{f"est_{p}": v for p, v in est.items()},
                                **se,
                            )
                        )
    return frame(rows)


def write_hive(fits: pd.DataFrame, root: Path) -> None:
    for cell_id, rows in fits.groupby("cell_id", sort=False):
        folder = root / f"cell={cell_id}"
        folder.mkdir(parents=True)
        half = len(rows) // 2
        rows.iloc[:half].to_parquet(folder / "chunk=0.parquet", index=False)
        rows.iloc[half:].to_parquet(folder / "chunk=1.parquet", index=False)


def _sort(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("slice_rows", [200_000, 10], ids=["whole-cells", "model-slices"])
def test_summarise_streams_cells_like_in_memory(tmp_path, monkeypatch, slice_rows):
    # Big cells are summarised one model at a time; both paths must agree exactly.
    monkeypatch.setattr(summary, "_SLICE_ROWS", slice_rows)
    fits = study_fits()
    write_hive(fits, tmp_path / "fits")
    out = tmp_path / "summary"
    paths = summarise(
        tmp_path / "fits",
        out,
        coverage_level=0.9,
        metadata={"config_hash": "abc123", "seed": "7"},
        oracle_starts=ORACLES,
    )
    assert set(paths) == {
        "performance",
        "convergence",
        "stopping_distance",
        "stopping_rules",
        "zip_pi",
        "estimands",
    }
    for name in ("performance", "convergence", "stopping_rules", "estimands"):
        assert (out / f"{name}.parquet").exists() and (out / f"{name}.csv").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "convergence.csv",
        "convergence.parquet",
        "estimands.csv",
        "estimands.parquet",
        "performance.csv",
        "performance.parquet",
        "stopping_distance.parquet",
        "stopping_rules.csv",
        "stopping_rules.parquet",
        "zip_pi.parquet",
    ]  # no temp files left behind

    whole = add_best_start(fits, oracle_starts=ORACLES)
    keys = ["cell_id", "model", "method", "stopping", "start"]
    expected_perf = _sort(performance(whole, coverage_level=0.9), [*keys, "parameter", "set"])
    expected_conv = _sort(convergence(whole), keys)
    got_perf = _sort(
        pq.read_table(out / "performance.parquet").to_pandas(), [*keys, "parameter", "set"]
    )
    got_conv = _sort(pq.read_table(out / "convergence.parquet").to_pandas(), keys)
    got_rules = pq.read_table(out / "stopping_rules.parquet").to_pandas()
    expected_rules = stopping.rule_summary(fits)
    procedure = ["cell_id", "model", "method", "stopping"]
    pd.testing.assert_frame_equal(
        _sort(got_rules, procedure), _sort(expected_rules, procedure), check_dtype=False
    )
    pd.testing.assert_frame_equal(got_perf, expected_perf, check_dtype=False)
    pd.testing.assert_frame_equal(got_conv, expected_conv, check_dtype=False)
    # the cell id "007" stays a string through the hive partitioning
    assert "007" in set(got_perf["cell_id"])
    csv = pd.read_csv(out / "performance.csv", dtype={"cell_id": str})
    assert len(csv) == len(got_perf)

    meta = pq.read_schema(out / "performance.parquet").metadata
    meta = {k.decode(): v.decode() for k, v in meta.items()}
    for key in ("emsim_version", "numpy_version", "created", "config_hash", "seed"):
        assert meta[key], key
    assert meta["config_hash"] == "abc123" and meta["seed"] == "7"
    assert float(meta["coverage_level"]) == 0.9


def test_summarise_without_fits_writes_empty_tables(tmp_path):
    (tmp_path / "fits").mkdir()
    summarise(tmp_path / "fits", tmp_path / "summary", oracle_starts=ORACLES)
    perf = pq.read_table(tmp_path / "summary" / "performance.parquet").to_pandas()
    assert perf.empty and list(perf.columns) == PERFORMANCE_COLUMNS


def test_failure_table_weights_cells_by_replicates():
    fits = study_fits()
    conv = convergence(fits)
    table = failure_table(conv)
    row = one(table, model="full", method="em", start="fixed")
    subset = fits[(fits["model"] == "full") & (fits["method"] == "em") & (fits["start"] == "fixed")]
    assert row["n_fits"] == len(subset)
    assert row["failure_rate"] == pytest.approx((subset["status"] != "converged").mean())
    assert row["rate_nonfinite"] == pytest.approx((subset["status"] == "nonfinite").mean())


def rule_fits() -> pd.DataFrame:
    """One cell, one model and method, two rules x two real starts x 8 replicates plus a
    `best` copy, with hand-set statuses, distances and E-steps."""
    statuses = ["converged"] * 3 + ["premature", "saddle", "max_iterations", "nonfinite"] * 1
    statuses.append("converged")
    rows = []
    for k, rule in enumerate(("abs", "score")):
        for s, start in enumerate(("fixed", "quantile", "best")):
            for r, status in enumerate(statuses):
                rows.append(
                    fit_row(
                        replicate=r,
                        model="full",
                        stopping=rule,
                        start=start,
                        status=status,
                        # nonfinite fits carry a distance the summary must not count
                        distance_to_limit=0.001 * (1 + r + 10 * s + 100 * k),
                        loglik_evals=20 + 3 * r + 7 * s + 50 * k,
                    )
                )
    return frame(rows)


def test_rule_summary_pools_the_real_starts_of_each_rule():
    """Issue 18: per model x method x rule, the usable, premature, saddle and capped shares
    (binomial MCSE), the median distance of the fits a rule or the cap ended and the E-steps
    per fit, recomputed here from the fit rows."""
    fits = rule_fits()
    table = stopping.rule_summary(fits)
    assert list(table.columns) == list(stopping.RULE_COLUMNS)
    assert list(table["stopping"]) == ["abs", "score"]
    for rule in ("abs", "score"):
        row = one(table, stopping=rule)
        rows = fits[(fits["stopping"] == rule) & (fits["start"] != "best")]
        assert row["n_fits"] == len(rows) == 16
        for status, count in (("converged", 8), ("premature", 2), ("saddle", 2)):
            p = count / 16
            assert row[f"rate_{status}"] == pytest.approx(p)
            assert row[f"rate_{status}_mcse"] == pytest.approx(math.sqrt(p * (1 - p) / 16))
        assert row["rate_max_iterations"] == pytest.approx(2 / 16)
        counted = rows[rows["status"] != "nonfinite"]["distance_to_limit"]
        assert row["n_distance"] == 14
        assert row["distance_median"] == pytest.approx(statistics.median(counted))
        ranks = quantile_ranks(14, 0.5)
        ordered = sorted(counted)
        expected = (ordered[ranks[1] - 1] - ordered[ranks[0] - 1]) / (2 * 1.959963984540054)
        assert row["distance_median_mcse"] == pytest.approx(expected)
        evals = rows["loglik_evals"].astype(float)
        assert row["loglik_evals_mean"] == pytest.approx(statistics.fmean(evals))
        assert row["loglik_evals_mean_mcse"] == pytest.approx(statistics.stdev(evals) / 4.0)
        assert row["loglik_evals_median"] == pytest.approx(statistics.median(evals))
    # The score rule's fits are the abs rule's plus 0.1 SE and 50 E-steps throughout.
    abs_row, score_row = one(table, stopping="abs"), one(table, stopping="score")
    assert score_row["distance_median"] == pytest.approx(abs_row["distance_median"] + 0.1)
    assert score_row["loglik_evals_mean"] == pytest.approx(abs_row["loglik_evals_mean"] + 50)
    empty = stopping.rule_summary(fits.iloc[:0])
    assert empty.empty and list(empty.columns) == list(stopping.RULE_COLUMNS)


def test_median_bins_hold_the_pooled_median():
    """The study's median distance per rule from the pooled histogram: the bin whose running
    count first reaches the lower median's rank, checked against the fits' own lower median."""
    fits = rule_fits()
    further = fits.assign(cell_id="c2", distance_to_limit=fits["distance_to_limit"] * 30)
    fits = pd.concat([fits, further], ignore_index=True)
    counts = stopping.merge_distance_counts(
        [stopping.distance_counts(fits[fits["cell_id"] == c]) for c in ("c1", "c2")]
    )
    bins = stopping.median_bins(counts)
    assert list(bins["stopping"]) == ["abs", "score"]
    for rule in ("abs", "score"):
        rows = fits[
            (fits["stopping"] == rule)
            & (fits["start"] != "best")
            & fits["status"].isin(stopping.STOPPED_BY_RULE)
        ]
        values = np.sort(rows["distance_to_limit"].to_numpy())
        lower_median = values[(len(values) + 1) // 2 - 1]
        row = one(bins, stopping=rule)
        assert row["n_distance"] == len(values) == 28
        assert row["log10_lo"] <= np.log10(lower_median) < row["log10_hi"]
        assert row["log10_hi"] - row["log10_lo"] == pytest.approx(0.25)
    assert stopping.median_bins(counts.iloc[:0]).empty


def test_capped_fits_are_in_the_distance_histogram():
    """The fits the cap ended have a limit too (issue 18): the histogram counts them under
    their status; fits that never reached a stop (nonfinite) are left out."""
    counts = stopping.distance_counts(rule_fits())
    per_status = counts.groupby("status")["count"].sum()
    assert dict(per_status) == {"converged": 16, "max_iterations": 4, "premature": 4, "saddle": 4}


def test_performance_sums_are_those_of_the_long_table_bit_for_bit():
    """The measures group each model's fits on integer codes, all parameters and sets at once
    (issue 22); the group means, variances and MSEs must be, bit for bit, those of the long
    table of every fit x parameter x set grouped by its text keys that they replaced (the same
    pandas kernels over the same values in the same order per group)."""
    from emsim.study.measures import GROUP_KEYS, common_set, reported_parameters, true_values

    fits = add_best_start(study_fits(seed=11), oracle_starts=("truth",))
    in_common = common_set(fits)
    long = []
    for model, rows in fits.groupby("model", sort=False):
        for parameter in reported_parameters(str(model)):
            column = "sigma1" if parameter == "sigma" else parameter
            theta = true_values(rows, parameter, str(model))
            est_all = rows[f"est_{column}"].astype(float)
            for name in ("own", "common"):
                ok = (rows["status"] == "converged") & np.isfinite(est_all)
                if name == "common":
                    ok &= in_common.loc[rows.index]
                est = est_all.where(ok)
                long.append(
                    rows.loc[:, list(GROUP_KEYS)].assign(
                        parameter=parameter, set=name, _est=est, _sqerr=(est - theta) ** 2
                    )
                )
    keys = [*GROUP_KEYS, "parameter", "set"]
    grouped = pd.concat(long, ignore_index=True).groupby(keys, sort=False, dropna=False)
    expected = grouped.agg(
        long_mean=("_est", "mean"),
        long_var=("_est", "var"),
        long_mse=("_sqerr", "mean"),
        long_n=("_est", "count"),
    ).reset_index()
    got = performance(fits).merge(expected, on=keys, how="outer", validate="1:1")
    assert len(got) == len(expected) > 0
    assert got["n_ok"].tolist() == got["long_n"].tolist()
    has_bias = got["true_value"].notna() & got["long_mean"].notna()
    assert has_bias.sum() > len(got) / 2
    long_bias = got["long_mean"] - got["true_value"]
    assert (got.loc[has_bias, "bias"] == long_bias[has_bias]).all()
    spread = got["long_n"] >= 2
    assert (got.loc[spread, "empse"] == np.sqrt(got.loc[spread, "long_var"])).all()
    assert (got["mse"].isna() == got["long_mse"].isna()).all()
    assert (got["mse"].dropna() == got["long_mse"].dropna()).all()


def test_gathering_cell_files_equals_gathering_the_frames_each_cell_reads(tmp_path):
    """The summary job's gather (`gather_files`: one Arrow concatenation per table where the
    cells' files share a schema, cell by cell otherwise) must give the frames that `gather`
    gives from each cell's tables as `read_tables` reads them: with cells of rows, and with a
    cell whose tables are empty (no fit of its converged), which takes the cell-by-cell way."""
    fits = study_fits(seed=5)
    cells = []
    for i, (_, rows) in enumerate(fits.groupby("cell_id", sort=True)):
        write_hive(rows, tmp_path / f"fits{i}")
        table = summary.cell_table(sorted((tmp_path / f"fits{i}").glob("cell=*/*.parquet")))
        cells.append(summary.summarise_cell(table, oracle_starts=ORACLES))
    cells.append(summary.gather([]))  # a cell of empty tables, with their columns
    files = []
    for i, tables in enumerate(cells):
        files.append(summary.SummaryFiles.in_folder(tmp_path / f"cell{i}"))
        summary.write_tables(tables, files[-1], summary.summary_metadata(0.95), csv=False)
    for chosen in (files[:2], files):
        expected = summary.gather(summary.read_tables(f) for f in chosen)
        got = summary.gather_files(chosen)
        for name in summary.MEASURE_TABLES:
            pd.testing.assert_frame_equal(getattr(got, name), getattr(expected, name), obj=name)
