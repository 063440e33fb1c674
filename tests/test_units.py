"""A fit does not depend on the data's units (issue 19, finding 8): data times 2^k, 1e150,
1e-200 or 1e300, or moved far from zero, give the same statuses, iterations and distances, and
estimates, SEs, log-likelihoods and traces carried over exactly as the units say; data that
need no working units are fitted as given, bit for bit.

Before the fix (e886b4f) data times 1e150 ended `saddle` with every SE NaN, and times 1e-200
or 1e300 `nonfinite` at iteration 0.
"""

from __future__ import annotations

import numpy as np
import pytest

import emsim

LOCATION = ("mu1", "mu2")
SCALE = ("sigma1", "sigma2")
REL = 1e-9


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return emsim.simulate(300, mu=(0, 3), sigma=1, pi=0.4, rng=np.random.default_rng(5))


def assert_equivariant(base, moved, factor: float, shift: float, n: int) -> None:
    assert moved.status == base.status
    assert moved.iterations == base.iterations
    # An EM stop moves with the data's rounding (1e-16) by about as much. SQUAREM's extrapolation
    # divides by a second difference of iterates, rounding-sized near the stop, so its stop
    # moves within the stopping rule's reach: each of the two stops lies within its
    # distance_to_limit (in SEs) of the one limit.
    squarem = base.method == "squarem"
    reach = base.distance_to_limit + moved.distance_to_limit + REL if squarem else REL
    for name, value in base.params.items():
        expected = value * factor + shift if name in LOCATION else value
        expected = value * factor if name in SCALE else expected
        spread = base.se[name] if squarem else abs(value)
        # A shifted mean is compared on the scale of the spread, where its precision lies.
        spread = max(spread, 1.0 if name in LOCATION else 0.0) * factor if name != "pi" else spread
        assert abs(moved.params[name] - expected) <= reach * spread, name
    for name, value in base.se.items():
        expected = value * factor if name in LOCATION + SCALE else value
        # An SE moves with its stop: by about the stop's reach, relative.
        rel = 1e-4 if squarem else REL
        assert moved.se[name] == pytest.approx(expected, rel=rel, nan_ok=True), name
        sandwich = base.se_sandwich[name]
        expected = sandwich * factor if name in LOCATION + SCALE else sandwich
        assert moved.se_sandwich[name] == pytest.approx(expected, rel=rel, nan_ok=True), name
    # The log-likelihood is a sum of n logs; the shift n log(factor) is carried in absolute
    # terms. Each SQUAREM stop lies below the limit's by its loglik_gap_to_limit.
    gaps = base.loglik_gap_to_limit + moved.loglik_gap_to_limit if squarem else 0.0
    assert moved.loglik + n * np.log(factor) == pytest.approx(
        base.loglik, rel=1e-12, abs=gaps + 1e-12 * abs(base.loglik)
    )
    assert moved.loglik_start + n * np.log(factor) == pytest.approx(base.loglik_start, rel=1e-12)
    if not squarem:
        assert moved.rate_theory == pytest.approx(base.rate_theory, rel=1e-6)
        # A distance to the limit is a difference of nearby points: its precision is coarser.
        assert moved.distance_to_limit == pytest.approx(base.distance_to_limit, rel=1e-5)
    assert moved.distance_to_limit < 0.1


@pytest.mark.parametrize("factor", [2.0**40, 2.0**-45, 1e150, 1e-200, 1e300])
@pytest.mark.parametrize(
    "model, method", [("full", "em"), ("equal_var", "squarem"), ("full", "squarem")]
)
def test_a_fit_is_the_same_in_any_units(data, factor, model, method):
    base = emsim.fit(data, model=model, method=method)
    assert base.status == "converged"
    moved = emsim.fit(data * factor, model=model, method=method)
    assert_equivariant(base, moved, factor, 0.0, data.size)
    assert all(np.isfinite(moved.se[name]) for name in ("pi", *LOCATION, *SCALE))


@pytest.mark.parametrize("factor", [1e150, 1e-200])
def test_the_pi_models_known_values_and_starts_are_given_in_the_users_units(data, factor):
    known = {"mu1": 3.0, "mu2": 0.0, "sigma1": 1.0, "sigma2": 1.0}
    base = emsim.fit(data, model="pi", known=known, start={"pi": 0.3})
    moved = emsim.fit(
        data * factor,
        model="pi",
        known={name: value * factor for name, value in known.items()},
        start={"pi": 0.3},
    )
    assert_equivariant(base, moved, factor, 0.0, data.size)
    start = {"mu1": 2.5, "mu2": -0.5, "sigma1": 0.8, "sigma2": 1.2}
    base = emsim.fit(data, start=start)
    moved = emsim.fit(data * factor, start={k: v * factor for k, v in start.items()})
    assert_equivariant(base, moved, factor, 0.0, data.size)


@pytest.mark.parametrize("shift", [2.0**40, -1e12])
def test_data_far_from_zero_are_fitted_about_their_centre(data, shift):
    moved_data = data + shift
    # The data as moved, rounded to the ulp of the shift, back at zero (exactly: Sterbenz).
    base = emsim.fit(moved_data - shift)
    moved = emsim.fit(moved_data)
    assert_equivariant(base, moved, 1.0, shift, data.size)


def test_traces_are_carried_back_to_the_users_units(data):
    factor = 1e150
    base = emsim.fit(data, trace=True).trace
    moved = emsim.fit(data * factor, trace=True).trace
    assert list(moved.columns) == list(base.columns)
    np.testing.assert_allclose(moved["pi"], base["pi"], rtol=REL)
    for name in LOCATION + SCALE:
        np.testing.assert_allclose(moved[name], base[name] * factor, rtol=REL, atol=REL * factor)
    np.testing.assert_allclose(moved["loglik"] + data.size * np.log(factor), base["loglik"])


def test_a_batch_row_is_the_single_fit_whatever_the_other_rows_units(data):
    rows = np.stack([data, data * 1e150, data[::-1] * 3.0])
    batch = emsim.fit_batch(rows)
    for i in range(3):
        single = emsim.fit(rows[i])
        assert batch.row(i).params == single.params
        assert batch.row(i).iterations == single.iterations


def test_ordinary_data_are_fitted_as_given(data, monkeypatch):
    """Data within the safe range take the engine's path untouched: the fit is what the fit of
    the data without any working units gives, bit for bit."""
    from emsim import working_scale

    units = working_scale.choose(np.stack([data, data * 1e3, data * 1e-3 + 50.0]))
    assert not units.rescaled.any()
    expected = emsim.fit(data, trace=True)
    # The fit with the working units switched off entirely.
    monkeypatch.setattr(
        working_scale,
        "choose",
        lambda y: working_scale.WorkingScale(
            np.ones(y.shape[0]), np.zeros(y.shape[0]), np.zeros(y.shape[0], dtype=bool)
        ),
    )
    plain = emsim.fit(data, trace=True)
    assert expected.params == plain.params and expected.se == plain.se
    assert expected.loglik == plain.loglik and expected.iterations == plain.iterations
    assert expected.trace.equals(plain.trace)


@pytest.mark.parametrize(
    "row, rescaled",
    [
        (np.array([0.0, 2.0**30, 2.0**31]), False),
        (np.array([0.0, 2.0**32, 2.0**33]), True),
        (np.array([0.0, 2.0**-33, 2.0**-32]), True),
        (np.array([1.0, 1.0, 1.0]) * 1e300, False),
        (np.array([-1.0, 1.0]) * 1.7e308, True),
        (np.array([2.0**21, 2.0**21 + 1, 2.0**21 + 2]), True),
    ],
)
def test_the_rows_that_get_working_units(row, rescaled):
    from emsim import working_scale

    units = working_scale.choose(row[None, :])
    assert bool(units.rescaled[0]) is rescaled
    if rescaled:
        working = working_scale.data_in(row[None, :], units)[0]
        assert 0.25 <= working.std() <= 2.0
        # A power of two: dividing by it is exact.
        assert np.frexp(units.scale[0])[0] == 0.5


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11, 500, 501])
def test_the_median_read_off_the_halves_is_numpys(n):
    # `choose` takes the centre from the partition it makes for the within-component scale,
    # instead of partitioning again: it must be np.median's value bit for bit, ties included.
    from emsim import working_scale

    rng = np.random.default_rng(n)
    rows = np.vstack([rng.normal(size=n), np.round(rng.normal(size=n)), rng.normal(size=n) * 1e9])
    ordered = working_scale._halves(rows)
    assert np.array_equal(working_scale._median(ordered), np.median(rows, axis=1))
