"""emsim: reproducible simulation studies of EM for two-component Gaussian mixtures."""

from importlib.metadata import PackageNotFoundError, version

# First, before anything imports numba (the engine): a read-only install needs a cache folder.
from . import _numba_cache  # noqa: F401
from .api import BatchFitResult, FitResult, fit, fit_batch, quantile_start
from .models import METHODS, MODELS, PARAMS, STATUSES
from .rrandom import RRandom
from .simulate import simulate

try:
    __version__ = version("emsim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"


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
    "quantile_start",
    "simulate",
]
