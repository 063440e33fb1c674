"""Sandwich standard errors (issue 21): against finite-difference H and J on small data, and
equal to the observed-information SEs where the model is true (large n)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import emsim
from emsim.information import sandwich_se

KNOWN_PI_MODEL = {"mu1": 0.0, "mu2": 3.0, "sigma1": 1.0, "sigma2": 1.0}


def _point_logliks(y: np.ndarray, theta: np.ndarray, model: str) -> np.ndarray:
    """log f(y_i; theta) per point, theta over the model's estimated parameters."""
    if model == "pi":
        pi, (mu1, mu2, s1, s2) = theta[0], KNOWN_PI_MODEL.values()
    elif model == "equal_var":
        pi, mu1, mu2, s1 = theta
        s2 = s1
    else:
        pi, mu1, mu2, s1, s2 = theta
    c = -0.5 * math.log(2 * math.pi)
    a = math.log(pi) - math.log(s1) + c - 0.5 * ((y - mu1) / s1) ** 2
    b = math.log(1 - pi) - math.log(s2) + c - 0.5 * ((y - mu2) / s2) ** 2
    return np.logaddexp(a, b)


def _finite_difference_sandwich(y: np.ndarray, theta: np.ndarray, model: str) -> np.ndarray:
    k = len(theta)
    h = 1e-5
    steps = np.eye(k) * h
    # Per-point gradients by central differences, and the Hessian of their sum from them.
    grads = np.stack(
        [
            (_point_logliks(y, theta + d, model) - _point_logliks(y, theta - d, model)) / (2 * h)
            for d in steps
        ],
        axis=1,
    )
    outer = grads.T @ grads

    def total_gradient(t: np.ndarray) -> np.ndarray:
        return np.array(
            [
                (_point_logliks(y, t + d, model) - _point_logliks(y, t - d, model)).sum() / (2 * h)
                for d in steps
            ]
        )

    hessian = np.stack(
        [(total_gradient(theta + d) - total_gradient(theta - d)) / (2 * h) for d in steps]
    )
    information = -0.5 * (hessian + hessian.T)
    inverse = np.linalg.inv(information)
    return np.sqrt(np.diag(inverse @ outer @ inverse))


def _names(model: str) -> list[str]:
    return {"pi": ["pi"], "equal_var": ["pi", "mu1", "mu2", "sigma1"]}.get(
        model, list(emsim.PARAMS)
    )


@pytest.mark.parametrize("model", ["pi", "equal_var", "full"])
@pytest.mark.parametrize("family", ["normal", {"name": "t", "df": 4}])
def test_sandwich_matches_finite_differences(model, family) -> None:
    y = emsim.simulate(60, (0.0, 3.0), 1.0, 0.7, np.random.default_rng(3), family=family)
    known = KNOWN_PI_MODEL if model == "pi" else None
    fit = emsim.fit(y, model=model, known=known)
    assert fit.status == "converged"
    theta = np.array([fit.params[p] for p in _names(model)])
    expected = _finite_difference_sandwich(y, theta, model)
    got = np.array([fit.se_sandwich[p] for p in _names(model)])
    np.testing.assert_allclose(got, expected, rtol=2e-5)
    observed = np.array([fit.se[p] for p in _names(model)])
    if model == "pi":
        # log f is linear in pi, so -d2 log f / dpi2 = (d log f / dpi)^2 point by point: H = J
        # and the sandwich is the observed SE whatever the data.
        np.testing.assert_allclose(got, observed, rtol=1e-12)
    else:
        # On 60 points J and H differ.
        assert np.max(np.abs(got / observed - 1)) > 1e-3


def test_sandwich_equals_observed_se_where_the_model_is_true() -> None:
    y = emsim.simulate(200_000, (0.0, 3.0), (1.0, 1.5), 0.6, np.random.default_rng(8))
    fit = emsim.fit(y, model="full")
    assert fit.status == "converged"
    for p in emsim.PARAMS:
        # J / n and H / n estimate the same Fisher information to O(n^-1/2) (0.2% here).
        assert fit.se_sandwich[p] / fit.se[p] == pytest.approx(1.0, abs=0.02), p


def test_batch_rows_and_equal_var_layout() -> None:
    Y = np.stack([emsim.simulate(300, (0, 3), 1, 0.5, np.random.default_rng(s)) for s in range(3)])
    batch = emsim.fit_batch(Y, model="equal_var")
    np.testing.assert_array_equal(batch.se_sandwich["sigma1"], batch.se_sandwich["sigma2"])
    assert batch.row(1).se_sandwich["mu1"] == float(batch.se_sandwich["mu1"][1])


def test_sandwich_is_taken_at_the_reported_estimate_where_centring_j_does_not_matter() -> None:
    # t(5) components, the coverage design: the SE a fit reports is H^-1 J H^-1 at the
    # estimate it reports, and there the scores sum to ~0, so J of uncentred scores (the
    # module's) and their covariance (centred) give the same SE.
    y = emsim.simulate(
        2000, (0.0, 4.0), 1.0, 0.8, np.random.default_rng(21), family={"name": "t", "df": 5}
    )
    fit = emsim.fit(
        y, model="full", start={"pi": 0.8, "mu1": 0.0, "mu2": 4.0, "sigma1": 1.0, "sigma2": 1.0}
    )
    assert fit.status == "converged"
    theta = np.array([[fit.params[p] for p in emsim.PARAMS]])
    reported = np.array([fit.se_sandwich[p] for p in emsim.PARAMS])
    np.testing.assert_array_equal(sandwich_se(y[None, :], theta, "full")[0], reported)
    scores = _point_scores(y, theta[0])
    root_j = np.sqrt((scores**2).sum(axis=0))
    assert np.max(np.abs(scores.sum(axis=0)) / root_j) < 0.01
    h_inverse = np.linalg.inv(_finite_difference_information(y, theta[0]))
    centred = scores - scores.mean(axis=0)
    for j in (scores.T @ scores, centred.T @ centred):
        np.testing.assert_allclose(np.sqrt(np.diag(h_inverse @ j @ h_inverse)), reported, rtol=1e-4)


def _point_scores(y: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Each point's score under the full model by central differences, n x 5."""
    h = 1e-6
    return np.stack(
        [
            (_point_logliks(y, theta + d, "full") - _point_logliks(y, theta - d, "full")) / (2 * h)
            for d in np.eye(len(theta)) * h
        ],
        axis=1,
    )


def _finite_difference_information(y: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """-Hessian of the full model's log-likelihood by central differences of its gradient."""
    h, k = 1e-5, len(theta)
    steps = np.eye(k) * h

    def gradient(t: np.ndarray) -> np.ndarray:
        return np.array(
            [
                (_point_logliks(y, t + d, "full") - _point_logliks(y, t - d, "full")).sum()
                / (2 * h)
                for d in steps
            ]
        )

    hessian = np.stack([(gradient(theta + d) - gradient(theta - d)) / (2 * h) for d in steps])
    return -0.5 * (hessian + hessian.T)
