"""`ConfigError` and the checks of one config value, shared by the config's validation
(`config`) and the start checks (`starts`).

Its own module so that `starts`, which owns the start names and their checks, and `config`,
which validates the rest and imports `starts`, both raise the same error without importing each
other. Every message is one line naming the key path and the bad value, e.g.
``config error: grid.sigma[1]: -1 is not > 0``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

from emsim.families import Family, FamilyError, parse_family
from emsim.inputs import START_PI_RANGE

__all__ = [
    "ConfigError",
    "check_family",
    "check_pi",
    "check_positive",
    "check_start_pi",
    "finite",
    "format_path",
    "show",
]


class ConfigError(ValueError):
    """An invalid study configuration; the message is one line naming the key and value."""

    def __init__(self, path: str, problem: str):
        self.path = path
        self.problem = problem
        where = f"{path}: " if path else ""
        super().__init__(f"config error: {where}{problem}")


def format_path(parts: Iterable[object]) -> str:
    """A key path as the messages write it: ``grid.sigma[1]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def show(value: object) -> str:
    # Values appear as the user wrote them in YAML: 'abc' quoted, numbers and lists plain.
    try:
        return json.dumps(value) if not isinstance(value, str) else repr(value)
    except (TypeError, ValueError):
        return repr(value)


def finite(value: object, path: str) -> float:
    """`value` as a float, or ConfigError when it is not a finite number."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except OverflowError:  # an integer beyond the floating-point range
        shown = show(value)
        shown = shown if len(shown) <= 20 else f"{shown[:12]}...({len(shown)} digits)"
        raise ConfigError(
            path, f"{shown} is not finite (beyond the floating-point range)"
        ) from None
    if not math.isfinite(x):
        raise ConfigError(path, f"{show(value)} is not finite")
    return x


def check_pi(value: object, path: str) -> None:
    x = finite(value, path)
    if not 0.0 < x < 1.0:
        raise ConfigError(path, f"{show(value)} is not in (0, 1)")


def check_start_pi(value: object, path: str) -> None:
    """A start's pi: inside [1e-6, 1 - 1e-6], where a fit from it can take a step (outside, it
    would end `boundary` before its first iteration), as `emsim.fit` requires."""
    x = finite(value, path)
    low, high = START_PI_RANGE
    if not low <= x <= high:
        raise ConfigError(
            path, f"{show(value)} is outside [{low:g}, 1 - {low:g}]: a fit from it ends at once"
        )


def check_positive(value: object, path: str) -> None:
    """A sigma (one number, or a pair of them) > 0."""
    for i, s in enumerate(value) if isinstance(value, list) else [(None, value)]:
        where = path if i is None else f"{path}[{i}]"
        if finite(s, where) <= 0:
            raise ConfigError(where, f"{show(s)} is not > 0")


def check_family(value: object, path: str) -> Family:
    """A component family as written (`normal`, `{name: t, df: 5}`, ...), parsed; a bad one
    raises ConfigError naming its entry (``grid.family[1].df: 2 is not > 2 ...``)."""
    try:
        return parse_family(value)
    except FamilyError as err:
        where = f"{path}.{err.key}" if err.key and isinstance(value, dict) else path
        if err.key and not isinstance(value, dict):
            where = f"{path} ({err.key})"
        raise ConfigError(where, err.problem) from None
