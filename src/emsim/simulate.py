"""Data from a two-component mixture, drawn as the seed's R `gen_data` draws it: Gaussian
components by default, or another component family (`emsim.families`, issue 21)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from emsim.families import Family, FamilyError, parse_family
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
    family: Family | str | dict | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
    """`simulate`, also returning the component labels z (1 or 2; P(z = 1) = pi)."""
    n, mu_a, sigma_a, pi_f = _check_args(n, mu, sigma, pi)
    try:
        fam = parse_family(family)
    except FamilyError as err:
        raise ValueError(str(err)) from None
    if not fam.is_normal and isinstance(rng, RRandom):
        # R's gen_data draws normals only: no R stream to match for another family.
        raise ValueError(f"family {fam.label} needs a numpy Generator, not an RRandom")
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
    # An overflow is reported by _check_drawn, as one error, not as numpy's warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        if isinstance(rng, RRandom):
            y = rng.rnorm(n, mean, sd)
        elif fam.is_normal:
            y = mean + sd * rng.standard_normal(n)
        else:
            y = mean + sd * fam.errors(n, rng)
    _check_drawn(y, mu_a, sigma_a)
    return y, z


def _check_drawn(y: NDArray[np.float64], mu: NDArray[np.float64], sigma: NDArray[np.float64]):
    # A design near the largest double (mu 1e308, sigma 1e308) draws points beyond it: they
    # would be written as inf, data no fit can use. Whether a draw overflows depends on the
    # normals drawn, so the drawn values are what is checked.
    overflowed = ~np.isfinite(y)
    if overflowed.any():
        raise ValueError(
            f"{int(overflowed.sum())} of {y.size} drawn values overflow the floating-point "
            f"range (mu {mu[0]:g}, {mu[1]:g}; sigma {sigma[0]:g}, {sigma[1]:g}): use a "
            "smaller scale"
        )


def simulate(
    n: int,
    mu: Sequence[float] | ArrayLike,
    sigma: float | Sequence[float] | ArrayLike,
    pi: float,
    rng: np.random.Generator | RRandom,
    family: Family | str | dict | None = None,
) -> NDArray[np.float64]:
    """Draw n points from a two-component Gaussian mixture, as the seed's R `gen_data` does.

    First n uniforms u give the labels, z = 1 where u <= pi and z = 2 elsewhere (R's
    ``Z = (runif(n) > pi) + 1``); then n standard normals, one per point in order, are scaled to
    the point's component: y = mu_z + sigma_z * e. The two passes use the generator in this
    order, so the same generator state always gives the same data.

    Parameters
    ----------
    n : int
        Number of points, >= 1.
    mu : array_like of float, shape (2,)
        The means (mu1, mu2) of components 1 and 2; finite.
    sigma : float or array_like of float, shape (2,)
        One standard deviation for both components, or (sigma1, sigma2); finite and > 0.
    pi : float
        P(Z = 1), the weight of component 1, in [0, 1] (0 and 1 give one component).
    rng : numpy.random.Generator or RRandom
        The random stream. A numpy Generator draws its uniforms with ``random`` and its normals
        with ``standard_normal``. With ``RRandom(s)`` the result equals R's
        ``set.seed(s); gen_data(n, mu, sigma, pi)$Y`` (R's ``runif`` then ``rnorm``) draw for
        draw.
    family : str, dict or Family, optional
        The components' family (`emsim.families`): ``"normal"`` (the default, the draws
        above), ``{"name": "t", "df": 5}``, ``{"name": "skew_normal", "alpha": 4}`` or
        ``{"name": "contaminated", "epsilon": 0.05, "scale": 5}``; mu and sigma are each
        component's location and scale. After the labels' uniforms the family draws its
        standardised errors e, y = mu_z + sigma_z * e (a numpy Generator only).

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
        The data, in draw order (the labels are not returned: `simulate_labelled` also gives
        them).

    Raises
    ------
    ValueError
        For an n that is not an integer >= 1, a mu that is not a finite pair, a sigma that is
        not finite and > 0, or a pi outside [0, 1]; for a bad family spec (the message names
        the entry, e.g. df <= 2); for a design whose draws overflow the floating-point range
        (values near 1e308).
    TypeError
        For an `rng` that is neither a numpy Generator nor an `RRandom`.

    Examples
    --------
    >>> import numpy as np
    >>> import emsim
    >>> emsim.simulate(5, mu=(0, 2), sigma=1, pi=0.8, rng=np.random.default_rng(1)).round(3)
    array([0.446, 1.463, 0.581, 2.365, 0.294])

    R's stream: the same numbers as ``set.seed(1); gen_data(5, c(0, 2), 1, 0.8)$Y`` in R.

    >>> emsim.simulate(5, mu=(0, 2), sigma=1, pi=0.8, rng=emsim.RRandom(1)).round(3)
    array([ 1.272,  0.415, -1.54 ,  1.071, -0.295])

    Two standard deviations: only the fourth point comes from component 2.

    >>> emsim.simulate(5, mu=(0, 2), sigma=(1, 0.5), pi=0.8, rng=emsim.RRandom(1)).round(3)
    array([ 1.272,  0.415, -1.54 ,  1.536, -0.295])
    """
    return simulate_labelled(n, mu, sigma, pi, rng, family)[0]
