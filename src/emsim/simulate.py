"""Data from a two-component Gaussian mixture, drawn as the seed's R `gen_data` draws it."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from emsim.rrandom import RRandom

__all__ = ["simulate", "simulate_labelled"]


def _check_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n}")
    return int(n)


def _check_pair(x: ArrayLike, name: str, *, scalar_ok: bool) -> NDArray[np.float64]:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got {x!r}") from None
    if scalar_ok and a.ndim == 0:
        a = np.full(2, float(a))
    if a.shape != (2,):
        want = "a number or a pair" if scalar_ok else "a pair (two values)"
        raise ValueError(f"{name} must be {want}, got {x!r}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite, got {x!r}")
    return a


def _check_args(
    n: object, mu: ArrayLike, sigma: ArrayLike, pi: object
) -> tuple[int, NDArray[np.float64], NDArray[np.float64], float]:
    n = _check_n(n)
    mu_a = _check_pair(mu, "mu", scalar_ok=False)
    sigma_a = _check_pair(sigma, "sigma", scalar_ok=True)
    if not (sigma_a > 0.0).all():
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if isinstance(pi, bool) or not isinstance(pi, numbers.Real):
        raise ValueError(f"pi must be a number in [0, 1], got {pi!r}")
    pi_f = float(pi)
    # pi = 0 or 1 is a legitimate (one-component) design point, so only outside [0, 1] is bad.
    if not (0.0 <= pi_f <= 1.0):
        raise ValueError(f"pi must be in [0, 1], got {pi!r}")
    return n, mu_a, sigma_a, pi_f


def simulate_labelled(
    n: int,
    mu: Sequence[float] | ArrayLike,
    sigma: float | Sequence[float] | ArrayLike,
    pi: float,
    rng: np.random.Generator | RRandom,
) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
    """`simulate`, also returning the component labels z (1 or 2; P(z = 1) = pi)."""
    n, mu_a, sigma_a, pi_f = _check_args(n, mu, sigma, pi)
    if isinstance(rng, RRandom):
        u = rng.runif(n)
    elif isinstance(rng, np.random.Generator):
        u = rng.random(n)
    else:
        raise TypeError(f"rng must be a numpy Generator or an emsim.RRandom, got {rng!r}")
    # The seed's Z = (runif(n) > pi) + 1: u == pi goes to component 1.
    z = (u > pi_f).astype(np.int8) + np.int8(1)
    mean = mu_a[z - 1]
    sd = sigma_a[z - 1]
    if isinstance(rng, RRandom):
        y = rng.rnorm(n, mean, sd)
    else:
        y = mean + sd * rng.standard_normal(n)
    return y, z


def simulate(
    n: int,
    mu: Sequence[float] | ArrayLike,
    sigma: float | Sequence[float] | ArrayLike,
    pi: float,
    rng: np.random.Generator | RRandom,
) -> NDArray[np.float64]:
    """n draws as the seed's `gen_data`: labels from n uniforms, then n normals.

    `mu` is (mu1, mu2), `sigma` a common sd or (sigma1, sigma2), `pi` = P(Z = 1). With
    `rng=RRandom(s)` the result equals R's `set.seed(s); gen_data(n, mu, sigma, pi)$Y`.
    """
    return simulate_labelled(n, mu, sigma, pi, rng)[0]
