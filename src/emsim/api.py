"""Public fitting API: `fit` for one dataset, `fit_batch` for many of the same length.

`fit` is `fit_batch` with one row, so both share one code path and a batched row equals the
single fit bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from . import engine, working_scale
from .information import information_with_sandwich
from .inputs import check_data_kind, check_known_given, check_max_iterations, check_start_pi
from .limit import find_limits, on_one_normal, one_normal_loglik
from .models import (
    DEFAULT_SCORE_TOLERANCE,
    DEFAULT_STOPPING,
    PARAMS,
    PREMATURE_THRESHOLD_SE,
    USABLE_STATUS,
    check_method,
    check_model,
    check_stopping,
    estimated_params,
    known_params,
)

if TYPE_CHECKING:  # pandas is imported only when a trace is asked for (issue 10)
    import pandas as pd

# A component whose sigma falls below this fraction of the data's standard deviation has
# collapsed onto (nearly) a single point: the likelihood is unbounded there.
SIGMA_FLOOR_REL = 1e-6
# ...but never above this fraction of the within-component scale (working_scale.within_scale):
# where the
# components lie far apart, the data's standard deviation measures their distance, not their
# spread (mu 0 and 1e7 with sigma 1 put the old floor at 5 sigmas). Where they overlap, the
# data's sd is at most a few within-scales (4.8 over 16,800 replicates of the default study's
# cells), so the cap, 16 of them, leaves their floor as it was.
SIGMA_FLOOR_WITHIN_REL = 16 * SIGMA_FLOOR_REL
# The engine takes max_iterations as int64 (one compiled type whatever the value); this bound
# keeps its arithmetic on it clear of overflow.
MAX_ITERATIONS_LIMIT = 2**62
DEFAULT_START_PI = 0.5

ParamValues = Mapping[str, float | np.ndarray] | None


@dataclass(frozen=True)
class FitResult:
    """The result of one fit (`fit`, or `BatchFitResult.row`).

    The components are reported as fitted: which one is "1" depends on the start, and nothing is
    aligned to any truth (the study aligns them, docs/design.md section 5).

    Attributes
    ----------
    status : str
        How the fit ended, exactly one of `emsim.STATUSES`: ``"converged"`` (the stopping rule
        was met at a maximum: the only usable status), ``"saddle"`` (the rule was met where the
        iteration is stationary and the observed information is not positive definite, such
        as equal components, or where the fit's limit is one normal),
        ``"premature"`` (the rule was met, but the limit of the same iteration lies more than
        `premature_threshold` standard errors away, or is no certified maximum, or the
        observed information at the stop is not positive definite while the iteration moves
        on), ``"max_iterations"``
        (stopped by the cap), ``"degenerate"`` (a sigma fell
        below 1e-6 times the data's standard deviation, or 1.6e-5 times the within-component
        scale where that is less: a component collapsed onto a point; also
        any model but ``"pi"`` on data that are all one value), ``"boundary"`` (pi left
        [1e-6, 1 - 1e-6]), ``"nonfinite"`` (a parameter or the log-likelihood became NaN or
        infinite) or ``"decreased"`` (the log-likelihood fell by more than
        1e-10 * (abs(loglik) + n): a numerical fault). For ``"degenerate"``,
        ``"boundary"``, ``"nonfinite"`` and ``"decreased"`` the step that caused it is not
        kept: the result is the last valid iterate.
    iterations : int
        Accepted iterations: M-steps for ``"em"``, SQUAREM cycles for ``"squarem"``. 0 when the
        start itself is invalid.
    loglik : float
        Log-likelihood (the total over the data, natural log) at `params`.
    loglik_start : float
        Log-likelihood at the start.
    loglik_evals : int
        Log-likelihood evaluations (E-steps), the one at the start included: iterations + 1 for
        a plain EM fit that ends without a rejected step, 2 to 4 per SQUAREM cycle.
    params : dict of str to float
        Final values of ``pi``, ``mu1``, ``mu2``, ``sigma1``, ``sigma2``. Parameters the model
        holds known equal their `known` values; ``"equal_var"`` reports its common sigma in
        both ``sigma1`` and ``sigma2``.
    se : dict of str to float
        Standard errors from the observed information at `params` (analytic, Louis' identity),
        same keys. NaN for held-known parameters and where the observed information is not
        positive definite or not finite. ``"equal_var"``: the common sigma's SE in both sigma
        keys. Computed whatever the status.
    se_sandwich : dict of str to float
        Sandwich (Huber-White) standard errors, sqrt(diag(H^-1 J H^-1)) with H the observed
        information and J the sum of the points' score outer products at `params`: the SEs
        that stay valid when the normal mixture is misspecified (issue 21). Same keys and NaN
        rules as `se`.
    rate_empirical : float
        Plain EM's observed linear rate, sqrt(d_last / d_previous) from the last two rises d of
        the log-likelihood. NaN for ``"squarem"``, with fewer than two iterations, or when one
        of the two rises is not positive.
    rate_theory : float
        EM's theoretical linear rate at `params`: the largest eigenvalue of
        I_complete^-1 I_missing, the fraction of missing information.
    runtime_s : float
        This fit's share, in seconds, of the wall time of its batch's compiled engine call (the
        iterations and the polish to the limit, for every row at once), divided among the
        batch's fits in proportion to their `loglik_evals`. Input checks, start values,
        standard errors and rates are not included, nor is loading (or compiling) the engine:
        that is done before the clock starts. Not reproducible, unlike every other field.
    model : str
        The model fitted (``"pi"``, ``"equal_var"`` or ``"full"``).
    method : str
        The method used (``"em"`` or ``"squarem"``).
    stopping : str
        The stopping rule: ``"abs"``, ``"rel"``, ``"aitken"``, ``"score"`` or ``"param"``
        (see `fit`).
    distance_to_limit : float
        For a fit a stopping rule or the cap ended (``"converged"``, ``"premature"``,
        ``"saddle"``, ``"max_iterations"``): how far `params` lie from the limit of the same
        iteration, max over the estimated parameters of abs(theta_stop - theta_limit) /
        SE(theta_limit). The limit is where the iteration, continued from the path's furthest
        such stop (by SQUAREM, with Newton's method only as a certified finish), reaches a
        point of positive definite information whose Newton decrement and EM step are below
        1e-4 SE (docs/design.md section 2). NaN for other statuses, where the iteration
        leaves the parameter space (no limit), and where no SE exists (a saddle).
    loglik_gap_to_limit : float
        The log-likelihood still to gain: loglik at the limit (or where the iteration stalled,
        or the budget ran out) minus `loglik`; NaN where no limit exists.
    polish_evals : int
        E-steps the engine's polish spent; not counted in `loglik_evals` (nor are the
        continuation rounds of emsim.limit).
    trace : pandas.DataFrame or None
        Every iterate when asked for (``trace=True``), else None. One row per accepted
        iteration, row 0 being the start; columns ``iteration``, the model's estimated
        parameters (``"equal_var"``: ``pi, mu1, mu2, sigma1, sigma2``, the two sigmas equal),
        ``loglik``, ``diff_loglik`` (the rise from the previous row; NaN in row 0) and
        ``loglik_evals`` (cumulative).

    Examples
    --------
    >>> import numpy as np
    >>> import emsim
    >>> y = emsim.simulate(500, mu=(6, 2), sigma=1, pi=0.3, rng=np.random.default_rng(1))
    >>> result = emsim.fit(y, model="equal_var")
    >>> result.status, result.model, result.method
    ('converged', 'equal_var', 'em')
    >>> {name: round(value, 2) for name, value in result.params.items()}
    {'pi': 0.31, 'mu1': 5.84, 'mu2': 2.01, 'sigma1': 1.08, 'sigma2': 1.08}
    >>> {name: round(value, 2) for name, value in result.se.items()}
    {'pi': 0.02, 'mu1': 0.1, 'mu2': 0.07, 'sigma1': 0.04, 'sigma2': 0.04}
    >>> result.trace is None
    True
    """

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
    # Sandwich (Huber-White) SEs, H^-1 J H^-1 at the estimate (`information.sandwich_se`).
    se_sandwich: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchFitResult:
    """The results of `fit_batch`: one entry per row of the data in every array.

    Row r holds exactly what `fit` returns for that row alone (`row` builds that `FitResult`),
    except `runtime_s`, which shares out the batch's time.

    Attributes
    ----------
    status : numpy.ndarray of str (object), shape (replicates,)
        Each fit's status, as `FitResult.status`.
    iterations : numpy.ndarray of int64
        Accepted iterations, as `FitResult.iterations`.
    loglik : numpy.ndarray of float64
        Final log-likelihoods.
    loglik_start : numpy.ndarray of float64
        Log-likelihoods at the starts.
    loglik_evals : numpy.ndarray of int64
        Log-likelihood evaluations, the start's included.
    params : dict of str to numpy.ndarray of float64
        Final values by parameter name (``pi``, ``mu1``, ``mu2``, ``sigma1``, ``sigma2``), as
        fitted (not aligned to any truth).
    se : dict of str to numpy.ndarray of float64
        Standard errors by parameter name; NaN where not estimated or not finite.
    se_sandwich : dict of str to numpy.ndarray of float64
        Sandwich standard errors by parameter name, as `FitResult.se_sandwich`.
    rate_empirical : numpy.ndarray of float64
        Plain EM's observed linear rates (NaN for SQUAREM).
    rate_theory : numpy.ndarray of float64
        EM's theoretical rates at the estimates.
    runtime_s : numpy.ndarray of float64
        Each fit's share of the batch's wall time (see `FitResult.runtime_s`); they sum to the
        time the batch spent in the engine and in computing standard errors.
    model : str
        The model fitted.
    method : str
        The method used.
    stopping : str
        The stopping rule.
    distance_to_limit, loglik_gap_to_limit : numpy.ndarray of float
        Per row, as in `FitResult`.
    polish_evals : numpy.ndarray of int
        Per row, as in `FitResult`.
    traces : list of (pandas.DataFrame or None)
        Per row, the trace (as `FitResult.trace`) or None for rows not traced; an empty list
        when no row was traced.

    Examples
    --------
    >>> import numpy as np
    >>> import emsim
    >>> Y = np.stack(
    ...     [emsim.simulate(100, (6, 2), 1, 0.3, np.random.default_rng(s)) for s in range(3)]
    ... )
    >>> batch = emsim.fit_batch(Y, model="full")
    >>> len(batch), batch.model
    (3, 'full')
    >>> batch.status
    array(['converged', 'converged', 'converged'], dtype=object)
    >>> first = batch.row(0)
    >>> first.status, first.params["pi"] == float(batch.params["pi"][0])
    ('converged', True)
    >>> batch.traces
    []
    """

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
    se_sandwich: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.status)

    def rows(self, picked: slice) -> BatchFitResult:
        """The results of the rows `picked`, as a batch of their own."""
        n_rows = len(self)

        def take(value: Any) -> Any:
            if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == n_rows:
                return value[picked]
            if isinstance(value, dict):
                return {name: column[picked] for name, column in value.items()}
            if isinstance(value, list):
                return value[picked]
            return value

        return replace(self, **{f.name: take(getattr(self, f.name)) for f in fields(self)})

    def row(self, i: int) -> FitResult:
        """Row `i` as a `FitResult`: what `fit` returns for that row's data alone."""
        return FitResult(
            status=str(self.status[i]),
            iterations=int(self.iterations[i]),
            loglik=float(self.loglik[i]),
            loglik_start=float(self.loglik_start[i]),
            loglik_evals=int(self.loglik_evals[i]),
            params={k: float(v[i]) for k, v in self.params.items()},
            se={k: float(v[i]) for k, v in self.se.items()},
            se_sandwich={k: float(v[i]) for k, v in self.se_sandwich.items()},
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
    check_data_kind(y)
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
    # One set of argument types for the engine, whatever the caller passed (a read-only or
    # unaligned array is copied): each other type would be compiled again, on the clock.
    return np.require(data, np.float64, ("C_CONTIGUOUS", "ALIGNED", "WRITEABLE"))


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
    """Starting values from splitting the sorted data at the (1 - pi0) quantile.

    The upper side of each row (a share pi0 of its points) starts component 1 and the lower side
    component 2, each at its mean and standard deviation (ddof 0). This is what `fit` and
    `fit_batch` use for the means and sigmas that `start` leaves out, and the study's
    ``quantile`` start strategy.

    Parameters
    ----------
    y : array_like of float, shape (n,) or (replicates, n)
        The data, one row per data set; at least 2 points per row.
    pi0 : float or array_like of float, default 0.5
        Weight of component 1 and the start of pi, one value or one per row. The lower side
        gets round((1 - pi0) * n) points, clipped so that each side keeps at least one.

    Returns
    -------
    dict of str to numpy.ndarray of float64
        ``pi`` (= pi0), ``mu1``, ``mu2``, ``sigma1``, ``sigma2``, each of shape (replicates,)
        (shape (1,) for 1-D `y`). A side without spread (one point, or ties) gets a sigma of a
        tenth of the row's standard deviation.

    Examples
    --------
    >>> import emsim
    >>> start = emsim.quantile_start([1.0, 2.0, 3.0, 10.0, 11.0, 12.0])
    >>> {name: round(float(value[0]), 4) for name, value in start.items()}
    {'pi': 0.5, 'mu1': 11.0, 'mu2': 2.0, 'sigma1': 0.8165, 'sigma2': 0.8165}
    >>> start = emsim.quantile_start([[1.0, 2.0, 3.0, 10.0, 11.0, 12.0]], pi0=1 / 3)
    >>> float(start["mu1"][0]), float(start["mu2"][0])
    (11.5, 4.0)
    """
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


def _sigma_floor(y: np.ndarray) -> np.ndarray:
    """Where a component has collapsed onto a point (docs/design.md section 1, Safeguards)."""
    return np.minimum(
        SIGMA_FLOOR_REL * y.std(axis=1), SIGMA_FLOOR_WITHIN_REL * working_scale.within_scale(y)
    )


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


def _start_matrix(
    y: np.ndarray,
    model: str,
    start: ParamValues,
    known: ParamValues,
    units: working_scale.WorkingScale,
) -> np.ndarray:
    """The start of every row in working units (`y` is in them; `start` and `known`, checked
    here, are in the user's)."""
    n_rows = y.shape[0]
    start, known = check_start_known(model, start, known)
    check_known_given(model, known)
    matrix = np.empty((n_rows, len(PARAMS)))
    for j, name in enumerate(PARAMS):
        if name in known_params(model):
            value = _column(known, name, n_rows, "known")
        else:
            value = _column(start, name, n_rows, "start")
        matrix[:, j] = np.nan if value is None else value
    working_scale.params_in(matrix, PARAMS, units)

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
    score_tolerance: float = DEFAULT_SCORE_TOLERANCE,
) -> BatchFitResult:
    """Fit a two-component Gaussian mixture to every row of `Y`.

    The same fit as `fit`, for many data sets of one length at once: the whole batch runs as one
    compiled call that releases the GIL, and row r equals ``fit(Y[r], ...)`` bit for bit (with
    that row's start and known values).

    Parameters
    ----------
    Y : array_like of float, shape (replicates, n)
        The data sets, one per row: finite numbers, n >= 2.
    model : {"full", "equal_var", "pi"}, default "full"
        What is estimated; see `fit`.
    method : {"em", "squarem"}, default "em"
        Plain EM or SQUAREM; see `fit`.
    start : dict of str to (float or array_like), optional
        Starting values as in `fit`; each value is one number for every row or an array of
        `replicates` numbers. Left-out values are filled in per row as `fit` does.
    known : dict of str to (float or array_like), optional
        The held-known values as in `fit`, each one number or one per row.
    tolerance : float, default 1e-5
        The convergence threshold on the rise of the total log-likelihood; see `fit`.
    max_iterations : int, default 1000
        The cap on iterations; see `fit`.
    trace : bool or array_like of bool, default False
        Keep the iterates of every row (True), of none (False), or of the rows marked in an
        array of `replicates` booleans.
    stopping : {"abs", "rel", "aitken", "score", "param"}, default "abs"
        The stopping rule; see `fit`. `fit_batch_by_rule` fits under several at once.
    premature_threshold : float, default 0.1
        See `fit`.
    score_tolerance : float, default 0.01
        The ``"score"`` rule's threshold in standard errors; see `fit`.

    Returns
    -------
    BatchFitResult
        One entry per row in every field.

    Raises
    ------
    ValueError
        For invalid input only (as `fit`, and a `start`, `known` or `trace` array whose
        length is not `replicates`); every fit of valid input ends with a status.

    See Also
    --------
    fit : one data set.

    Examples
    --------
    >>> import numpy as np
    >>> import emsim
    >>> Y = np.stack(
    ...     [emsim.simulate(100, (6, 2), 1, 0.3, np.random.default_rng(s)) for s in range(3)]
    ... )
    >>> batch = emsim.fit_batch(Y, start={"pi": [0.2, 0.3, 0.4]})
    >>> batch.status
    array(['converged', 'converged', 'converged'], dtype=object)
    >>> batch.params["pi"].round(2), batch.se["pi"].round(2)
    (array([0.2 , 0.32, 0.33]), array([0.04, 0.05, 0.05]))
    >>> single = emsim.fit(Y[2], start={"pi": 0.4})
    >>> single.params == batch.row(2).params, single.loglik == batch.row(2).loglik
    (True, True)

    The pi model with known values per row, tracing only the first row:

    >>> known = {"mu1": 6.0, "mu2": 2.0, "sigma1": 1.0, "sigma2": [1.0, 1.0, 1.0]}
    >>> batch = emsim.fit_batch(Y, model="pi", known=known, trace=[True, False, False])
    >>> [trace is None for trace in batch.traces]
    [False, True, True]
    >>> batch.se["mu1"]
    array([nan, nan, nan])
    """
    results = fit_batch_by_rule(
        Y,
        model,
        method,
        start,
        known,
        {stopping: score_tolerance if stopping == "score" else tolerance},
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


@dataclass(frozen=True)
class PreparedData:
    """Data sets checked and put in working units once (`prepare_data`), for many fits of the
    same data (a study's chunk fits each of its data sets under 30 or more settings): the
    working-unit choice and the sigma floor each partition every row."""

    y: np.ndarray  # in working units (docs/design.md section 1, "Units")
    units: working_scale.WorkingScale

    @cached_property
    def sigma_floor(self) -> np.ndarray:
        # Only when a model moves a sigma: the pi model (the seed's fit) needs no pass for it.
        with np.errstate(all="ignore"):
            return _sigma_floor(self.y)

    def repeated(self, times: int) -> PreparedData:
        """These data sets `times` over, one after another (`fit_starts_by_rule`)."""
        units = working_scale.WorkingScale(
            *(np.tile(a, times) for a in (self.units.scale, self.units.shift, self.units.rescaled))
        )
        stacked = PreparedData(np.tile(self.y, (times, 1)), units)
        if "sigma_floor" in self.__dict__:  # a row's floor is its data's alone
            stacked.__dict__["sigma_floor"] = np.tile(self.sigma_floor, times)
        return stacked


def prepare_data(Y: Any) -> PreparedData:
    """`Y` (replicates x n) as `fit_batch_by_rule` takes it, prepared for any number of fits.
    Raises ValueError for data `fit_batch` would refuse."""
    given = _as_data(Y)
    # Data far from unit scale are fitted in working units, and the results carried back.
    units = working_scale.choose(given)
    return PreparedData(working_scale.data_in(given, units), units)


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

    The rules share one path of iterates (a rule only decides where to stop on it) and the
    path's one limit, found from the last converged stop, so the batch costs what its
    latest-stopping rule costs. Each rule's fit at its stop equals
    `fit_batch(..., stopping=rule, tolerance=tolerances[rule])` exactly; the limit measures
    (`distance_to_limit`, `loglik_gap_to_limit`, `polish_evals`) agree with it to the polish's
    tolerance, as the limit is sought from a point nearer to it.
    """
    check_model(model)
    check_method(method)
    tolerances = dict(tolerances or {DEFAULT_STOPPING: 1e-5})
    if not tolerances:
        raise ValueError("give at least one stopping rule")
    rules = tuple(tolerances)
    tolerance_values = np.array([_check_tolerance(r, tolerances[r]) for r in rules])
    max_iterations = check_max_iterations(max_iterations, MAX_ITERATIONS_LIMIT)
    if not (np.isfinite(premature_threshold) and premature_threshold > 0):
        raise ValueError(f"premature_threshold must be > 0, got {premature_threshold}")
    data = Y if isinstance(Y, PreparedData) else prepare_data(Y)
    y, units = data.y, data.units
    n_rows = y.shape[0]
    traced = np.broadcast_to(np.asarray(trace, dtype=bool), (n_rows,)).copy()
    with np.errstate(all="ignore"):
        start_matrix = _start_matrix(y, model, start, known, units)
        # The pi model never moves a sigma, so it needs no floor.
        sigma_floor = np.zeros(n_rows) if model == "pi" else data.sigma_floor

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
    elapsed = out.seconds
    # The engine spent its time on the shared path and on each rule's polish; a rule's fit
    # is charged for its own E-steps only (what it costs alone), the polish apart.
    spent = out.path_evals.sum() + out.polish_evals.sum()
    seconds_per_eval = elapsed / spent if spent > 0 else 0.0
    # Data on one point (a tiny, coarsely rounded sample) leave every component collapsed: a
    # status, not an error, so one such replicate cannot stop a study.
    status = out.status.copy()
    if model != "pi":
        status[y.min(axis=1) == y.max(axis=1)] = "degenerate"
    at_stop = _information_at_stops(y, out, model)
    one_normal = None
    if model != "pi":
        one_normal = one_normal_loglik(y)
        _no_information_on_one_normal(out, at_stop, one_normal, y.shape[1])
    limit = _path_limit(y, out, model, method, sigma_floor, one_normal)
    return {
        rule: working_scale.result_out(
            _rule_result(
                y,
                out,
                k,
                rule,
                status[:, k].copy(),
                at_stop[k],
                limit,
                model,
                method,
                traced,
                seconds_per_eval,
                premature_threshold,
            ),
            y.shape[1],
            units,
        )
        for k, rule in enumerate(rules)
    }


def fit_starts_by_rule(
    data: PreparedData,
    starts: list[ParamValues],
    trace: bool | np.ndarray = False,
    **settings: Any,
) -> list[dict[str, BatchFitResult]]:
    """`fit_batch_by_rule` of the same data sets from each of `starts`, in one call: the
    starts' rows are stacked, so that the limit's search (`emsim.limit`), whose steps cost
    mostly numpy's per-call overhead on small matrices, takes its steps once for all of them
    (a study's fit job: 14-30% less CPU for the full and equal_var models at n = 50 and 500).
    Row for row the results are those of one call per start, as every row is fitted alone;
    `runtime_s` shares out this call's time. `settings` are fit_batch_by_rule's other
    arguments."""
    n_rows = data.y.shape[0]
    names = set(starts[0] or {})
    if any(set(start or {}) != names for start in starts):
        raise ValueError("the starts must give values for the same parameters")
    traced = np.broadcast_to(np.asarray(trace, dtype=bool), (n_rows,))
    stacked = {
        name: np.concatenate([np.broadcast_to(start[name], (n_rows,)) for start in starts])
        for name in (starts[0] or {})
    }
    together = fit_batch_by_rule(
        data.repeated(len(starts)),
        start=stacked or None,
        trace=np.tile(traced, len(starts)),
        **settings,
    )
    return [
        {
            rule: result.rows(slice(i * n_rows, (i + 1) * n_rows))
            for rule, result in together.items()
        }
        for i in range(len(starts))
    ]


def _se_by_name(se_estimated: np.ndarray, model: str, n_rows: int) -> dict[str, np.ndarray]:
    se = {name: np.full(n_rows, np.nan) for name in PARAMS}
    names = estimated_params(model) if model != "equal_var" else ("pi", "mu1", "mu2", "sigma1")
    for k, name in enumerate(names):
        se[name] = se_estimated[:, k]
    if model == "equal_var":
        se["sigma2"] = se["sigma1"].copy()
    return se


def _information_at_stops(y, out, model) -> list[tuple[np.ndarray, ...]]:
    """(se, rate_theory, positive, sandwich se) at each rule's stop. Rules that stopped a row
    at the same iteration stopped at the same iterate (one shared path): its information is
    computed once."""
    found: list[tuple[np.ndarray, ...]] = []
    for k in range(out.params.shape[1]):
        todo = np.ones(y.shape[0], dtype=bool)
        copies = []
        for j in range(k):
            same = todo & (out.iterations[:, k] == out.iterations[:, j])
            same &= out.status[:, k] == out.status[:, j]
            copies.append((j, same))
            todo &= ~same
        rows = np.flatnonzero(todo)
        if rows.size == y.shape[0]:
            found.append(
                information_with_sandwich(
                    y,
                    np.ascontiguousarray(out.params[:, k]),
                    np.ascontiguousarray(out.stats[:, k]),
                    model,
                )
            )
            continue
        wholes = tuple(np.empty_like(a) for a in found[0])
        if rows.size:
            computed = information_with_sandwich(
                y[rows],
                np.ascontiguousarray(out.params[rows, k]),
                np.ascontiguousarray(out.stats[rows, k]),
                model,
            )
            for whole, part in zip(wholes, computed, strict=True):
                whole[rows] = part
        for j, same in copies:
            for whole, earlier in zip(wholes, found[j], strict=True):
                whole[same] = earlier[same]
        found.append(wholes)
    return found


def _no_information_on_one_normal(out, at_stop, one_normal, n) -> None:
    """A stop whose log-likelihood is one normal's (`one_normal`, per row) is on the
    one-component set, where the observed information is singular whatever rounding made of
    it: no SEs there, and the information is not positive definite (limit.on_one_normal,
    docs/design.md section 2)."""
    for k, (se, _, positive, sandwich) in enumerate(at_stop):
        rows = on_one_normal(out.loglik[:, k], one_normal, n)
        se[rows] = np.nan
        sandwich[rows] = np.nan
        positive[rows] = False


@dataclass(frozen=True)
class _PathLimit:
    """The limit of each row's path, shared by all the rules it stopped (and the cap): NaN
    where no fit on the path was stopped by a rule or the cap (emsim.limit.Limits)."""

    params: np.ndarray  # rows x 5
    loglik: np.ndarray
    se: dict[str, np.ndarray]
    found: np.ndarray  # a maximum, certified
    stationary: np.ndarray  # stalled where the information is not positive definite
    failed: np.ndarray  # the iteration left the parameter space: no limit
    evals: np.ndarray  # E-steps of the continuation beyond the engine's polish


def _path_limit(y, out, model, method, sigma_floor, one_normal) -> _PathLimit:
    """From where the engine's polish ended (it polishes the path once, from its furthest stop
    made by a rule or the cap; docs/design.md 2), the certified limit (emsim.limit)."""
    n_rows = y.shape[0]
    polished = out.polish_evals > 0
    has_limit = polished.any(axis=1)
    rows = np.arange(n_rows)
    # Any polished rule's copy will do: the engine gives them all the same limit.
    k = polished.argmax(axis=1)
    start = np.ascontiguousarray(out.limit[rows, k])
    start[~has_limit] = np.nan
    stop_loglik = np.where(polished, out.loglik, np.inf).min(axis=1)
    found = find_limits(
        y, start, out.limit_loglik[rows, k], stop_loglik, model, sigma_floor, method, one_normal
    )
    loglik = np.where(has_limit & ~found.failed, found.loglik, np.nan)
    return _PathLimit(
        found.params,
        loglik,
        _se_by_name(found.se, model, n_rows),
        found.certified,
        found.stationary,
        found.failed,
        found.evals,
    )


def _rule_result(
    y,
    out,
    k,
    rule,
    status,
    at_stop,
    limit,
    model,
    method,
    traced,
    seconds_per_eval,
    threshold,
):
    """One stopping rule's BatchFitResult, with the statuses decided beside the engine
    (docs/design.md 2). A fit the rule ended stays `converged` only where its observed
    information (`at_stop`) is positive definite and the path's certified `limit` (a maximum)
    is within `threshold` SEs; it is `saddle` where the iteration stalls at a point whose
    information is not positive definite, and `premature` otherwise (it moves on)."""
    n_rows = y.shape[0]
    names = estimated_params(model)
    params = np.ascontiguousarray(out.params[:, k])
    se_estimated, rate_theory, positive, sandwich_estimated = at_stop
    se = _se_by_name(se_estimated, model, n_rows)
    polished = out.polish_evals[:, k] > 0
    with np.errstate(all="ignore"):
        # In units of the limit's SE (the stop's where the limit has none).
        gaps = np.stack(
            [
                np.abs(params[:, j] - limit.params[:, j])
                / np.where(np.isfinite(limit.se[name]), limit.se[name], se[name])
                for name, j in ((name, PARAMS.index(name)) for name in names)
            ],
            axis=1,
        )
        distance = np.where(np.isfinite(gaps).all(axis=1), gaps.max(axis=1), np.nan)
    # No limit exists where the iteration leaves the parameter space.
    measured = polished & ~limit.failed
    distance = np.where(measured, distance, np.nan)
    loglik_gap = np.where(measured, limit.loglik - out.loglik[:, k], np.nan)
    stopped = status == USABLE_STATUS
    status[stopped & limit.stationary] = "saddle"
    # A fit whose limit is no certified maximum, or one it is far from, is not usable; nor is
    # one whose SEs do not exist, though its iteration moves on to a maximum nearby.
    far = (distance > threshold) | ~limit.found | ~positive
    status[stopped & ~limit.stationary & far] = "premature"

    evals = out.loglik_evals[:, k]
    return BatchFitResult(
        status=status,
        iterations=out.iterations[:, k].copy(),
        loglik=out.loglik[:, k].copy(),
        loglik_start=out.loglik_start[:, k].copy(),
        loglik_evals=evals.copy(),
        params={name: params[:, j].copy() for j, name in enumerate(PARAMS)},
        se=se,
        se_sandwich=_se_by_name(sandwich_estimated, model, n_rows),
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
    import pandas as pd

    columns = [1 + PARAMS.index(name) for name in names]
    frames: list[pd.DataFrame | None] = []
    for trace, last in zip(traces, iterations, strict=True):
        if trace is None:
            frames.append(None)
            continue
        trace = trace[: last + 1]
        # Built from one dict: a column set on a frame costs pandas about 1 ms, and a study's
        # first chunk of every cell has traced rows in each of its batches.
        frame = {"iteration": trace[:, 0].astype(np.int64)}
        frame.update({name: trace[:, j] for name, j in zip(names, columns, strict=True)})
        frame["loglik"] = trace[:, 6]
        frame["diff_loglik"] = trace[:, 7]
        frame["loglik_evals"] = trace[:, 8].astype(np.int64)
        frames.append(pd.DataFrame(frame))
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
    score_tolerance: float = DEFAULT_SCORE_TOLERANCE,
) -> FitResult:
    """Fit a two-component Gaussian mixture to one data set by EM or SQUAREM.

    The mixture is pi N(mu1, sigma1^2) + (1 - pi) N(mu2, sigma2^2). The fit starts at `start`
    (filled in as described below), iterates until the stopping rule or the iteration cap ends
    it, and always returns a result with a status: a failure (a collapsing component, pi on its
    boundary, NaN, a falling log-likelihood) is a status, never an exception. It is row 0 of
    `fit_batch` on a batch of one.

    Parameters
    ----------
    y : array_like of float, shape (n,)
        The data: finite numbers, at least 2 of them.
    model : {"full", "equal_var", "pi"}, default "full"
        What is estimated. ``"full"``: pi, mu1, mu2, sigma1, sigma2. ``"equal_var"``: pi, mu1,
        mu2 and one common sigma (reported as both sigmas). ``"pi"``: pi only, with mu1, mu2,
        sigma1, sigma2 held at their `known` values.
    method : {"em", "squarem"}, default "em"
        ``"em"``: plain EM, one M-step and one log-likelihood evaluation per iteration.
        ``"squarem"``: SQUAREM (Varadhan & Roland 2008), whose iterations extrapolate two EM
        steps and cost 2 to 4 evaluations each, and which falls back to plain EM's step
        whenever the extrapolation is invalid or lowers the log-likelihood.
    start : dict of str to float, optional
        Starting values by name, any of ``pi``, ``mu1``, ``mu2``, ``sigma1``, ``sigma2`` (for
        ``"equal_var"`` also ``sigma``, which sets both sigmas). pi must lie in (0, 1) and
        sigmas be > 0. What is left out is filled in: pi with 0.5, the means and sigmas from
        `quantile_start` at the start's pi (the data split at the (1 - pi) quantile, the upper
        side starting component 1). ``"equal_var"`` starts its common sigma at
        sqrt((sigma1^2 + sigma2^2) / 2). A value for a parameter the model holds known is
        ignored. None (the default) means all of them filled in.
    known : dict of str to float, optional
        Values of the parameters the model holds fixed, required for each of them: mu1, mu2,
        sigma1 and sigma2 for ``"pi"``; nothing for the other models. Values for parameters
        the model estimates are refused (ValueError): a model either holds a parameter or
        estimates it.
    tolerance : float, default 1e-5
        The threshold of the stopping rule (`stopping`); under the seed's rule the fit stops
        after the first iteration whose rise of the log-likelihood is below `tolerance`.
        The rise is of the *total* log-likelihood (the sum over the n points),
        not of the mean per point as scikit-learn's ``tol``, so the same tolerance is stricter
        for larger n. Must be finite and > 0.
    max_iterations : int, default 1000
        The cap on iterations (M-steps for ``"em"``, SQUAREM cycles for ``"squarem"``); a fit
        that reaches it without converging ends as ``"max_iterations"``. A positive integer.
    trace : bool, default False
        Keep every iterate in `FitResult.trace`.
    stopping : {"abs", "rel", "aitken", "score", "param"}, default "abs"
        The stopping rule, with l_k the log-likelihood after iteration k and d_k = l_k -
        l_(k-1): ``"abs"`` (the seed's) stops when d_k < `tolerance`; ``"rel"`` when
        d_k < `tolerance` * abs(l_k); ``"aitken"`` when Aitken's estimate of the gain still to
        come, d_k / (1 - d_k / d_(k-1)), is below `tolerance` (Boehning et al. 1994; McNicholas
        et al. 2010); ``"score"`` when the Newton decrement sqrt(g' I^-1 g) (g the score, I
        the observed information, positive definite) is below `score_tolerance` standard
        errors; ``"param"`` when no parameter changed by `tolerance` or more in the iteration.
    premature_threshold : float, default 0.1
        A fit the rule ended is ``"premature"`` when `distance_to_limit` exceeds this many
        standard errors.
    score_tolerance : float, default 0.01
        The ``"score"`` rule's threshold, in standard errors (`tolerance` is not used by it).

    Returns
    -------
    FitResult
        Status, iterations, log-likelihoods, estimates, standard errors, EM's rates and the
        fit's time; see `FitResult` for each field.

    Raises
    ------
    ValueError
        For invalid input only: `y` not 1-D, holding text, NaN or infinite values, or fewer
        than 2 points; an unknown model, method or parameter name; a missing known value; a
        start or known value that is not finite, a start pi outside [1e-6, 1 - 1e-6] (where
        the fit would end ``"boundary"`` at once) or a sigma <= 0; a tolerance <= 0 or a
        max_iterations that is not a positive integer.
    TypeError
        For a `y` that numpy cannot make into an array of numbers at all (such as a dict), or
        would make into the wrong ones: dates or times, complex numbers, booleans, a masked
        array; for a max_iterations that is not an integer (such as True).

    See Also
    --------
    fit_batch : many data sets of one length at once.
    quantile_start : the default starting values.

    Notes
    -----
    Each iteration's step is checked before it is kept: a pi outside [1e-6, 1 - 1e-6] ends the
    fit as ``"boundary"``, a sigma below its floor (1e-6 times the data's standard deviation,
    at most 1.6e-5 times the within-component scale) as ``"degenerate"``, a non-finite value
    as ``"nonfinite"``, and a fall of the log-likelihood by more than 1e-10 * (abs(loglik) + n)
    as ``"decreased"``; the rejected step is not kept.
    A start that fails these checks ends the fit at once, with 0 iterations.

    Examples
    --------
    >>> import numpy as np
    >>> import emsim
    >>> y = emsim.simulate(500, mu=(6, 2), sigma=1, pi=0.3, rng=np.random.default_rng(1))
    >>> result = emsim.fit(y)
    >>> result.status
    'converged'
    >>> {name: round(value, 2) for name, value in result.params.items()}
    {'pi': 0.32, 'mu1': 5.82, 'mu2': 2.0, 'sigma1': 1.11, 'sigma2': 1.07}
    >>> {name: round(value, 2) for name, value in result.se.items()}
    {'pi': 0.03, 'mu1': 0.14, 'mu2': 0.08, 'sigma1': 0.1, 'sigma2': 0.06}
    >>> round(result.rate_empirical, 2), round(result.rate_theory, 2)
    (0.84, 0.84)

    SQUAREM reaches the same maximum with fewer log-likelihood evaluations:

    >>> accelerated = emsim.fit(y, method="squarem")
    >>> accelerated.status, round(accelerated.loglik, 2) == round(result.loglik, 2)
    ('converged', True)
    >>> accelerated.loglik_evals < result.loglik_evals
    True

    The seed's model: only pi is estimated, the rest is known; the trace shows each iteration:

    >>> known = {"mu1": 6, "mu2": 2, "sigma1": 1, "sigma2": 1}
    >>> result = emsim.fit(y, model="pi", start={"pi": 0.5}, known=known, trace=True)
    >>> result.status, result.iterations, result.loglik_evals
    ('converged', 5, 6)
    >>> print(result.trace.round(4).to_string(index=False))
     iteration     pi     loglik  diff_loglik  loglik_evals
             0 0.5000 -1052.6364          NaN             1
             1 0.3245 -1018.3989      34.2375             2
             2 0.3095 -1018.1167       0.2822             3
             3 0.3081 -1018.1142       0.0024             4
             4 0.3080 -1018.1142       0.0000             5
             5 0.3080 -1018.1142       0.0000             6

    A failure is a status, not an exception:

    >>> emsim.fit(y, max_iterations=5).status
    'max_iterations'
    >>> emsim.fit(np.full(10, 3.0)).status
    'degenerate'
    """
    check_data_kind(y)
    check_start_pi(start)
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
        score_tolerance,
    )
    return result.row(0)
