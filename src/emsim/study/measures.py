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

import numpy as np
import pandas as pd
from pandas.core.groupby import DataFrameGroupBy

from emsim.families import NORMAL, family_from_label
from emsim.models import DEFAULT_STOPPING, MODELS, STATUSES, USABLE_STATUS
from emsim.pseudo_true import fixed_points
from emsim.study.grouping import group_codes, grouped_reductions, with_keys
from emsim.study.quantiles import QUANTILE_INTERVAL_LEVEL as QUANTILE_INTERVAL_LEVEL
from emsim.study.quantiles import coverage_z, quantile_mcse
from emsim.study.quantiles import quantile_ranks as quantile_ranks
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
    # Each cell's first row per model: the design columns are the same on all its rows.
    firsts = fits.drop_duplicates(["model", "cell_id"])
    for model, cells in firsts.groupby("model", sort=False):
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


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    """num / den, NaN where den is not positive (no division warnings on sparse groups)."""
    return num / den.where(den > 0)


def _sqrt(x: pd.Series) -> pd.Series:
    return np.sqrt(x.where(x >= 0))


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


def _eligible(
    fits: pd.DataFrame, exclude: tuple[str, ...], oracle_starts: tuple[str, ...]
) -> pd.Series:
    """Per row: can it be the derived start (`add_best_start`)?"""
    return (
        ~fits["status"].isin(list(exclude))
        & ~fits["start"].isin([*oracle_starts, BEST])
        & np.isfinite(fits["loglik"].astype(float))
    )


def _best_rows(fits: pd.DataFrame, eligible: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(each row's replicate group code, the position of each group's best row): the eligible
    row with the highest loglik, ties to the first; the group's first row if none is eligible.
    The positions are in the order of a ranking by loglik (eligible first), then position."""
    codes, _ = group_codes(fits, REPLICATE_KEYS)
    score = fits["loglik"].astype(float).where(eligible, -np.inf).to_numpy()
    position = np.arange(len(fits))
    ranked = np.lexsort((position, -score, codes))
    leads = ranked[np.r_[True, codes[ranked][1:] != codes[ranked][:-1]]] if len(fits) else ranked
    return codes, leads[np.lexsort((leads, -score[leads]))]


def _best_loglik(
    fits: pd.DataFrame, eligible: pd.Series, codes: np.ndarray, best: np.ndarray
) -> pd.Series:
    """Each row's replicate group's best loglik (`_best_rows`); NaN where none was eligible."""
    loglik = fits["loglik"].astype(float).to_numpy()
    per_group = np.full(len(best), np.nan)
    per_group[codes[best]] = np.where(eligible.to_numpy()[best], loglik[best], np.nan)
    return pd.Series(per_group[codes], index=fits.index)


def _gap(fits: pd.DataFrame, exclude: tuple[str, ...], best: pd.Series) -> pd.Series:
    comparable = ~fits["status"].isin(list(exclude)) & np.isfinite(fits["loglik"].astype(float))
    return (best - fits["loglik"].astype(float)).where(comparable)


def best_start_gap(
    fits: pd.DataFrame,
    exclude: tuple[str, ...] = BEST_EXCLUDED_STATUSES,
    *,
    oracle_starts: tuple[str, ...],
) -> pd.Series:
    """The best start's log-likelihood minus each row's own (docs/design.md section 5): > 0 flags a
    local maximum; < 0 on an oracle start shows that `best` missed a higher maximum. NaN where
    the row's status is excluded (no comparable log-likelihood) or no start was eligible."""
    fits = with_stopping(fits)
    eligible = _eligible(fits, exclude, oracle_starts)
    codes, best = _best_rows(fits, eligible)
    return _gap(fits, exclude, _best_loglik(fits, eligible, codes, best))


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
    eligible = _eligible(base, exclude, oracle_starts)
    codes, first = _best_rows(base, eligible)
    best = base.iloc[first].copy()
    base["best_start_gap"] = _gap(base, exclude, _best_loglik(base, eligible, codes, first))
    best["start"] = BEST
    best["best_start_gap"] = np.where(eligible.to_numpy()[first], 0.0, np.nan)
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


def _se_pieces(rows: pd.DataFrame, column: str, ok, est, theta, z: float) -> dict:
    """Per SE type, the per-fit pieces of its SE-based measures (arrays aligned with `rows`):
    these share one set, the usable fits with a finite SE of that type (a fit row without
    sandwich SEs, written before they were recorded, has none)."""
    pieces = {}
    for se_type in SE_TYPES:
        name = _fit_se_column(column, se_type)
        se_all = rows[name].to_numpy(float) if name in rows else np.full(len(rows), np.nan)
        has_se = ok & np.isfinite(se_all)
        se = np.where(has_se, se_all, np.nan)
        # Coverage also needs a truth.
        has_interval = has_se & ~np.isnan(theta)
        covered = np.where(has_interval, (np.abs(est - theta) <= z * se).astype(float), np.nan)
        pieces[f"_has_se_{se_type}"] = has_se.astype(np.int64)
        pieces[f"_est_se_{se_type}"] = np.where(has_se, est, np.nan)
        pieces[f"_se2_{se_type}"] = se**2
        pieces[f"_covered_{se_type}"] = covered
    return pieces


def _model_rows(fits: pd.DataFrame, in_common: pd.Series):
    """Per model (in order of appearance): its rows with the columns the measures read, their
    group codes and key table (`group_codes`), and whether each is in the common set."""
    wanted = [
        c for c in fits.columns if c in GROUP_KEYS or c == "status" or c[:3] in ("est", "se_")
    ]
    for model in fits["model"].dropna().unique():
        mask = (fits["model"] == model).to_numpy()
        rows = fits.loc[mask, wanted]
        codes, keys = group_codes(rows, GROUP_KEYS)
        yield model, rows, codes, keys, in_common.to_numpy()[mask]


def _group_moments(fits: pd.DataFrame, z: float) -> pd.DataFrame:
    """One row per group x reported parameter x set with the group sums and moments behind the
    measures, from the per-fit pieces of each model x parameter x set grouped on the model's
    group codes (`grouping.group_codes`): the values of a group, in its rows' order, are those a
    long table of every fit x parameter x set grouped by its keys would hold, without that
    table (it was most of a cell summary's time)."""
    models = []
    for model, rows, codes, keys, in_common in _model_rows(fits, common_set(fits)):
        usable = (rows["status"] == CONVERGED).to_numpy()
        pieces: dict[tuple[str, str], dict] = {}
        for parameter in reported_parameters(str(model)):
            col = _column(parameter)
            theta = true_values(rows, parameter, str(model)).to_numpy()
            ok_own = usable & np.isfinite(rows[f"est_{col}"].to_numpy(float))
            for name, ok in ((OWN_SET, ok_own), (COMMON_SET, ok_own & in_common)):
                est = np.where(ok, rows[f"est_{col}"].to_numpy(float), np.nan)
                piece = {"true_value": theta, "_ok": ok.astype(np.int64), "_est": est}
                piece["_sqerr"] = (est - theta) ** 2
                pieces[parameter, name] = piece | _se_pieces(rows, col, ok, est, theta, z)
        models.append((rows, codes, keys, pieces))
    if not models:
        return _empty((*GROUP_KEYS, "parameter", "set", "true_value"))
    if any(np.all(codes[1:] >= codes[:-1]) for _, codes, _, _ in models):
        return _long_moments(models)
    parts = []
    for _, codes, keys, pieces in models:
        sums = _aggregate_pieces(list(pieces.values()), codes)
        for (parameter, name), part in zip(pieces, sums, strict=True):
            parts.append(with_keys(keys, part).assign(parameter=parameter, set=name))
    return pd.concat(parts, ignore_index=True)


def _long_moments(models: list) -> pd.DataFrame:
    """`_group_moments` by one group-by over the long table of every fit x parameter x set, for
    a cell where some model's groups each have contiguous rows (one replicate, or one group
    besides ``best``): pandas then sums a float column without NaN by np.add.reduceat rather
    than its compensated sum, and decides that over the whole table, so only the long table
    gives such a cell the sums it always had."""
    long = []
    for rows, _, _, pieces in models:
        for (parameter, name), piece in pieces.items():
            part = pd.DataFrame(piece, index=rows.index)
            part.insert(0, "set", name)
            part.insert(0, "parameter", parameter)
            long.append(pd.concat([rows.loc[:, list(GROUP_KEYS)], part], axis=1))
    table = pd.concat(long, ignore_index=True)
    keys = [*GROUP_KEYS, "parameter", "set"]
    grouped = table.groupby(keys, sort=False, dropna=False)
    table["_dev2"] = (table["_sqerr"] - grouped["_sqerr"].transform("mean")) ** 2
    grouped = table.groupby(keys, sort=False, dropna=False)
    return grouped.agg(**_moment_sources()).reset_index()


def _moment_sources() -> dict[str, tuple[str, str]]:
    """Each group moment of `performance` as (per-fit piece, pandas reduction)."""
    wanted = {"true_value": ("true_value", "first"), "n_rep": ("_ok", "size")}
    wanted |= {"n_ok": ("_ok", "sum"), "mean_est": ("_est", "mean"), "var_est": ("_est", "var")}
    return wanted | {"mse": ("_sqerr", "mean"), "sum_dev2": ("_dev2", "sum"), **_se_aggregations()}


def _aggregate_pieces(parts: list[dict], codes: np.ndarray) -> list[pd.DataFrame]:
    """The group sums and moments of each of one model's parameter x set per-fit pieces (rows
    aligned with `codes`, not contiguous per group: `_group_moments`), by the compiled group-by
    kernels that give pandas' values bit for bit (`grouping.grouped_reductions`): one pass
    over one piece of every part gives all the reductions of that piece."""
    n_groups = int(codes.max()) + 1 if codes.size else 0
    wanted = _moment_sources()
    by_source: dict[str, list[str]] = {}
    for source, how in wanted.values():
        if how != "size":
            by_source.setdefault(source, []).append(how)
    stacked = {
        source: np.column_stack([part[source] for part in parts])
        for source in by_source
        if source != "_dev2"
    }
    reduced = {s: grouped_reductions(v, codes, n_groups, by_source[s]) for s, v in stacked.items()}
    # MSE's MCSE needs each fit's deviation from its group's MSE.
    dev2 = (stacked["_sqerr"] - reduced["_sqerr"]["mean"][codes]) ** 2
    reduced["_dev2"] = grouped_reductions(dev2, codes, n_groups, by_source["_dev2"])
    size = np.bincount(codes, minlength=n_groups).astype(np.int64)
    return [
        pd.DataFrame(
            {
                name: size if how == "size" else reduced[source][how][:, i]
                for name, (source, how) in wanted.items()
            }
        )
        for i in range(len(parts))
    ]


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
    out = _group_moments(fits, z)
    if out.empty:
        return _empty(PERFORMANCE_COLUMNS)

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
    codes, keys = group_codes(fits, GROUP_KEYS)
    status = fits["status"].astype(str)
    converged = status == CONVERGED
    work = pd.DataFrame(index=fits.index)
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
    grouped = work.groupby(codes, sort=False)
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
    out = with_keys(keys, out)
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
