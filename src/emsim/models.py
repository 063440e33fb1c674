"""Names shared by every part of emsim: parameters, models, methods and fit statuses."""

from __future__ import annotations

PARAMS: tuple[str, ...] = ("pi", "mu1", "mu2", "sigma1", "sigma2")

# What each model estimates; everything else is held at a known value. For `equal_var` the one
# common sigma is reported in both sigma1 and sigma2.
MODELS: dict[str, tuple[str, ...]] = {
    "pi": ("pi",),
    "equal_var": ("pi", "mu1", "mu2", "sigma"),
    "full": ("pi", "mu1", "mu2", "sigma1", "sigma2"),
}

METHODS: tuple[str, ...] = ("em", "squarem")

STATUSES: tuple[str, ...] = (
    "converged",
    "max_iterations",
    "degenerate",
    "boundary",
    "nonfinite",
    "decreased",
    # Decided beside the engine (api.fit_batch), for fits the stopping rule ended:
    # the iteration is stationary where the observed information is not positive definite,
    "saddle",
    # or it moves on: its limit lies more than `premature_threshold` SEs away, or is no
    # certified maximum, or the information at the stop is not positive definite.
    "premature",
)
# Only these fits are estimates; every other status is a failure (docs/design.md section 2).
USABLE_STATUS = "converged"

# Stopping rules (docs/design.md section 1; engine.STOPPING_CODES defines them); `abs` is the
# seed's: the total log-likelihood rose by less than the tolerance. `score` stops on the Newton
# decrement in standard errors, with its own tolerance (issue 18).
STOPPING_RULES: tuple[str, ...] = ("abs", "rel", "aitken", "score", "param")
DEFAULT_STOPPING = "abs"
# A fit the stopping rule ended is `premature` when the limit of its iteration lies more than
# this many of the limit's standard errors away in some parameter (docs/design.md section 2).
PREMATURE_THRESHOLD_SE = 0.1
DEFAULT_SCORE_TOLERANCE = 0.01


def estimated_params(model: str) -> tuple[str, ...]:
    """The entries of PARAMS that `model` estimates (equal_var's sigma counts as both sigmas)."""
    check_model(model)
    names = MODELS[model]
    if "sigma" in names:
        names = (*names[:-1], "sigma1", "sigma2")
    return names


def known_params(model: str) -> tuple[str, ...]:
    estimated = estimated_params(model)
    return tuple(p for p in PARAMS if p not in estimated)


def check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def check_stopping(rule: str) -> None:
    if rule not in STOPPING_RULES:
        raise ValueError(
            f"unknown stopping rule {rule!r}; choose one of {', '.join(STOPPING_RULES)}"
        )
