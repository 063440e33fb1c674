"""Every fit status (docs/design.md section 2), provoked on purpose through `emsim.fit`/`fit_batch`.

Each construction is deterministic (fixed data, fixed start). Besides the status itself, every
fit must return (never raise), leak no RuntimeWarning, count iterations and log-likelihood
evaluations consistently, keep the last accepted parameters and never end below its start.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest

import emsim
from emsim import engine
from emsim.models import estimated_params

N = 200
# Log-likelihood evaluations per iteration (one E-step for EM; SQUAREM's cycle has three).


# --- data ---------------------------------------------------------------------------------


def ordinary(seed: int = 1) -> np.ndarray:
    """Well-separated components: plain EM converges in a few dozen iterations."""
    return emsim.simulate(N, (6.0, 0.0), 1.0, 0.3, np.random.default_rng(seed))


def overlapping(seed: int = 2) -> np.ndarray:
    """Means one sigma apart: EM creeps (rate close to 1) and needs hundreds of iterations."""
    return emsim.simulate(N, (0.0, 1.0), 1.0, 0.5, np.random.default_rng(seed))


def tight_cluster(spacing: float = 1e-9, seed: int = 3) -> np.ndarray:
    """Five values within 4 * spacing of 3.0 (spacing 0: one value repeated) plus N(0, 1)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([3.0 + spacing * np.arange(5), rng.normal(0.0, 1.0, N - 5)])


def one_component(loc: float = 2.0, scale: float = 1.0, seed: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, scale, N)


# A start that puts component 1 on the cluster at 3.0 with a small sigma.
ON_CLUSTER = {"pi": 0.05, "mu1": 3.0, "sigma1": 1e-3}
# Known values of the pi model that make the MLE of pi equal 0 (data all from component 2,
# component 1 far away) or 1 (data all from component 1).
PI_ZERO = {"mu1": -10.0, "mu2": 2.0, "sigma1": 1.0, "sigma2": 1.0}
PI_ONE = {"mu1": 0.0, "mu2": 7.0, "sigma1": 1.0, "sigma2": 1.0}
PI_ONE_EXACTLY = {"mu1": 2.0, "mu2": -10.0, "sigma1": 1.0, "sigma2": 1.0}
HUGE_MEANS = {"mu1": 1e308, "mu2": -1e308}


def strict_fit(*args, **kwargs) -> emsim.FitResult:
    """emsim.fit with RuntimeWarnings as errors (also without the pytest configuration)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return emsim.fit(*args, **kwargs)


def strict_fit_batch(*args, **kwargs) -> emsim.BatchFitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return emsim.fit_batch(*args, **kwargs)


# Statuses of fits the stopping rule ended (then polished), and of fits that ended without a
# rejected step.
STOPPED_BY_RULE = ("converged", "saddle", "premature")
ENDED_CLEANLY = (*STOPPED_BY_RULE, "max_iterations")


def check_consistent(result: emsim.FitResult, method: str, max_iterations: int = 1000) -> None:
    """What must hold for a fit of any status."""
    assert result.status in emsim.STATUSES
    assert isinstance(result.iterations, int) and 0 <= result.iterations <= max_iterations
    if method == "squarem":
        # A SQUAREM cycle costs 2 E-steps (no extrapolation), 3, or 4 (a rejected one).
        assert 1 + 2 * result.iterations <= result.loglik_evals <= 1 + 4 * (result.iterations + 1)
    elif result.status in ENDED_CLEANLY:
        # For EM: loglik_evals == iterations + 1 (the start's E-step plus one per M-step).
        assert result.loglik_evals == 1 + result.iterations
    else:
        # A fit stopped at its start costs one evaluation; one stopped on a rejected step also
        # paid for that step, which is not counted as an iteration.
        assert result.loglik_evals in (result.iterations + 1, result.iterations + 2)
        if result.iterations > 0:
            assert result.loglik_evals == result.iterations + 2
    if result.trace is not None:
        # The trace counts evaluations up to the last accepted iterate.
        assert result.trace["loglik_evals"].iloc[-1] <= result.loglik_evals
        if result.status in ENDED_CLEANLY:
            assert result.trace["loglik_evals"].iloc[-1] == result.loglik_evals
    if result.status == "max_iterations":
        assert result.iterations == max_iterations
    assert set(result.params) == set(emsim.PARAMS) == set(result.se)
    if result.status != "nonfinite":
        # The last accepted parameters are kept: finite, and never worse than the start.
        assert all(np.isfinite(v) for v in result.params.values()), result.params
        assert np.isfinite(result.loglik)
        assert result.loglik >= result.loglik_start
    if result.status in ENDED_CLEANLY:
        # The polish went on from the stop a rule or the cap made (issue 18: every such fit
        # gets its distance): the limit is never below it.
        assert result.polish_evals > 0
        assert result.loglik_gap_to_limit >= -1e-9 * abs(result.loglik)
    else:
        assert result.polish_evals == 0 and np.isnan(result.distance_to_limit)
    if result.status == "converged":
        assert result.distance_to_limit <= 0.1
        assert all(np.isfinite(result.se[p]) for p in estimated_params(result.model))
    if result.status == "converged":
        assert 0.0 < result.params["pi"] < 1.0
        assert result.params["sigma1"] > 0 and result.params["sigma2"] > 0
    if result.trace is not None:
        trace = result.trace
        assert len(trace) == result.iterations + 1
        np.testing.assert_array_equal(trace["iteration"], np.arange(result.iterations + 1))
        if np.isfinite(result.loglik):
            assert (np.diff(trace["loglik"]) >= 0).all()
            assert trace["loglik"].iloc[-1] == result.loglik
        assert trace["pi"].iloc[-1] == result.params["pi"] or np.isnan(result.params["pi"])


# --- one case per status (several constructions for some) ---------------------------------

Case = tuple[Callable[[], np.ndarray], dict, str, int | None, int | None]

# name -> (data, fit keyword arguments, expected status, expected iterations, expected evals)
CASES: dict[str, Case] = {
    "converged-em": (ordinary, {}, "converged", None, None),
    "converged-squarem": (ordinary, {"method": "squarem"}, "converged", None, None),
    "converged-equal-var": (ordinary, {"model": "equal_var"}, "converged", None, None),
    "converged-pi": (
        lambda: emsim.simulate(N, (0.0, 2.0), 1.0, 0.8, np.random.default_rng(5)),
        {"model": "pi", "known": {"mu1": 0.0, "mu2": 2.0, "sigma1": 1.0, "sigma2": 1.0}},
        "converged",
        None,
        None,
    ),
    "max-iterations-em": (overlapping, {"max_iterations": 2}, "max_iterations", 2, 3),
    "max-iterations-squarem": (
        overlapping,
        {"max_iterations": 2, "method": "squarem"},
        "max_iterations",
        2,
        7,
    ),
    "max-iterations-pi": (
        overlapping,
        {
            "max_iterations": 3,
            "model": "pi",
            "known": {"mu1": 0.0, "mu2": 1.0, "sigma1": 1.0, "sigma2": 1.0},
        },
        "max_iterations",
        3,
        4,
    ),
    # A component started on a tight cluster shrinks onto it: sigma1 drops to ~1e-9, below the
    # floor of 1e-6 * sd(y), in the first M-step.
    "degenerate-tight-cluster": (tight_cluster, {"start": ON_CLUSTER}, "degenerate", 0, 2),
    # The same on one repeated value: sigma1 becomes exactly 0, so the log-likelihood is NaN,
    # but the diagnosis is the collapse, not a generic non-finite number.
    "degenerate-repeated-value": (
        lambda: tight_cluster(spacing=0.0),
        {"start": ON_CLUSTER},
        "degenerate",
        0,
        2,
    ),
    "degenerate-squarem": (
        tight_cluster,
        {"start": ON_CLUSTER, "method": "squarem"},
        "degenerate",
        0,
        4,
    ),
    "degenerate-three-points": (
        lambda: np.array([0.0, 1.0, 2.0]),
        {"start": {"pi": 0.5, "mu1": 0.0, "sigma1": 0.1, "mu2": 1.5, "sigma2": 0.5}},
        "degenerate",
        0,
        2,
    ),
    "degenerate-at-start": (ordinary, {"start": {"sigma1": 1e-9}}, "degenerate", 0, 1),
    "boundary-pi-to-0": (
        one_component,
        {"model": "pi", "known": PI_ZERO, "start": {"pi": 0.5}},
        "boundary",
        0,
        2,
    ),
    "boundary-pi-to-1": (
        lambda: one_component(0.0, 0.1),
        {"model": "pi", "known": PI_ONE, "start": {"pi": 0.5}},
        "boundary",
        0,
        2,
    ),
    # Every responsibility rounds to 1, so the M-step gives pi = 1.0 exactly and
    # log(1 - pi) = -inf: still the boundary, not a generic non-finite number.
    "boundary-pi-exactly-1": (
        one_component,
        {"model": "pi", "known": PI_ONE_EXACTLY, "start": {"pi": 0.5}},
        "boundary",
        0,
        2,
    ),
    # Full model, component 1 started far from all data: it gets no responsibility.
    "boundary-full-empty-component": (
        lambda: one_component(0.0, 1.0),
        {"start": {"pi": 0.5, "mu1": 12.0, "sigma1": 1.0, "mu2": 0.0, "sigma2": 1.0}},
        "boundary",
        0,
        2,
    ),
    # (y - mu)^2 overflows for every point: the start's log-likelihood is NaN.
    "nonfinite-full": (ordinary, {"start": HUGE_MEANS}, "nonfinite", 0, 1),
    "nonfinite-equal-var": (
        ordinary,
        {"model": "equal_var", "start": HUGE_MEANS},
        "nonfinite",
        0,
        1,
    ),
    "nonfinite-squarem": (
        ordinary,
        {"method": "squarem", "start": HUGE_MEANS},
        "nonfinite",
        0,
        1,
    ),
}


def test_a_start_on_the_boundary_ends_at_once_in_a_batch_and_is_refused_by_fit() -> None:
    """fit_batch takes it (the study's truth start of a cell with pi near 0 is one) and stops
    at iteration 0; emsim.fit refuses it, as a start no fit can leave (issue 19)."""
    batch = strict_fit_batch(ordinary()[None, :], start={"pi": 1e-9}, trace=True)
    result = batch.row(0)
    assert (result.status, result.iterations, result.loglik_evals) == ("boundary", 0, 1)
    check_consistent(result, "em")
    with pytest.raises(ValueError, match=r"start pi=1e-09 is outside \[1e-06"):
        emsim.fit(ordinary(), start={"pi": 1e-9})


@pytest.mark.parametrize("name", list(CASES))
def test_status(name: str) -> None:
    make_data, kwargs, status, iterations, evals = CASES[name]
    result = strict_fit(make_data(), trace=True, **kwargs)
    assert result.status == status, (result.status, result.iterations, result.params)
    if iterations is not None:
        assert result.iterations == iterations
    if evals is not None and kwargs.get("method", "em") == "em":
        assert result.loglik_evals == evals
    check_consistent(result, kwargs.get("method", "em"), kwargs.get("max_iterations", 1000))
    if status == "converged":
        # Standard errors exist exactly for the estimated parameters.
        estimated = set(estimated_params(kwargs.get("model", "full")))
        for name, se in result.se.items():
            assert (np.isfinite(se) and se > 0) if name in estimated else np.isnan(se), name
    if status == "nonfinite":
        assert np.isnan(result.loglik) and np.isnan(result.loglik_start)


def test_boundary_keeps_the_last_valid_pi() -> None:
    result = strict_fit(one_component(), model="pi", known=PI_ZERO, start={"pi": 0.5})
    assert result.status == "boundary"
    assert result.params["pi"] == 0.5  # the rejected step (pi ~ 1e-30) is not kept
    assert result.loglik == result.loglik_start


def test_nonfinite_pi_model_tiny_known_sigma() -> None:
    known = {"mu1": 1e200, "mu2": -1e200, "sigma1": 1e-200, "sigma2": 1e-200}
    result = strict_fit(one_component(), model="pi", known=known, start={"pi": 0.5})
    assert result.status == "nonfinite"
    check_consistent(result, "em")


# --- decreased: a fault that correct EM never produces, injected into the M-step ---------------


def use_python_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the engine's loops as their pure-Python twins (`py_func`, the same source), which
    look `mstep`, `_iterate` and `fit_one` up in the module at call time, so a fault can be
    injected."""
    monkeypatch.setattr(engine, "fit_one", engine.fit_one.py_func)
    monkeypatch.setattr(engine, "fit_rows", engine.fit_rows.py_func)
    monkeypatch.setattr(engine, "_iterate", engine._iterate.py_func)


@pytest.mark.parametrize(
    ("method", "mu2"),
    # SQUAREM on overlapping components: its extrapolations then reach the result's last bits
    # (rounded twice instead of once, they change it). EM on separated ones: the twin runs its
    # loop in Python, 0.6 s on overlapping components against 0.0 s here.
    [("em", 4.0), ("squarem", 2.0)],
)
def test_python_twin_fits_as_the_compiled_engine(monkeypatch, method, mu2) -> None:
    # The fault tests below are only about the engine if its twin, unfaulted, is the engine.
    y = emsim.simulate(300, (0.0, mu2), (1.0, 0.7), 0.6, np.random.default_rng(8))
    compiled = emsim.fit(y, method=method)
    use_python_engine(monkeypatch)
    twin = emsim.fit(y, method=method)
    assert (twin.status, twin.iterations, twin.loglik_evals) == (
        compiled.status,
        compiled.iterations,
        compiled.loglik_evals,
    )
    assert twin.loglik == compiled.loglik
    assert twin.params == compiled.params
    np.testing.assert_array_equal(list(twin.se.values()), list(compiled.se.values()))


@pytest.fixture
def faulty_mstep(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From the fourth M-step on, swap the weights: pi -> 1 - pi, a much worse point.

    The engine is compiled, so the fault is injected into its Python twin."""
    calls: list[int] = []
    original = engine.mstep

    def mstep(model, n, p, stats, out):
        original(model, n, p, stats, out)
        calls.append(1)
        if len(calls) > 3:
            out[0] = 1.0 - out[0]

    monkeypatch.setattr(engine, "mstep", mstep)
    use_python_engine(monkeypatch)
    return calls


def test_decreased_em(faulty_mstep: list[int]) -> None:
    y = emsim.simulate(N, (4.0, 0.0), 1.0, 0.2, np.random.default_rng(5))
    result = strict_fit(y, trace=True)
    assert result.status == "decreased"
    assert (result.iterations, result.loglik_evals) == (3, 5)
    assert len(faulty_mstep) == 4
    check_consistent(result, "em")
    # The faulty step was rejected: the fit keeps the best point it reached.
    assert result.loglik == result.trace["loglik"].max()
    assert result.params["pi"] == result.trace["pi"].iloc[-1]


def test_decreased_squarem(faulty_mstep: list[int]) -> None:
    y = emsim.simulate(N, (4.0, 0.0), 1.0, 0.2, np.random.default_rng(5))
    result = strict_fit(y, method="squarem", trace=True)
    assert result.status == "decreased"
    check_consistent(result, "squarem")
    assert result.iterations >= 1
    assert result.loglik == result.trace["loglik"].max()


def test_without_the_fault_the_same_fit_converges() -> None:
    y = emsim.simulate(N, (4.0, 0.0), 1.0, 0.2, np.random.default_rng(5))
    assert strict_fit(y).status == "converged"


# --- fit_batch: one batch mixing all six statuses -------------------------------------------

MARKED_MU = 100.0  # the row whose M-step is made faulty is the one with data near 100


@pytest.fixture
def faulty_for_marked_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """A row-local fault (it depends only on the row's own parameters, so a batched row still
    equals its single fit): pi -> 0.01 for rows whose mu1 is near MARKED_MU."""
    original = engine.mstep

    def mstep(model, n, p, stats, out):
        original(model, n, p, stats, out)
        if abs(p[1] - MARKED_MU) < 20.0:
            out[0] = 0.01

    monkeypatch.setattr(engine, "mstep", mstep)
    use_python_engine(monkeypatch)


def test_fit_batch_mixing_all_statuses(faulty_for_marked_row: None) -> None:
    names = emsim.PARAMS
    rows = {
        "converged": (ordinary(), {"pi": 0.3, "mu1": 6.0, "mu2": 0.0}),
        "max_iterations": (overlapping(), {}),
        "degenerate": (tight_cluster(), ON_CLUSTER),
        "boundary": (
            one_component(0.0, 1.0),
            {"pi": 0.5, "mu1": 12.0, "sigma1": 1.0, "mu2": 0.0, "sigma2": 1.0},
        ),
        "nonfinite": (ordinary(), HUGE_MEANS),
        "decreased": (ordinary() + MARKED_MU, {"pi": 0.5}),
        # Equal components stay equal under EM: it stops on the symmetric ridge.
        "saddle": (ordinary(), {"pi": 0.5, "mu1": 2.0, "mu2": 2.0, "sigma1": 1.0, "sigma2": 1.0}),
    }
    Y = np.stack([y for y, _ in rows.values()])
    # Per-row starts: the given values, the default (quantile) start for the rest.
    default = emsim.quantile_start(Y, [s.get("pi", 0.5) for _, s in rows.values()])
    start = {name: default[name].copy() for name in names}
    for r, (_, given) in enumerate(rows.values()):
        for name, value in given.items():
            start[name][r] = value
    max_iterations = 50

    batch = strict_fit_batch(Y, start=start, max_iterations=max_iterations)
    assert list(batch.status) == list(rows)
    # `premature` needs a slow cell and a long fit: tests/test_stopping.py provokes it.
    assert set(batch.status) == set(emsim.STATUSES) - {"premature"}
    assert len(batch) == len(rows)

    for r, status in enumerate(rows):
        single = strict_fit(
            Y[r], start={name: start[name][r] for name in names}, max_iterations=max_iterations
        )
        assert single.status == status
        check_consistent(single, "em", max_iterations)
        check_consistent(batch.row(r), "em", max_iterations)
        # Row r of the batch equals the single fit exactly.
        assert batch.status[r] == single.status
        assert batch.iterations[r] == single.iterations
        assert batch.loglik_evals[r] == single.loglik_evals
        np.testing.assert_array_equal(batch.loglik[r], single.loglik)
        np.testing.assert_array_equal(batch.loglik_start[r], single.loglik_start)
        np.testing.assert_array_equal(batch.distance_to_limit[r], single.distance_to_limit)
        for name in names:
            np.testing.assert_array_equal(batch.params[name][r], single.params[name])
            np.testing.assert_array_equal(batch.se[name][r], single.se[name])


def test_fit_batch_pi_model_with_per_row_known_values() -> None:
    Y = np.stack([one_component(), one_component(0.0, 0.1), overlapping()])
    known = {
        name: np.array([PI_ZERO[name], PI_ONE[name], value])
        for name, value in {"mu1": 0.0, "mu2": 1.0, "sigma1": 1.0, "sigma2": 1.0}.items()
    }
    batch = strict_fit_batch(Y, model="pi", known=known, start={"pi": 0.5})
    assert list(batch.status) == ["boundary", "boundary", "converged"]
    for r in range(3):
        single = strict_fit(
            Y[r], model="pi", known={k: v[r] for k, v in known.items()}, start={"pi": 0.5}
        )
        check_consistent(single, "em")
        assert batch.row(r).status == single.status
        assert batch.row(r).params == single.params
        assert batch.row(r).loglik_evals == single.loglik_evals
