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
  rows (`manifest.table_hash`) under the metadata key `ROWS_HASH_KEY`; `file_problem` recomputes
  it.

`sweep` runs when the workflow starts (the Snakefile, before any job is planned): a foreign,
edited or unreadable file is named in one line and moved to `results/stale/` too, so the same run
refits it and the manifest is built over the refitted file. The manifest job checks the rows hash
again when it reads each file, so a manifest is never built over rows changed after the sweep.

`recompute` (`emsim verify --recompute K`) refits K chunks of a finished study from their seeds
in a temporary folder and compares their rows with the files, value for value.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from emsim.study.schema import (
    CELL_PARAMS,
    FOOTER_CELL_ID,
    FOOTER_CHUNK,
    HIVE_FILE,
    RESULT_KINDS,
    result_path,
)

if TYPE_CHECKING:
    from emsim.study.config import Study

__all__ = [
    "ROWS_HASH_KEY",
    "STALE_FOLDER",
    "Recomputed",
    "file_problem",
    "move_aside",
    "recompute",
    "rows_hash",
    "rows_hash_problem",
    "sweep",
]

# Metadata key of a fits or traces file: sha256 of its rows as the manifest hashes them.
ROWS_HASH_KEY = "rows_sha256"
STALE_FOLDER = "stale"
_OTHER_CONFIG = "written for another fit config"
# What a reader of a cell's results reads besides its fits and traces.
_CELL_FOLDERS = ("cells",)


def rows_hash(table: pa.Table) -> str:
    """The content hash stored under `ROWS_HASH_KEY`: `manifest.table_hash` of the rows."""
    from emsim.study.manifest import table_hash

    return table_hash(table)


def rows_hash_problem(metadata: Mapping[bytes, bytes] | None, computed: str) -> str | None:
    """Why rows hashing to `computed` (`rows_hash`) are not those the writer of a file with
    key-value `metadata` hashed, or None: they are."""
    stored = (metadata or {}).get(ROWS_HASH_KEY.encode(), b"").decode()
    if not stored:
        return f"has no {ROWS_HASH_KEY} in its metadata: not written by this version's fit job"
    if computed != stored:
        return (
            f"its rows changed after its fit job wrote them (content hash {computed[:12]}, "
            f"written as {stored[:12]})"
        )
    return None


def _read(path: Path) -> tuple[pa.Table | None, str | None]:
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
    table, unreadable = _read(path)
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
    for sub in sorted(folder.glob("cell=*"), reverse=True):
        if sub.is_dir() and not any(sub.iterdir()):
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
            cells = {f"cell={cell_id}" for cell_id in study.cell_ids}
            found += sorted(p for p in folder.glob("cell=*") if p.name not in cells)
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


# --- emsim verify --recompute ------------------------------------------------------------------


@dataclass(frozen=True)
class Recomputed:
    """One checked file: `path`, the replicates refitted, and the columns whose values differ
    from the refit (empty: identical), or `problem` when it could not be compared."""

    path: str
    replicates: tuple[int, ...]
    differs: tuple[str, ...] = ()
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.differs and not self.problem


def choose_chunks(
    manifest: Mapping[str, Any], k: int, per_chunk: int, seed: int
) -> list[tuple[str, int, list[int]]]:
    """K (cell, chunk, replicates) of the manifest's fits files, drawn by `random.Random(seed)`:
    K chunks without replacement from the sorted list of all of them, then up to `per_chunk` of
    each chunk's replicates (all of them when `per_chunk` is 0)."""
    from emsim.study.rounds import ReplicatePlan

    plan = ReplicatePlan.from_config(manifest["replicates"], manifest["chunk_size"])
    chunks = sorted(
        {(f["cell_id"], int(f["chunk"])) for f in manifest["files"] if f.get("kind") == "fits"}
    )
    rng = random.Random(seed)
    chosen = []
    for cell_id, chunk in sorted(rng.sample(chunks, min(k, len(chunks)))):
        replicates = list(plan.chunk_replicates(chunk))
        if 0 < per_chunk < len(replicates):
            replicates = sorted(rng.sample(replicates, per_chunk))
        chosen.append((cell_id, chunk, replicates))
    return chosen


def _differing_columns(found: pa.Table, refit: pa.Table) -> tuple[str, ...]:
    from emsim.study.manifest import _column_parts, canonical_table

    a, b = canonical_table(found), canonical_table(refit)
    if a.num_rows != b.num_rows or a.column_names != b.column_names:
        return (f"rows ({a.num_rows} in the file, {b.num_rows} refitted) or columns",)
    return tuple(
        name
        for name in a.column_names
        if list(_column_parts(name, a[name])) != list(_column_parts(name, b[name]))
    )


def _task_for(
    manifest: Mapping[str, Any], root: Path, cell_id: str, chunk: int, replicates: list[int]
):
    """The fit task of the replicates of one chunk: the design from the file's rows (the cell
    id is a digest of it, so rows of another design are refused), the rest from the manifest."""
    from emsim.study.config import Cell, FitTask, stopping_tolerances
    from emsim.study.starts import oracle_start_names

    found, problem = _read(Path(result_path("fits", cell_id, chunk, str(root))))
    if found is None or found.num_rows == 0:
        raise ValueError(problem or "the fits file has no rows")
    row = found.slice(0, 1).to_pylist()[0]
    cell = Cell.make(row["n"], [row["mu1"], row["mu2"]], [row["sigma1"], row["sigma2"]], row["pi"])
    if cell.cell_id != cell_id:
        raise ValueError(f"its rows are of cell {cell.cell_id}")
    fit_config = dict(manifest["fit_config"])
    return FitTask(
        cell=cell,
        chunk=chunk,
        # Any replicates, not only a range: each has its own streams (seeding).
        replicates=replicates,  # type: ignore[arg-type]
        seed=int(manifest["seed"]),
        fit_config=fit_config,
        fit_hash=str(manifest["config_hash"]),
        tolerances=stopping_tolerances(fit_config),
        oracle_starts=oracle_start_names(fit_config),
    )


def _rows_of(table: pa.Table, replicates: list[int]) -> pa.Table:
    import pyarrow.compute as pc

    return table.filter(pc.is_in(table["replicate"], pa.array(replicates, pa.int64())))


def recompute(
    results: str | os.PathLike[str], k: int, per_chunk: int, seed: int
) -> list[Recomputed]:
    """Refit the replicates `choose_chunks` draws from K chunks of the study in `results`, from
    the seed, design and fit config its manifest records, in a temporary folder, and compare
    their fits and traces rows with the files' rows of those replicates: every column but the
    wall-clock `runtime_s`, bit for bit. Each replicate has its own random streams, so a
    replicate refitted alone gives the rows it has in its chunk."""
    from emsim.study.fitjob import fit_chunk
    from emsim.study.manifest import load_manifest, manifest_path

    root = manifest_path(results).parent
    manifest = load_manifest(results)
    out: list[Recomputed] = []
    with tempfile.TemporaryDirectory(prefix="emsim-recompute-") as tmp:
        fresh = {kind: Path(tmp) / f"{kind}.parquet" for kind in RESULT_KINDS}
        for cell_id, chunk, replicates in choose_chunks(manifest, k, per_chunk, seed):
            paths = {kind: result_path(kind, cell_id, chunk, str(root)) for kind in RESULT_KINDS}
            reps = tuple(replicates)
            try:
                fit_chunk(_task_for(manifest, root, cell_id, chunk, replicates), *fresh.values())
            except (ValueError, KeyError) as err:
                out.append(Recomputed(paths["fits"], reps, problem=f"cannot refit: {err}"))
                continue
            for kind in RESULT_KINDS:
                found, problem = _read(Path(paths[kind]))
                if found is None:
                    out.append(Recomputed(paths[kind], reps, problem=problem or ""))
                    continue
                refit = pq.read_table(fresh[kind])
                differs = _differing_columns(_rows_of(found, replicates), refit)
                out.append(Recomputed(paths[kind], reps, differs))
    return out
