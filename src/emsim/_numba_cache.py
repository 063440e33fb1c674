"""Where numba caches the compiled engine, chosen before numba is imported (issue 13).

numba caches next to the source (`__pycache__`), else under the user's home; when neither is
writable (a read-only install used by someone without a writable HOME) every `cache=True`
function raises RuntimeError when it is defined, so even `emsim --version` failed. Then, and
only when `NUMBA_CACHE_DIR` is unset, this points numba at the first usable of
`$XDG_CACHE_HOME/emsim/numba`, `~/.cache/emsim/numba`, `<tempdir>/emsim-numba-<uid>` (ours and
private: numba's cache files are pickles, so a folder another user can write is never used), or
a fresh private temporary folder for this process.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

__all__ = ["configure_numba_cache"]


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _source_cache_writable(package: Path) -> bool:
    pycache = package / "__pycache__"
    if pycache.exists():
        return _writable_dir(pycache)
    return _writable_dir(package)


def _private_dir(path: Path) -> bool:
    """Create `path` (mode 0700) if missing; True if it is a real folder of ours that no one
    else can write."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or not os.access(path, os.W_OK | os.X_OK):
        return False
    getuid = getattr(os, "getuid", None)
    if getuid is not None and info.st_uid != getuid():
        return False
    return not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _candidates() -> list[Path]:
    import tempfile  # here, not above: it costs `import emsim` 10-20 ms, needed only here

    found = []
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        found.append(Path(xdg) / "emsim" / "numba")
    home = os.path.expanduser("~")
    if home and home != "~" and os.path.isabs(home):
        found.append(Path(home) / ".cache" / "emsim" / "numba")
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    found.append(Path(tempfile.gettempdir()) / f"emsim-numba-{uid}")
    return found


def configure_numba_cache(package: Path | None = None) -> str | None:
    """Set NUMBA_CACHE_DIR if numba could not cache next to the source; return the folder set
    (None: nothing changed)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    package = package or Path(__file__).resolve().parent
    if _source_cache_writable(package):
        return None
    chosen = next((str(c) for c in _candidates() if _private_dir(c)), None)
    if chosen is None:
        import tempfile

        try:
            chosen = tempfile.mkdtemp(prefix="emsim-numba-")
        except OSError:
            return None  # nowhere to write at all: numba says so itself
    os.environ["NUMBA_CACHE_DIR"] = chosen
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba already imported (by the caller): it read the variable
        config.CACHE_DIR = chosen
    return chosen


configure_numba_cache()
