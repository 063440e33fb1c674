"""Public fitting API: `fit` for one dataset, `fit_batch` for many of the same length.

`fit` is `fit_batch` with one row, so both share one code path and a batched row equals the
single fit bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import engine
from .information import information, pi_information
from .limit import loglik as newton_loglik
from .limit import newton_limit, standard_errors
from .models import (
    DEFAULT_STOPPING,
    PARAMS,
    USABLE_STATUS,
    check_method,
    check_model,
    check_stopping,
    estimated_params,
    known_params,
)

# A component whose sigma falls below this fraction of the data's standard deviation has
# collapsed onto (nearly) a single point: the likelihood is unbounded there.
SIGMA_FLOOR_REL = 1e-6
# The engine takes max_iterations as int64 (one compiled type whatever the value); this bound
# keeps its arithmetic on it clear of overflow.
MAX_ITERATIONS_LIMIT = 2**62
DEFAULT_START_PI = 0.5
# A fit the stopping rule ended is `premature` when the limit of its iteration lies more than
# this many of the limit's standard errors away in some parameter (docs/design.md section 2).
PREMATURE_THRESHOLD_SE = 0.1

ParamValues = Mapping[str, float | np.ndarray] | None


@dataclass(frozen=True)
class FitResult:
    """One fit. `params` are the components as fitted (not aligned to any truth)."""

    status: str
    iterations: int
    loglik: float
    loglik_start: float
    loglik_evals: int
    params: dict[str, float]
    se: dict[str, float]
    rate_empirical: float
    rate_theory: float
    runtime_s: float
    model: str
    method: str
    stopping: str = DEFAULT_STOPPING
    distance_to_limit: float = float("nan")
    loglik_gap_to_limit: float = float("nan")
    polish_evals: int = 0
    trace: pd.DataFrame | None = None


@dataclass(frozen=True)
class BatchFitResult:
    """Many fits; every field is an array with one entry per row of the data."""

    status: np.ndarray
    iterations: np.ndarray
    loglik: np.ndarray
    loglik_start: np.ndarray
    loglik_evals: np.ndarray
    params: dict[str, np.ndarray]
    se: dict[str, np.ndarray]
    rate_empirical: np.ndarray
    rate_theory: np.ndarray
    runtime_s: np.ndarray
    model: str
    method: str
    stopping: str = DEFAULT_STOPPING
    distance_to_limit: np.ndarray = field(default_factory=lambda: np.empty(0))
    loglik_gap_to_limit: np.ndarray = field(default_factory=lambda: np.empty(0))
    polish_evals: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    traces: list[pd.DataFrame | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.status)

    def row(self, i: int) -> FitResult:
        return FitResult(
            status=str(self.status[i]),
            iterations=int(self.iterations[i]),
            loglik=float(self.loglik[i]),
            loglik_start=float(self.loglik_start[i]),
            loglik_evals=int(self.loglik_evals[i]),
            params={k: float(v[i]) for k, v in self.params.items()},
            se={k: float(v[i]) for k, v in self.se.items()},
            rate_empirical=float(self.rate_empirical[i]),
            rate_theory=float(self.rate_theory[i]),
            runtime_s=float(self.runtime_s[i]),
            model=self.model,
            method=self.method,
            stopping=self.stopping,
            distance_to_limit=float(self.distance_to_limit[i]),
            loglik_gap_to_limit=float(self.loglik_gap_to_limit[i]),
            polish_evals=int(self.polish_evals[i]),
            trace=self.traces[i] if self.traces else None,
        )


def _as_data(y: Any) -> np.ndarray:
    try:
        data = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"data must be numeric: {err}") from None
    if data.ndim != 2:
        raise ValueError(
            f"data must be a 1-D array (fit) or 2-D array (fit_batch), got {data.ndim}-D"
        )
    if data.shape[1] < 2:
        raise ValueError(f"data need at least 2 points, got {data.shape[1]}")
    finite = np.isfinite(data).all(axis=1)
    if not finite.all():
        raise ValueError(f"data row {int(np.argmin(finite))} has NaN or infinite values")
    return np.ascontiguousarray(data)


def _column(values: ParamValues, name: str, n_rows: int, what: str) -> np.ndarray | None:
    if not values or name not in values:
        return None
    try:
        column = np.broadcast_to(np.asarray(values[name], dtype=np.float64), (n_rows,))
    except (TypeError, ValueError):
        raise ValueError(
            f"{what} {name} must be a number or an array of {n_rows} numbers"
        ) from None
    if not np.isfinite(column).all():
        raise ValueError(f"{what} {name} must be finite")
    if name == "pi" and ((column <= 0) | (column >= 1)).any():
        raise ValueError(
            f"{what} pi={_first(column, (column <= 0) | (column >= 1))} is outside (0, 1)"
        )
    if name.startswith("sigma") and (column <= 0).any():
        raise ValueError(f"{what} {name}={_first(column, column <= 0)} must be > 0")
    return column.astype(np.float64, copy=True)


def _first(column: np.ndarray, bad: np.ndarray) -> float:
    return float(column[np.argmax(bad)])


def quantile_start(
    y: np.ndarray, pi0: np.ndarray | float = DEFAULT_START_PI
) -> dict[str, np.ndarray]:
    """Split each row's sorted data at the (1 - pi0) quantile: the upper side (weight pi0) starts
    component 1, the lower side component 2, each at its mean and standard deviation."""
    y = np.atleast_2d(y)
    n_rows, n = y.shape
    pi0 = np.broadcast_to(np.asarray(pi0, dtype=np.float64), (n_rows,))
    ordered = np.sort(y, axis=1)
    # Each side keeps at least one point.
    n_lower = np.clip(np.rint((1.0 - pi0) * n).astype(np.int64), 1, n - 1)
    position = np.arange(n)[None, :]
    upper = position >= n_lower[:, None]
    count_upper = (n - n_lower).astype(np.float64)
    count_lower = n_lower.astype(np.float64)
    mean_upper = np.where(upper, ordered, 0.0).sum(axis=1) / count_upper
    mean_lower = np.where(upper, 0.0, ordered).sum(axis=1) / count_lower
    var_upper = np.where(upper, (ordered - mean_upper[:, None]) ** 2, 0.0).sum(axis=1) / count_upper
    var_lower = np.where(upper, 0.0, (ordered - mean_lower[:, None]) ** 2).sum(axis=1) / count_lower
    # A side of one point (or of ties) has no spread; start it at a tenth of the data's.
    fallback = 0.1 * ordered.std(axis=1)
    return {
        "pi": pi0.copy(),
        "mu1": mean_upper,
        "mu2": mean_lower,
        "sigma1": np.where(var_upper > 0, np.sqrt(var_upper), fallback),
        "sigma2": np.where(var_lower > 0, np.sqrt(var_lower), fallback),
    }


def _start_matrix(y: np.ndarray, model: str, start: ParamValues, known: ParamValues) -> np.ndarray:
    n_rows = y.shape[0]
    start = dict(start or {})
    if model == "equal_var" and "sigma" in start:
        start.setdefault("sigma1", start["sigma"])
        start.setdefault("sigma2", start["sigma"])
    unknown = set(start) - set(PARAMS) - {"sigma"}
    if unknown:
        raise ValueError(f"unknown start parameter {sorted(unknown)[0]!r}; use {', '.join(PARAMS)}")
    unknown = set(known or {}) - set(PARAMS)
    if unknown:
        raise ValueError(f"unknown known parameter {sorted(unknown)[0]!r}; use {', '.join(PARAMS)}")

    matrix = np.empty((n_rows, len(PARAMS)))
    for j, name in enumerate(PARAMS):
        if name in known_params(model):
            value = _column(known, name, n_rows, "known")
            if value is None:
                raise ValueError(f"model {model!r} needs a known value for {name}")
        else:
            value = _column(start, name, n_rows, "start")
        matrix[:, j] = np.nan if value is None else value

    pi_start = matrix[:, 0]
    pi_start[np.isnan(pi_start)] = DEFAULT_START_PI
    missing = np.isnan(matrix).any(axis=0)
    if missing.any():
        default = quantile_start(y, pi_start)
        for j in np.flatnonzero(missing):
            matrix[:, j] = default[PARAMS[j]]
    if model == "equal_var":
        pooled = np.sqrt(0.5 * (matrix[:, 3] ** 2 + matrix[:, 4] ** 2))
        matrix[:, 3] = matrix[:, 4] = pooled
    return matrix


def fit_batch(
    Y: Any,
    model: str = "full",
    method: str = "em",
    start: ParamValues = None,
    known: ParamValues = None,
    tolerance: float = 1e-5,
    max_iterations: int = 1000,
    trace: bool | np.ndarray = False,
    stopping: str = DEFAULT_STOPPING,
    premature_threshold: float = PREMATURE_THRESHOLD_SE,
) -> BatchFitResult:
    """Fit a two-component Gaussian mixture to every row of `Y` (shape replicates x n).

    Raises ValueError only for invalid input; every fit of valid input ends with a status.
    """
    results = fit_batch_by_rule(
        Y,
        model,
        method,
        start,
        known,
        {stopping: tolerance},
        max_iterations,
        trace,
        premature_threshold,
    )
    return results[stopping]


def _check_tolerance(rule: str, tolerance: float) -> float:
    check_stopping(rule)
    try:
        value = float(tolerance)
    except (TypeError, ValueError):
        raise ValueError(f"tolerance for {rule} must be a number, got {tolerance!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    return value


def fit_batch_by_rule(
    Y: Any,
    model: str = "full",
    method: str = "em",
    start: ParamValues = None,
    known: ParamValues = None,
    tolerances: Mapping[str, float] | None = None,
    max_iterations: int = 1000,
    trace: bool | np.ndarray = False,
    premature_threshold: float = PREMATURE_THRESHOLD_SE,
) -> dict[str, BatchFitResult]:
    """`fit_batch` under several stopping rules at once: {rule: result} for each rule of
    `tolerances` ({rule: tolerance}, default the seed's {"abs": 1e-5}).

    The rules share one path of iterates (a rule only decides where to stop on it), so the
    batch costs what its latest-stopping rule costs, and each rule's result equals
    `fit_batch(..., stopping=rule, tolerance=tolerances[rule])` exactly.
    """
    check_model(model)
    check_method(method)
    tolerances = dict(tolerances or {DEFAULT_STOPPING: 1e-5})
    if not tolerances:
        raise ValueError("give at least one stopping rule")
    rules = tuple(tolerances)
    tolerance_values = np.array([_check_tolerance(r, tolerances[r]) for r in rules])
    if int(max_iterations) != max_iterations or not 1 <= max_iterations <= MAX_ITERATIONS_LIMIT:
        raise ValueError(
            f"max_iterations must be an integer in [1, {MAX_ITERATIONS_LIMIT}], "
            f"got {max_iterations}"
        )
    if not (np.isfinite(premature_threshold) and premature_threshold > 0):
        raise ValueError(f"premature_threshold must be > 0, got {premature_threshold}")
    y = _as_data(Y)
    n_rows = y.shape[0]
    traced = np.broadcast_to(np.asarray(trace, dtype=bool), (n_rows,)).copy()
    # Valid data can still overflow a moment (values near 1e308); the fit then reports a status.
    with np.errstate(all="ignore"):
        start_matrix = _start_matrix(y, model, start, known)
        # The pi model never moves a sigma, so it needs no floor (and no pass over the data).
        sigma_floor = np.zeros(n_rows) if model == "pi" else SIGMA_FLOOR_REL * y.std(axis=1)

    began = time.perf_counter()
    out = engine.run(
        y,
        start_matrix,
        model,
        method,
        rules,
        tolerance_values,
        int(max_iterations),
        sigma_floor,
        traced,
    )
    elapsed = time.perf_counter() - began
    # The engine spent its time on the shared path and on each rule's polish; a rule's fit
    # is charged for its own E-steps only (what it costs alone), the polish apart.
    spent = out.path_evals.sum() + out.polish_evals.sum()
    seconds_per_eval = elapsed / spent if spent > 0 else 0.0
    names = estimated_params(model)
    return {
        rule: _rule_result(
            y, out, k, rule, model, method, names, traced, seconds_per_eval, premature_threshold
        )
        for k, rule in enumerate(rules)
    }


def _se_by_name(se_estimated: np.ndarray, model: str, n_rows: int) -> dict[str, np.ndarray]:
    se = {name: np.full(n_rows, np.nan) for name in PARAMS}
    names = estimated_params(model) if model != "equal_var" else ("pi", "mu1", "mu2", "sigma1")
    for k, name in enumerate(names):
        se[name] = se_estimated[:, k]
    if model == "equal_var":
        se["sigma2"] = se["sigma1"].copy()
    return se


def _information(y, params, stats, model):
    if model == "pi":
        return pi_information(stats, params, y.shape[1])
    return information(y, params, model)


def _rule_result(y, out, k, rule, model, method, names, traced, seconds_per_eval, threshold):
    """One stopping rule's BatchFitResult, with the statuses decided beside the engine: a fit
    the rule ended is `saddle` where the observed information is not positive definite, else
    `premature` where its polish ended more than `threshold` SEs away (docs/design.md 2)."""
    n_rows = y.shape[0]
    params = np.ascontiguousarray(out.params[:, k])
    limit = np.ascontiguousarray(out.limit[:, k])
    status = out.status[:, k].copy()
    if model != "pi":
        # Data on one point (a tiny, coarsely rounded sample) leave every component collapsed:
        # a status, not an error, so one such replicate cannot stop a study.
        status[y.min(axis=1) == y.max(axis=1)] = "degenerate"
    se_estimated, rate_theory, positive = _information(
        y, params, np.ascontiguousarray(out.stats[:, k]), model
    )
    se = _se_by_name(se_estimated, model, n_rows)
    se_at_limit, _, _ = _information(y, limit, np.ascontiguousarray(out.limit_stats[:, k]), model)
    # Where SQUAREM's bounded polish crawled, Newton's method finds the limit (emsim.limit).
    stopped_by_rule = (status == USABLE_STATUS) & positive
    crawled = np.flatnonzero(stopped_by_rule & ~out.polish_done[:, k])
    limit_found = out.polish_done[:, k].copy()
    if crawled.size:
        newton, found = newton_limit(y[crawled], limit[crawled], model)
        limit[crawled] = newton
        se_at_limit[crawled] = standard_errors(y[crawled], newton, model)
        limit_loglik = out.limit_loglik[:, k].copy()
        limit_loglik[crawled] = newton_loglik(y[crawled], newton)
        limit_found[crawled] = found
    else:
        limit_loglik = out.limit_loglik[:, k]
    se_limit = _se_by_name(se_at_limit, model, n_rows)
    with np.errstate(all="ignore"):
        # In units of the limit's SE (the stop's where the limit has none).
        gaps = np.stack(
            [
                np.abs(params[:, j] - limit[:, j])
                / np.where(np.isfinite(se_limit[name]), se_limit[name], se[name])
                for name, j in ((name, PARAMS.index(name)) for name in names)
            ],
            axis=1,
        )
        distance = np.where(np.isfinite(gaps).all(axis=1), gaps.max(axis=1), np.nan)
    polished = out.polish_evals[:, k] > 0
    distance = np.where(polished, distance, np.nan)
    loglik_gap = np.where(polished, limit_loglik - out.loglik[:, k], np.nan)
    status[(status == USABLE_STATUS) & ~positive] = "saddle"
    # A fit whose limit was not found cannot be shown to be at a maximum: not usable either.
    far = (distance > threshold) | ~limit_found
    status[(status == USABLE_STATUS) & far] = "premature"

    evals = out.loglik_evals[:, k]
    return BatchFitResult(
        status=status,
        iterations=out.iterations[:, k].copy(),
        loglik=out.loglik[:, k].copy(),
        loglik_start=out.loglik_start[:, k].copy(),
        loglik_evals=evals.copy(),
        params={name: params[:, j].copy() for j, name in enumerate(PARAMS)},
        se=se,
        rate_empirical=out.rate_empirical[:, k].copy(),
        rate_theory=rate_theory,
        runtime_s=seconds_per_eval * evals,
        model=model,
        method=method,
        stopping=rule,
        distance_to_limit=distance,
        loglik_gap_to_limit=loglik_gap,
        polish_evals=out.polish_evals[:, k].copy(),
        traces=_traces(out.traces, out.iterations[:, k], names) if traced.any() else [],
    )


def _traces(
    traces: list[np.ndarray | None], iterations: np.ndarray, names: tuple[str, ...]
) -> list[pd.DataFrame | None]:
    """Each traced row's path up to this rule's own stop (the path may run on for other rules)."""
    columns = [1 + PARAMS.index(name) for name in names]
    frames: list[pd.DataFrame | None] = []
    for trace, last in zip(traces, iterations, strict=True):
        if trace is None:
            frames.append(None)
            continue
        trace = trace[: last + 1]
        frame = pd.DataFrame({"iteration": trace[:, 0].astype(np.int64)})
        for name, j in zip(names, columns, strict=True):
            frame[name] = trace[:, j]
        frame["loglik"] = trace[:, 6]
        frame["diff_loglik"] = trace[:, 7]
        frame["loglik_evals"] = trace[:, 8].astype(np.int64)
        frames.append(frame)
    return frames


def fit(
    y: Any,
    model: str = "full",
    method: str = "em",
    start: ParamValues = None,
    known: ParamValues = None,
    tolerance: float = 1e-5,
    max_iterations: int = 1000,
    trace: bool = False,
    stopping: str = DEFAULT_STOPPING,
    premature_threshold: float = PREMATURE_THRESHOLD_SE,
) -> FitResult:
    """Fit one dataset; the same as row 0 of `fit_batch` on a batch of one."""
    data = np.asarray(y, dtype=np.float64) if not isinstance(y, np.ndarray) else y
    if data.ndim != 1:
        raise ValueError(f"fit takes a 1-D array of data, got {data.ndim}-D; use fit_batch")
    result = fit_batch(
        data[None, :],
        model,
        method,
        start,
        known,
        tolerance,
        max_iterations,
        bool(trace),
        stopping,
        premature_threshold,
    )
    return result.row(0)
