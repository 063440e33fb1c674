"""The units a fit works in: data far from unit scale are fitted as (y - shift) / scale.

The engine and the standard errors square and raise the data to higher powers (the observed
information holds fourth powers of (y - mu) / sigma and of sigma itself), so data whose spread is
1e150 overflow and data whose spread is 1e-200 underflow, and a fit's status would depend on the
data's units. Rows whose within-component spread or centre lies outside a safe range are
therefore fitted in working units and every result is carried back (docs/design.md section 1,
"Units"). Rows within the range are passed through untouched, so an ordinary fit is bit for bit
what it was.

`scale` is a power of two: dividing by it is exact, so the working data are the user's data,
not a rounding of them. `shift` is the row's median, used only where the centre is so far from
zero, compared with the spread, that the means' rounding (about 2^-52 |centre|) would be felt;
y - shift is then exact for every point within a factor 2 of the median (Sterbenz).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

# Within-component spreads in [2^-30, 2^30] keep the information's fourth and sixth powers of
# sigma and of the data (2^+-180 at most) far from float64's range (2^+-1022), with room for
# sums over 10^9 points.
SPREAD_EXPONENT_LIMIT = 30
# A centre beyond 2^20 spreads would cost the means 20 of their 52 bits.
CENTRE_SPREADS_LIMIT = 2.0**20
LOCATION_PARAMS = ("mu1", "mu2")
SCALE_PARAMS = ("sigma1", "sigma2")


@dataclass(frozen=True)
class WorkingScale:
    """Per row: the working data are (y - shift) / scale; `rescaled` marks the rows that are
    not fitted as given (scale 1 and shift 0 elsewhere)."""

    scale: np.ndarray
    shift: np.ndarray
    rescaled: np.ndarray

    @property
    def any(self) -> bool:
        return bool(self.rescaled.any())


def within_scale(y: np.ndarray) -> np.ndarray:
    """Per row, a robust within-component scale: the smaller standard deviation (ddof 0) of the
    two halves of the sorted data, or the other one's where a half is all one value (ties), or
    the row's where both are.

    Whatever the mixture, one half lies mostly within one component, so its spread is of a
    component's order, not of the distance between the components.
    """
    y = np.atleast_2d(y)
    return _within_scale(y, _halves(y))


def _halves(y: np.ndarray) -> np.ndarray:
    """y's rows partitioned at the median: the first n // 2 values of each row are its smallest.
    A partition splits the data into the same halves as a sort at a third of its cost (this
    runs for every batch of fits)."""
    half = y.shape[1] // 2
    return np.partition(y, half - 1, axis=1) if half else y


def _within_scale(y: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    half = y.shape[1] // 2
    spreads = np.stack([ordered[:, :half].std(axis=1), ordered[:, half:].std(axis=1)])
    spreads[spreads == 0] = np.inf
    smaller = spreads.min(axis=0)
    tied = ~np.isfinite(smaller)
    if tied.any():
        smaller[tied] = y.std(axis=1)[tied]
    return smaller


def _median(ordered: np.ndarray) -> np.ndarray:
    """Each row's median from its `_halves` partition, as np.median gives it: the upper half's
    least value, averaged with the lower half's greatest (element n // 2 - 1) for even n."""
    half = ordered.shape[1] // 2
    upper = ordered[:, half:].min(axis=1)
    if ordered.shape[1] % 2:
        return upper
    return (ordered[:, half - 1] + upper) / 2


def choose(y: np.ndarray) -> WorkingScale:
    """The working units of each row of `y` (finite, 2-D)."""
    n_rows = y.shape[0]
    # Spread and centre are measured on the data divided by a power of two near their largest
    # magnitude (exact), so that neither overflows for data near 1e308 nor underflows near 1e-308.
    largest = np.abs(y).max(axis=1)
    _, top_exponent = np.frexp(np.where(largest > 0, largest, 1.0))
    reduced = np.ldexp(y, -top_exponent[:, None])
    spread = reduced.std(axis=1)
    # One partition gives both the median and the halves.
    ordered = _halves(reduced)
    centre = _median(ordered)
    constant = spread == 0
    # The unit is a component's spread, not the data's: the information's conditioning is set by
    # 1 / sigma^2 against pi's O(1), whatever the distance between the components.
    within = _within_scale(reduced, ordered)
    with np.errstate(divide="ignore"):
        within_exponent = np.log2(np.where(constant, 1.0, within)) + top_exponent
    outside = np.abs(within_exponent) > SPREAD_EXPONENT_LIMIT
    # Moved only where the whole row lies far off zero: a shift by one cluster's median would
    # round the other cluster's points to the shift's ulp.
    far = np.abs(centre) > CENTRE_SPREADS_LIMIT * spread
    # Data all of one value have no scale to work in; they end `degenerate` whatever the units.
    rescaled = (outside | far) & ~constant
    scale = np.ones(n_rows)
    # Rounded down, so that a spread near float64's largest value keeps a finite scale.
    scale[rescaled] = np.ldexp(1.0, np.floor(within_exponent[rescaled]).astype(np.int64))
    shift = np.zeros(n_rows)
    shifted = rescaled & far
    shift[shifted] = np.ldexp(centre[shifted], top_exponent[shifted])
    return WorkingScale(scale, shift, rescaled)


def data_in(y: np.ndarray, units: WorkingScale) -> np.ndarray:
    """`y` in working units (the same array where no row is rescaled)."""
    if not units.any:
        return y
    working = y.copy()
    rows = units.rescaled
    working[rows] = (y[rows] - units.shift[rows, None]) / units.scale[rows, None]
    return working


def params_in(matrix: np.ndarray, names: tuple[str, ...], units: WorkingScale) -> None:
    """Move a rows x params matrix of values in the user's units (columns named by `names`;
    NaN for values not given) into working units, in place."""
    rows = units.rescaled
    for j, name in enumerate(names):
        if name in LOCATION_PARAMS:
            matrix[rows, j] = (matrix[rows, j] - units.shift[rows]) / units.scale[rows]
        elif name in SCALE_PARAMS:
            matrix[rows, j] = matrix[rows, j] / units.scale[rows]


def _value_out(values: np.ndarray, name: str, units: WorkingScale) -> np.ndarray:
    out = np.array(values, dtype=np.float64, copy=True)
    rows = units.rescaled
    if name in LOCATION_PARAMS:
        out[rows] = out[rows] * units.scale[rows] + units.shift[rows]
    elif name in SCALE_PARAMS:
        out[rows] = out[rows] * units.scale[rows]
    return out


def _se_out(values: np.ndarray, name: str, units: WorkingScale) -> np.ndarray:
    out = np.array(values, dtype=np.float64, copy=True)
    if name in LOCATION_PARAMS + SCALE_PARAMS:
        out[units.rescaled] = out[units.rescaled] * units.scale[units.rescaled]
    return out


def _loglik_out(values: np.ndarray, n: int, units: WorkingScale) -> np.ndarray:
    # Each point's density in the user's units is its working density divided by the scale.
    out = np.array(values, dtype=np.float64, copy=True)
    rows = units.rescaled
    out[rows] = out[rows] - n * np.log(units.scale[rows])
    return out


def result_out(result: Any, n: int, units: WorkingScale) -> Any:
    """A BatchFitResult of working data in the user's units: estimates, SEs, log-likelihoods
    and traces; the rest (statuses, iterations, rates, distances in SEs, log-likelihood gaps)
    does not depend on the units."""
    if not units.any:
        return result
    traces = result.traces
    if traces:
        traces = [
            None if trace is None else _trace_out(trace, n, units.scale[i], units.shift[i])
            for i, trace in enumerate(traces)
        ]
    return replace(
        result,
        loglik=_loglik_out(result.loglik, n, units),
        loglik_start=_loglik_out(result.loglik_start, n, units),
        params={name: _value_out(v, name, units) for name, v in result.params.items()},
        se={name: _se_out(v, name, units) for name, v in result.se.items()},
        se_sandwich={name: _se_out(v, name, units) for name, v in result.se_sandwich.items()},
        traces=traces,
    )


def _trace_out(trace: Any, n: int, scale: float, shift: float) -> Any:
    if scale == 1.0 and shift == 0.0:
        return trace
    trace = trace.copy()
    for name in LOCATION_PARAMS:
        if name in trace:
            trace[name] = trace[name] * scale + shift
    for name in SCALE_PARAMS:
        if name in trace:
            trace[name] = trace[name] * scale
    trace["loglik"] = trace["loglik"] - n * np.log(scale)
    return trace
