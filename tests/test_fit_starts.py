"""`api.fit_starts_by_rule`: the same data sets from several starts in one call (a study's fit
job fits each model and method so, issue 22), row for row the results of one
`fit_batch_by_rule` per start. The batch is built so that the limit's search has work: data
where EM crawls and stops early (means one SD apart), stops at saddles and at the cap."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import emsim
from emsim.api import fit_batch_by_rule, fit_starts_by_rule, prepare_data

TOLERANCES = {"abs": 1e-5, "aitken": 1e-5}
TRUTH = {"pi": 0.8, "mu1": 0.0, "mu2": 1.0, "sigma1": 1.0, "sigma2": 1.0}


def _data() -> np.ndarray:
    rows = [
        emsim.simulate(300, (0.0, 1.0), 1.0, 0.8, np.random.default_rng(seed)) for seed in range(6)
    ]
    rows += [emsim.simulate(300, (0.0, 4.0), 1.0, 0.8, np.random.default_rng(s)) for s in (6, 7)]
    return np.stack(rows)


def _starts(Y: np.ndarray) -> list[dict[str, np.ndarray]]:
    n_rows = Y.shape[0]
    quantile = {p: np.asarray(v, dtype=float) for p, v in emsim.quantile_start(Y, 0.5).items()}
    rng = np.random.default_rng(11)
    jittered = {p: v + rng.normal(0.0, 0.3, n_rows) for p, v in quantile.items()}
    jittered["pi"] = rng.uniform(0.2, 0.8, n_rows)
    jittered["sigma1"] = jittered["sigma2"] = np.full(n_rows, 0.7)
    truth = {p: np.full(n_rows, v) for p, v in TRUTH.items()}
    return [quantile, jittered, truth]


def _different_field(one: emsim.BatchFitResult, other: emsim.BatchFitResult) -> str | None:
    """The first field (runtime_s aside: it shares out a call's time) where the two differ."""
    for f in dataclasses.fields(one):
        a, b = getattr(one, f.name), getattr(other, f.name)
        if f.name == "runtime_s":
            continue
        if isinstance(a, dict):
            same = a.keys() == b.keys() and all(
                np.array_equal(a[k], b[k], equal_nan=True) for k in a
            )
        elif isinstance(a, np.ndarray):
            same = np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        elif isinstance(a, list):
            same = len(a) == len(b) and all(
                (x is None and y is None) or (x is not None and y is not None and x.equals(y))
                for x, y in zip(a, b, strict=True)
            )
        else:
            same = a == b
        if not same:
            return f.name
    return None


@pytest.mark.parametrize("model", ["full", "equal_var", "pi"])
@pytest.mark.parametrize("method", ["em", "squarem"])
def test_starts_fitted_together_are_row_for_row_the_fits_of_each_start(model, method):
    Y = _data()
    data = prepare_data(Y)
    starts = _starts(Y)
    known = {p: TRUTH[p] for p in ("mu1", "mu2", "sigma1", "sigma2")} if model == "pi" else None
    traced = np.arange(Y.shape[0]) < 2
    settings = dict(
        model=model, method=method, known=known, tolerances=TOLERANCES, max_iterations=300
    )
    together = fit_starts_by_rule(data, starts, trace=traced, **settings)
    assert len(together) == len(starts)
    statuses = set()
    for start, results in zip(starts, together, strict=True):
        alone = fit_batch_by_rule(data, start=start, trace=traced, **settings)
        assert results.keys() == alone.keys() == TOLERANCES.keys()
        for rule, result in results.items():
            assert len(result) == Y.shape[0]
            assert _different_field(result, alone[rule]) is None, (rule, start)
            statuses |= set(result.status)
    # The batch exercised more than plain convergence.
    if model != "pi":
        assert statuses - {"converged"}, statuses


def test_starts_that_give_different_parameters_are_refused():
    Y = _data()
    with pytest.raises(ValueError, match="same parameters"):
        fit_starts_by_rule(prepare_data(Y), [{"pi": 0.5}, {"pi": 0.5, "mu1": 0.0}])


def test_rows_of_a_batch_result_are_its_rows():
    Y = _data()
    result = fit_batch_by_rule(Y, model="full", trace=True)["abs"]
    part = result.rows(slice(2, 5))
    assert len(part) == 3 and len(part.traces) == 3
    assert (part.model, part.method, part.stopping) == (result.model, "em", "abs")
    for i in range(3):
        got, want = part.row(i), result.row(2 + i)
        assert (got.status, got.iterations) == (want.status, want.iterations)
        for name in ("loglik", "params", "se", "se_sandwich", "distance_to_limit"):
            np.testing.assert_equal(getattr(got, name), getattr(want, name))
        assert got.trace.equals(want.trace)
