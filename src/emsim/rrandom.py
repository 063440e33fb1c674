"""R-compatible random numbers: R 4.2's default Mersenne-Twister and Inversion normals.

`RRandom(seed)` after construction gives the same stream as R's `set.seed(seed)`, so
`runif(n)` and `rnorm(n, mean, sd)` return what R returns, draw for draw.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["RRandom", "qnorm"]

_MASK32 = 0xFFFFFFFF
# R's set.seed takes an R integer: 32-bit signed, with -2^31 reserved for NA. Anything else is
# refused (R refuses it too), so that no seed wraps around onto another seed's stream.
R_SEED_MAX = 2**31 - 1
# R's RNG.c: MT_genrand scales by 2^-32; fixup() nudges off 0 and 1 by half of 1/(2^32 - 1).
_TO_UNIT = 2.3283064365386963e-10
_I2_32M1 = 2.328306437080797e-10
# R's snorm.c: a single uniform has too few bits for the tails, so Inversion combines two.
_BIG = 134217728.0  # 2^27

Size = int | Sequence[int] | None


def _r_seed_key(seed: int) -> NDArray[np.uint32]:
    """MT19937 state that R's `set.seed(seed)` produces (RNG.c: Randomize/RNG_Init)."""
    s = seed & _MASK32  # R's Int32 is unsigned: negative seeds (within R's range) wrap.
    for _ in range(50):
        s = (69069 * s + 1) & _MASK32
    words = np.empty(625, dtype=np.uint32)
    for j in range(625):
        s = (69069 * s + 1) & _MASK32
        words[j] = s
    # words[0] is R's `mti` slot, which FixupSeeds overwrites with 624; the rest is the state.
    # (FixupSeeds' all-zero check cannot fire: the LCG never repeats within 2^32 steps.)
    return words[1:].copy()


def _log_libm(x: NDArray[np.float64]) -> NDArray[np.float64]:
    # numpy's SIMD log differs from the C library's log (which R calls) in the last bit for
    # roughly 1 argument in 10^4; math.log is the C library's, so R's bits are kept. Only the
    # tail branch of qnorm needs it (about 15% of draws), and map() keeps the loop in C.
    return np.fromiter(map(math.log, x.tolist()), dtype=np.float64, count=x.size)


def qnorm(p: ArrayLike) -> NDArray[np.float64]:
    """Standard normal quantile as R's `qnorm(p)` (qnorm5, Wichura's AS 241), vectorised.

    The coefficients and the order of operations are those of R 4.2's src/nmath/qnorm.c, so
    results agree with R bit for bit on the same platform (lower tail, p not on the log scale).
    """
    p = np.asarray(p, dtype=np.float64)
    shape = p.shape
    p = p.ravel()
    val = np.full(p.shape, np.nan)
    val[p == 0.0] = -np.inf
    val[p == 1.0] = np.inf

    inside = (p > 0.0) & (p < 1.0)
    q = p - 0.5
    central = inside & (np.abs(q) <= 0.425)
    qc = q[central]
    r = 0.180625 - qc * qc
    # fmt: off
    num = (((((((r * 2509.0809287301226727 + 33430.575583588128105) * r
                + 67265.770927008700853) * r + 45921.953931549871457) * r
              + 13731.693765509461125) * r + 1971.5909503065514427) * r
            + 133.14166789178437745) * r + 3.387132872796366608)
    den = (((((((r * 5226.495278852854561 + 28729.085735721942674) * r
                + 39307.89580009271061) * r + 21213.794301586595867) * r
              + 5394.1960214247511077) * r + 687.1870074920579083) * r
            + 42.313330701600911252) * r + 1.0)
    # fmt: on
    val[central] = qc * num / den

    tail = inside & ~central
    qt = q[tail]
    pt = p[tail]
    # R_DT_CIv(p) for the lower tail is (0.5 - p + 0.5), not (1 - p): same rounding as R.
    r = np.sqrt(-_log_libm(np.where(qt > 0.0, 0.5 - pt + 0.5, pt)))
    vt = np.empty_like(r)

    near = r <= 5.0  # min(p, 1 - p) >= exp(-25)
    s = r[near] - 1.6
    # fmt: off
    num = (((((((s * 7.7454501427834140764e-4 + 0.0227238449892691845833) * s
                + 0.24178072517745061177) * s + 1.27045825245236838258) * s
              + 3.64784832476320460504) * s + 5.7694972214606914055) * s
            + 4.6303378461565452959) * s + 1.42343711074968357734)
    den = (((((((s * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * s
                + 0.0151986665636164571966) * s + 0.14810397642748007459) * s
              + 0.68976733498510000455) * s + 1.6763848301838038494) * s
            + 2.05319162663775882187) * s + 1.0)
    # fmt: on
    vt[near] = num / den

    far = ~near
    s = r[far] - 5.0
    # fmt: off
    num = (((((((s * 2.01033439929228813265e-7 + 2.71155556874348757815e-5) * s
                + 0.0012426609473880784386) * s + 0.026532189526576123093) * s
              + 0.29656057182850489123) * s + 1.7848265399172913358) * s
            + 5.4637849111641143699) * s + 6.6579046435011037772)
    den = (((((((s * 2.04426310338993978564e-15 + 1.4215117583164458887e-7) * s
                + 1.8463183175100546818e-5) * s + 7.868691311456132591e-4) * s
              + 0.0148753612908506148525) * s + 0.13692988092273580531) * s
            + 0.59983220655588793769) * s + 1.0)
    # fmt: on
    vt[far] = num / den

    val[tail] = np.where(qt < 0.0, -vt, vt)
    return val.reshape(shape)


def _size_count(size: Size) -> tuple[int, tuple[int, ...] | None]:
    if size is None:
        return 1, None
    shape = (operator.index(size),) if np.ndim(size) == 0 else tuple(map(operator.index, size))
    if any(d < 0 for d in shape):
        raise ValueError(f"size must be non-negative, got {size!r}")
    return math.prod(shape), shape


class RRandom:
    """R's default random stream (Mersenne-Twister, Inversion), seeded as R's `set.seed(seed)`.

    A new ``RRandom(seed)`` is in the state R is in after ``set.seed(seed)`` with R's default
    kinds (``RNGkind("Mersenne-Twister", "Inversion")``), including R's scrambling of the seed.
    Each call consumes the stream as the matching R call does, so a sequence of calls reproduces
    an R script's ``runif`` and ``rnorm`` calls number for number. `random`, `uniform` and
    `standard_normal` mirror numpy's `Generator` methods of those names, so code written for a
    Generator (such as `emsim.simulate`) can take an RRandom.

    Parameters
    ----------
    seed : int
        The seed, as given to R's ``set.seed``; any Python or numpy integer (negative seeds
        wrap modulo 2^32 as in R).

    Attributes
    ----------
    seed : int
        The seed the stream was started from.

    Raises
    ------
    ValueError
        For a seed that is not an integer (a bool, a float, a string).

    Examples
    --------
    >>> import emsim
    >>> rng = emsim.RRandom(1)
    >>> rng
    RRandom(seed=1)
    >>> rng.runif(3).round(7)  # R: set.seed(1); runif(3)
    array([0.2655087, 0.3721239, 0.5728534])
    >>> rng.runif(1).round(7)  # R: the next runif(1), 0.9082078
    array([0.9082078])
    """

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if not -R_SEED_MAX <= seed <= R_SEED_MAX:
            raise ValueError(
                f"seed {seed} is outside R's integer range -{R_SEED_MAX} to {R_SEED_MAX} "
                "(set.seed takes a 32-bit integer)"
            )
        self.seed = int(seed)
        self._bits = np.random.MT19937()
        self._bits.state = {
            "bit_generator": "MT19937",
            "state": {"key": _r_seed_key(self.seed), "pos": 624},
        }

    def __repr__(self) -> str:
        return f"RRandom(seed={self.seed})"

    def runif(self, n: int, min: float = 0.0, max: float = 1.0) -> NDArray[np.float64]:
        """Uniform draws as R's ``runif(n, min, max)``.

        Parameters
        ----------
        n : int
            Number of draws, >= 0.
        min, max : float, default 0.0 and 1.0
            The interval; finite, with min <= max. When they are equal R returns min without
            drawing, and so does this (the stream does not advance).

        Returns
        -------
        numpy.ndarray of float64, shape (n,)
            Draws strictly inside (min, max) (never exactly an end, as R ensures), each from
            one 32-bit Mersenne-Twister output.

        Raises
        ------
        ValueError
            For a negative n, or min and max not finite or in the wrong order.

        Examples
        --------
        >>> import emsim
        >>> emsim.RRandom(1).runif(3).round(7)  # R: set.seed(1); runif(3)
        array([0.2655087, 0.3721239, 0.5728534])
        >>> emsim.RRandom(1).runif(2, 5, 10).round(4)  # R: set.seed(1); runif(2, 5, 10)
        array([6.3275, 6.8606])
        """
        n = operator.index(n)
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        if not (math.isfinite(min) and math.isfinite(max) and min <= max):
            raise ValueError(f"min and max must be finite with min <= max, got {min}, {max}")
        if min == max:  # R returns min without drawing, so the stream is not advanced
            return np.full(n, float(min))
        u = self._bits.random_raw(n).astype(np.float64) * _TO_UNIT
        # R's fixup(): the stream must never yield 0 or 1 (qnorm would give an infinity).
        u[u <= 0.0] = 0.5 * _I2_32M1
        u[(1.0 - u) <= 0.0] = 1.0 - 0.5 * _I2_32M1
        if min == 0.0 and max == 1.0:
            return u
        return min + (max - min) * u

    def _norm_rand(self, n: int) -> NDArray[np.float64]:
        u = self.runif(2 * n)
        # (int)(BIG * u1) + u2 as in R's snorm.c; u1 > 0 so floor equals C's truncation.
        return qnorm((np.floor(_BIG * u[0::2]) + u[1::2]) / _BIG)

    def rnorm(self, n: int, mean: ArrayLike = 0.0, sd: ArrayLike = 1.0) -> NDArray[np.float64]:
        """Normal draws as R's ``rnorm(n, mean, sd)``.

        Each normal is R's Inversion: ``qnorm`` of a uniform built from two ``runif`` draws
        (one has too few bits for the tails), so one normal consumes two uniforms of the stream.

        Parameters
        ----------
        n : int
            Number of draws, >= 0.
        mean : float or array_like of float, default 0.0
            One mean, or one per draw (length n); not NaN.
        sd : float or array_like of float, default 1.0
            One standard deviation, or one per draw (length n); finite and >= 0. As in R, a
            draw whose sd is 0 or whose mean is infinite returns the mean without consuming the
            stream.

        Returns
        -------
        numpy.ndarray of float64, shape (n,)

        Raises
        ------
        ValueError
            For a negative n, a mean or sd array whose length is not n, a NaN mean, or an sd
            that is negative or not finite.

        Examples
        --------
        >>> import emsim
        >>> emsim.RRandom(1).rnorm(3).round(7)  # R: set.seed(1); rnorm(3)
        array([-0.6264538,  0.1836433, -0.8356286])
        >>> emsim.RRandom(1).rnorm(3, mean=[0, 10, 100], sd=2).round(4)
        array([-1.2529, 10.3673, 98.3287])
        """
        n = operator.index(n)
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        mean_a = self._param(mean, n, "mean")
        sd_a = self._param(sd, n, "sd")
        if np.isnan(mean_a).any():
            raise ValueError("mean must not be NaN")
        if not (np.isfinite(sd_a) & (sd_a >= 0.0)).all():
            raise ValueError("sd must be finite and >= 0")
        # R returns `mean` without drawing when sd == 0 or mean is infinite; skipping those
        # draws keeps the rest of the stream aligned with R.
        draws = (sd_a != 0.0) & np.isfinite(mean_a)
        out = mean_a.copy()
        out[draws] = mean_a[draws] + sd_a[draws] * self._norm_rand(int(draws.sum()))
        return out

    @staticmethod
    def _param(x: ArrayLike, n: int, name: str) -> NDArray[np.float64]:
        a = np.asarray(x, dtype=np.float64)
        if a.ndim == 0:
            return np.full(n, float(a))
        if a.shape != (n,):
            raise ValueError(f"{name} must be a scalar or have length n={n}, got shape {a.shape}")
        return a

    # numpy Generator look-alikes, so code written for a Generator can take an RRandom.
    def random(self, size: Size = None) -> Any:
        """Uniforms on (0, 1), as numpy's ``Generator.random``, from R's ``runif``.

        Parameters
        ----------
        size : int or tuple of int, optional
            Output shape; None (the default) gives one float.

        Returns
        -------
        float or numpy.ndarray of float64
            The next ``prod(size)`` draws of R's ``runif``, in row-major order.

        Examples
        --------
        >>> import emsim
        >>> round(emsim.RRandom(1).random(), 7)
        0.2655087
        >>> emsim.RRandom(1).random((2, 2)).round(4)
        array([[0.2655, 0.3721],
               [0.5729, 0.9082]])
        """
        count, shape = _size_count(size)
        u = self.runif(count)
        return float(u[0]) if shape is None else u.reshape(shape)

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Size = None) -> Any:
        """Uniforms on (low, high), as numpy's ``Generator.uniform``, from R's ``runif``.

        Parameters
        ----------
        low, high : float, default 0.0 and 1.0
            The interval; finite, with low <= high.
        size : int or tuple of int, optional
            Output shape; None (the default) gives one float.

        Returns
        -------
        float or numpy.ndarray of float64
            R's ``runif(prod(size), low, high)``, shaped.

        Examples
        --------
        >>> import emsim
        >>> emsim.RRandom(1).uniform(5, 10, size=2).round(4)  # R: set.seed(1); runif(2, 5, 10)
        array([6.3275, 6.8606])
        """
        count, shape = _size_count(size)
        u = self.runif(count, low, high)
        return float(u[0]) if shape is None else u.reshape(shape)

    def standard_normal(self, size: Size = None) -> Any:
        """Standard normals, as numpy's ``Generator.standard_normal``, from R's ``rnorm``.

        Parameters
        ----------
        size : int or tuple of int, optional
            Output shape; None (the default) gives one float.

        Returns
        -------
        float or numpy.ndarray of float64
            R's ``rnorm(prod(size))``, shaped (two uniforms of the stream per normal).

        Examples
        --------
        >>> import emsim
        >>> emsim.RRandom(1).standard_normal(3).round(7)  # R: set.seed(1); rnorm(3)
        array([-0.6264538,  0.1836433, -0.8356286])
        >>> round(emsim.RRandom(1).standard_normal(), 7)
        -0.6264538
        """
        count, shape = _size_count(size)
        z = self._norm_rand(count)
        return float(z[0]) if shape is None else z.reshape(shape)
