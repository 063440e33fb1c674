"""`emsim verify --recompute K`: refit sampled replicates of K chunks of a finished study from
their seeds, in a temporary folder, and compare their rows with the files (docs/design.md
section 4). Each replicate has its own random streams (section 3), so a replicate refitted alone
gives exactly the rows it has in its chunk; `runtime_s` (wall clock) is the only column left out.

`refit` (a task's rows, fitted as a fit job fits them) and `recorded_study` (the study a results
folder records) are also what `emsim replay` refits one fit with (`replay.py`).
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from emsim.bad_input import one_line
from emsim.study.integrity import read_result
from emsim.study.schema import RESULT_KINDS, result_path

__all__ = [
    "Recomputed",
    "choose_chunks",
    "differing_columns",
    "recompute",
    "recorded_study",
    "refit",
]


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
    from emsim.study.config import replicate_plan

    plan = replicate_plan(manifest)
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


def differing_columns(found: pa.Table, refit: pa.Table) -> tuple[str, ...]:
    """The columns in which two tables of the same rows differ, compared as the manifest hashes
    them (rows in key order, every column but `runtime_s`, NaN as one pattern)."""
    from emsim.study.manifest import canonical_table, column_parts

    a, b = canonical_table(found), canonical_table(refit)
    if a.num_rows != b.num_rows or a.column_names != b.column_names:
        return (f"rows ({a.num_rows} in the file, {b.num_rows} refitted) or columns",)
    return tuple(
        name
        for name in a.column_names
        if list(column_parts(name, a[name])) != list(column_parts(name, b[name]))
    )


def _task_for(
    manifest: Mapping[str, Any], root: Path, cell_id: str, chunk: int, replicates: list[int]
):
    """The fit task of the replicates of one chunk: the design from the file's rows (the cell
    id is a digest of it, so rows of another design are refused), the rest from the manifest."""
    from emsim.families import NORMAL, family_from_label
    from emsim.study.config import recorded_fit_task
    from emsim.study.schema import FAMILY
    from emsim.study.study import Cell

    found, problem = read_result(Path(result_path("fits", cell_id, chunk, str(root))))
    if found is None or found.num_rows == 0:
        raise ValueError(problem or "the fits file has no rows")
    row = found.slice(0, 1).to_pylist()[0]
    # Rows written before families existed have no family column: their cells are normal.
    family = family_from_label(row.get(FAMILY) or NORMAL.label)
    mu, sigma = [row["mu1"], row["mu2"]], [row["sigma1"], row["sigma2"]]
    cell = Cell.make(row["n"], mu, sigma, row["pi"], family)
    if cell.cell_id != cell_id:
        raise ValueError(f"its rows are of cell {cell.cell_id}")
    return recorded_fit_task(
        manifest["fit_config"],
        manifest["seed"],
        manifest["config_hash"],
        cell,
        chunk,
        replicates,
    )


def refit(task, folder: str | os.PathLike[str]) -> dict[str, pa.Table]:
    """The fits and traces rows of `task` (a `FitTask`), written by the fit job's own
    `fit_chunk` into `folder` and read back: exactly the rows a job of the study writes."""
    from emsim.study.fitjob import fit_chunk

    fresh = {kind: Path(folder) / f"{kind}.parquet" for kind in RESULT_KINDS}
    fit_chunk(task, *fresh.values())
    return {kind: pq.read_table(path) for kind, path in fresh.items()}


def recorded_study(results: str | os.PathLike[str]):
    """The `Study` the results folder `results` records in its config.yaml (the validated
    config, written when the study starts, so it is there while the study runs). Raises
    ValueError, naming the file, when there is none or it is no valid config."""
    import yaml

    from emsim.study.config import ConfigError, default_schema_path, load_study

    path = Path(results) / "config.yaml"
    if not path.is_file():
        hint = "" if Path(results).is_dir() else " (no such folder)"
        raise ValueError(f"{path}: no recorded config{hint}; start the study first")
    try:
        config = yaml.safe_load(path.read_text())
        return load_study(config, default_schema_path())
    except (OSError, yaml.YAMLError, ConfigError) as err:
        raise ValueError(f"{path}: not a study's config: {one_line(str(err), 200)}") from None


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
    from emsim.study.manifest import load_manifest, manifest_path

    root = manifest_path(results).parent
    manifest = load_manifest(results)
    out: list[Recomputed] = []
    with tempfile.TemporaryDirectory(prefix="emsim-recompute-") as tmp:
        for cell_id, chunk, replicates in choose_chunks(manifest, k, per_chunk, seed):
            paths = {kind: result_path(kind, cell_id, chunk, str(root)) for kind in RESULT_KINDS}
            reps = tuple(replicates)
            try:
                refitted = refit(_task_for(manifest, root, cell_id, chunk, replicates), tmp)
            except (ValueError, KeyError) as err:
                out.append(Recomputed(paths["fits"], reps, problem=f"cannot refit: {err}"))
                continue
            for kind in RESULT_KINDS:
                found, problem = read_result(Path(paths[kind]))
                if found is None:
                    out.append(Recomputed(paths[kind], reps, problem=problem or ""))
                    continue
                differs = differing_columns(_rows_of(found, replicates), refitted[kind])
                out.append(Recomputed(paths[kind], reps, differs))
    return out
