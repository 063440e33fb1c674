"""The study configuration: validation, and its one parse into a `Study`.

`load_study(config)` validates a config dict (as Snakemake loaded it from `config.yaml`,
`--configfile` and `--config`) against `workflow/schemas/config.schema.yaml` through
`snakemake.utils.validate`, which also fills the schema's defaults, then checks what the schema
cannot express. Any problem raises `ConfigError` with one line naming the key path and the bad
value, e.g. ``config error: grid.sigma[1]: -1 is not > 0``.

It then parses the validated dict, once, into the typed members of `study.Study`: the cells,
the replicate plan (`rounds.ReplicatePlan`), the expanded starts (`starts.StartSpec`), the
precision targets (`precision.Precision`), the models, methods, stopping rules and their
tolerances. Validation and parse live together here because each key's checks and its meaning
are one piece of knowledge: the precision block's scope is checked against the same expanded
starts it is parsed into, the replicate plan the limits are checked on is the plan the study
runs. So `replicates`, `precision` and `starts` are read from the config dict in this module
only (tests/test_architecture.py holds it to that); the start names, defaults and checks are
`starts`' and are handed the config's list from here.

Cells: the full factorial of `grid` plus the `scenarios`, duplicates dropped (by parameter
values, so `sigma: 1` and `sigma: [1.0, 1.0]` are one cell).

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
from pathlib import Path
from typing import Any

from emsim.models import DEFAULT_SCORE_TOLERANCE, MODELS
from emsim.study.config_checks import (
    ConfigError,
    check_family,
    check_pi,
    check_positive,
    finite,
    format_path,
    show,
)
from emsim.study.config_sources import (
    check_config_args,
    check_config_files,
    check_expanded_size,
)
from emsim.study.measures import PARAMETER_ORDER
from emsim.study.precision import MEASURES, Precision, Target
from emsim.study.rounds import ReplicatePlan
from emsim.study.starts import (
    RESERVED_START_NAMES,
    StartSpec,
    check_starts,
    count_starts,
    expand_starts,
    oracle_start_names,
    select_starts,
)
from emsim.study.study import Cell, FitTask, Study, fit_job_mem_mb

__all__ = [
    "canonical_json",
    "check_config_files",
    "default_schema_path",
    "expand_cells",
    "fit_hash",
    "fit_relevant",
    "load_study",
    "parse_validated",
    "stopping_tolerances",
    "validate_config",
]

FIT_KEYS: tuple[str, ...] = ("seed", "em", "models", "methods", "starts", "traces")
# The design's scale: beyond these, simulated data (or their squares, or a component's variance)
# leave the floating-point range and a fit job would fail; they are far outside any real design.
SCALE_MAX = 1e100
SIGMA_MIN = 1e-100
# A sigma below this fraction of the cell's largest |mu| is below the resolution of doubles at
# that location: the simulated data round to a few distinct values (all equal at 1e15 +- 0.01).
SIGMA_MIN_REL = 1e-12


def default_schema_path() -> Path:
    """The schema of the source checkout this module belongs to (src layout: ../../../workflow)."""
    return Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal configs give equal text and hashes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _sha256(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


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
                format_path([*path, key]), f"unknown key (expected one of: {', '.join(allowed)})"
            )
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [k for k in err.validator_value if k not in err.instance]
        if missing:
            return ConfigError(format_path([*path, missing[0]]), "missing (required)")
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
        return ConfigError(format_path(path), f"{show(err.instance)} is not {kinds}")
    if err.validator == "anyOf" and all(set(sub) == {"required"} for sub in err.validator_value):
        keys = ", ".join(k for sub in err.validator_value for k in sub["required"])
        return ConfigError(format_path(path), f"needs at least one of: {keys}")
    if err.validator == "enum":
        options = ", ".join(map(str, err.validator_value))
        return ConfigError(format_path(path), f"{show(err.instance)} is not one of {options}")
    return ConfigError(format_path(path), err.message.replace("\n", " ") + _type_hint(err))


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
        if e:
            # YAML 1.1 (PyYAML, Snakemake) reads an exponent as a number only with a decimal
            # point and a signed exponent: 1.0e-6 and 1.0e+12, never 1e-6 or 1.0e12.
            point = mantissa if "." in mantissa else f"{mantissa}.0"
            sign = "" if exponent[:1] in "+-" else "+"
            fixed = f"{point}e{sign}{exponent}"
            # Text that is already so spelt was quoted, or nested in --config's {...}.
            if fixed != value.strip().lower() and isinstance(_yaml_value(fixed), float):
                return f" (write {fixed}: YAML 1.1 reads {value} as text)"
        return (
            " (text, not a number: remove the quotes; `--config` passes values nested in"
            " {...} as text, so set those in a config file)"
        )
    if isinstance(value, float) and wanted == ["integer"] and math.isfinite(value):
        if value.is_integer():
            return f" (write {int(value)}, without a decimal point or exponent)"
    return ""


def _yaml_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


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
    check_expanded_size(config)
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


def _check_n(value: object, path: str) -> None:
    if int(value) < 2:  # type: ignore[call-overload]
        raise ConfigError(path, f"{show(value)} is not >= 2 (a mixture needs two points)")


def _check_sigma(value: object, path: str) -> None:
    """A cell's sigma (one number, or a pair): > 0 and within the design's scale."""
    for i, s in enumerate(value) if isinstance(value, list) else [(None, value)]:
        where = path if i is None else f"{path}[{i}]"
        check_positive(s, where)
        if not SIGMA_MIN <= float(s) <= SCALE_MAX:
            raise ConfigError(
                where,
                f"{show(s)} is outside [{SIGMA_MIN:g}, {SCALE_MAX:g}] (floating-point range)",
            )


def _check_mu(value: Sequence[object], path: str) -> None:
    for i, m in enumerate(value):
        if abs(finite(m, f"{path}[{i}]")) > SCALE_MAX:
            raise ConfigError(
                f"{path}[{i}]", f"{show(m)} is beyond +-{SCALE_MAX:g} (floating-point range)"
            )


def _check_resolution(mu: Sequence[object], sigma: object, sigma_path: str, mu_path: str) -> None:
    """A cell's sigmas must resolve its means: at least SIGMA_MIN_REL x max |mu|."""
    location = max(abs(float(m)) for m in mu)  # type: ignore[arg-type]
    smallest = min(sigma) if isinstance(sigma, list) else sigma
    if float(smallest) < SIGMA_MIN_REL * location:  # type: ignore[arg-type]
        raise ConfigError(
            sigma_path,
            f"{show(sigma)} is below {SIGMA_MIN_REL:g} x |mu| = {SIGMA_MIN_REL * location:g} "
            f"for {mu_path} {show(mu)}: the simulated data would round to a few distinct values",
        )


def _pair(value: object) -> tuple[float, float]:
    """A mu or sigma as its two components' values (one number: both)."""
    if isinstance(value, list | tuple):
        return float(value[0]), float(value[1])
    return float(value), float(value)  # type: ignore[arg-type]


def _check_identifiable(mu: object, sigma: object, where: str, with_sigma: str) -> None:
    """Equal means and equal sigmas are one normal twice: every pi gives the same data, so no
    fit can estimate it and a bias or coverage of pi would describe nothing."""
    (mu1, mu2), (sigma1, sigma2) = _pair(mu), _pair(sigma)
    if mu1 == mu2 and sigma1 == sigma2:
        raise ConfigError(
            where,
            f"mu {show(mu)} with sigma {show(sigma)}{with_sigma} is one normal twice (equal "
            "means, equal sigmas): no data can identify pi; make the means or the sigmas differ",
        )


def _check_semantics(cfg: dict) -> None:
    grid = cfg.get("grid")
    if grid is not None:
        for i, n in enumerate(grid["n"]):
            _check_n(n, f"grid.n[{i}]")
        for i, mu in enumerate(grid["mu"]):
            _check_mu(mu, f"grid.mu[{i}]")
        for i, s in enumerate(grid["sigma"]):
            _check_sigma(s, f"grid.sigma[{i}]")
        for i, p in enumerate(grid["pi"]):
            check_pi(p, f"grid.pi[{i}]")
        for i, family in enumerate(grid.get("family") or []):
            check_family(family, f"grid.family[{i}]")
        for i, s in enumerate(grid["sigma"]):
            for k, mu in enumerate(grid["mu"]):
                _check_resolution(mu, s, f"grid.sigma[{i}]", f"grid.mu[{k}]")
                _check_identifiable(mu, s, f"grid.mu[{k}]", f" (grid.sigma[{i}])")
    for j, sc in enumerate(cfg.get("scenarios") or []):
        _check_n(sc["n"], f"scenarios[{j}].n")
        _check_mu(sc["mu"], f"scenarios[{j}].mu")
        _check_sigma(sc["sigma"], f"scenarios[{j}].sigma")
        check_pi(sc["pi"], f"scenarios[{j}].pi")
        check_family(sc.get("family"), f"scenarios[{j}].family")
        _check_resolution(sc["mu"], sc["sigma"], f"scenarios[{j}].sigma", f"scenarios[{j}].mu")
        _check_identifiable(sc["mu"], sc["sigma"], f"scenarios[{j}]", "")
    if grid is None and not cfg.get("scenarios"):
        raise ConfigError("grid", "no cells: give a grid and/or a non-empty scenarios list")
    _check_replicates(cfg)
    # Before the starts are expanded into names: a random start's k of 10^9 is caught here.
    _check_limits(cfg)
    check_starts(cfg["starts"])
    stopping_tolerances(cfg)
    level = cfg["coverage"]["level"]
    if not 0.0 < finite(level, "coverage.level") < 1.0:
        raise ConfigError("coverage.level", f"{show(level)} is not in (0, 1)")
    _check_precision(cfg, expand_starts(cfg["starts"]))


def replicate_plan(cfg: Mapping[str, Any]) -> ReplicatePlan:
    """The config's `replicates` (a count, or {min, max, step} with step = min by default) and
    `chunk_size` as a plan: the one reading of `replicates`."""
    replicates, chunk_size = cfg["replicates"], int(cfg["chunk_size"])
    if isinstance(replicates, Mapping):
        low, high = int(replicates["min"]), int(replicates["max"])
        return ReplicatePlan(low, high, int(replicates.get("step", low)), chunk_size)
    return ReplicatePlan(int(replicates), int(replicates), int(replicates), chunk_size)


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


def _check_precision(cfg: Mapping[str, Any], starts: Sequence[StartSpec]) -> None:
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
    names = {spec.group for spec in starts} | {spec.name for spec in starts}
    names |= RESERVED_START_NAMES
    for i, value in enumerate(block.get("starts") or []):
        if value not in names:
            raise ConfigError(
                f"precision.starts[{i}]",
                f"{value!r} is not a start of the study ({', '.join(sorted(names))})",
            )
    models = block.get("models") or cfg["models"]
    for measure in MEASURES:
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


def _parse_precision(cfg: Mapping[str, Any], starts: Sequence[StartSpec]) -> Precision | None:
    """The validated `precision` block (None without one): a one-number target applies to every
    parameter the block's models (all of the study's by default) estimate; a random start's
    config name stands for all of its draws (`starts.select_starts`)."""
    block = cfg.get("precision")
    if not block:
        return None
    models = tuple(block.get("models") or cfg["models"])
    estimated = [p for p in PARAMETER_ORDER if any(p in MODELS[m] for m in models)]
    targets = []
    for measure in MEASURES:
        spec = block.get(measure)
        if spec is None:
            continue
        values = spec if isinstance(spec, Mapping) else dict.fromkeys(estimated, spec)
        targets += [Target(measure, p, float(values[p])) for p in PARAMETER_ORDER if p in values]
    chosen = block.get("starts")
    return Precision(
        targets=tuple(targets),
        models=tuple(block["models"]) if "models" in block else None,
        methods=tuple(block["methods"]) if "methods" in block else None,
        stopping=tuple(block["stopping"]) if "stopping" in block else None,
        starts=select_starts(chosen, starts) if chosen is not None else None,
    )


def stopping_tolerances(cfg: Mapping[str, Any]) -> dict[str, float]:
    """{rule: tolerance} for every rule of em.stopping, in config order (a validated config).
    The score rule's tolerance is em.score_tolerance (standard errors, default 0.01), not
    em.tolerance (log-likelihood or parameter units)."""
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
        if not (finite(value, where) > 0):
            raise ConfigError(where, f"{show(value)} is not > 0")
        out[rule] = float(value)
    if isinstance(tolerance, Mapping):
        for rule in tolerance:
            if rule not in out:
                raise ConfigError(f"em.tolerance.{rule}", f"{rule!r} is not in em.stopping")
    return out


def _count_cells(cfg: Mapping[str, Any]) -> int:
    """The number of distinct cells `expand_cells` would give, without expanding the grid: the
    product of each grid list's distinct values, plus the scenarios not in the grid."""
    grid = cfg.get("grid")
    axes: list[set] = []
    if grid is not None:
        axes = [
            {int(n) for n in grid["n"]},
            {_pair(m) for m in grid["mu"]},
            {_pair(sg) for sg in grid["sigma"]},
            {float(p) for p in grid["pi"]},
            {check_family(f, "grid.family").label for f in _grid_families(grid)},
        ]
    count = math.prod(len(a) for a in axes) if axes else 0
    extra: set[tuple] = set()
    for sc in cfg.get("scenarios") or []:
        family = check_family(sc.get("family"), "scenarios.family").label
        values = (int(sc["n"]), _pair(sc["mu"]), _pair(sc["sigma"]), float(sc["pi"]), family)
        if not (axes and all(v in a for v, a in zip(values, axes, strict=True))):
            extra.add(values)
    return count + len(extra)


def _fits_per_replicate(cfg: Mapping[str, Any]) -> int:
    rules = len(cfg["em"].get("stopping") or ["abs"])
    return len(cfg["models"]) * len(cfg["methods"]) * count_starts(cfg["starts"]) * rules


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
    plan = replicate_plan(cfg)
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


# --- cells ------------------------------------------------------------------------------------


def _grid_families(grid: Mapping[str, Any]) -> list[Any]:
    # Without `family` a grid is normal, and its cells (order, ids, seeds) are as before.
    return list(grid.get("family") or ["normal"])


def expand_cells(cfg: Mapping[str, Any]) -> list[Cell]:
    """The grid's cells (in the order of its lists: n slowest, then mu, sigma, pi, family)
    followed by the scenarios not already in it."""
    cells: list[Cell] = []
    grid = cfg.get("grid")
    if grid is not None:
        axes = (grid["n"], grid["mu"], grid["sigma"], grid["pi"], _grid_families(grid))
        for n, mu, sigma, pi, family in itertools.product(*axes):
            cells.append(Cell.make(n, mu, sigma, pi, family))
    for sc in cfg.get("scenarios") or []:
        cells.append(Cell.make(sc["n"], sc["mu"], sc["sigma"], sc["pi"], sc.get("family")))
    unique: dict[str, Cell] = {}
    for cell in cells:
        unique.setdefault(cell.cell_id, cell)
    return list(unique.values())


def fit_relevant(cfg: Mapping[str, Any]) -> dict[str, Any]:
    from emsim.study.parquet_io import emsim_version

    part = {key: cfg[key] for key in FIT_KEYS}
    part["emsim_version"] = emsim_version()
    return part


def fit_hash(cfg: Mapping[str, Any]) -> str:
    """sha256 of the fit-relevant part of a validated config (`fit_relevant`)."""
    return _sha256(fit_relevant(cfg))


def _fit_members(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What a study's fits are, parsed from a validated config or from its recorded fit part
    (`fit_relevant`): the expanded starts, models, methods and each rule's tolerance."""
    return {
        "starts": tuple(expand_starts(cfg["starts"])),
        "models": tuple(cfg["models"]),
        "methods": tuple(cfg["methods"]),
        "tolerances": stopping_tolerances(cfg),
    }


def load_study(
    config: Mapping[str, Any],
    schema_path: str | Path | None = None,
    config_files: Iterable[str | os.PathLike[str]] = (),
    config_args: Iterable[str] | None = (),
) -> Study:
    """Validate `config` (raising ConfigError) and parse it into the study's cells, plan, starts,
    precision targets and hashes. `config_files`: the YAML files the config was read from
    (Snakemake's `workflow.configfiles`), and `config_args`: the `--config` entries as typed
    (`workflow.config_settings.config_args`), both checked for keys given twice, which loading
    them has already hidden."""
    check_config_args(config_args)
    check_config_files(config_files)
    return parse_validated(validate_config(config, schema_path))


def parse_validated(cfg: Mapping[str, Any]) -> Study:
    """The `Study` of a config that `validate_config` has checked and completed: a study's
    recorded results/config.yaml, whose validation (half a second, most of `emsim status`'s
    time) was done when the study started."""
    cfg = dict(cfg)
    fitting = _fit_members(cfg)
    fit_config = fit_relevant(cfg)
    return Study(
        config=cfg,
        cells=expand_cells(cfg),
        config_hash=_sha256(cfg),
        fit_hash=_sha256(fit_config),
        fit_config=fit_config,
        plan=replicate_plan(cfg),
        precision=_parse_precision(cfg, fitting["starts"]),
        stopping=tuple(fitting["tolerances"]),
        **fitting,
        precision_key=canonical_json(
            {"precision": cfg.get("precision"), "replicates": cfg["replicates"]}
        ),
        replicates_given=cfg["replicates"],
    )


def recorded_fit_task(
    fit_config: Mapping[str, Any],
    seed: int,
    fit_hash: str,
    cell: Cell,
    chunk: int,
    replicates: Sequence[int],
) -> FitTask:
    """The fit task of some replicates of one chunk, from a study's recorded fit config (the
    manifest's `fit_config`, as `fit_relevant` made it): what `emsim verify --recompute` refits.
    Parsed here, as `load_study` parses a config, so that no other module reads `starts`."""
    fitting = _fit_members(fit_config)
    return FitTask(
        cell=cell,
        chunk=int(chunk),
        # Any replicates, not only a range: each has its own streams (docs/design.md section 3).
        replicates=list(replicates),  # type: ignore[arg-type]
        seed=int(seed),
        fit_config=dict(fit_config),
        fit_hash=str(fit_hash),
        oracle_starts=oracle_start_names(fitting["starts"]),
        **fitting,
    )
