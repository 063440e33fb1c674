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
from .models import PARAMS, check_method, check_model, estimated_params, known_params

# A component whose sigma falls below this fraction of the data's standard deviation has
# collapsed onto (nearly) a single point: the likelihood is unbounded there.
SIGMA_FLOOR_REL = 1e-6
DEFAULT_START_PI = 0.5

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


def _with_sigma(values: ParamValues, label: str) -> dict[str, Any]:
    """`values` with the shorthand `sigma` (one value for both components) spelt out."""
    values = dict(values or {})
    if "sigma" in values:
        both = sorted({"sigma1", "sigma2"} & set(values))
        if both:
            raise ValueError(
                f"{label} sigma and {label} {both[0]}: give either sigma (both components) "
                "or sigma1/sigma2, not both"
            )
        common = values.pop("sigma")
        values["sigma1"] = values["sigma2"] = common
    return values


def check_start_known(
    model: str,
    start: ParamValues,
    known: ParamValues,
    start_label: str = "start",
    known_label: str = "known",
    refuse_held_start: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Refuse start and known values that a model would silently ignore; return both with
    `sigma` spelt out as sigma1 and sigma2.

    `sigma` means one value for both components in every model (giving it with sigma1 or
    sigma2 is refused). A known value is only for a parameter the model holds fixed. A start
    value for a held parameter is ignored (the study passes all five starts to every model),
    unless `refuse_held_start`, as on the command line, where someone typed it. The labels
    name the options in messages (the command line passes "--start" and "--known").
    """
    check_model(model)
    given_start, given_known = dict(start or {}), dict(known or {})
    for values, label in ((given_start, start_label), (given_known, known_label)):
        unknown = sorted(set(values) - set(PARAMS) - {"sigma"}, key=str)
        if unknown:
            raise ValueError(
                f"{label}: unknown parameter {unknown[0]!r}; use {', '.join(PARAMS)} or sigma"
            )
    held = known_params(model)
    held_by_pi = ", ".join(known_params("pi"))
    for name in given_known:
        parts = ("sigma1", "sigma2") if name == "sigma" else (name,)
        if not set(parts) <= set(held):
            raise ValueError(
                f"{known_label} {name}: model {model!r} estimates {name}; {known_label} is for "
                f"the parameters a model holds fixed (pi model: {held_by_pi})"
            )
    for name in given_start if refuse_held_start else ():
        parts = ("sigma1", "sigma2") if name == "sigma" else (name,)
        if set(parts) & set(held):
            raise ValueError(
                f"{start_label} {name}: model {model!r} holds {name} fixed; "
                f"give its value with {known_label}"
            )
    return _with_sigma(given_start, start_label), _with_sigma(given_known, known_label)


def _start_matrix(y: np.ndarray, model: str, start: ParamValues, known: ParamValues) -> np.ndarray:
    n_rows = y.shape[0]
    start, known = check_start_known(model, start, known)

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
) -> BatchFitResult:
    """Fit a two-component Gaussian mixture to every row of `Y` (shape replicates x n).

    Raises ValueError only for invalid input; every fit of valid input ends with a status.
    """
    check_model(model)
    check_method(method)
    if not (np.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    if int(max_iterations) != max_iterations or max_iterations < 1:
        raise ValueError(f"max_iterations must be a positive integer, got {max_iterations}")
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
        y, start_matrix, model, method, float(tolerance), int(max_iterations), sigma_floor, traced
    )
    if model != "pi":
        # Data on one point (a tiny, coarsely rounded sample) leave every component collapsed:
        # a status, not an error, so one such replicate cannot stop a study.
        out.status[y.min(axis=1) == y.max(axis=1)] = "degenerate"
    if model == "pi":
        se_estimated, rate_theory = pi_information(out.stats, out.params, y.shape[1])
    else:
        se_estimated, rate_theory = information(y, out.params, model)
    elapsed = time.perf_counter() - began

    names = estimated_params(model)
    se = {name: np.full(n_rows, np.nan) for name in PARAMS}
    for k, name in enumerate(names if model != "equal_var" else ("pi", "mu1", "mu2", "sigma1")):
        se[name] = se_estimated[:, k]
    if model == "equal_var":
        se["sigma2"] = se["sigma1"].copy()
    evals = out.loglik_evals
    return BatchFitResult(
        status=out.status,
        iterations=out.iterations,
        loglik=out.loglik,
        loglik_start=out.loglik_start,
        loglik_evals=evals,
        params={name: out.params[:, j].copy() for j, name in enumerate(PARAMS)},
        se=se,
        rate_empirical=out.rate_empirical,
        rate_theory=rate_theory,
        runtime_s=elapsed * evals / evals.sum(),
        model=model,
        method=method,
        traces=_traces(out.traces, names) if traced.any() else [],
    )


def _traces(traces: list[np.ndarray | None], names: tuple[str, ...]) -> list[pd.DataFrame | None]:
    columns = [1 + PARAMS.index(name) for name in names]
    frames: list[pd.DataFrame | None] = []
    for trace in traces:
        if trace is None:
            frames.append(None)
            continue
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
) -> FitResult:
    """Fit one dataset; the same as row 0 of `fit_batch` on a batch of one."""
    data = np.asarray(y, dtype=np.float64) if not isinstance(y, np.ndarray) else y
    if data.ndim != 1:
        raise ValueError(f"fit takes a 1-D array of data, got {data.ndim}-D; use fit_batch")
    result = fit_batch(
        data[None, :], model, method, start, known, tolerance, max_iterations, bool(trace)
    )
    return result.row(0)
