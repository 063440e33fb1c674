"""emsim: reproducible simulation studies of EM for two-component Gaussian mixtures."""

# First, before anything imports numba (the engine): a read-only install needs a cache folder.
from . import _numba_cache  # noqa: F401
from .models import METHODS, MODELS, PARAMS, STATUSES

# Eager, although they import numpy: the submodules `emsim.simulate` and `emsim.pseudo_true`,
# imported later by anyone, would otherwise replace the functions of those names by modules.
from .pseudo_true import pseudo_true
from .rrandom import RRandom
from .simulate import simulate

# The engine (numba) and pandas load on first use, not on `import emsim`: `emsim --help` and
# `emsim verify` need neither, and numba alone costs 0.3-0.5 s to import (issue 10).
_LAZY = {
    "BatchFitResult": "api",
    "FitResult": "api",
    "fit": "api",
    "fit_batch": "api",
    "quantile_start": "api",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("emsim")
        except PackageNotFoundError:  # running from a source tree that was never installed
            value = "0.0.0+unknown"
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "METHODS",
    "MODELS",
    "PARAMS",
    "STATUSES",
    "BatchFitResult",
    "FitResult",
    "RRandom",
    "__version__",
    "fit",
    "fit_batch",
    "pseudo_true",
    "quantile_start",
    "simulate",
]
