"""Performance and convergence measures of the study (docs/design.md section 6).

The formulas are those of Morris, White & Crowther (2019, Table 6). Every measure is computed
over the replicates of one group (cell x model x method x stopping x start [x parameter]) whose
estimate is usable, i.e. whose status is ``converged``; every other status counts as a failure
and is missing for the performance measures. Each performance row also comes in a ``common``
set: the replicates in which every method and stopping rule gave a usable fit. Groups with fewer
than two usable estimates give NaN for the sd-based measures instead of raising or warning,
because sparse or failing cells are an expected outcome of a simulation study, not an error.

``equal_var`` estimates one common sigma, which the fit rows store in both ``est_sigma1`` and
``est_sigma2``. It is reported as a single parameter ``sigma`` (estimate ``est_sigma1``, SE
``se_sigma1``) so that the one estimate is not counted twice.

The true value of a parameter is what its estimator converges to: the data-generating value
where the model holds (a normal cell, and for ``equal_var`` a cell with ``sigma1 == sigma2``),
and elsewhere the pseudo-true value (`emsim.pseudo_true`: non-normal families, and equal_var's
parameters in a cell with unequal sigmas), population EM's fixed point from the data-generating
values. The `estimands` table lists both per cell, model and parameter, with the highest fixed
point found beside them (docs/design.md section 6).
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist

import numpy as np
import pandas as pd
from pandas.core.groupby import DataFrameGroupBy

from emsim.families import NORMAL, family_from_label
from emsim.models import DEFAULT_STOPPING, MODELS, STATUSES, USABLE_STATUS
from emsim.pseudo_true import fixed_points
from emsim.study.schema import (
    BEST_START,
    CELL_KEYS,
    FAMILY,
    FIT_ID,
    PROCEDURE,
    ROW_KEY,
)

BEST = BEST_START
CONVERGED = USABLE_STATUS
# Statuses whose fits cannot be the derived start `best`: a nonfinite fit has no comparable
# log-likelihood. Other failures compete on their log-likelihood, as a user picking the highest
# one would let them, and make `best` a failure when they win.
BEST_EXCLUDED_STATUSES: tuple[str, ...] = ("nonfinite",)
GROUP_KEYS: tuple[str, ...] = CELL_KEYS + FIT_ID
# One fit of one replicate for the best-start derivation: the start varies within it.
REPLICATE_KEYS: tuple[str, ...] = ("cell_id", "replicate", *PROCEDURE)
# The fits that one replicate's common set compares: every method and stopping rule of one
# model and start (Morris, White & Crowther 2019, section 5.2: compare methods on the
# repetitions where all of them gave an estimate).
COMMON_SET_KEYS: tuple[str, ...] = tuple(k for k in ROW_KEY if k not in ("method", "stopping"))
# Which fits a performance row is computed over: each method's own usable fits, or the
# replicates in which every compared method and stopping rule gave a usable fit.
OWN_SET, COMMON_SET = "own", "common"
SETS: tuple[str, ...] = (OWN_SET, COMMON_SET)
# The standard errors a fit records (docs/design.md section 5): from the observed information,
# and the sandwich H^-1 J H^-1, which stays valid when the model does not hold. Only the
# SE-based measures (n_se, coverage, modse, relerr_modse and their MCSEs) depend on the SE;
# the observed SE's keep their names and the sandwich's carry the suffix `_sandwich`, so a row
# holds both and bias, EmpSE and MSE are not repeated (section 6).
OBSERVED, SANDWICH = "observed", "sandwich"
SE_TYPES: tuple[str, ...] = (OBSERVED, SANDWICH)
SE_MEASURES: tuple[str, ...] = ("coverage", "modse", "relerr_modse")

PERFORMANCE_COLUMNS: tuple[str, ...] = (
    *GROUP_KEYS,
    "parameter",
    "set",
    "true_value",
    "n_rep",
    "n_ok",
    "n_se",
    "bias",
    "bias_mcse",
    "empse",
    "empse_mcse",
    "mse",
    "mse_mcse",
    "rmse",
    "rmse_mcse",
    "coverage",
    "coverage_mcse",
    "modse",
    "modse_mcse",
    "relerr_modse",
    "relerr_modse_mcse",
    # The same SE-based measures with the sandwich SE (`se_column`).
    "n_se_sandwich",
    "coverage_sandwich",
    "coverage_sandwich_mcse",
    "modse_sandwich",
    "modse_sandwich_mcse",
    "relerr_modse_sandwich",
    "relerr_modse_sandwich_mcse",
)
# The convergence table's summaries of iterations and cost; each has an MCSE column
# "<column>_mcse" (section 6).
COST_COLUMNS: tuple[str, ...] = (
    "iterations_mean",
    "iterations_median",
    "iterations_p90",
    "loglik_evals_mean",
    "runtime_mean_s",
)
CONVERGENCE_COLUMNS: tuple[str, ...] = (
    *GROUP_KEYS,
    "n_rep",
    "failure_rate",
    "failure_rate_mcse",
    *(f"rate_{status}" for status in STATUSES),
    "iterations_mean",
    "iterations_median",
    "iterations_p90",
    "loglik_evals_mean",
    "runtime_mean_s",
    "rate_empirical_mean",
    "rate_theory_mean",
    "polish_evals_mean",
    *(f"rate_{status}_mcse" for status in STATUSES),
    *(f"{column}_mcse" for column in COST_COLUMNS),
)
# Two-sided level of the order-statistic interval behind a quantile's MCSE (section 6).
QUANTILE_INTERVAL_LEVEL = 0.95

# Reporting order of parameters (equal_var's common `sigma` sits between mu2 and sigma1).
PARAMETER_ORDER: tuple[str, ...] = ("pi", "mu1", "mu2", "sigma", "sigma1", "sigma2")


def se_column(measure: str, se_type: str) -> str:
    """The performance column of an SE-based `measure` (`n_se`, a name of `SE_MEASURES`, or
    one with `_mcse`) for `se_type`: e.g. coverage_mcse -> coverage_sandwich_mcse."""
    if se_type not in SE_TYPES:
        raise ValueError(f"unknown se_type {se_type!r}; choose one of {', '.join(SE_TYPES)}")
    if se_type == OBSERVED:
        return measure
    base, mcse, _ = measure.partition("_mcse")
    return f"{base}_{se_type}{'_mcse' if mcse else ''}"


def _fit_se_column(column: str, se_type: str) -> str:
    return f"se_{column}" if se_type == OBSERVED else f"se_{se_type}_{column}"


def reported_parameters(model: str) -> tuple[str, ...]:
    """Parameters that get a row in `performance` for `model` (equal_var: pi, mu1, mu2, sigma)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    return MODELS[model]


def _column(parameter: str) -> str:
    """Suffix of the est_/se_ columns holding `parameter` (the common sigma lives in sigma1)."""
    return "sigma1" if parameter == "sigma" else parameter


def data_generating_values(rows: pd.DataFrame, parameter: str) -> pd.Series:
    """The data-generating value of `parameter` for each row (NaN for equal_var's common
    `sigma` in a cell with unequal sigmas: there is none)."""
    if parameter == "sigma":
        return rows["sigma1"].where(rows["sigma1"] == rows["sigma2"]).astype(float)
    return rows[parameter].astype(float)


def model_holds(rows: pd.DataFrame, model: str) -> pd.Series:
    """Per row: is `model` the data's model (then its true values are the data-generating
    ones)? Rows without a family column are normal (fits written before families)."""
    normal = rows[FAMILY] == NORMAL.label if FAMILY in rows else pd.Series(True, rows.index)
    if model == "equal_var":
        return normal & (rows["sigma1"] == rows["sigma2"])
    return normal


@functools.lru_cache(maxsize=256)
def _cell_fixed_points(model: str, family: str, mu1, mu2, sigma1, sigma2, pi) -> tuple:
    return fixed_points(model, family_from_label(family), (mu1, mu2), (sigma1, sigma2), pi)


_DESIGN = ["mu1", "mu2", "sigma1", "sigma2", "pi"]
_WHICH_INDEX = {"local": 0, "global": 1}


def _misspecified_cells(rows: pd.DataFrame, model: str):
    """(index, (local, global) pseudo-true dicts) of each cell of `rows` where `model` does not
    hold."""
    holds = model_holds(rows, model)
    if holds.all():
        return
    for key, cell in rows.loc[~holds].groupby([FAMILY, *_DESIGN], sort=False):
        family, *values = key
        yield cell.index, _cell_fixed_points(model, str(family), *map(float, values))


def true_values(rows: pd.DataFrame, parameter: str, model: str, which: str = "local") -> pd.Series:
    """The value the estimator of `parameter` under `model` converges to, per row: the
    data-generating value where the model holds (exactly: no quadrature), the pseudo-true value
    (`emsim.pseudo_true`) elsewhere: EM's fixed point from the data-generating values, or with
    ``which="global"`` the highest fixed point found (the data-generating value where the model
    holds: the true density is the global maximiser there)."""
    theta = data_generating_values(rows, parameter)
    column = _column(parameter)
    for index, points in _misspecified_cells(rows, model):
        theta.loc[index] = points[_WHICH_INDEX[which]][column]
    return theta


def local_is_global(rows: pd.DataFrame, model: str) -> pd.Series:
    """Per row: is the pseudo-true value (`true_values`) also the highest fixed point found?
    True where the model holds."""
    out = pd.Series(True, rows.index)
    for index, (local, best) in _misspecified_cells(rows, model):
        out.loc[index] = local == best
    return out


ESTIMAND_COLUMNS: tuple[str, ...] = (
    "cell_id",
    FAMILY,
    "model",
    "parameter",
    "dgm_value",
    "pseudo_true",
    "pseudo_true_global",
    "pseudo_true_is_global",
)


def estimands(fits: pd.DataFrame) -> pd.DataFrame:
    """One row per cell x model x reported parameter of `fits`: the data-generating value, the
    true value the measures use (`true_values`: the pseudo-true where the model does not hold),
    the highest fixed point found and whether the two agree, docs/design.md section 6."""
    parts = []
    for model, rows in fits.groupby("model", sort=False):
        cells = rows.drop_duplicates("cell_id")
        if FAMILY not in cells:
            cells = cells.assign(**{FAMILY: NORMAL.label})
        is_global = local_is_global(cells, str(model))
        for parameter in reported_parameters(str(model)):
            part = cells.loc[:, ["cell_id", FAMILY]].assign(model=model, parameter=parameter)
            part["dgm_value"] = data_generating_values(cells, parameter)
            part["pseudo_true"] = true_values(cells, parameter, str(model))
            part["pseudo_true_global"] = true_values(cells, parameter, str(model), "global")
            part["pseudo_true_is_global"] = is_global
            parts.append(part)
    if not parts:
        return _empty(ESTIMAND_COLUMNS)
    return pd.concat(parts, ignore_index=True).loc[:, list(ESTIMAND_COLUMNS)]


def coverage_z(level: float) -> float:
    """Normal quantile of a two-sided Wald interval with coverage `level`."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"coverage level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    """num / den, NaN where den is not positive (no division warnings on sparse groups)."""
    return num / den.where(den > 0)


def _sqrt(x: pd.Series) -> pd.Series:
    return np.sqrt(x.where(x >= 0))


@functools.cache
def quantile_ranks(
    n: int, p: float, level: float = QUANTILE_INTERVAL_LEVEL
) -> tuple[int, int] | None:
    """1-based ranks (j, k) of the distribution-free interval [x_(j), x_(k)] for the p-quantile
    of n values (docs/design.md section 6): with B ~ Binomial(n, p), j is the largest rank with
    P(B < j) <= (1 - level) / 2 and k the smallest with P(B >= k) <= (1 - level) / 2, so the
    interval covers the quantile with probability P(j <= B < k) >= `level` for any continuous
    distribution. None when n is too small for such ranks to exist (e.g. n < 6 for the median
    and n < 36 for the 90th percentile at level 0.95)."""
    if n < 1 or not 0.0 < p < 1.0:
        return None
    # The binomial probabilities in log space: (1 - p)^n underflows for a few hundred values.
    log_pmf = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * math.log(p)
        + (n - i) * math.log1p(-p)
        for i in range(n + 1)
    ]
    cdf = np.cumsum(np.exp(log_pmf))[:n]  # P(B <= i), i = 0 .. n - 1
    tail = (1.0 - level) / 2.0
    below = np.flatnonzero(cdf <= tail)  # i = j - 1
    above = np.flatnonzero(cdf >= 1.0 - tail)  # i = k - 1
    if not below.size or not above.size:
        return None
    return int(below[-1]) + 1, int(above[0]) + 1


def quantile_mcse(values: np.ndarray, p: float) -> float:
    """MCSE of the p-quantile of the finite `values`: the width of their order-statistic
    interval (`quantile_ranks`) over 2 z, z the normal quantile of its level, as a normal
    interval +- z SE would have it. Deterministic (no resampling); NaN when there are too few
    values for the interval."""
    finite = np.sort(values[np.isfinite(values)])
    ranks = quantile_ranks(len(finite), p)
    if ranks is None:
        return math.nan
    j, k = ranks
    return float(finite[k - 1] - finite[j - 1]) / (2.0 * coverage_z(QUANTILE_INTERVAL_LEVEL))


def _cost_mcses(grouped: DataFrameGroupBy, out: pd.DataFrame) -> None:
    """The MCSEs of the convergence table's iteration and cost summaries, into `out` (indexed
    by group): sd / sqrt(n) for a mean (n >= 2 values), `quantile_mcse` for a quantile."""
    for column, source in (
        ("iterations_mean", "_iterations"),
        ("loglik_evals_mean", "_evals"),
        ("runtime_mean_s", "_runtime"),
    ):
        stats = grouped[source].agg(["std", "count"])
        sd = stats["std"].where(stats["count"] >= 2)
        out[f"{column}_mcse"] = _ratio(sd, _sqrt(stats["count"].astype(float)))
    for column, p in (("iterations_median", 0.5), ("iterations_p90", 0.9)):
        out[f"{column}_mcse"] = grouped["_iterations"].agg(
            lambda values, p=p: quantile_mcse(values.to_numpy(dtype=float), p)
        )


def sort_rows(frame: pd.DataFrame, with_parameter: bool) -> pd.DataFrame:
    """Stable, human order: cell, model (as in MODELS), method, stopping rule, start,
    parameter, set (own first)."""
    model_rank = {m: i for i, m in enumerate(MODELS)}
    param_rank = {p: i for i, p in enumerate(PARAMETER_ORDER)}
    set_rank = {name: i for i, name in enumerate(SETS)}
    keys = frame.assign(
        _model=frame["model"].map(model_rank).fillna(len(model_rank)),
        _param=(frame["parameter"].map(param_rank) if with_parameter else 0),
        _set=(frame["set"].map(set_rank) if with_parameter and "set" in frame else 0),
    )
    by = ["cell_id", "_model", *FIT_ID]
    by += ["_param", "_set"] if with_parameter else []
    by = [c for c in by if c in keys.columns]
    order = keys.sort_values(by, kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def _best_loglik(
    fits: pd.DataFrame, exclude: tuple[str, ...], oracle_starts: tuple[str, ...]
) -> tuple[pd.Series, pd.Series]:
    """(eligible, best loglik of the row's replicate x model x method x stopping rule)."""
    fits = with_stopping(fits)
    loglik = fits["loglik"].astype(float)
    eligible = (
        ~fits["status"].isin(list(exclude))
        & ~fits["start"].isin([*oracle_starts, BEST])
        & np.isfinite(loglik)
    )
    keys = [fits[k] for k in REPLICATE_KEYS]
    best = loglik.where(eligible).groupby(keys, dropna=False).transform("max")
    return eligible, best


def best_start_gap(
    fits: pd.DataFrame,
    exclude: tuple[str, ...] = BEST_EXCLUDED_STATUSES,
    *,
    oracle_starts: tuple[str, ...],
) -> pd.Series:
    """The best start's log-likelihood minus each row's own (docs/design.md section 5): > 0 flags a
    local maximum; < 0 on an oracle start shows that `best` missed a higher maximum. NaN where
    the row's status is excluded (no comparable log-likelihood) or no start was eligible."""
    _, best = _best_loglik(fits, exclude, oracle_starts)
    comparable = ~fits["status"].isin(list(exclude)) & np.isfinite(fits["loglik"].astype(float))
    return (best - fits["loglik"].astype(float)).where(comparable)


def add_best_start(
    fits: pd.DataFrame,
    exclude: tuple[str, ...] = BEST_EXCLUDED_STATUSES,
    *,
    oracle_starts: tuple[str, ...],
) -> pd.DataFrame:
    """Append the derived start ``best`` and fill ``best_start_gap`` for every row.

    Per cell_id x replicate x model x method, ``best`` is a copy of the row with the highest final
    log-likelihood among the starts whose status is not in `exclude` (default: ``nonfinite``),
    whose loglik is finite and that are not oracles (`oracle_starts`: the data-generating values
    are not available to an estimator); ties go to the row that comes first. A group without any
    such start still gets a ``best`` row (a copy of its first row) so that ``best`` has as many
    replicates as every other start and its failures are counted. Existing ``best`` rows are
    dropped first, so this is idempotent.
    """
    fits = with_stopping(fits)
    base = fits.loc[fits["start"] != BEST].reset_index(drop=True)
    keys = list(REPLICATE_KEYS)
    eligible, _ = _best_loglik(base, exclude, oracle_starts)
    loglik = base["loglik"].astype(float)
    ranked = pd.DataFrame(
        {"_score": loglik.where(eligible, -np.inf), "_pos": np.arange(len(base))}
    ).sort_values(["_score", "_pos"], ascending=[False, True], kind="stable")
    first = base.loc[ranked.index, keys].drop_duplicates(keep="first").index
    best = base.loc[first].copy()
    base["best_start_gap"] = best_start_gap(base, exclude, oracle_starts=oracle_starts)
    best["start"] = BEST
    best["best_start_gap"] = np.where(eligible.loc[first], 0.0, np.nan)
    return pd.concat([base, best], ignore_index=True)


def with_stopping(fits: pd.DataFrame) -> pd.DataFrame:
    """Fit rows written before stopping rules were a design factor used the seed's rule, and
    those written before families were one drew normal components."""
    missing = {"stopping": DEFAULT_STOPPING, FAMILY: NORMAL.label}
    missing = {k: v for k, v in missing.items() if k not in fits.columns}
    return fits.assign(**missing) if missing else fits


def common_set(fits: pd.DataFrame) -> pd.Series:
    """Per fit row: is its replicate one in which every compared method and stopping rule
    (same cell, model and start) gave a usable fit? (docs/design.md section 6)"""
    usable = (fits["status"] == CONVERGED).astype(np.int8)
    keys = [fits[k] for k in COMMON_SET_KEYS]
    return usable.groupby(keys, dropna=False).transform("min").astype(bool)


def _se_pieces(
    part: pd.DataFrame, rows: pd.DataFrame, column: str, ok, est, theta, z: float
) -> None:
    """Into `part`, per SE type, the per-fit pieces of its SE-based measures: these share one
    set, the usable fits with a finite SE of that type (a fit row without sandwich SEs, written
    before they were recorded, has none)."""
    for se_type in SE_TYPES:
        name = _fit_se_column(column, se_type)
        se_all = rows[name].astype(float) if name in rows else pd.Series(np.nan, rows.index)
        has_se = ok & np.isfinite(se_all)
        se = se_all.where(has_se)
        # Coverage also needs a truth.
        has_interval = has_se & theta.notna()
        covered = ((est - theta).abs() <= z * se).astype(float).where(has_interval)
        part[f"_has_se_{se_type}"] = has_se.astype(np.int64)
        part[f"_est_se_{se_type}"] = est.where(has_se)
        part[f"_se2_{se_type}"] = se**2
        part[f"_covered_{se_type}"] = covered


def _long_estimates(fits: pd.DataFrame, z: float) -> pd.DataFrame:
    """One row per fit x reported parameter x set with the per-fit pieces of the measures."""
    parts = []
    in_common = common_set(fits)
    for model, rows in fits.groupby("model", sort=False):
        for parameter in reported_parameters(str(model)):
            col = _column(parameter)
            theta = true_values(rows, parameter, str(model))
            est_all = rows[f"est_{col}"].astype(float)
            for name in SETS:
                ok = (rows["status"] == CONVERGED) & np.isfinite(est_all)
                if name == COMMON_SET:
                    ok &= in_common.loc[rows.index]
                est = est_all.where(ok)
                part = rows.loc[:, list(GROUP_KEYS)].copy()
                part["parameter"] = parameter
                part["set"] = name
                part["true_value"] = theta
                part["_ok"] = ok.astype(np.int64)
                part["_est"] = est
                part["_sqerr"] = (est - theta) ** 2
                _se_pieces(part, rows, col, ok, est, theta, z)
                parts.append(part)
    if not parts:
        return _empty((*GROUP_KEYS, "parameter", "set", "true_value"))
    return pd.concat(parts, ignore_index=True)


def _se_aggregations() -> dict[str, tuple[str, str]]:
    """The group sums and moments behind each SE type's measures."""
    out = {}
    for t in SE_TYPES:
        out |= {
            f"n_se_{t}": (f"_has_se_{t}", "sum"),
            f"var_est_se_{t}": (f"_est_se_{t}", "var"),
            f"n_cov_{t}": (f"_covered_{t}", "count"),
            f"coverage_{t}": (f"_covered_{t}", "mean"),
            f"mean_se2_{t}": (f"_se2_{t}", "mean"),
            f"var_se2_{t}": (f"_se2_{t}", "var"),
        }
    return out


def _se_measures(out: pd.DataFrame, se_type: str) -> None:
    """Coverage, model SE and its relative error with their MCSEs for `se_type`, into `out`
    (Morris et al. 2019, Table 6), from the group moments of `_se_aggregations`."""
    column = functools.partial(se_column, se_type=se_type)
    n_se = out[f"n_se_{se_type}"].astype(float)
    out[column("n_se")] = out[f"n_se_{se_type}"].astype(np.int64)
    cov = out[f"coverage_{se_type}"]
    out[column("coverage")] = cov
    out[column("coverage_mcse")] = _sqrt(
        _ratio(cov * (1.0 - cov), out[f"n_cov_{se_type}"].astype(float))
    )
    sd_se = n_se >= 2
    modse = _sqrt(out[f"mean_se2_{se_type}"])
    var_se2 = out[f"var_se2_{se_type}"].where(sd_se)
    empse_se = _sqrt(out[f"var_est_se_{se_type}"].where(sd_se))
    out[column("modse")] = modse
    # Var(se^2) / (4 n ModSE^2), by the delta method.
    out[column("modse_mcse")] = _sqrt(_ratio(var_se2, 4.0 * n_se * modse**2))
    ratio = _ratio(modse, empse_se)
    out[column("relerr_modse")] = 100.0 * (ratio - 1.0)
    out[column("relerr_modse_mcse")] = (
        100.0
        * ratio
        * _sqrt(
            _ratio(var_se2, 4.0 * n_se * modse**4)
            + _ratio(pd.Series(1.0, index=out.index), 2.0 * (n_se - 1.0))
        )
    )


def performance(fits: pd.DataFrame, coverage_level: float = 0.95) -> pd.DataFrame:
    """Performance measures with Monte Carlo SEs, one row per group x parameter x set.

    Columns are `PERFORMANCE_COLUMNS` (docs/design.md section 6), formulas those of Morris,
    White & Crowther (2019, Table 6). ``n_rep`` counts the replicates of the group, ``n_ok`` the
    usable (converged) ones in the row's ``set``, over which bias, EmpSE, MSE and RMSE are
    computed, and ``n_se`` those of them with a finite SE, over which coverage, the model SE
    and its relative error are computed (the EmpSE in ``relerr_modse`` is that of this same
    set). The same SE-based measures with the sandwich SE are the columns with `_sandwich`
    (`se_column`), over the fits with a finite sandwich SE (``n_se_sandwich``). ``set`` is
    ``own`` (the group's own usable fits) or ``common`` (the replicates in which every method
    and stopping rule of the same model and start gave a usable fit). Coverage refers to the
    Wald interval est +- z se, z the normal quantile of `coverage_level`.
    """
    z = coverage_z(coverage_level)
    fits = with_stopping(fits)
    long = _long_estimates(fits, z)
    if long.empty:
        return _empty(PERFORMANCE_COLUMNS)
    keys = [*GROUP_KEYS, "parameter", "set"]
    grouped = long.groupby(keys, sort=False, dropna=False)
    # MSE's MCSE needs each fit's deviation from its group's MSE, hence the transform.
    long["_mse"] = grouped["_sqerr"].transform("mean")
    long["_dev2"] = (long["_sqerr"] - long["_mse"]) ** 2
    grouped = long.groupby(keys, sort=False, dropna=False)
    out = grouped.agg(
        true_value=("true_value", "first"),
        n_rep=("_ok", "size"),
        n_ok=("_ok", "sum"),
        mean_est=("_est", "mean"),
        var_est=("_est", "var"),
        mse=("_sqerr", "mean"),
        sum_dev2=("_dev2", "sum"),
        **_se_aggregations(),
    ).reset_index()

    n_ok = out["n_ok"].astype(float)
    sd_ok = n_ok >= 2
    out["bias"] = out["mean_est"] - out["true_value"]
    out["empse"] = _sqrt(out["var_est"].where(sd_ok))
    # No truth (equal_var's sigma in an unequal-sigma cell) means no bias, so no MCSE of it.
    out["bias_mcse"] = _ratio(out["empse"], _sqrt(n_ok)).where(out["bias"].notna())
    out["empse_mcse"] = _ratio(out["empse"], _sqrt(2.0 * (n_ok - 1.0)))
    # sum_dev2 is 0 (not NaN) for an all-missing group or one without a truth; the guards make
    # it NaN there.
    sum_dev2 = out["sum_dev2"].where(sd_ok & out["mse"].notna())
    out["mse_mcse"] = _sqrt(_ratio(sum_dev2, n_ok * (n_ok - 1.0)))
    out["rmse"] = _sqrt(out["mse"])
    out["rmse_mcse"] = _ratio(out["mse_mcse"], 2.0 * out["rmse"])
    for se_type in SE_TYPES:
        _se_measures(out, se_type)
    for name in ("n_rep", "n_ok"):
        out[name] = out[name].astype(np.int64)
    return sort_rows(out.loc[:, list(PERFORMANCE_COLUMNS)], with_parameter=True)


def convergence(fits: pd.DataFrame) -> pd.DataFrame:
    """Failure rates by status and cost per group (cell x model x method x start).

    Columns are `CONVERGENCE_COLUMNS`. Rates are over all fits of the group (``failure_rate`` has
    the binomial MCSE sqrt(F(1-F)/n_rep)). Iteration counts and the two EM rates are summarised
    over converged fits only: a capped or collapsed run has no "iterations to convergence" and no
    rate at an estimate. Log-likelihood evaluations and runtime are over all fits, since failed
    fits cost time too. ``best`` rows are copies of the chosen start's fit, so their cost is that
    one fit's, not the sum over the starts tried. Each of these summaries (`COST_COLUMNS`) has
    an MCSE ``<column>_mcse``: sd / sqrt(n) for the means, `quantile_mcse` for the median and
    the 90th percentile.
    """
    if fits.empty:
        return _empty(CONVERGENCE_COLUMNS)
    fits = with_stopping(fits)
    keys = list(GROUP_KEYS)
    status = fits["status"].astype(str)
    converged = status == CONVERGED
    work = fits.loc[:, keys].copy()
    work["_failed"] = (~converged).astype(float)
    for name in STATUSES:
        work[f"rate_{name}"] = (status == name).astype(float)
    work["_iterations"] = fits["iterations"].astype(float).where(converged)
    work["_evals"] = fits["loglik_evals"].astype(float)
    work["_runtime"] = fits["runtime_s"].astype(float)
    polish = fits["polish_evals"] if "polish_evals" in fits.columns else 0
    work["_polish"] = pd.Series(polish, index=fits.index).astype(float)
    for name in ("rate_empirical", "rate_theory"):
        value = fits[name].astype(float)
        work[f"_{name}"] = value.where(converged & np.isfinite(value))
    grouped = work.groupby(keys, sort=False, dropna=False)
    out = grouped.agg(
        n_rep=("_failed", "size"),
        failure_rate=("_failed", "mean"),
        **{f"rate_{name}": (f"rate_{name}", "mean") for name in STATUSES},
        iterations_mean=("_iterations", "mean"),
        iterations_median=("_iterations", "median"),
        loglik_evals_mean=("_evals", "mean"),
        runtime_mean_s=("_runtime", "mean"),
        polish_evals_mean=("_polish", "mean"),
        rate_empirical_mean=("_rate_empirical", "mean"),
        rate_theory_mean=("_rate_theory", "mean"),
    )
    out["iterations_p90"] = grouped["_iterations"].quantile(0.9)
    _cost_mcses(grouped, out)
    out = out.reset_index()
    f = out["failure_rate"]
    n_rep = out["n_rep"].astype(float)
    out["failure_rate_mcse"] = _sqrt(_ratio(f * (1.0 - f), n_rep))
    for name in STATUSES:
        rate = out[f"rate_{name}"]
        out[f"rate_{name}_mcse"] = _sqrt(_ratio(rate * (1.0 - rate), n_rep))
    out["n_rep"] = out["n_rep"].astype(np.int64)
    return sort_rows(out.loc[:, list(CONVERGENCE_COLUMNS)], with_parameter=False)


_TEXT_COLUMNS = frozenset({"cell_id", FAMILY, *FIT_ID, "parameter", "set"})
_INT_COLUMNS = frozenset({"n", "n_rep", "n_ok", "n_se", "n_se_sandwich"})
_BOOL_COLUMNS = frozenset({"pseudo_true_is_global"})


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    """A typed empty table, so that a study without results still writes a readable schema."""

    def dtype(c: str) -> str:
        if c in _BOOL_COLUMNS:
            return "bool"
        return "str" if c in _TEXT_COLUMNS else "int64" if c in _INT_COLUMNS else "float64"

    return pd.DataFrame({c: pd.Series(dtype=dtype(c)) for c in columns})


def concat_rows(parts: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty(columns)
    return pd.concat(parts, ignore_index=True)


def failure_table(conv: pd.DataFrame) -> pd.DataFrame:
    """Share of fits per status over all cells, by model x method x start (from `convergence`).

    Each cell's rates are weighted by its number of replicates, so the result is the share of all
    fits of that model, method and start in the study.
    """
    keys = list(FIT_ID)
    rates = [f"rate_{status}" for status in STATUSES]
    if conv.empty:
        return _empty((*FIT_ID, "n_fits", "failure_rate", *rates))
    counts = conv.loc[:, [*rates, "failure_rate"]].mul(conv["n_rep"].astype(float), axis=0)
    counts[keys] = conv[keys]
    counts["n_fits"] = conv["n_rep"].astype(np.int64)
    total = counts.groupby(keys, sort=False, dropna=False).sum(numeric_only=True)
    shares = total[["failure_rate", *rates]].div(total["n_fits"].where(total["n_fits"] > 0), axis=0)
    out = pd.concat([total[["n_fits"]], shares], axis=1).reset_index()
    return sort_rows(out, with_parameter=False).loc[:, [*keys, "n_fits", "failure_rate", *rates]]
