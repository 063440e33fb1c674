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

`sweep` runs when the workflow starts (the Snakefile, before any job is planned): a foreign,
edited or unreadable file is named in one line and moved to `results/stale/` too, so the same run
refits it and the manifest is built over the refitted file. The manifest job checks the rows hash
again when it reads each file, so a manifest is never built over rows changed after the sweep.

`recompute.recompute` (`emsim verify --recompute K`) refits sampled replicates of K chunks from
their seeds and compares them with these files.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from emsim.study.manifest import rows_hash, rows_hash_problem
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
    "STALE_FOLDER",
    "file_problem",
    "move_aside",
    "read_result",
    "sweep",
]

STALE_FOLDER = "stale"
_OTHER_CONFIG = "written for another fit config"
# What a reader of a cell's results reads besides its fits and traces.
_CELL_FOLDERS = ("cells",)


def read_result(path: Path) -> tuple[pa.Table | None, str | None]:
    """(table, None), or (None, why it cannot be read) for a damaged file."""
    try:
        return pq.read_table(path), None
    except Exception as err:  # pyarrow raises several types for a damaged file
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return None, f"cannot be read as Parquet: {first}"


def _foreign(table: pa.Table, kind: str, study: Study, cell_id: str, chunk: int) -> str | None:
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
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
    table, unreadable = read_result(path)
    if table is None:
        return unreadable
    written_for = (table.schema.metadata or {}).get(b"config_hash", b"").decode()
    if written_for != study.fit_hash:
        return f"{_OTHER_CONFIG} {written_for[:12] or '(none)'}"
    foreign = _foreign(table, kind, study, match["cell"], int(match["chunk"]))
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


def sweep(
    study: Study,
    root: str | os.PathLike[str] = "results",
    say: Callable[[str], None] | None = None,
    move: bool = True,
) -> dict[str, list[str]]:
    """Move to root/stale/ what a reader of `root` must not take for this study's results: the
    stale files (`stale_files`) and every fits or traces file of the study that `file_problem`
    rejects (named, one line each: the workflow then refits it). Without `move` (a dry run) only
    says what it would move. Returns {"stale": [...], "rejected": [...]}, paths as found."""
    import sys

    say = say or (lambda line: print(line, file=sys.stderr))
    root = Path(root)
    verb = "moved" if move else "would move"
    stale = stale_files(study, root)
    rejected: list[tuple[Path, str]] = []
    other_config: list[Path] = []
    for kind in RESULT_KINDS:
        for path in study.existing_outputs(kind, root=str(root)):
            problem = file_problem(path, kind, study)
            if problem is not None and problem.startswith(_OTHER_CONFIG):
                other_config.append(Path(path))  # refitted anyway: one line for all of them
            elif problem is not None:
                rejected.append((Path(path), problem))
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
    return {
        "stale": [str(p) for p in [*stale, *other_config]],
        "rejected": [str(p) for p, _ in rejected],
    }
