"""Component families: the shape both components of a simulated mixture share (issue 21).

A family turns a standardised error e into a point y = mu_z + sigma_z * e of component z:

- ``normal``: e ~ N(0, 1), the model EM fits;
- ``t`` (``df``): e ~ Student's t with df > 2 degrees of freedom (a finite variance);
- ``skew_normal`` (``alpha``): Azzalini's skew normal with shape alpha, e = delta |U0| +
  sqrt(1 - delta^2) U1 with delta = alpha / sqrt(1 + alpha^2) (location mu, scale sigma);
- ``contaminated`` (``epsilon``, ``scale``): e ~ N(0, 1), its sd multiplied by ``scale`` with
  probability ``epsilon`` (an outlier).

A `Family` is written in a config as ``normal`` or a mapping (``{name: t, df: 5}``); its
`label` is the canonical text (``t(df=5)``) that cell ids, seeds and table columns use
(docs/design.md section 3).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FAMILY_PARAMETERS",
    "NORMAL",
    "Family",
    "FamilyError",
    "family_from_label",
    "parse_family",
]

# Each family's shape parameters, in the order its label writes them.
FAMILY_PARAMETERS: dict[str, tuple[str, ...]] = {
    "normal": (),
    "t": ("df",),
    "skew_normal": ("alpha",),
    "contaminated": ("epsilon", "scale"),
}
# Short names for cell ids (readable, safe in a hive folder name).
_ID_PREFIX = {"t": "t", "skew_normal": "sn", "contaminated": "cn"}


class FamilyError(ValueError):
    """A bad family spec; `key` names the offending entry ("name", "df", ...) for the
    config's one-line error."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"family {key}: {problem}" if key else f"family: {problem}")


def _number(x: float) -> str:
    return repr(float(x) + 0.0)


@dataclass(frozen=True)
class Family:
    """A component family and its shape parameters (checked by `parse_family`)."""

    name: str = "normal"
    params: tuple[tuple[str, float], ...] = ()

    @property
    def is_normal(self) -> bool:
        return self.name == "normal"

    def __getitem__(self, key: str) -> float:
        return dict(self.params)[key]

    @property
    def label(self) -> str:
        """Canonical text: ``normal``, ``t(df=5.0)``, ``contaminated(epsilon=0.05,scale=5.0)``."""
        if self.is_normal:
            return "normal"
        inner = ",".join(f"{k}={_number(v)}" for k, v in self.params)
        return f"{self.name}({inner})"

    @property
    def id_label(self) -> str:
        """The part of a cell id that names the family (empty for normal): ``t5``, ``sn4``,
        ``cn0.05-5``; a minus sign written ``m``."""
        if self.is_normal:
            return ""
        values = "-".join(
            format(v + 0.0, "g").replace("+", "").replace("-", "m") for _, v in self.params
        )
        return f"{_ID_PREFIX[self.name]}{values}"

    def as_spec(self) -> str | dict[str, object]:
        """The spec a user writes (what `parse_family` reads back)."""
        return "normal" if self.is_normal else {"name": self.name, **dict(self.params)}

    def errors(self, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
        """n standardised errors e (y = mu + sigma e), drawn after the labels' uniforms."""
        if self.name == "t":
            return rng.standard_t(self["df"], n)
        if self.name == "skew_normal":
            delta = self["alpha"] / math.sqrt(1.0 + self["alpha"] ** 2)
            half = np.abs(rng.standard_normal(n))
            return delta * half + math.sqrt(1.0 - delta * delta) * rng.standard_normal(n)
        if self.name == "contaminated":
            outlier = rng.random(n) < self["epsilon"]
            return np.where(outlier, self["scale"], 1.0) * rng.standard_normal(n)
        return rng.standard_normal(n)


NORMAL = Family()


def _positive_finite(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise FamilyError(key, f"{value!r} is not a number")
    x = float(value)
    if not math.isfinite(x):
        raise FamilyError(key, f"{value!r} is not finite")
    return x


def _checked(name: str, key: str, value: object) -> float:
    x = _positive_finite(key, value)
    if name == "t" and not x > 2.0:
        raise FamilyError(key, f"{value!r} is not > 2 (the t needs a finite variance)")
    if name == "contaminated" and key == "epsilon" and not 0.0 < x < 1.0:
        raise FamilyError(key, f"{value!r} is not in (0, 1)")
    if name == "contaminated" and key == "scale" and not x > 0.0:
        raise FamilyError(key, f"{value!r} is not > 0")
    return x


def parse_family(spec: object) -> Family:
    """A `Family` from what a user writes: ``normal`` (or None), a `Family`, or a mapping
    ``{name: t, df: 5}``. Raises FamilyError naming the bad entry."""
    if spec is None or isinstance(spec, Family):
        return spec or NORMAL
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping):
        raise FamilyError("", f"{spec!r} is not `normal` or a mapping such as {{name: t, df: 5}}")
    name = spec.get("name")
    if name not in FAMILY_PARAMETERS:
        raise FamilyError("name", f"{name!r} is not one of {', '.join(FAMILY_PARAMETERS)}")
    wanted = FAMILY_PARAMETERS[name]
    for key in spec:
        if key != "name" and key not in wanted:
            takes = f"it takes {', '.join(wanted)}" if wanted else "it takes none"
            raise FamilyError(str(key), f"not a parameter of {name} ({takes})")
    params = []
    for key in wanted:
        if key not in spec:
            raise FamilyError(key, f"missing (required for {name})")
        params.append((key, _checked(name, key, spec[key])))
    return Family(name, tuple(params))


def family_from_label(label: str) -> Family:
    """The `Family` whose `label` is `label` (a table's or a cell's family column)."""
    name, _, inner = str(label).partition("(")
    spec: dict[str, object] = {"name": name}
    for item in filter(None, inner.rstrip(")").split(",")):
        key, _, value = item.partition("=")
        spec[key] = float(value)
    return parse_family(spec)
