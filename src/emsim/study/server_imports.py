"""The worker processes' fork server imports this first (`worker_pool.server_preload`), for the
imports of the fit and plotting code after it:

- the garbage collector is off: those imports create millions of objects and no garbage, and
  its collections were about 15% of their time (1.94 -> 1.63 s, alternated);
- scipy.linalg and scipy.stats cannot be imported: numba then decides without scipy.linalg
  whether np.convolve may call BLAS (the engine calls neither; `emsim.cli` does the same in its
  commands' processes), and seaborn uses its own KDE instead of scipy.stats' (emsim draws no
  density; every figure is the same file, byte for byte). A further 0.38 s.

The server's imports are on the path to the first fit of a study (`jobs.prepare_workers` starts
it in `onstart`, and the first fit job waits for it), and to the first figure of `make figures`.
Importing this module is its whole effect, in the server, a process of emsim's own; every
worker forked from it undoes it before its first call (`undo`, from `worker_pool.start_worker`),
so that a worker collects garbage and imports scipy as any process does.
"""

from __future__ import annotations

import gc
import sys

__all__ = ["HIDDEN", "undo"]

HIDDEN: tuple[str, ...] = ("scipy.linalg", "scipy.stats")


def _hide() -> None:
    gc.disable()
    for name in HIDDEN:
        sys.modules.setdefault(name, None)


def undo() -> None:
    """In a worker forked from the server: the collector on, scipy importable again."""
    for name in HIDDEN:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
    gc.enable()


_hide()
