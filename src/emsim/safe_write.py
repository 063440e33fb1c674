"""Output files of the command line: refuse a path whose writing would destroy something, and
write the rest atomically (issue 13).

Every file the CLI writes goes through `write_output`: first `check_output_path` refuses a
symbolic link, a directory, a device or other non-regular file, and the input data itself; then
the study's `atomic_write` writes a temporary file next to the target and renames it over the
target, removing the temporary file on any failure (a full disk too). The target is either
complete or untouched, and no hidden leftover stays behind.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["UnsafeOutputError", "check_output_path", "write_output"]


class UnsafeOutputError(ValueError):
    """An output path that must not be written (its message names the path and why)."""


def check_output_path(
    path: str | os.PathLike[str], option: str, inputs: Iterable[str | os.PathLike[str]] = ()
) -> Path:
    """`path`, if writing it replaces at most an earlier output; `option` names it in messages.

    Refused: a symbolic link (writing would replace the link, or through it the file it points
    to: neither is what the name says), a directory, a device, pipe or socket, a file without
    write permission (someone protected it), and any of `inputs` (the same file under another
    name or through a hard link included).
    """
    path = Path(path)
    where = f"{option} {path}"
    if path.is_symlink():
        raise UnsafeOutputError(
            f"{where}: is a symbolic link; refusing to write through it (give the real path)"
        )
    try:
        info = path.stat()
    except FileNotFoundError:
        return path
    except NotADirectoryError:  # a parent is a file: writing fails later, with its own message
        return path
    if stat.S_ISDIR(info.st_mode):
        raise UnsafeOutputError(f"{where}: is a directory; give a file name")
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeOutputError(
            f"{where}: is not a regular file (a device, pipe or socket); refusing to replace it"
        )
    for source in inputs:
        try:
            same = os.path.samefile(path, source)
        except OSError:
            same = False
        if same:
            raise UnsafeOutputError(
                f"{where}: is the input data file {source}; writing would destroy it"
            )
    if not info.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        # The rename would replace it all the same (it needs only the folder writable).
        raise UnsafeOutputError(f"{where}: is read-only; refusing to replace it")
    return path


def write_output(
    path: str | os.PathLike[str],
    write: Callable[[str], object],
    option: str,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Check `path` (see `check_output_path`), then write it through `write(temp_name)` and a
    rename. On failure nothing is left: no temporary file, no folder created for it, and a file
    that was at `path` before is unchanged. An OSError names `path`, not the temporary name."""
    from .study.parquet_io import atomic_write

    path = check_output_path(path, option, inputs)
    created = _missing_parents(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(path, lambda tmp: write(tmp))
    except BaseException as err:
        for folder in created:  # deepest first; only the empty ones made for this file
            try:
                folder.rmdir()
            except OSError:
                break
        if isinstance(err, OSError) and not isinstance(err, UnsafeOutputError):
            raise OSError(err.errno, err.strerror or str(err), str(path)) from None
        raise


def _missing_parents(path: Path) -> list[Path]:
    missing = []
    for folder in path.parents:
        if os.path.lexists(folder):
            break
        missing.append(folder)
    return missing
