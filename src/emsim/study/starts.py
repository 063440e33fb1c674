"""Starting values for a batch of replicates, one strategy at a time (docs/design.md section 1).

Every strategy returns all five parameters as arrays over the batch's replicates; what a model
does not estimate is then held at the truth by `fit_batch`'s `known`, so for the `pi` model only
the pi start matters, and for `equal_var` emsim pools the two sigmas of the start into one.

- `fixed`: the config's `values`. Parameters it leaves out come from the quantile start split at
  its pi (0.5 when it gives no pi): the seed's start `{pi: 0.5}` is therefore pi = 0.5 with the
  rest from the data, and exactly the seed's start for the `pi` model.
- `truth`: the data-generating values, an oracle reference for the other strategies.
- `quantile`: `emsim.quantile_start`: the sorted data split at the (1 - pi0) quantile, the upper
  side (weight pi0) starting component 1 and the lower side component 2, each at its mean and sd;
  a side with no spread (one point, or ties) starts at a tenth of the data's sd.
- `random`: k draws per replicate, each from its own stream (`seeding.random_start_rng`):
  pi ~ U(0.05, 0.95), (mu1, mu2) two distinct observations of the replicate drawn without
  replacement, sigma1 and sigma2 each sd(data) x U(0.5, 1.5) (sd with ddof 0). Staying away from
  pi's boundary and from tiny sigmas keeps the draws plausible, so that what a random start shows
  is the likelihood's multimodality rather than a start in an absurd corner.

This module also owns the start names (a random strategy `r` of k draws names its fits r1 .. rk),
their defaults and their checks; `config` hands it the config's `starts` list and keeps the
expanded `StartSpec`s in the `Study`, so nothing else reads that list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import emsim
from emsim.models import PARAMS
from emsim.study.config_checks import ConfigError, check_positive, check_start_pi, finite
from emsim.study.schema import BEST_START
from emsim.study.seeding import random_start_rngs

__all__ = [
    "DEFAULT_QUANTILE_PI0",
    "DEFAULT_RANDOM_K",
    "RESERVED_START_NAMES",
    "StartSpec",
    "check_starts",
    "count_starts",
    "expand_starts",
    "oracle_start_names",
    "select_starts",
    "start_names",
    "start_values",
]

DEFAULT_RANDOM_K = 3
DEFAULT_QUANTILE_PI0 = 0.5
# The summary's derived estimator (the start with the highest log-likelihood) has its own name.
RESERVED_START_NAMES = frozenset({BEST_START})
RANDOM_PI_RANGE = (0.05, 0.95)
RANDOM_SIGMA_FACTOR = (0.5, 1.5)
# The settings a strategy takes, and the strategy that owns each one.
_SETTING_OWNER = (("values", "fixed"), ("k", "random"), ("pi0", "quantile"))


@dataclass(frozen=True)
class StartSpec:
    """One start of the fits: its result name, strategy and settings."""

    name: str
    strategy: str
    values: Mapping[str, float] = field(default_factory=dict)
    pi0: float = DEFAULT_QUANTILE_PI0
    group: str = ""  # the config's strategy name (random starts: the stream's name)
    index: int = 0  # random starts: j of group's k draws (0-based)


def expand_starts(starts: Sequence[Mapping[str, Any]]) -> list[StartSpec]:
    """Config start strategies -> one StartSpec per fitted start (random: name1 .. namek)."""
    out: list[StartSpec] = []
    for st in starts:
        strategy = st["strategy"]
        if strategy == "random":
            for j in range(int(st.get("k", DEFAULT_RANDOM_K))):
                out.append(StartSpec(f"{st['name']}{j + 1}", strategy, group=st["name"], index=j))
        elif strategy == "fixed":
            values = {k: float(v) for k, v in st["values"].items()}
            out.append(StartSpec(st["name"], strategy, values=values, group=st["name"]))
        elif strategy == "quantile":
            pi0 = float(st.get("pi0", DEFAULT_QUANTILE_PI0))
            out.append(StartSpec(st["name"], strategy, pi0=pi0, group=st["name"]))
        elif strategy == "truth":
            out.append(StartSpec(st["name"], strategy, group=st["name"]))
        else:
            raise ValueError(f"unknown start strategy {strategy!r}")
    return out


def start_names(starts: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of the fits' starts in config order: a random strategy `r` with k draws gives
    r1 .. rk, every other strategy its own name."""
    names: list[str] = []
    for st in starts:
        if st["strategy"] == "random":
            names += [f"{st['name']}{j + 1}" for j in range(st.get("k", DEFAULT_RANDOM_K))]
        else:
            names.append(st["name"])
    return names


def count_starts(starts: Iterable[Mapping[str, Any]]) -> int:
    """How many starts `start_names` gives, without listing them (a k of 10^9 costs nothing)."""
    return sum(
        int(st.get("k", DEFAULT_RANDOM_K)) if st["strategy"] == "random" else 1 for st in starts
    )


def check_starts(starts: Sequence[Mapping[str, Any]]) -> None:
    """What the schema cannot say of the config's `starts` (ConfigError naming the key): each
    setting belongs to its strategy, a fixed start's values are valid parameter values, and the
    names of the fits (random draws included) are unique and not reserved."""
    seen: dict[str, str] = {}
    for j, st in enumerate(starts):
        where = f"starts[{j}]"
        strategy = st["strategy"]
        for key, owner in _SETTING_OWNER:
            if key in st and strategy != owner:
                raise ConfigError(f"{where}.{key}", f"only for strategy {owner}, not {strategy}")
        if strategy == "fixed":
            _check_fixed_values(st, where)
        if strategy == "quantile" and "pi0" in st:
            check_start_pi(st["pi0"], f"{where}.pi0")
        for name in start_names([st]):
            if name in RESERVED_START_NAMES:
                raise ConfigError(
                    f"{where}.name", f"{name!r} is reserved for the derived estimator"
                )
            if name in seen:
                raise ConfigError(
                    f"{where}.name", f"start name {name!r} is already used by {seen[name]}"
                )
            seen[name] = where


def _check_fixed_values(st: Mapping[str, Any], where: str) -> None:
    if "values" not in st:
        raise ConfigError(f"{where}.values", "missing (required for strategy fixed)")
    for name, value in st["values"].items():
        if name == "pi":
            check_start_pi(value, f"{where}.values.pi")
        elif name.startswith("sigma"):
            check_positive(value, f"{where}.values.{name}")
        else:
            finite(value, f"{where}.values.{name}")


def oracle_start_names(specs: Iterable[StartSpec]) -> tuple[str, ...]:
    """Names of the starts that use the data-generating values (strategy `truth`): references,
    never candidates for the derived start `best`, whatever their names."""
    return tuple(spec.name for spec in specs if spec.strategy == "truth")


def select_starts(names: Iterable[str], specs: Sequence[StartSpec]) -> tuple[str, ...]:
    """The fitted starts that `names` (e.g. a precision block's `starts`) stand for: a random
    strategy's config name stands for all of its draws (``random`` -> random1 .. randomk); any
    other name (a single draw such as random2, `best`) for itself."""
    out: list[str] = []
    for name in names:
        group = [spec.name for spec in specs if spec.group == name]
        out += group if group and name not in RESERVED_START_NAMES else [name]
    return tuple(out)


def _random(
    spec: StartSpec,
    Y: np.ndarray,
    seed: int,
    cell: Mapping[str, float],
    replicates: Sequence[int],
) -> dict[str, np.ndarray]:
    n_rows, n = Y.shape
    out = {p: np.empty(n_rows) for p in PARAMS}
    sd = Y.std(axis=1)
    streams = random_start_rngs(seed, cell, replicates, spec.group, spec.index)
    for i, rng in enumerate(streams):
        # The order of the draws is part of the stream's definition: keep it.
        out["pi"][i] = rng.uniform(*RANDOM_PI_RANGE)
        a, b = rng.choice(n, size=2, replace=False)
        out["mu1"][i] = Y[i, a]
        out["mu2"][i] = Y[i, b]
        out["sigma1"][i] = sd[i] * rng.uniform(*RANDOM_SIGMA_FACTOR)
        out["sigma2"][i] = sd[i] * rng.uniform(*RANDOM_SIGMA_FACTOR)
    return out


def start_values(
    spec: StartSpec,
    Y: np.ndarray,
    truth: Mapping[str, float],
    seed: int,
    cell: Mapping[str, float],
    replicates: Sequence[int],
) -> dict[str, np.ndarray]:
    """Starting values (pi, mu1, mu2, sigma1, sigma2), each an array over the rows of `Y`.

    `replicates` are the global replicate indices of `Y`'s rows (they key the random streams,
    so a replicate gets the same random starts in whichever chunk it is fitted).
    """
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    n_rows = Y.shape[0]
    if len(replicates) != n_rows:
        raise ValueError(f"{len(replicates)} replicate indices for {n_rows} rows of data")
    if spec.strategy == "truth":
        return {p: np.full(n_rows, float(truth[p])) for p in PARAMS}
    if spec.strategy == "quantile":
        q = emsim.quantile_start(Y, spec.pi0)
        return {p: np.asarray(q[p], dtype=np.float64).copy() for p in PARAMS}
    if spec.strategy == "fixed":
        q = emsim.quantile_start(Y, spec.values.get("pi", DEFAULT_QUANTILE_PI0))
        return {
            p: np.full(n_rows, spec.values[p])
            if p in spec.values
            else np.asarray(q[p], dtype=np.float64).copy()
            for p in PARAMS
        }
    if spec.strategy == "random":
        return _random(spec, Y, seed, cell, replicates)
    raise ValueError(f"unknown start strategy {spec.strategy!r}")
