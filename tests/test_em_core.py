"""EM core invariants: batch equals single, monotone likelihood, an independent implementation
agrees, standard errors match a numerical Hessian, and hostile numbers stay finite."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import emsim
from emsim.demo import SEED_DESIGN

TRUTH = {"pi": 0.3, "mu1": -1.0, "mu2": 2.5, "sigma1": 0.7, "sigma2": 1.4}
KNOWN_ALL = {k: v for k, v in TRUTH.items() if k != "pi"}


def draw(n, seed, truth=TRUTH):
    rng = np.random.default_rng(seed)
    return emsim.simulate(
        n, (truth["mu1"], truth["mu2"]), (truth["sigma1"], truth["sigma2"]), truth["pi"], rng
    )


def observed_loglik(y, p):
    """Straightforward mixture log-likelihood, independent of emsim's log-space kernels."""

    def log_density(mu, sigma):
        return -0.5 * ((y - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)

    a = np.log(p["pi"]) + log_density(p["mu1"], p["sigma1"])
    b = np.log1p(-p["pi"]) + log_density(p["mu2"], p["sigma2"])
    return float(np.logaddexp(a, b).sum())


@pytest.mark.parametrize("model", ["pi", "equal_var", "full"])
@pytest.mark.parametrize("method", ["em", "squarem"])
def test_batched_rows_equal_single_fits_bit_for_bit(model, method):
    data = np.stack([draw(120, seed) for seed in range(7)])
    starts = {"pi": np.linspace(0.2, 0.8, 7), "mu1": -0.5, "mu2": 1.5, "sigma1": 1.0, "sigma2": 1.0}
    known = KNOWN_ALL if model == "pi" else None
    batch = emsim.fit_batch(data, model=model, method=method, start=starts, known=known, trace=True)
    for r in range(len(data)):
        start = {k: (v[r] if np.ndim(v) else v) for k, v in starts.items()}
        single = emsim.fit(
            data[r], model=model, method=method, start=start, known=known, trace=True
        )
        row = batch.row(r)
        assert row.status == single.status
        assert row.iterations == single.iterations
        assert row.loglik_evals == single.loglik_evals
        assert row.loglik == single.loglik  # exact: same operations on the same numbers
        assert row.params == single.params
        np.testing.assert_array_equal(list(row.se.values()), list(single.se.values()))
        assert row.trace.equals(single.trace)


def test_model_estimates_only_its_parameters():
    y = draw(400, 1)
    fitted = emsim.fit(y, model="pi", known=KNOWN_ALL)
    assert {k: fitted.params[k] for k in KNOWN_ALL} == KNOWN_ALL
    assert np.isfinite(fitted.se["pi"]) and np.isnan(fitted.se["mu1"])
    common = emsim.fit(y, model="equal_var")
    assert common.params["sigma1"] == common.params["sigma2"]
    assert common.se["sigma1"] == common.se["sigma2"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(["pi", "equal_var", "full"]),
    method=st.sampled_from(["em", "squarem"]),
    n=st.integers(min_value=2, max_value=300),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    separation=st.floats(min_value=0.0, max_value=8.0),
    pi=st.floats(min_value=0.02, max_value=0.98),
    start_pi=st.floats(min_value=0.01, max_value=0.99),
    start_shift=st.floats(min_value=-3.0, max_value=3.0),
    start_scale=st.floats(min_value=0.1, max_value=5.0),
)
def test_loglik_never_falls_and_every_fit_has_a_status(
    model, method, n, seed, separation, pi, start_pi, start_shift, start_scale
):
    truth = {"pi": pi, "mu1": 0.0, "mu2": separation, "sigma1": 1.0, "sigma2": 1.0}
    y = draw(n, seed, truth)
    if y.min() == y.max():
        return
    start = {
        "pi": start_pi,
        "mu1": start_shift,
        "mu2": start_shift + separation,
        "sigma1": start_scale,
        "sigma2": start_scale,
    }
    known = {k: v for k, v in truth.items() if k != "pi"} if model == "pi" else None
    result = emsim.fit(y, model=model, method=method, start=start, known=known, trace=True)
    assert result.status in emsim.STATUSES
    loglik = result.trace["loglik"].to_numpy()
    scale = np.maximum(np.abs(loglik[:-1]), 1.0)
    assert np.all(np.diff(loglik) >= -1e-9 * scale)
    assert result.status != "decreased"
    if result.status == "converged":
        assert all(np.isfinite(v) for v in result.params.values())
        assert result.loglik >= result.loglik_start - 1e-9 * max(abs(result.loglik_start), 1.0)


def test_agrees_with_scikit_learn_full_model():
    mixture = pytest.importorskip("sklearn.mixture")
    y = draw(2000, 11)
    start = {"pi": 0.5, "mu1": -0.5, "mu2": 2.0, "sigma1": 1.0, "sigma2": 1.0}
    ours = emsim.fit(y, model="full", start=start, tolerance=1e-11, max_iterations=100_000)
    assert ours.status == "converged"
    reference = mixture.GaussianMixture(
        n_components=2,
        covariance_type="full",
        tol=1e-14,
        reg_covar=0.0,
        max_iter=100_000,
        weights_init=[start["pi"], 1 - start["pi"]],
        means_init=[[start["mu1"]], [start["mu2"]]],
        precisions_init=[[[1 / start["sigma1"] ** 2]], [[1 / start["sigma2"] ** 2]]],
    ).fit(y[:, None])
    expected = {
        "pi": reference.weights_[0],
        "mu1": reference.means_[0, 0],
        "mu2": reference.means_[1, 0],
        "sigma1": np.sqrt(reference.covariances_[0, 0, 0]),
        "sigma2": np.sqrt(reference.covariances_[1, 0, 0]),
    }
    for name, value in expected.items():
        assert ours.params[name] == pytest.approx(value, abs=1e-6), name
    assert ours.loglik == pytest.approx(reference.score(y[:, None]) * len(y), rel=1e-10)


def numerical_se(y, params, names):
    """Standard errors from a central-difference Hessian of the observed log-likelihood."""

    def loglik(vector):
        p = dict(params)
        p.update(zip(names, vector, strict=True))
        if "sigma" in names:
            p["sigma1"] = p["sigma2"] = p["sigma"]
        return observed_loglik(y, p)

    x = np.array([params["sigma1"] if k == "sigma" else params[k] for k in names])
    step = 1e-4 * np.maximum(np.abs(x), 0.1)
    hessian = np.empty((len(x), len(x)))
    for i in range(len(x)):
        for j in range(len(x)):
            corners = []
            for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                shifted = x.copy()
                shifted[i] += si * step[i]
                shifted[j] += sj * step[j]
                corners.append(loglik(shifted))
            hessian[i, j] = (corners[0] - corners[1] - corners[2] + corners[3]) / (
                4 * step[i] * step[j]
            )
    return np.sqrt(np.diag(np.linalg.inv(-hessian)))


@pytest.mark.parametrize(
    ("model", "names"),
    [
        ("pi", ["pi"]),
        ("equal_var", ["pi", "mu1", "mu2", "sigma"]),
        ("full", ["pi", "mu1", "mu2", "sigma1", "sigma2"]),
    ],
)
def test_standard_errors_match_numerical_hessian(model, names):
    y = draw(3000, 5)
    known = KNOWN_ALL if model == "pi" else None
    result = emsim.fit(y, model=model, known=known, tolerance=1e-10, max_iterations=50_000)
    assert result.status == "converged"
    expected = numerical_se(y, result.params, names)
    got = [result.se["sigma1"] if k == "sigma" else result.se[k] for k in names]
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_theoretical_rate_matches_empirical_on_seed_data():
    y = emsim.simulate(
        SEED_DESIGN["n"],
        SEED_DESIGN["mu"],
        SEED_DESIGN["sigma"],
        SEED_DESIGN["pi"],
        emsim.RRandom(SEED_DESIGN["seed"]),
    )
    known = {"mu1": 0.0, "mu2": 2.0, "sigma1": 1.0, "sigma2": 1.0}
    result = emsim.fit(y, model="pi", start={"pi": 0.5}, known=known, trace=True)
    # Parameter errors shrink by the rate r; the table's log-likelihood increments by r^2 (~0.26).
    assert abs(result.rate_empirical - result.rate_theory) < 0.01
    increments = result.trace["diff_loglik"].to_numpy()
    assert increments[-1] / increments[-2] == pytest.approx(result.rate_theory**2, abs=0.01)


def test_theoretical_rate_matches_empirical_full_model():
    y = draw(5000, 3)
    result = emsim.fit(y, model="full", tolerance=1e-9, max_iterations=100_000)
    assert result.status == "converged"
    assert abs(result.rate_empirical - result.rate_theory) < 0.01


def test_far_outliers_and_huge_offsets_stay_finite():
    y = draw(500, 9)
    far = np.concatenate([y, [60.0, -55.0]])  # 40+ sigma from both means
    result = emsim.fit(far, model="full")
    assert result.status == "converged" and np.isfinite(result.loglik)

    base = emsim.fit(y, model="full", tolerance=1e-9, max_iterations=100_000)
    shifted = emsim.fit(y + 1e8, model="full", tolerance=1e-9, max_iterations=100_000)
    assert shifted.status == "converged"
    assert shifted.params["mu1"] - 1e8 == pytest.approx(base.params["mu1"], abs=1e-6)
    assert shifted.params["sigma1"] == pytest.approx(base.params["sigma1"], rel=1e-6)
    assert shifted.params["pi"] == pytest.approx(base.params["pi"], abs=1e-6)


@pytest.mark.parametrize("pi", [0.5, 0.2, 1e-2, 1e-5, 1 - 1e-5])
def test_pi_model_loglik_on_sorted_separated_data(pi):
    """Sorted data put whole blocks of points where one component dominates, so the pi model's
    products of mixing terms underflow (at pi = 0.2 a block's, at 1e-5 a lane's) and its
    log-likelihood must fall back to smaller products or single logs without losing digits."""
    truth = {"pi": 0.5, "mu1": 0.0, "mu2": 40.0, "sigma1": 1.0, "sigma2": 1.0}
    y = np.sort(draw(5000, 4, truth))
    known = {k: v for k, v in truth.items() if k != "pi"}
    result = emsim.fit(y, model="pi", start={"pi": pi}, known=known, max_iterations=1)
    expected = observed_loglik(y, dict(known, pi=pi))
    assert result.loglik_start == pytest.approx(expected, rel=1e-13)


def test_squarem_reaches_the_same_maximum_with_fewer_evaluations():
    y = draw(3000, 2, {"pi": 0.6, "mu1": 0.0, "mu2": 1.5, "sigma1": 1.0, "sigma2": 1.0})
    plain = emsim.fit(y, model="full", tolerance=1e-9, max_iterations=100_000)
    fast = emsim.fit(y, model="full", method="squarem", tolerance=1e-9, max_iterations=100_000)
    assert plain.status == fast.status == "converged"
    assert fast.loglik == pytest.approx(plain.loglik, abs=1e-5)
    assert fast.loglik_evals < plain.loglik_evals / 3


def test_bad_input_raises_value_error_naming_it():
    y = draw(50, 1)
    with pytest.raises(ValueError, match="model"):
        emsim.fit(y, model="nope")
    with pytest.raises(ValueError, match="pi"):
        emsim.fit(y, start={"pi": 1.5})
    with pytest.raises(ValueError, match="sigma1"):
        emsim.fit(y, model="pi", known={"mu1": 0, "mu2": 1, "sigma2": 1})
    with pytest.raises(ValueError, match="NaN"):
        emsim.fit(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="at least 2"):
        emsim.fit(np.array([1.0]))


def test_constant_data_is_a_degenerate_fit_not_an_error():
    batch = emsim.fit_batch(np.stack([draw(20, 1), np.full(20, 3.0)]), model="full")
    assert list(batch.status) == ["converged", "degenerate"]
    assert emsim.fit(np.full(20, 3.0), model="equal_var").status == "degenerate"
    # With the components known only pi is estimated, and data on one point are no obstacle:
    # midway between the means the likelihood is flat in pi, so EM stops where it started, at a
    # point that carries no information about pi: not a maximum with an SE, hence `saddle`.
    known = {"mu1": 0.0, "mu2": 3.0, "sigma1": 1.0, "sigma2": 1.0}
    flat = emsim.fit(np.full(20, 1.5), model="pi", known=known)
    assert flat.status == "saddle" and flat.params["pi"] == 0.5
    assert np.isnan(flat.se["pi"])


def test_trace_grows_past_its_first_allocation():
    y = emsim.simulate(500, (0, 1), 1.0, 0.5, np.random.default_rng(3))
    result = emsim.fit(y, trace=True, max_iterations=10**12, tolerance=1e-9)
    assert result.status == "converged" and result.iterations > 1000
    trace = result.trace
    np.testing.assert_array_equal(trace["iteration"], np.arange(result.iterations + 1))
    assert trace["loglik"].iloc[-1] == result.loglik
