"""Pseudo-true values: what a normal mixture's EM estimates when the components are not normal.

Under a true density g the maximum-likelihood estimator of a (misspecified) normal mixture
converges to theta*, the maximiser of E_g[log f(Y; theta)] (White 1982). theta* is a fixed
point of the *population* EM map: EM's update with every sum over the data replaced by an
expectation under g. Those expectations are computed here by quadrature of g:

- g is the two-component mixture of the cell's family, so E_g[h] = pi E[h(mu1 + sigma1 e)] +
  (1 - pi) E[h(mu2 + sigma2 e)] with e the family's standardised error;
- each E[h(mu + sigma e)] is the trapezoid rule in u after e = sinh(u) on a grid of step 1/64.
  The substitution turns polynomial tails (the t's) into exponential ones, where the trapezoid
  rule converges geometrically; the grid reaches |e| where the neglected tail of e^2 f(e) is below
  1e-16 (Gaussian tails: 40 scales; the t: exp(37 / (df - 2))). It is the same quadrature for
  every family, which Gauss-Hermite (exact only for Gaussian tails) is not. Its error is
  set by the widest node spacing where something happens: with unequal sigmas the wider
  component takes back the far tail, and where that switch lies far out (t(5) at mu (0, 4):
  y near -117, nodes 1.8 apart) the fixed point is accurate to ~4e-8 (the tests hold the
  others to 1e-9).

The nodes and weights make g a weighted sample, and population EM is weighted EM on it, iterated
until the bound on the distance to the fixed point, step / (1 - rate), is below 1e-12 (rate the
ratio of the last two steps).

Which fixed point: the estimand (`pseudo_true`, the performance table's true value) is the one
population EM reaches from the data-generating values. That is the limit of the estimator the
study measures, EM started near the truth: with n growing its fits settle in that fixed point's
basin, and sampling noise is what moves a fit to another one, so bias and coverage are about the
local solution and a fit that leaves for another shows up as bias (docs/design.md section 6).
Where the map has other fixed points, the highest of them may be a better normal approximation
of g than the local one (t(5) at mu (0, 4), pi 0.8: a narrow plus a wide component). So
``which="global"`` also starts from a few spread starts (pi in 0.2, 0.5, 0.8 with the means at
g's quantiles) and keeps the fixed point of highest expected log-likelihood, in the
data-generating labelling; the local one stays unless another is higher by more than 1e-10
(rounding), so "the local one is the global one" is an exact comparison. A spread start that
settles nowhere in 20,000 iterations, or whose two components have merged into one normal after
500 while one normal fits g worse than the local fixed point (it can then only reach a lower
point, crawling), is dropped. For the `pi` model (mu
and sigma held at the data-generating values) the map has one fixed point (the expected
log-likelihood is concave in pi).

For ``normal`` the model is true and theta* is the data-generating value; the quadrature gives
it to about 1e-12 (tests/test_pseudo_true.py holds it to 1e-9).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from emsim.families import Family, parse_family
from emsim.models import MODELS, PARAMS

__all__ = [
    "WHICH",
    "expected_loglik",
    "fixed_points",
    "population_em",
    "pseudo_true",
    "true_distribution",
]

STEP = 1.0 / 64.0
TOLERANCE = 1e-12
MAX_ITERATIONS = 1_000_000
# A spread start is only a check for a higher fixed point: one that does not settle in this many
# iterations (drifting to a boundary, or slowly to the same point) is dropped.
MAX_SPREAD_ITERATIONS = 20_000
# A spread start whose components have merged into one normal (means and sigmas within this
# fraction of the larger sigma) after this many iterations is crawling, sublinearly, to the
# one-normal fit: dropped there when one normal fits g worse than the local fixed point (it can
# then not be the higher one). Without this, equal_var's pi = 0.2 start crawls for all 20,000
# iterations in every family cell (1.5-3.6 s of quadrature EM each at mu (0, 4)).
MERGE_CHECK_FROM = 500
MERGED = 1e-2
# A fixed point whose weight is within this of 0 or 1 is one component: no mixture's.
PI_EDGE = 1e-6
# A start's fixed point replaces the data-generating start's only when its expected
# log-likelihood is higher by more than this (rounding of sums of ~10^4 terms).
LOGLIK_MARGIN = 1e-10
# Beyond u = 300, sinh(u)^2 leaves the floating-point range.
MAX_U = 300.0
# The fixed points `pseudo_true` can return: EM's from the data-generating values (the estimand)
# or the highest one found.
WHICH = ("local", "global")

_erfc = np.vectorize(math.erfc, otypes=[float])


def _standard_density(family: Family, e: NDArray[np.float64]) -> NDArray[np.float64]:
    """The family's density of the standardised error e."""
    normal = np.exp(-0.5 * e * e) / math.sqrt(2.0 * math.pi)
    if family.name == "t":
        df = family["df"]
        log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
        return np.exp(log_c - (df + 1) / 2 * np.log1p(e * e / df))
    if family.name == "skew_normal":
        return 2.0 * normal * 0.5 * _erfc(-family["alpha"] * e / math.sqrt(2.0))
    if family.name == "contaminated":
        eps, scale = family["epsilon"], family["scale"]
        wide = np.exp(-0.5 * (e / scale) ** 2) / (scale * math.sqrt(2.0 * math.pi))
        return (1.0 - eps) * normal + eps * wide
    return normal


def _reach(family: Family) -> float:
    """The largest |u| of the grid: where the neglected tail of e^2 f(e) is below 1e-16."""
    if family.name == "t":
        return min(MAX_U, 37.0 / (family["df"] - 2.0) + 1.0)
    widest = family["scale"] if family.name == "contaminated" else 1.0
    return math.asinh(40.0 * max(widest, 1.0))


def _standard_rule(family: Family) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    reach = _reach(family)
    u = np.arange(-math.ceil(reach / STEP), math.ceil(reach / STEP) + 1) * STEP
    e = np.sinh(u)
    weights = _standard_density(family, e) * np.cosh(u) * STEP
    keep = weights > 0
    return e[keep], weights[keep]


def true_distribution(
    family: Family | str | Mapping | None,
    mu: Sequence[float],
    sigma: float | Sequence[float],
    pi: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Nodes y and weights w with sum w h(y) = E_g[h(Y)] for smooth h: the quadrature of the
    true mixture g (both components of `family`)."""
    fam = parse_family(family)
    s1, s2 = (sigma, sigma) if np.ndim(sigma) == 0 else sigma
    e, w = _standard_rule(fam)
    nodes = np.concatenate([mu[0] + float(s1) * e, mu[1] + float(s2) * e])
    weights = np.concatenate([pi * w, (1.0 - pi) * w])
    return nodes, weights


def _log_components(y, params) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    pi, mu1, mu2, s1, s2 = params
    half_log_2pi = 0.5 * math.log(2.0 * math.pi)
    a = math.log(pi) - math.log(s1) - half_log_2pi - 0.5 * ((y - mu1) / s1) ** 2
    b = math.log1p(-pi) - math.log(s2) - half_log_2pi - 0.5 * ((y - mu2) / s2) ** 2
    return a, b


def expected_loglik(nodes, weights, params: Sequence[float]) -> float:
    """E_g[log f(Y; params)] by the quadrature (`true_distribution`)."""
    a, b = _log_components(nodes, params)
    return float(np.sum(weights * np.logaddexp(a, b)))


def _em_map(nodes, weights, params, model: str) -> NDArray[np.float64]:
    a, b = _log_components(nodes, params)
    tau = np.exp(a - np.logaddexp(a, b))
    w1 = weights * tau
    w2 = weights - w1
    total, mass1 = weights.sum(), w1.sum()
    mass2 = total - mass1
    out = np.array(params, dtype=np.float64)
    out[0] = mass1 / total
    if model == "pi":
        return out
    out[1] = np.dot(w1, nodes) / mass1
    out[2] = np.dot(w2, nodes) / mass2
    ss1 = np.dot(w1, (nodes - out[1]) ** 2)
    ss2 = np.dot(w2, (nodes - out[2]) ** 2)
    if model == "equal_var":
        out[3] = out[4] = math.sqrt((ss1 + ss2) / total)
    else:
        out[3], out[4] = math.sqrt(ss1 / mass1), math.sqrt(ss2 / mass2)
    return out


def population_em(
    nodes,
    weights,
    model: str,
    start: Sequence[float],
    max_iterations: int = MAX_ITERATIONS,
    stop_merged: bool = False,
) -> tuple[NDArray[np.float64], int]:
    """The fixed point of the population EM map from `start` (pi, mu1, mu2, sigma1, sigma2),
    and the iterations it took; raises RuntimeError if it does not settle or reaches a
    boundary (pi within 1e-6 of 0 or 1), and with `stop_merged` if after `MERGE_CHECK_FROM`
    iterations its components have merged into one normal (`_merged`)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    params = np.array(start, dtype=np.float64)
    if model == "equal_var":
        params[3] = params[4] = math.sqrt(0.5 * (params[3] ** 2 + params[4] ** 2))
    previous_step = math.inf
    for iteration in range(1, max_iterations + 1):
        new = _em_map(nodes, weights, params, model)
        step = float(np.max(np.abs(new - params)))
        params = new
        if not PI_EDGE < params[0] < 1.0 - PI_EDGE or not np.isfinite(params).all():
            raise RuntimeError(f"population EM ({model}) reached a boundary: {params}")
        rate = min(step / previous_step, 0.999999) if previous_step > 0 else 0.0
        if step / (1.0 - rate) < TOLERANCE or step == 0.0:
            return params, iteration
        if stop_merged and iteration >= MERGE_CHECK_FROM and _merged(params):
            raise RuntimeError(f"population EM ({model}) is merging into one normal: {params}")
        previous_step = step
    raise RuntimeError(f"population EM ({model}) did not settle in {max_iterations} iterations")


def _merged(params: NDArray[np.float64]) -> bool:
    scale = MERGED * max(params[3], params[4])
    return abs(params[1] - params[2]) < scale and abs(params[3] - params[4]) < scale


def _one_normal_loglik(nodes, weights) -> float:
    """E_g[log f] of the best single normal (g's mean and variance): what a path whose
    components merge reaches at most."""
    mean = np.dot(weights, nodes) / weights.sum()
    sd = math.sqrt(np.dot(weights, (nodes - mean) ** 2) / weights.sum())
    return expected_loglik(nodes, weights, [0.5, mean, mean, sd, sd])


def _aligned(params: NDArray[np.float64], mu: Sequence[float]) -> NDArray[np.float64]:
    keep = (params[1] - mu[0]) ** 2 + (params[2] - mu[1]) ** 2
    swap = (params[2] - mu[0]) ** 2 + (params[1] - mu[1]) ** 2
    if swap < keep:
        return np.array([1.0 - params[0], params[2], params[1], params[4], params[3]])
    return params


def _spread_starts(nodes, weights) -> list[list[float]]:
    order = np.argsort(nodes)
    cdf = np.cumsum(weights[order]) / weights.sum()
    sd = math.sqrt(
        np.dot(weights, nodes**2) / weights.sum() - (np.dot(weights, nodes) / weights.sum()) ** 2
    )
    starts = []
    for p in (0.2, 0.5, 0.8):
        q1, q2 = np.interp([p / 2, (1 + p) / 2], cdf, nodes[order])
        starts.append([p, float(q1), float(q2), sd / 2, sd / 2])
    return starts


def _as_dict(params: NDArray[np.float64]) -> dict[str, float]:
    return {p: float(v) for p, v in zip(PARAMS, params, strict=True)}


def _cell_quadrature(family, mu, sigma, pi):
    """The quadrature of g (nodes, weights) and the data-generating values as a point."""
    s1, s2 = (sigma, sigma) if np.ndim(sigma) == 0 else sigma
    dgm = np.array([pi, mu[0], mu[1], s1, s2], dtype=np.float64)
    nodes, weights = true_distribution(family, mu, (s1, s2), pi)
    return nodes, weights, dgm


def _local_fixed_point(model, nodes, weights, dgm):
    """Population EM's fixed point from the data-generating values (RuntimeError where its
    path merges the components or reaches a boundary: no estimand)."""
    return population_em(nodes, weights, model, dgm, stop_merged=True)[0]


def fixed_points(
    model: str,
    family: Family | str | Mapping | None,
    mu: Sequence[float],
    sigma: float | Sequence[float],
    pi: float,
) -> tuple[dict[str, float], dict[str, float]]:
    """(local, global) theta* of `model` for data of the cell (`family`, mu, sigma, pi), each
    {parameter: value} over `emsim.PARAMS`: population EM's fixed point from the data-generating
    values, and the one of highest expected log-likelihood among it and the spread starts' (the
    local one itself unless another is higher by more than 1e-10: then the two are equal)."""
    nodes, weights, dgm = _cell_quadrature(family, mu, sigma, pi)
    try:
        local = _local_fixed_point(model, nodes, weights, dgm)
        best_loglik = expected_loglik(nodes, weights, local)
    except RuntimeError:
        # No estimand: from the data-generating values population EM merges the components
        # into one normal (pi then means nothing) or reaches a boundary.
        local, best_loglik = np.full(len(PARAMS), np.nan), -math.inf
    best = local
    if model != "pi":
        stop_merged = _one_normal_loglik(nodes, weights) < best_loglik - LOGLIK_MARGIN
        stop_merged |= not np.isfinite(local).all()
        for start in _spread_starts(nodes, weights):
            try:
                found, _ = population_em(
                    nodes, weights, model, start, MAX_SPREAD_ITERATIONS, stop_merged
                )
            except RuntimeError:
                continue
            loglik = expected_loglik(nodes, weights, found)
            if loglik > best_loglik + LOGLIK_MARGIN:
                best, best_loglik = _aligned(found, mu), loglik
    return _as_dict(local), _as_dict(best)


def pseudo_true(
    model: str,
    family: Family | str | Mapping | None,
    mu: Sequence[float],
    sigma: float | Sequence[float],
    pi: float,
    *,
    which: str = "local",
) -> dict[str, float]:
    """theta* of `model` (``pi``, ``equal_var``, ``full``) for data of the cell (`family`, mu,
    sigma, pi): {parameter: value} over `emsim.PARAMS`, held-known parameters at their
    data-generating values, equal_var's common sigma in both sigma entries. ``which="local"``
    (the estimand): the fixed point population EM reaches from the data-generating values;
    ``which="global"``: the highest fixed point found (`fixed_points`).

    Under t(5) components at mu (0, 4) the local solution stays near the data, while the global
    one is a narrow plus a wide component with a higher expected log-likelihood:

    >>> theta = pseudo_true("full", {"name": "t", "df": 5}, (0, 4), 1, 0.8)
    >>> [round(theta[p], 2) for p in ("pi", "mu1", "mu2", "sigma1", "sigma2")]
    [0.79, -0.05, 4.02, 1.21, 1.25]
    >>> best = pseudo_true("full", {"name": "t", "df": 5}, (0, 4), 1, 0.8, which="global")
    >>> [round(best[p], 2) for p in ("pi", "mu1", "mu2", "sigma1", "sigma2")]
    [0.51, -0.14, 1.8, 0.84, 2.45]
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    if which == "local":
        return _as_dict(_local_fixed_point(model, *_cell_quadrature(family, mu, sigma, pi)))
    return fixed_points(model, family, mu, sigma, pi)[1]
