"""The Monte Carlo SE of a quantile (docs/design.md section 6) from a distribution-free
order-statistic interval, and the normal quantile of a two-sided interval: deterministic, no
resampling, so a summary recomputed from the same fits gives the same numbers."""

from __future__ import annotations

import functools
import math
from statistics import NormalDist

import numpy as np

# Two-sided level of the order-statistic interval behind a quantile's MCSE (section 6).
QUANTILE_INTERVAL_LEVEL = 0.95


def coverage_z(level: float) -> float:
    """Normal quantile of a two-sided Wald interval with coverage `level`."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"coverage level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


@functools.cache
def quantile_ranks(
    n: int, p: float, level: float = QUANTILE_INTERVAL_LEVEL
) -> tuple[int, int] | None:
    """1-based ranks (j, k) of the distribution-free interval [x_(j), x_(k)] for the p-quantile
    of n values (docs/design.md section 6): with B ~ Binomial(n, p), j is the largest rank with
    P(B < j) <= (1 - level) / 2 and k the smallest with P(B >= k) <= (1 - level) / 2, so the
    interval covers the quantile with probability P(j <= B < k) >= `level` for any continuous
    distribution. None when n is too small for such ranks to exist (e.g. n < 6 for the median
    and n < 36 for the 90th percentile at level 0.95)."""
    if n < 1 or not 0.0 < p < 1.0:
        return None
    # The binomial probabilities in log space: (1 - p)^n underflows for a few hundred values.
    # Elementwise in numpy, in the order of the scalar formula lgamma(n + 1) - lgamma(i + 1)
    # - lgamma(n - i + 1) + i log p + (n - i) log1p(-p), so each term is the same double.
    i = np.arange(n + 1)
    log_factorial = _log_factorials(n)
    log_pmf = (
        log_factorial[n]
        - log_factorial[i]
        - log_factorial[n - i]
        + i.astype(float) * math.log(p)
        + (n - i).astype(float) * math.log1p(-p)
    )
    cdf = np.cumsum(np.exp(log_pmf))[:n]  # P(B <= i), i = 0 .. n - 1
    tail = (1.0 - level) / 2.0
    below = np.flatnonzero(cdf <= tail)  # i = j - 1
    above = np.flatnonzero(cdf >= 1.0 - tail)  # i = k - 1
    if not below.size or not above.size:
        return None
    return int(below[-1]) + 1, int(above[0]) + 1


_LOG_FACTORIALS: list[float] = []


def _log_factorials(n: int) -> np.ndarray:
    """log k! = math.lgamma(k + 1) for k = 0 .. n (at least), computed once per process: every
    group's quantile MCSE needs them, and a call of lgamma per rank was most of its cost."""
    if len(_LOG_FACTORIALS) <= n:
        _LOG_FACTORIALS.extend(math.lgamma(k + 1) for k in range(len(_LOG_FACTORIALS), 2 * n + 2))
    return np.asarray(_LOG_FACTORIALS[: n + 1])


def quantile_mcse(values: np.ndarray, p: float) -> float:
    """MCSE of the p-quantile of the finite `values`: the width of their order-statistic
    interval (`quantile_ranks`) over 2 z, z the normal quantile of its level, as a normal
    interval +- z SE would have it. Deterministic (no resampling); NaN when there are too few
    values for the interval."""
    finite = np.sort(values[np.isfinite(values)])
    ranks = quantile_ranks(len(finite), p)
    if ranks is None:
        return math.nan
    j, k = ranks
    return float(finite[k - 1] - finite[j - 1]) / (2.0 * coverage_z(QUANTILE_INTERVAL_LEVEL))
