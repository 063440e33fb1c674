"""The files under results/ are the study: checks that what is there is what this config wrote.

Three things can make a results folder disagree with the study its manifest and report claim
(docs/design.md section 4):

- **stale files**: fits, traces and cell summaries of cells or chunks that the current config
  does not have, left by an earlier study in the same checkout. A reader of `results/fits`
  (pyarrow, DuckDB, R arrow) would count them as this study's rows. `sweep` moves them to
  `results/stale/` (same relative path), one log line per folder.
- **foreign files**: a fits or traces file filed under one cell and chunk but holding the rows of
  another (a copied file). `file_problem` checks the file's metadata (`cell_id`, `chunk`) and
  its rows (`cell_id`, the design columns, the replicates) against the place it is filed.
- **edited files**: a file whose rows changed after its fit job wrote them (a value changed with
  pyarrow, metadata kept; flipped bytes). Each fit job stores the content hash of the file's
  rows (`manifest.table_hash`) under the metadata key `manifest.ROWS_HASH_KEY`;
  `file_problem` recomputes it.

`sweep` runs when the workflow starts (the Snakefile, before any job is planned), the one pass
over the results at start-up: a damaged (truncated, emptied), foreign, edited or unreadable file
is named in one line and moved to `results/stale/` too, so the same run refits it and the
manifest is built over the refitted file. A dry run or a lint moves nothing. Reading every file
in full costs seconds for the default study, so a file found whole is remembered in
`results/.integrity-cache.json` by its size and modification time (ns) and the study's fit
config: an unchanged file is not read again. The cells' hashes jobs make the same checks on the
rows they read (`foreign_check`), and the manifest job adds the files they checked to the cache
(`remember_checked`), so that the run after a study (`make figures`) reads none of them either.
The manifest job checks the rows hash again when it reads each file, so a manifest is never
built over rows changed after the sweep, whatever the cache says.

`recompute.recompute` (`emsim verify --recompute K`) refits sampled replicates of K chunks from
their seeds and compares them with these files.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from emsim.study.manifest import FileCheck, rows_hash, rows_hash_problem
from emsim.study.manifest_cells import file_stamp, read_part
from emsim.study.parquet_io import atomic_write
from emsim.study.schema import (
    CELL_PARAMS,
    FOOTER_CELL_ID,
    FOOTER_CHUNK,
    HIVE_FILE,
    RESULT_KINDS,
    cell_folders,
)

if TYPE_CHECKING:
    from emsim.study.study import Study

__all__ = [
    "CACHE_FILE",
    "STALE_FOLDER",
    "file_problem",
    "foreign_check",
    "move_aside",
    "parquet_damage",
    "read_result",
    "remember_checked",
    "study_key",
    "sweep",
]

STALE_FOLDER = "stale"
# Under results/: the files the sweep read in full and found whole (module docstring).
CACHE_FILE = ".integrity-cache.json"
PARQUET_MAGIC = b"PAR1"
_OTHER_CONFIG = "written for another fit config"
# What a reader of a cell's results reads besides its fits and traces.
_CELL_FOLDERS = ("cells",)


def parquet_damage(path: str | os.PathLike[str]) -> str | None:
    """Why the file at `path` cannot be a whole Parquet file, or None (it looks whole, does not
    exist or cannot be opened). Reads 12 bytes: the magic at both ends and the footer's length,
    which a truncated, emptied or overwritten file does not have: about 20 microseconds a file."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 12:
                return f"{size} bytes, too short for Parquet"
            head = f.read(4)
            f.seek(size - 8)
            tail = f.read(8)
    except OSError:
        return None
    if head != PARQUET_MAGIC or tail[4:] != PARQUET_MAGIC:
        return "no Parquet magic bytes at its start and end: truncated or overwritten"
    if int.from_bytes(tail[:4], "little") + 12 > size:
        return "its footer is longer than the file: truncated"
    return None


def read_result(path: Path) -> tuple[pa.Table | None, str | None]:
    """(table, None), or (None, why it cannot be read) for a damaged file."""
    try:
        return pq.read_table(path), None
    except Exception as err:  # pyarrow raises several types for a damaged file
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return None, f"cannot be read as Parquet: {first}"


def _foreign(
    metadata: Mapping[bytes, bytes] | None,
    table: pa.Table,
    kind: str,
    study: Study,
    cell_id: str,
    chunk: int,
) -> str | None:
    meta = {k.decode(): v.decode() for k, v in (metadata or {}).items()}
    filed = f"cell {cell_id} chunk {chunk}"
    if meta.get(FOOTER_CELL_ID) != cell_id or meta.get(FOOTER_CHUNK) != str(chunk):
        held = f"cell {meta.get(FOOTER_CELL_ID, '?')} chunk {meta.get(FOOTER_CHUNK, '?')}"
        return f"holds {held} (its metadata), not {filed}"
    ids = set(table["cell_id"].unique().to_pylist()) if "cell_id" in table.column_names else set()
    if ids - {cell_id}:
        return f"holds rows of cell {sorted(ids - {cell_id})[0]}, not of {filed}"
    cell = study.cell(cell_id).as_dict()
    for name in CELL_PARAMS:
        if name in table.column_names and set(table[name].unique().to_pylist()) - {cell[name]}:
            return f"its {name} column is not the {cell[name]} of {filed}"
    wanted = set(study.chunk_replicates(chunk))
    found = set(table["replicate"].unique().to_pylist()) if table.num_rows else set()
    if found - wanted or (kind == "fits" and found != wanted):
        return (
            f"holds {len(found)} replicates ({min(found, default='-')}-{max(found, default='-')}),"
            f" not the {len(wanted)} of {filed} ({min(wanted)}-{max(wanted)})"
        )
    return None


def file_problem(path: str | os.PathLike[str], kind: str, study: Study) -> str | None:
    """Why the `kind` file at `path` (results/<kind>/cell=<id>/chunk=<k>.parquet of `study`)
    is not the rows its fit job wrote for that cell and chunk, or None: unreadable, written for
    another fit config, foreign (another cell's or chunk's rows) or edited after it was written
    (its rows hash)."""
    path = Path(path)
    match = HIVE_FILE.match("/".join(path.parts[-2:]))
    if match is None:
        return "not a cell=<id>/chunk=<k>.parquet file"
    damage = parquet_damage(path)
    if damage is not None:
        return f"is damaged ({damage})"
    table, unreadable = read_result(path)
    if table is None:
        return unreadable
    written_for = (table.schema.metadata or {}).get(b"config_hash", b"").decode()
    if written_for != study.fit_hash:
        return f"{_OTHER_CONFIG} {written_for[:12] or '(none)'}"
    cell_id, chunk = match["cell"], int(match["chunk"])
    foreign = _foreign(table.schema.metadata, table, kind, study, cell_id, chunk)
    return foreign or rows_hash_problem(table.schema.metadata, rows_hash(table))


def move_aside(path: Path, root: Path) -> Path:
    """Move `path` (under `root`) to the same relative place under root/stale, replacing what
    an earlier sweep left there."""
    target = root / STALE_FOLDER / path.relative_to(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(path, target)
    return target


def _remove_empty_folders(folder: Path) -> None:
    for sub in reversed(list(cell_folders(folder).values())):
        if not any(sub.iterdir()):
            sub.rmdir()


def _is_current(study: Study, cell_id: str, chunk: int) -> bool:
    return cell_id in study.cell_ids and chunk < study.n_chunks


def stale_files(study: Study, root: str | os.PathLike[str] = "results") -> list[Path]:
    """Files under results/<fits|traces>/ and results/cells/ that `study` does not write: of a
    cell it does not have, a chunk beyond its last, or not named as the workflow names files."""
    root = Path(root)
    found: list[Path] = []
    for kind in RESULT_KINDS:
        folder = root / kind
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.parquet")):
            rel = path.relative_to(folder).as_posix()
            match = HIVE_FILE.match(rel)
            if path.name.startswith(".") or (
                match and _is_current(study, match["cell"], int(match["chunk"]))
            ):
                continue
            found.append(path)
    for name in _CELL_FOLDERS:
        folder = root / name
        if folder.is_dir():
            current = set(study.cell_ids)
            found += [p for cell_id, p in cell_folders(folder).items() if cell_id not in current]
    return found


def foreign_check(study: Study) -> FileCheck:
    """`file_problem`'s check that a file holds the rows of the cell and chunk it is filed
    under, for `manifest.build_manifest` to run on the rows it reads anyway (the cells'
    hashes: `manifest_cells.cell_part`), which checks the fit config and the rows hash
    itself: together the checks of `file_problem`."""

    def check(kind, cell_id, chunk, table, metadata):
        return _foreign(metadata, table, kind, study, cell_id, chunk)

    return check


def remember_checked(
    study: Study, root: str | os.PathLike[str], parts: Iterable[str | os.PathLike[str]]
) -> int:
    """Add to root/CACHE_FILE the files of the cells' hashes `parts` that their job checked as
    `file_problem` does (`foreign_check`) for this study and that are unchanged since (size,
    mtime): the next start-up's sweep does not read them again. Run by the manifest job, after
    every cell's part is written, so that the first run after a study (`make figures`) reads
    no file in full. Returns how many files the cache now holds."""
    root = Path(root)
    key = study_key(study)
    whole = _load_cache(root, key)
    for path in parts:
        part = read_part(path, study.fit_hash)
        if part is None or part.get("checked_for") != key:
            continue
        for entry in part["files"]:
            if entry["stamp"] is not None and file_stamp(root / entry["path"]) == entry["stamp"]:
                whole[entry["path"]] = entry["stamp"]
    _save_cache(root, key, whole)
    return len(whole)


def study_key(study: Study) -> str:
    """What a file's checks depend on besides the file: the fit config and the chunks'
    replicates."""
    chunks = [study.chunk_replicates(k) for k in range(study.n_chunks)]
    spans = ",".join(f"{min(r)}-{max(r)}" for r in chunks if len(r))
    return f"{study.fit_hash} {spans}"


def _load_cache(root: Path, key: str) -> dict[str, list[int]]:
    try:
        cached = json.loads((root / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(cached, dict) or cached.get("study") != key:
        return {}
    files = cached.get("whole")
    return files if isinstance(files, dict) else {}


def _save_cache(root: Path, key: str, whole: dict[str, list[int]]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump({"study": key, "whole": whole}, f, sort_keys=True)

    # A cache that cannot be written (a read-only results folder) costs a reread, nothing more.
    try:
        atomic_write(str(root / CACHE_FILE), write)
    except OSError:
        pass


def _checked_files(
    study: Study, root: Path, cache: bool
) -> tuple[list[tuple[Path, str]], dict[str, list[int]]]:
    """[(path, problem)] of the study's fits and traces files that `file_problem` rejects, and
    the stamps of those found whole (read in full unless the cache has them unchanged)."""
    key = study_key(study)
    known = _load_cache(root, key) if cache else {}
    problems: list[tuple[Path, str]] = []
    whole: dict[str, list[int]] = {}
    for kind in RESULT_KINDS:
        for path in study.existing_outputs(kind, root=str(root)):
            name = Path(path).relative_to(root).as_posix()
            stamp = file_stamp(path)
            if stamp is not None and known.get(name) == stamp:
                whole[name] = stamp
                continue
            problem = file_problem(path, kind, study)
            if problem is None:
                if stamp is not None:
                    whole[name] = stamp
            else:
                problems.append((Path(path), problem))
    return problems, whole


def sweep(
    study: Study,
    root: str | os.PathLike[str] = "results",
    say: Callable[[str], None] | None = None,
    move: bool = True,
    cache: bool = True,
) -> dict[str, list[str]]:
    """Move to root/stale/ what a reader of `root` must not take for this study's results: the
    stale files (`stale_files`) and every fits or traces file of the study that `file_problem`
    rejects (named, one line each: the workflow then refits it). Without `move` (a dry run) only
    says what it would move, and writes nothing. With `cache`, files found whole by an earlier
    sweep and unchanged since (size, mtime) are not read again (root/CACHE_FILE). Returns
    {"stale": [...], "rejected": [...]}, paths as found."""
    import sys

    say = say or (lambda line: print(line, file=sys.stderr))
    root = Path(root)
    verb = "moved" if move else "would move"
    stale = stale_files(study, root)
    rejected: list[tuple[Path, str]] = []
    other_config: list[Path] = []
    problems, whole = _checked_files(study, root, cache)
    for path, problem in problems:
        if problem.startswith(_OTHER_CONFIG):
            other_config.append(path)  # refitted anyway: one line for all of them
        else:
            rejected.append((path, problem))
    for path, problem in rejected:
        shown = path.as_posix()
        say(f"emsim: {shown} {problem}: {verb} to {root / STALE_FOLDER}/, its fit job reruns")
    if stale:
        folders = sorted({p.relative_to(root).parts[0] for p in stale})
        say(
            f"emsim: {len(stale)} file(s) of cells or chunks this config does not have "
            f"(left by an earlier study) under {', '.join(f'{root / f}/' for f in folders)}: "
            f"{verb} to {root / STALE_FOLDER}/, e.g. {stale[0].as_posix()}"
        )
    if other_config:
        say(
            f"emsim: {len(other_config)} fits or traces file(s) {_OTHER_CONFIG} (this study's "
            f"is {study.fit_hash[:12]}): {verb} to {root / STALE_FOLDER}/, their fit jobs rerun"
        )
    if move:
        for path in [*stale, *other_config, *(p for p, _ in rejected)]:
            move_aside(path, root)
        for folder in [*RESULT_KINDS, *_CELL_FOLDERS]:
            if (root / folder).is_dir():
                _remove_empty_folders(root / folder)
        if cache and root.is_dir():
            _save_cache(root, study_key(study), whole)
    return {
        "stale": [str(p) for p in [*stale, *other_config]],
        "rejected": [str(p) for p, _ in rejected],
    }
