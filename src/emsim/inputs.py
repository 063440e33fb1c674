"""Checks of what a caller hands `emsim.fit`, `emsim.fit_batch` and `emsim fit`, beyond a value
that numpy turns into float64: the kinds of array numpy would turn into numbers silently wrongly,
the types of the settings, the start values the fit would refuse at once, and what a model needs.

Its own module, without numpy's heavier users or numba, so that the command line checks its
options (and the study's config checks its starts) before loading the engine. Each check raises
TypeError (the wrong kind of object) or ValueError (a wrong value) with one line naming it.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from .models import known_params

__all__ = [
    "MAX_ITERATIONS_CLI",
    "START_PI_RANGE",
    "check_data_kind",
    "check_equal_var_start",
    "check_known_given",
    "check_max_iterations",
    "check_start_pi",
]

# The engine ends a fit whose pi leaves [PI_EPS, 1 - PI_EPS] as `boundary` (engine.PI_EPS; not
# imported, as importing the engine loads numba): a start outside it ends at iteration 0.
START_PI_RANGE = (1e-6, 1.0 - 1e-6)
# The iteration cap the study's config allows (its schema: 2^31 - 1, one compiled integer type);
# the command line takes the same.
MAX_ITERATIONS_CLI = 2**31 - 1


def check_data_kind(y: Any) -> None:
    """Refuse data numpy would turn into float64 silently wrongly: dates or times (their
    seconds or days since 1970), complex numbers (the real part, with a warning), booleans
    (0 and 1), and a masked array (its mask dropped, the hidden values fitted)."""
    if isinstance(y, np.ma.MaskedArray):
        raise TypeError(
            "data is a masked array: emsim would fit the masked values too; pass "
            "y.compressed() (the unmasked values) instead"
        )
    dtype = getattr(y, "dtype", None)
    if dtype is None:
        return
    try:
        kind = np.dtype(dtype).kind
    except TypeError:  # a pandas extension dtype: its values are converted, and checked, later
        kind = getattr(dtype, "kind", "")
    what = {
        "M": "dates or times",
        "m": "time differences",
        "c": "complex numbers",
        "b": "booleans",
    }.get(kind)
    if what is not None:
        raise TypeError(f"data must be real numbers, got {what} (dtype {dtype})")


def check_max_iterations(value: Any, limit: int) -> int:
    """`value` as an int in [1, limit]; True, 2.5 or '10' are refused, not read as numbers."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"max_iterations must be an integer, got {value!r}")
    if not 1 <= int(value) <= limit:
        raise ValueError(f"max_iterations must be an integer in [1, {limit}], got {value}")
    return int(value)


def check_start_pi(start: Mapping[str, Any] | None, label: str = "start") -> None:
    """A start's pi inside [1e-6, 1 - 1e-6]: outside it the fit would end `boundary` before its
    first iteration."""
    if not start or "pi" not in start:
        return
    low, high = START_PI_RANGE
    values = np.atleast_1d(np.asarray(start["pi"], dtype=np.float64))
    outside = ~((values >= low) & (values <= high))
    if outside.any():
        shown = f"{float(values[np.argmax(outside)]):g}"
        raise ValueError(
            f"{label} pi={shown} is outside [{low:g}, 1 - {low:g}]: a fit from it would end "
            "`boundary` before its first iteration"
        )


def check_known_given(model: str, known: Mapping[str, Any] | None, label: str = "known") -> None:
    """Every parameter `model` holds fixed has a known value (after `sigma` is spelt out); the
    message names all that are missing."""
    given = set(known or {})
    if "sigma" in given:
        given |= {"sigma1", "sigma2"}
    held = known_params(model)
    missing = [name for name in held if name not in given]
    if missing:
        raise ValueError(
            f"model {model!r} holds {', '.join(held)} fixed: give each with {label} "
            f"(missing: {', '.join(missing)})"
        )


def check_equal_var_start(model: str, start: Mapping[str, Any], label: str = "--start") -> None:
    """equal_var has one common sigma: two different start sigmas would be pooled into
    sqrt((sigma1^2 + sigma2^2) / 2) without a word, so a user's two are refused."""
    if model != "equal_var" or "sigma1" not in start or "sigma2" not in start:
        return
    if start["sigma1"] != start["sigma2"]:
        raise ValueError(
            f"{label} sigma1={start['sigma1']:g},sigma2={start['sigma2']:g}: model 'equal_var' "
            "has one common sigma; give it as sigma=S"
        )
