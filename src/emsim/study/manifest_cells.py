"""The workflow's manifest from per-cell parts (issue 22: a short tail).

A cell's content hashes (`manifest.build_manifest` of its fits and traces files: every rows
hash checked against the one its fit job stored, the fit config checked) are computed by a job
of their own as soon as the cell's last fits exist, while other cells still fit, and written to
``results/hashes/cell=<id>.json`` with each file's size and modification time. The manifest job
after the last fit then reads these parts, not the rows: a file whose size or modification time
is not the one its part recorded (rewritten or edited since), and every cell whose part is
missing, unreadable, of another fit config or of another set of files, is hashed again from its
rows, with the same checks, so that the manifest never vouches for rows it has not checked since
they were last written. The manifest is the one `build_manifest` gives for the same files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from emsim.study import manifest

__all__ = ["PART_FORMAT", "build_from_parts", "cell_part", "file_stamp", "read_part", "write_part"]

PART_FORMAT = "emsim-manifest-cell/1"


def file_stamp(path: str | os.PathLike[str]) -> list[int] | None:
    """[size, mtime_ns] of the file at `path` (None where it cannot be stat'ed): what a file
    checked once is trusted by until it changes, here in the cells' parts and in the start-up
    sweep's cache (`integrity`), which compares the parts' stamps with its own."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def cell_part(
    root: str | os.PathLike[str],
    files: Iterable[str | os.PathLike[str]],
    expect_config_hash: str,
    check: manifest.FileCheck | None = None,
    checked_for: str | None = None,
) -> dict[str, Any]:
    """The manifest entries of one cell's `files` (under the results folder `root`), with
    each file's [size, mtime_ns] as it was when hashed (taken before reading it, so that a
    write during the read leaves a stamp that no longer matches). `check` is run on each file
    as it is read (`manifest.build_manifest`); the part then says which study it checked the
    files for (`checked_for`: `integrity.study_key`), so that the next start-up's sweep need
    not read them again (`integrity.remember_checked`)."""
    root = Path(root)
    files = [Path(f) for f in files]
    stamps = {f.resolve().relative_to(root.resolve()).as_posix(): file_stamp(f) for f in files}
    built = manifest.build_manifest(
        root, files, expect_config_hash=expect_config_hash, require_rows_hash=True, check=check
    )
    part = {
        "format": PART_FORMAT,
        "config_hash": expect_config_hash,
        "cells": built["cells"],
        "files": [{**entry, "stamp": stamps[entry["path"]]} for entry in built["files"]],
    }
    if check is not None and checked_for is not None:
        part["checked_for"] = checked_for
    return part


def write_part(path: str | os.PathLike[str], part: Mapping[str, Any]) -> Path:
    """Write a cell's part as JSON, atomically."""
    from emsim.study.parquet_io import atomic_write

    text = json.dumps(part, indent=1, allow_nan=False) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    return atomic_write(path, write)


def read_part(path: str | os.PathLike[str], config_hash: str) -> dict[str, Any] | None:
    try:
        part = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    ok = isinstance(part, dict) and part.get("format") == PART_FORMAT
    return part if ok and part.get("config_hash") == config_hash else None


def _trusted(
    root: Path, parts: Iterable[str | os.PathLike[str]], wanted: dict[str, set[str]], config: str
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The cells' and files' entries of the parts that still hold: the part covers exactly the
    cell's wanted files and every file's stamp is unchanged."""
    cells: dict[str, Any] = {}
    files: dict[str, dict[str, Any]] = {}
    for path in parts:
        part = read_part(path, config)
        if part is None or len(part["cells"]) != 1:
            continue
        (cell_id, kinds), listed = next(iter(part["cells"].items())), part["files"]
        if {f["path"] for f in listed} != wanted.get(cell_id):
            continue
        if any(file_stamp(root / f["path"]) != f["stamp"] for f in listed):
            continue
        cells[cell_id] = kinds
        files.update({f["path"]: {k: v for k, v in f.items() if k != "stamp"} for f in listed})
    return cells, files


def build_from_parts(
    root: str | os.PathLike[str],
    files: Iterable[str | os.PathLike[str]],
    parts: Iterable[str | os.PathLike[str]],
    provenance: Mapping[str, Any],
    expect_config_hash: str,
) -> tuple[dict[str, Any], list[str]]:
    """The manifest of `files` (as `manifest.build_manifest` with `expect_config_hash` and
    `require_rows_hash` gives it), from the cells' `parts` where they hold; the cells that are
    hashed again from their rows are returned with it."""
    root = Path(root)
    rel = sorted(Path(f).resolve().relative_to(root.resolve()).as_posix() for f in files)
    wanted: dict[str, set[str]] = {}
    for path in rel:
        wanted.setdefault(Path(path).parent.name.removeprefix("cell="), set()).add(path)
    cells, entries = _trusted(root, parts, wanted, expect_config_hash)
    again = sorted(set(wanted) - set(cells))
    if again:
        redo = [root / p for cell in again for p in sorted(wanted[cell])]
        built = manifest.build_manifest(
            root, redo, expect_config_hash=expect_config_hash, require_rows_hash=True
        )
        cells.update(built["cells"])
        entries.update({f["path"]: f for f in built["files"]})
    built = manifest.assemble_manifest(cells, [entries[p] for p in rel], provenance)
    return built, again
