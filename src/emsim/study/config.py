"""The study configuration: validation, the cells of the design, chunks and hashes.

`load_study(config)` validates a config dict (as Snakemake loaded it from `config.yaml`,
`--configfile` and `--config`) against `workflow/schemas/config.schema.yaml` through
`snakemake.utils.validate`, which also fills the schema's defaults, then checks what the schema
cannot express. Any problem raises `ConfigError` with one line naming the key path and the bad
value, e.g. ``config error: grid.sigma[1]: -1 is not > 0``.

Cells: the full factorial of `grid` plus the `scenarios`, duplicates dropped (by parameter
values, so `sigma: 1` and `sigma: [1.0, 1.0]` are one cell). A cell's id is readable and ends
in a hash of its values (`n500_mu0-2_s1-1_pi0.8_1a2b3c4d`; a minus sign is written `m`), so it is
stable whatever else is in the design, and uses only characters that are safe in a hive folder
name.

Hashes: `config_hash` of the whole validated config (provenance), and `fit_hash` of only what
changes a fit's result (seed, em, models, methods, starts, traces, emsim version). The fit rule
takes `fit_hash` as a parameter, so changing, say, the figure options reruns no fit.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emsim.study.rounds import ReplicatePlan
from emsim.study.schema import CELL_KEYS, cell_summary_path, gate_path, result_path
from emsim.study.seeding import cell_digest

__all__ = [
    "RESERVED_START_NAMES",
    "Cell",
    "ConfigError",
    "Study",
    "canonical_json",
    "check_config_files",
    "default_schema_path",
    "expand_cells",
    "fit_hash",
    "fit_job_mem_mb",
    "fit_relevant",
    "load_study",
    "start_names",
    "stopping_tolerances",
    "validate_config",
]

# `best` is the summary's derived estimator (the start with the highest log-likelihood).
RESERVED_START_NAMES = frozenset({"best"})
FIT_KEYS: tuple[str, ...] = ("seed", "em", "models", "methods", "starts", "traces")
DEFAULT_RANDOM_K = 3
DEFAULT_QUANTILE_PI0 = 0.5
# The design's scale: beyond these, simulated data (or their squares, or a component's variance)
# leave the floating-point range and a fit job would fail; they are far outside any real design.
SCALE_MAX = 1e100
SIGMA_MIN = 1e-100
# A sigma below this fraction of the cell's largest |mu| is below the resolution of doubles at
# that location: the simulated data round to a few distinct values (all equal at 1e15 +- 0.01).
SIGMA_MIN_REL = 1e-12


class ConfigError(ValueError):
    """An invalid study configuration; the message is one line naming the key and value."""

    def __init__(self, path: str, problem: str):
        self.path = path
        self.problem = problem
        where = f"{path}: " if path else ""
        super().__init__(f"config error: {where}{problem}")


def default_schema_path() -> Path:
    """The schema of the source checkout this module belongs to (src layout: ../../../workflow)."""
    return Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal configs give equal text and hashes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _sha256(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def _fmt_path(parts: Iterable[object]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _show(value: object) -> str:
    # Values appear as the user wrote them in YAML: 'abc' quoted, numbers and lists plain.
    try:
        return json.dumps(value) if not isinstance(value, str) else repr(value)
    except (TypeError, ValueError):
        return repr(value)


# --- schema validation ------------------------------------------------------------------------


def _schema_error(err) -> ConfigError:
    """One-line ConfigError from a jsonschema ValidationError."""
    path = list(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        if extra:
            # A key that is not printable text (a number, a newline) is shown as Python repr.
            key = (
                extra[0] if isinstance(extra[0], str) and extra[0].isprintable() else repr(extra[0])
            )
            return ConfigError(
                _fmt_path([*path, key]), f"unknown key (expected one of: {', '.join(allowed)})"
            )
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [k for k in err.validator_value if k not in err.instance]
        if missing:
            return ConfigError(_fmt_path([*path, missing[0]]), "missing (required)")
    if err.validator == "oneOf":
        # A mapping is judged by the mapping alternative, anything else by the others: the
        # error of that alternative says what is wrong (with its hints, e.g. 1e3 as text).
        wants_mapping = isinstance(err.instance, dict)
        chosen = [
            sub
            for sub in err.context
            if (err.validator_value[sub.schema_path[0]].get("type") == "object") == wants_mapping
        ]
        if chosen and not any("$ref" in alt for alt in err.validator_value):
            return _schema_error(jsonschema_best_match(chosen))
        kinds = " or ".join(_kind(sub) for sub in err.validator_value)
        return ConfigError(_fmt_path(path), f"{_show(err.instance)} is not {kinds}")
    if err.validator == "anyOf" and all(set(sub) == {"required"} for sub in err.validator_value):
        keys = ", ".join(k for sub in err.validator_value for k in sub["required"])
        return ConfigError(_fmt_path(path), f"needs at least one of: {keys}")
    if err.validator == "enum":
        options = ", ".join(map(str, err.validator_value))
        return ConfigError(_fmt_path(path), f"{_show(err.instance)} is not one of {options}")
    return ConfigError(_fmt_path(path), err.message.replace("\n", " ") + _type_hint(err))


def jsonschema_best_match(errors):
    import jsonschema

    return jsonschema.exceptions.best_match(errors)


def _kind(subschema: Mapping[str, Any]) -> str:
    """What a oneOf alternative accepts, in words."""
    if "pair" in str(subschema.get("$ref", "")):
        return "a pair"
    kind = {"number": "a number", "integer": "an integer", "object": "a mapping"}.get(
        str(subschema.get("type")), "valid"
    )
    if "exclusiveMinimum" in subschema or "minimum" in subschema:
        kind = kind.replace("a number", "a positive number").replace(
            "an integer", "a positive integer"
        )
    return kind


def _type_hint(err) -> str:
    """A hint for the two number mistakes YAML invites: `1e-6` (YAML 1.1 reads an exponent
    without a decimal point as text) and `1e9` or `1.0e9` where an integer is wanted."""
    if err.validator != "type":
        return ""
    wanted = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
    value = err.instance
    if isinstance(value, str) and ({"number", "integer"} & set(wanted)):
        try:
            x = float(value)
        except ValueError:
            return ""
        if not math.isfinite(x):
            return ""
        mantissa, e, exponent = value.strip().lower().partition("e")
        if e and "number" not in wanted and x.is_integer():
            return f" (write {int(x)}: YAML reads {value} as text)"
        if e and "." not in mantissa:
            fixed = f"{mantissa}.0e{exponent}"
            return f" (write {fixed}: YAML reads {value} as text)"
        return (
            " (text, not a number: remove the quotes; `--config` passes values nested in"
            " {...} as text, so set those in a config file)"
        )
    if isinstance(value, float) and wanted == ["integer"] and math.isfinite(value):
        if value.is_integer():
            return f" (write {int(value)}, without a decimal point or exponent)"
    return ""


def _strict_integer(checker, instance) -> bool:
    # JSON Schema counts 2.0 as an integer; the study wants an int (a float count would reach
    # range() or the compiled engine as a float, or as another type than the one compiled).
    return isinstance(instance, int) and not isinstance(instance, bool)


def _validator_class():
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine("integer", _strict_integer)
    return jsonschema.validators.extend(base, type_checker=checker)


def validate_config(config: Mapping[str, Any], schema_path: str | Path | None = None) -> dict:
    """A validated deep copy of `config` with the schema's defaults filled in."""
    import jsonschema
    import yaml
    from snakemake.utils import validate

    if not isinstance(config, Mapping):
        raise ConfigError(
            "", f"the config must be a mapping of keys to values, not {type(config).__name__}"
        )
    schema_path = Path(schema_path) if schema_path is not None else default_schema_path()
    cfg = copy.deepcopy(dict(config))
    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    # jsonschema first, for a one-line message naming the key; snakemake's validate (which would
    # only say that validation failed, at length) then fills the defaults.
    validator = _validator_class()(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(cfg))
    if error is not None:
        raise _schema_error(error)
    validate(cfg, str(schema_path.resolve()), set_default=True)
    _check_semantics(cfg)
    return cfg


# --- checks the schema cannot express ---------------------------------------------------------


def _finite(value: object, path: str) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except OverflowError:  # an integer beyond the floating-point range
        shown = _show(value)
        shown = shown if len(shown) <= 20 else f"{shown[:12]}...({len(shown)} digits)"
        raise ConfigError(
            path, f"{shown} is not finite (beyond the floating-point range)"
        ) from None
    if not math.isfinite(x):
        raise ConfigError(path, f"{_show(value)} is not finite")
    return x


def _check_n(value: object, path: str) -> None:
    if int(value) < 2:  # type: ignore[call-overload]
        raise ConfigError(path, f"{_show(value)} is not >= 2 (a mixture needs two points)")


def _check_pi(value: object, path: str) -> None:
    x = _finite(value, path)
    if not 0.0 < x < 1.0:
        raise ConfigError(path, f"{_show(value)} is not in (0, 1)")


def _check_sigma(value: object, path: str, design: bool = False) -> None:
    for i, s in enumerate(value) if isinstance(value, list) else [(None, value)]:
        where = path if i is None else f"{path}[{i}]"
        x = _finite(s, where)
        if x <= 0:
            raise ConfigError(where, f"{_show(s)} is not > 0")
        if design and not SIGMA_MIN <= x <= SCALE_MAX:
            raise ConfigError(
                where,
                f"{_show(s)} is outside [{SIGMA_MIN:g}, {SCALE_MAX:g}] (floating-point range)",
            )


def _check_mu(value: Sequence[object], path: str) -> None:
    for i, m in enumerate(value):
        if abs(_finite(m, f"{path}[{i}]")) > SCALE_MAX:
            raise ConfigError(
                f"{path}[{i}]", f"{_show(m)} is beyond +-{SCALE_MAX:g} (floating-point range)"
            )


def _check_resolution(mu: Sequence[object], sigma: object, sigma_path: str, mu_path: str) -> None:
    """A cell's sigmas must resolve its means: at least SIGMA_MIN_REL x max |mu|."""
    location = max(abs(float(m)) for m in mu)  # type: ignore[arg-type]
    smallest = min(sigma) if isinstance(sigma, list) else sigma
    if float(smallest) < SIGMA_MIN_REL * location:  # type: ignore[arg-type]
        raise ConfigError(
            sigma_path,
            f"{_show(sigma)} is below {SIGMA_MIN_REL:g} x |mu| = {SIGMA_MIN_REL * location:g} "
            f"for {mu_path} {_show(mu)}: the simulated data would round to a few distinct values",
        )


def _check_semantics(cfg: dict) -> None:
    grid = cfg.get("grid")
    if grid is not None:
        for i, n in enumerate(grid["n"]):
            _check_n(n, f"grid.n[{i}]")
        for i, mu in enumerate(grid["mu"]):
            _check_mu(mu, f"grid.mu[{i}]")
        for i, s in enumerate(grid["sigma"]):
            _check_sigma(s, f"grid.sigma[{i}]", design=True)
        for i, p in enumerate(grid["pi"]):
            _check_pi(p, f"grid.pi[{i}]")
        for i, s in enumerate(grid["sigma"]):
            for k, mu in enumerate(grid["mu"]):
                _check_resolution(mu, s, f"grid.sigma[{i}]", f"grid.mu[{k}]")
    for j, sc in enumerate(cfg.get("scenarios") or []):
        _check_n(sc["n"], f"scenarios[{j}].n")
        _check_mu(sc["mu"], f"scenarios[{j}].mu")
        _check_sigma(sc["sigma"], f"scenarios[{j}].sigma", design=True)
        _check_pi(sc["pi"], f"scenarios[{j}].pi")
        _check_resolution(sc["mu"], sc["sigma"], f"scenarios[{j}].sigma", f"scenarios[{j}].mu")
    if grid is None and not cfg.get("scenarios"):
        raise ConfigError("grid", "no cells: give a grid and/or a non-empty scenarios list")
    _check_replicates(cfg)
    # Before the starts are expanded into names: a random start's k of 10^9 is caught here.
    _check_limits(cfg)

    seen: dict[str, str] = {}
    for j, st in enumerate(cfg["starts"]):
        where = f"starts[{j}]"
        strategy = st["strategy"]
        for key, owner in (("values", "fixed"), ("k", "random"), ("pi0", "quantile")):
            if key in st and strategy != owner:
                raise ConfigError(f"{where}.{key}", f"only for strategy {owner}, not {strategy}")
        if strategy == "fixed":
            if "values" not in st:
                raise ConfigError(f"{where}.values", "missing (required for strategy fixed)")
            for name, value in st["values"].items():
                if name == "pi":
                    _check_pi(value, f"{where}.values.pi")
                elif name.startswith("sigma"):
                    _check_sigma(value, f"{where}.values.{name}")
                else:
                    _finite(value, f"{where}.values.{name}")
        if strategy == "quantile" and "pi0" in st:
            _check_pi(st["pi0"], f"{where}.pi0")
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

    stopping_tolerances(cfg)
    level = cfg["coverage"]["level"]
    if not 0.0 < _finite(level, "coverage.level") < 1.0:
        raise ConfigError("coverage.level", f"{_show(level)} is not in (0, 1)")
    _check_precision(cfg)


def _plan(cfg: Mapping[str, Any]) -> ReplicatePlan:
    return ReplicatePlan.from_config(cfg["replicates"], int(cfg["chunk_size"]))


def _check_replicates(cfg: Mapping[str, Any]) -> None:
    replicates = cfg["replicates"]
    if not isinstance(replicates, Mapping):
        return
    if replicates["min"] > replicates["max"]:
        raise ConfigError(
            "replicates.min", f"{replicates['min']} is above replicates.max = {replicates['max']}"
        )
    if "precision" not in cfg:
        raise ConfigError(
            "replicates",
            "{min, max, step} adapts each cell's replicates to precision targets, and there is "
            "no `precision` block: add one, or give replicates as one integer",
        )


def _check_precision(cfg: Mapping[str, Any]) -> None:
    """The `precision` block names only models, methods, rules and starts of the study, and
    every target parameter is estimated by a model it applies to (docs/design.md section 10)."""
    block = cfg.get("precision")
    if block is None:
        return
    choices = {
        "models": list(cfg["models"]),
        "methods": list(cfg["methods"]),
        "stopping": list(cfg["em"]["stopping"]),
    }
    for key, allowed in choices.items():
        for i, value in enumerate(block.get(key) or []):
            if value not in allowed:
                raise ConfigError(
                    f"precision.{key}[{i}]",
                    f"{value!r} is not one of the study's {key} ({', '.join(allowed)})",
                )
    names = {st["name"] for st in cfg["starts"]} | set(start_names(cfg["starts"]))
    names |= RESERVED_START_NAMES
    for i, value in enumerate(block.get("starts") or []):
        if value not in names:
            raise ConfigError(
                f"precision.starts[{i}]",
                f"{value!r} is not a start of the study ({', '.join(sorted(names))})",
            )
    from emsim.models import MODELS

    models = block.get("models") or cfg["models"]
    for measure in ("bias_mcse", "coverage_mcse"):
        spec = block.get(measure)
        if not isinstance(spec, Mapping):
            continue
        for parameter in spec:
            if not any(parameter in MODELS[m] for m in models):
                raise ConfigError(
                    f"precision.{measure}.{parameter}",
                    f"no model the targets apply to ({', '.join(models)}) estimates {parameter}"
                    + (" (equal_var's common sigma is `sigma`)" if parameter == "sigma" else ""),
                )


def stopping_tolerances(cfg: Mapping[str, Any]) -> dict[str, float]:
    """{rule: tolerance} for every rule of em.stopping, in config order (a validated config).
    The score rule's tolerance is em.score_tolerance (standard errors, default 0.01), not
    em.tolerance (log-likelihood or parameter units)."""
    # Imported here so that this module's import block stays as it is (issue 18's edit is kept
    # inside this function while config.py is being split).
    from emsim.models import DEFAULT_SCORE_TOLERANCE

    em = cfg["em"]
    tolerance = em["tolerance"]
    out = {}
    if isinstance(tolerance, Mapping) and "score" in tolerance:
        raise ConfigError("em.tolerance.score", "the score rule's is em.score_tolerance")
    for rule in em.get("stopping", ["abs"]):
        where = "em.tolerance"
        value = tolerance
        if rule == "score":
            where = "em.score_tolerance"
            value = em.get("score_tolerance", DEFAULT_SCORE_TOLERANCE)
        elif isinstance(tolerance, Mapping):
            where = f"em.tolerance.{rule}"
            if rule not in tolerance:
                raise ConfigError(where, f"missing: em.stopping lists {rule!r}")
            value = tolerance[rule]
        if not (_finite(value, where) > 0):
            raise ConfigError(where, f"{_show(value)} is not > 0")
        out[rule] = float(value)
    if isinstance(tolerance, Mapping):
        for rule in tolerance:
            if rule not in out:
                raise ConfigError(f"em.tolerance.{rule}", f"{rule!r} is not in em.stopping")
    return out


def fit_job_mem_mb(n: int, chunk: int) -> int:
    """Memory (MB) of a fit job of `chunk` replicates of n points: the chunk's data plus the EM
    work arrays (responsibilities, densities, information terms): a few tens of float64 copies
    of the (replicates x n) array, and Python/pandas."""
    return int(400 + math.ceil(n * chunk * 8 * 40 / 2**20))


def _count_cells(cfg: Mapping[str, Any]) -> int:
    """The number of distinct cells `expand_cells` would give, without expanding the grid: the
    product of each grid list's distinct values, plus the scenarios not in the grid."""

    def pair(value: Any) -> tuple[float, float]:
        if isinstance(value, list | tuple):
            return float(value[0]), float(value[1])
        return float(value), float(value)

    grid = cfg.get("grid")
    axes: list[set] = []
    if grid is not None:
        axes = [
            {int(n) for n in grid["n"]},
            {pair(m) for m in grid["mu"]},
            {pair(sg) for sg in grid["sigma"]},
            {float(p) for p in grid["pi"]},
        ]
    count = math.prod(len(a) for a in axes) if axes else 0
    extra: set[tuple] = set()
    for sc in cfg.get("scenarios") or []:
        values = (int(sc["n"]), pair(sc["mu"]), pair(sc["sigma"]), float(sc["pi"]))
        if not (axes and all(v in a for v, a in zip(values, axes, strict=True))):
            extra.add(values)
    return count + len(extra)


def _fits_per_replicate(cfg: Mapping[str, Any]) -> int:
    starts = sum(
        int(st.get("k", DEFAULT_RANDOM_K)) if st["strategy"] == "random" else 1
        for st in cfg["starts"]
    )
    rules = len(cfg["em"].get("stopping") or ["abs"])
    return len(cfg["models"]) * len(cfg["methods"]) * starts * rules


def _check_limits(cfg: Mapping[str, Any]) -> None:
    """The `limits` block: a study too large for the machine fails here, before any job, and
    the message names the limit and how to raise it (the schema's `limits` describes each)."""
    lim = cfg["limits"]
    raise_it = "raise limits.{} to run it"
    ns: list[tuple[str, int]] = []
    grid = cfg.get("grid")
    if grid is not None:
        ns += [(f"grid.n[{i}]", int(n)) for i, n in enumerate(grid["n"])]
    ns += [(f"scenarios[{j}].n", int(sc["n"])) for j, sc in enumerate(cfg.get("scenarios") or [])]
    for where, n in ns:
        if n > lim["max_n"]:
            raise ConfigError(
                where, f"{n} is above limits.max_n = {lim['max_n']}; {raise_it.format('max_n')}"
            )
    cells = _count_cells(cfg)
    # An adaptive study is bounded by its cells all running to `max`.
    plan = _plan(cfg)
    replicates = plan.maximum
    chunk = plan.largest_chunk()
    # Snakemake plans an adaptive study one round at a time (docs/design.md section 10), so
    # the jobs it plans at once are those of its largest round.
    n_chunks = max(len(plan.round_chunks(k)) for k in range(min(plan.rounds, 2)))
    per_round = " in one round" if plan.adaptive else ""
    jobs = cells * n_chunks
    if jobs > lim["max_jobs"]:
        raise ConfigError(
            "limits.max_jobs",
            f"{cells:,} cells x {n_chunks:,} chunks{per_round} (chunk_size "
            f"{int(cfg['chunk_size']):,}) = {jobs:,} fit jobs exceeds limits.max_jobs = "
            f"{lim['max_jobs']:,}; raise chunk_size for fewer, larger jobs, or "
            f"{raise_it.format('max_jobs')}",
        )
    per_replicate = _fits_per_replicate(cfg)
    fits = cells * replicates * per_replicate
    if fits > lim["max_fits"]:
        raise ConfigError(
            "limits.max_fits",
            f"{cells:,} cells x {replicates:,} replicates x {per_replicate:,} fits each = "
            f"{fits:.3g} fits exceeds limits.max_fits = {lim['max_fits']:.3g}; "
            f"{raise_it.format('max_fits')}",
        )
    n_max = max(n for _, n in ns)
    mem = fit_job_mem_mb(n_max, chunk)
    if mem > lim["max_job_memory_mb"]:
        fitting = max(1, (lim["max_job_memory_mb"] - 400) * 2**20 // (320 * n_max))
        raise ConfigError(
            "limits.max_job_memory_mb",
            f"a fit job of chunk_size {chunk:,} replicates at n = {n_max:,} needs about "
            f"{mem:,} MB, more than limits.max_job_memory_mb = {lim['max_job_memory_mb']:,}; "
            f"lower chunk_size (to {fitting:,} or less) or {raise_it.format('max_job_memory_mb')}",
        )


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


# --- cells ------------------------------------------------------------------------------------


def _num_label(x: float) -> str:
    text = format(float(x) + 0.0, "g").replace("+", "")
    return text.replace("-", "m")  # '-' separates the pair's values in the id


@dataclass(frozen=True)
class Cell:
    """One data-generating mechanism (docs/design.md section 5's design columns)."""

    n: int
    mu1: float
    mu2: float
    sigma1: float
    sigma2: float
    pi: float
    cell_id: str = field(default="", compare=False)

    @classmethod
    def make(cls, n, mu, sigma, pi) -> Cell:
        s1, s2 = (sigma, sigma) if not isinstance(sigma, list | tuple) else sigma
        values = {
            "n": int(n),
            "mu1": float(mu[0]) + 0.0,
            "mu2": float(mu[1]) + 0.0,
            "sigma1": float(s1),
            "sigma2": float(s2),
            "pi": float(pi),
        }
        label = (
            f"n{values['n']}_mu{_num_label(values['mu1'])}-{_num_label(values['mu2'])}"
            f"_s{_num_label(values['sigma1'])}-{_num_label(values['sigma2'])}"
            f"_pi{_num_label(values['pi'])}"
        )
        return cls(**values, cell_id=f"{label}_{cell_digest(values).hex()[:8]}")

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in CELL_KEYS}


def expand_cells(cfg: Mapping[str, Any]) -> list[Cell]:
    """The grid's cells (in the order of its lists: n slowest, then mu, sigma, pi) followed by
    the scenarios not already in it."""
    cells: list[Cell] = []
    grid = cfg.get("grid")
    if grid is not None:
        for n, mu, sigma, pi in itertools.product(grid["n"], grid["mu"], grid["sigma"], grid["pi"]):
            cells.append(Cell.make(n, mu, sigma, pi))
    for sc in cfg.get("scenarios") or []:
        cells.append(Cell.make(sc["n"], sc["mu"], sc["sigma"], sc["pi"]))
    unique: dict[str, Cell] = {}
    for cell in cells:
        unique.setdefault(cell.cell_id, cell)
    return list(unique.values())


# --- the study --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitTask:
    """Everything one fit job needs (one cell x one chunk of replicates), derived once by
    `Study.fit_task`: the job re-derives nothing from the config (docs/design.md section 4)."""

    cell: Cell
    chunk: int
    replicates: range
    seed: int
    # The validated config's fit-relevant part (FIT_KEYS): models, methods, starts, em, traces.
    fit_config: dict
    fit_hash: str
    tolerances: dict[str, float]
    # Starts that know the truth (strategy `truth`, whatever their names): never `best`.
    oracle_starts: tuple[str, ...]


@dataclass
class Study:
    """A validated config and what the workflow derives from it."""

    config: dict
    cells: list[Cell]
    config_hash: str
    fit_hash: str
    _by_id: dict[str, Cell] = field(repr=False, default_factory=dict)
    # Rounds and chunks of replicates (docs/design.md section 10).
    plan: ReplicatePlan = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {c.cell_id: c for c in self.cells}
        self.plan = _plan(self.config)

    @property
    def replicates(self) -> int:
        """The most replicates a cell runs (all of them in a fixed study)."""
        return self.plan.maximum

    @property
    def adaptive(self) -> bool:
        return self.plan.adaptive

    @property
    def chunk_size(self) -> int:
        return int(self.config["chunk_size"])

    @property
    def n_chunks(self) -> int:
        """Chunks of a cell that runs every round."""
        return self.plan.n_chunks

    @property
    def start_names(self) -> list[str]:
        return start_names(self.config["starts"])

    @property
    def fits_per_replicate(self) -> int:
        cfg = self.config
        rules = len(cfg["em"]["stopping"])
        return len(cfg["models"]) * len(cfg["methods"]) * len(self.start_names) * rules

    def cell(self, cell_id: str) -> Cell:
        try:
            return self._by_id[cell_id]
        except KeyError:
            raise KeyError(f"cell {cell_id!r} is not in the study's design") from None

    def chunk_replicates(self, chunk: int | str) -> range:
        """Global replicate indices of chunk k (in a fixed study [k * chunk_size, min((k+1) *
        chunk_size, R)); in an adaptive one each round is cut alike: `ReplicatePlan`)."""
        return self.plan.chunk_replicates(chunk)

    def fit_task(self, cell_id: str, chunk: int | str) -> FitTask:
        """The task of the fit job of `cell_id` and `chunk`."""
        from emsim.study.starts import oracle_start_names  # starts imports this module

        return FitTask(
            cell=self.cell(cell_id),
            chunk=int(chunk),
            replicates=self.chunk_replicates(chunk),
            seed=int(self.config["seed"]),
            fit_config=fit_relevant(self.config),
            fit_hash=self.fit_hash,
            tolerances=stopping_tolerances(self.config),
            oracle_starts=oracle_start_names(self.config),
        )

    def chunk_label(self, chunk: int | str) -> str:
        reps = self.chunk_replicates(chunk)
        return f"{reps.start}-{reps.stop - 1}"

    def outputs(
        self, kind: str, final_rounds: Mapping[str, int] | None = None, root: str = "results"
    ) -> list[str]:
        """Paths of the `kind` ("fits" or "traces") files of the study: of each cell's chunks
        through its final round (`rounds.final_rounds`), or, without those, of every chunk any
        cell may run (all of a fixed study)."""
        return [
            result_path(kind, c.cell_id, k, root)
            for c in self.cells
            for k in self.cell_chunks(c.cell_id, final_rounds)
        ]

    def existing_outputs(self, kind: str, root: str = "results") -> list[str]:
        """The `kind` files on disk that are outputs of this study (of any round): found by
        listing the folder, so an adaptive study of many rounds is not a list of every chunk
        it might run."""
        from emsim.study.schema import HIVE_FILE, kind_folder

        folder = Path(kind_folder(kind, root))
        if not folder.is_dir():
            return []
        found = []
        for path in sorted(folder.glob("cell=*/chunk=*.parquet")):
            match = HIVE_FILE.match(path.relative_to(folder).as_posix())
            if match and match["cell"] in self._by_id and int(match["chunk"]) < self.n_chunks:
                found.append(str(path))
        return found

    def cell_chunks(self, cell_id: str, final_rounds: Mapping[str, int] | None = None) -> range:
        if final_rounds is None:
            return range(self.plan.n_chunks)
        return self.plan.chunks_through(final_rounds[cell_id])

    def cell_round_inputs(self, kind: str, cell_id: str, round_: int | str) -> list[str]:
        """The `kind` files of one cell's rounds 0 .. `round_` (what its summary after that
        round reads)."""
        return [result_path(kind, cell_id, k) for k in self.plan.chunks_through(round_)]

    @property
    def cell_ids(self) -> list[str]:
        return [c.cell_id for c in self.cells]

    @staticmethod
    def cell_summary_pattern(table: str) -> str:
        """A cell's summary `table` after a round, as a pattern ({cell}, {round})."""
        return cell_summary_path(table)

    @staticmethod
    def cell_summary_path(table: str, cell_id: str, round_: int | str) -> str:
        return cell_summary_path(table, cell_id, int(round_))

    @staticmethod
    def gate_pattern() -> str:
        """The gate after a round, as a pattern ({round})."""
        return gate_path()

    @property
    def precision_key(self) -> str:
        """The precision targets and the replicate plan, canonical JSON: what a cell's decision
        after a round depends on besides its fits."""
        return canonical_json(
            {"precision": self.config.get("precision"), "replicates": self.config["replicates"]}
        )

    @staticmethod
    def output_pattern(kind: str) -> str:
        """The `kind` file of one cell and chunk as a Snakemake pattern ({cell}, {chunk})."""
        return result_path(kind)

    def fit_mem_mb(self, cell_id: str) -> int:
        # A chunk holds at most its round's replicates, whatever chunk_size says.
        return fit_job_mem_mb(self.cell(cell_id).n, self.plan.largest_chunk())

    def fit_runtime_min(self, cell_id: str, attempt: int = 1) -> int:
        # Measured on one core: about 2 microseconds per data point per fit in the slowest
        # (overlapping, n = 5000) cells, whose fits often run to the iteration cap. Five times
        # that, plus start-up, so that a slower node does not hit a scheduler's time limit.
        work = self.cell(cell_id).n * self.chunk_size * self.fits_per_replicate
        # Each retry (`--retries`) gets one more such limit: a job killed at its time limit
        # would otherwise be killed again.
        return int(5 + math.ceil(work * 1e-5 / 60)) * attempt

    def fit_priority(self, cell_id: str) -> int:
        # A chunk's fits cost roughly in proportion to its data points.
        return self.cell(cell_id).n * self.chunk_size

    def summary_line(self) -> str:
        cells, per = len(self.cells), self.fits_per_replicate
        if self.adaptive:
            p = self.plan
            return (
                f"study {self.config['study']!r}: {cells} cells x {p.minimum} to {p.maximum} "
                f"replicates (+{p.step} per round while a precision target is missed, at most "
                f"{p.rounds} rounds) x {per} fits = {cells * p.minimum * per} to "
                f"{cells * p.maximum * per} fits in {cells * len(p.round_chunks(0))} to "
                f"{cells * p.n_chunks} jobs (config {self.config_hash[:12]})"
            )
        return (
            f"study {self.config['study']!r}: {cells} cells x {self.replicates} "
            f"replicates x {per} fits = {cells * self.replicates * per} fits in "
            f"{cells * self.n_chunks} jobs (config {self.config_hash[:12]})"
        )


def fit_relevant(cfg: Mapping[str, Any]) -> dict[str, Any]:
    from emsim.study.parquet_io import emsim_version

    part = {key: cfg[key] for key in FIT_KEYS}
    part["emsim_version"] = emsim_version()
    return part


def fit_hash(cfg: Mapping[str, Any]) -> str:
    """sha256 of the fit-relevant part of a validated config (`fit_relevant`)."""
    return _sha256(fit_relevant(cfg))


def check_config_files(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse a key given twice in one mapping of a YAML config file (ConfigError naming the key,
    the file and both lines): YAML loaders, Snakemake's too, silently keep the last one."""
    import yaml

    for path in paths:
        try:
            node = yaml.compose(Path(path).read_text(), Loader=yaml.SafeLoader)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # not ours to report: Snakemake read the file, or says why it cannot
        try:
            _check_duplicate_keys(node, [], str(path))
        except RecursionError:
            continue


def _check_duplicate_keys(node: Any, where: list, path: str) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key is not None and key in seen:
                raise ConfigError(
                    _fmt_path([*where, key]),
                    f"given twice in {path} (lines {seen[key]} and {line}); "
                    "YAML would silently keep the last: delete one",
                )
            if key is not None:
                seen[key] = line
            _check_duplicate_keys(value_node, [*where, key if key is not None else "?"], path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, [*where, i], path)


def load_study(
    config: Mapping[str, Any],
    schema_path: str | Path | None = None,
    config_files: Iterable[str | os.PathLike[str]] = (),
) -> Study:
    """Validate `config` (raising ConfigError) and derive the study's cells and hashes.
    `config_files`: the YAML files the config was read from (Snakemake's `workflow.configfiles`),
    checked for keys given twice, which loading them has already hidden."""
    check_config_files(config_files)
    cfg = validate_config(config, schema_path)
    cells = expand_cells(cfg)
    return Study(
        config=cfg,
        cells=cells,
        config_hash=_sha256(cfg),
        fit_hash=fit_hash(cfg),
    )
