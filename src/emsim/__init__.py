"""emsim: reproducible simulation studies of EM for two-component Gaussian mixtures."""

from importlib.metadata import PackageNotFoundError, version

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
