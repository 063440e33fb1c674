"""Reading and writing beside the measures: the summary step streams the study's fits one
cell at a time (docs/design.md section 6), applies the formulas of `emsim.study.measures` and
the diagnostics of `emsim.study.stopping`, and writes the summary tables."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from emsim.study import stopping
from emsim.study.measures import (
    BEST_EXCLUDED_STATUSES,
    CONVERGENCE_COLUMNS,
    PERFORMANCE_COLUMNS,
    add_best_start,
    concat_rows,
    convergence,
    coverage_z,
    performance,
    sort_rows,
)
from emsim.study.parquet_io import atomic_write, provenance_metadata, write_parquet_atomic
from emsim.study.schema import CELL_PARTITION, ORACLE_STARTS

__all__ = [
    "SUMMARY_TABLES",
    "SummaryFiles",
    "read_files",
    "read_fragments",
    "summarise",
    "summary_metadata",
]


# --- the summary tables -----------------------------------------------------------------------


@dataclass(frozen=True)
class SummaryFiles:
    """The Parquet files of the summary tables, one field per table (`SUMMARY_TABLES`).

    The figures and report steps take the files their rules name (``input.performance``, ...);
    a library user gets those `summarise` writes into a folder with `in_folder`. A table
    whose field is None or whose file does not exist reads as empty. A new table is a new
    optional field (default None) here, written by `summarise`.
    """

    performance: Path
    convergence: Path
    stopping_distance: Path | None = None
    zip_pi: Path | None = None

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None:
                object.__setattr__(self, field.name, Path(value))

    @classmethod
    def in_folder(cls, folder: str | os.PathLike[str]) -> SummaryFiles:
        """The tables as `summarise` writes them into `folder`: ``<folder>/<table>.parquet``."""
        folder = Path(folder)
        return cls(**{name: folder / f"{name}.parquet" for name in SUMMARY_TABLES})


# The summary step's tables (results/summary/<name>.parquet; the first two also as CSV).
SUMMARY_TABLES: tuple[str, ...] = tuple(field.name for field in fields(SummaryFiles))


# --- streaming over the study's fits --------------------------------------------------------


def _cell_fragments(fits_dir: Path) -> dict[str, list[pads.Fragment]]:
    """The Parquet fragments of each cell of the hive-partitioned fits, in cell order."""
    # Cell ids are read as strings whatever they look like, so "007" stays "007".
    partitioning = pads.partitioning(CELL_PARTITION, flavor="hive")
    dataset = pads.dataset(fits_dir, format="parquet", partitioning=partitioning)
    cells: dict[str, list[pads.Fragment]] = {}
    for fragment in dataset.get_fragments():
        keys = pads.get_partition_keys(fragment.partition_expression)
        cell = keys.get("cell")
        if cell is None:
            raise ValueError(f"{fragment.path} is not under a cell=<cell_id> folder")
        cells.setdefault(str(cell), []).append(fragment)
    return dict(sorted(cells.items()))


def read_fragments(fragments: list[pads.Fragment]) -> pd.DataFrame:
    """The rows of several Parquet fragments (e.g. the chunks of one cell) as one frame."""
    if not fragments:
        return pd.DataFrame()
    # Each fragment with its own physical schema: an all-NaN chunk written with a null type must
    # not break the others, so the tables are unified (promoted) here rather than by the dataset.
    tables = [fragment.to_table() for fragment in fragments]
    table = pa.concat_tables(tables, promote_options="permissive")
    return table.to_pandas()


def read_files(files: Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """The rows of the Parquet `files` that exist, in their order, as one frame; empty if none.

    Meant for small outputs such as the kept traces, not for the fits (see `summarise`).
    """
    existing = [str(f) for f in files if Path(f).is_file()]
    if not existing:
        return pd.DataFrame()
    return read_fragments(list(pads.dataset(existing, format="parquet").get_fragments()))


# Fit columns that no measure reads (`best_start_gap` is recomputed by `add_best_start`).
_UNUSED_COLUMNS = frozenset({"loglik_start", "swapped", "best_start_gap", "loglik_gap_to_limit"})
# A cell with more fit rows than this is summarised one model at a time: pandas and the long
# table of `performance` take about 2 kB per fit row, and each call has a fixed cost.
_SLICE_ROWS = 200_000


def _iter_slices(
    fits_dir: str | os.PathLike[str],
) -> Iterator[tuple[str, Iterator[pd.DataFrame]]]:
    """Yield (cell_id, frames) for each cell: the cell's fit rows one model at a time.

    Every measure groups by model, `best` is chosen within a replicate x model x method x
    stopping rule and the common set within a replicate x model x start, so the slices
    summarise exactly as the whole cell does. The cell is held as one Arrow table (compact: no
    Python strings, no unused columns) and, when it has more than `_SLICE_ROWS` rows, only one
    slice at a time becomes a pandas frame with its intermediate tables. Smaller cells are one
    slice, which is faster.
    """
    for cell, fragments in _cell_fragments(Path(fits_dir)).items():
        tables = [fragment.to_table() for fragment in fragments]
        table = pa.concat_tables(tables, promote_options="permissive")
        del tables
        table = table.select([c for c in table.column_names if c not in _UNUSED_COLUMNS])
        if "cell_id" not in table.column_names:
            table = table.add_column(0, "cell_id", pa.array([cell] * table.num_rows, pa.string()))
        yield cell, _model_slices(table)


def _model_slices(table: pa.Table) -> Iterator[pd.DataFrame]:
    split = (
        table.num_rows > _SLICE_ROWS
        and "model" in table.column_names
        and table["model"].null_count == 0
    )
    if not split:
        yield table.to_pandas()
        return
    for model in pc.unique(table["model"]).to_pylist():
        yield table.filter(pc.equal(table["model"], model)).to_pandas()


def write_table(frame: pd.DataFrame, parquet_path: Path, meta: Mapping[str, str]) -> None:
    """Atomically write `frame` as Parquet (with `meta` as key-value metadata) and as CSV."""
    write_parquet_atomic(frame, parquet_path, meta)
    csv_path = parquet_path.with_suffix(".csv")
    atomic_write(csv_path, lambda tmp: frame.to_csv(tmp, index=False))


def summary_metadata(
    coverage_level: float, metadata: Mapping[str, object] | None = None
) -> dict[str, str]:
    """The study's provenance metadata (parquet_io) plus the coverage level; `metadata` wins."""
    meta = provenance_metadata(config_hash="", seed=None)
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    meta["coverage_level"] = str(coverage_level)
    return meta


def summarise(
    fits_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    coverage_level: float = 0.95,
    metadata: Mapping[str, str] | None = None,
    best_exclude: tuple[str, ...] = BEST_EXCLUDED_STATUSES,
    oracle_starts: tuple[str, ...] = ORACLE_STARTS,
) -> dict[str, Path]:
    """Summarise the fits dataset into performance and convergence tables, one cell at a time.

    Reads ``fits_dir/cell=<cell_id>/chunk=<k>.parquet``, derives the ``best`` start per cell,
    and writes ``performance.parquet``/``.csv`` and ``convergence.parquet``/``.csv`` into
    `out_dir` atomically. The Parquet key-value metadata is `parquet_io.provenance_metadata`
    (emsim version, git commit, config hash, seed, numpy version, creation time) with the entries
    of `metadata` (e.g. config_hash, seed) filled in or overriding, plus ``coverage_level``.
    `best_exclude` are the statuses and `oracle_starts` the starts that cannot be the derived
    start (see `add_best_start`). Also writes the stopping-rule diagnostics of
    `emsim.study.stopping` (``stopping_distance.parquet``, ``zip_pi.parquet``).
    Returns the paths of the Parquet files by table name (`SUMMARY_TABLES`; the same files as
    ``SummaryFiles.in_folder(out_dir)``).
    """
    coverage_z(coverage_level)  # fail before reading anything if the level is invalid
    perf_parts, conv_parts, distance_parts, zip_parts = [], [], [], []
    for _cell, slices in _iter_slices(fits_dir):
        cell_perf, cell_conv = [], []
        for rows in slices:
            rows = add_best_start(rows, best_exclude, oracle_starts)
            cell_perf.append(performance(rows, coverage_level))
            cell_conv.append(convergence(rows))
            distance_parts.append(stopping.distance_counts(rows))
            zip_parts.append(stopping.zip_rows(rows))
            del rows
        perf_parts.append(
            sort_rows(concat_rows(cell_perf, PERFORMANCE_COLUMNS), with_parameter=True)
        )
        conv_parts.append(
            sort_rows(concat_rows(cell_conv, CONVERGENCE_COLUMNS), with_parameter=False)
        )
    perf = concat_rows(perf_parts, PERFORMANCE_COLUMNS)
    conv = concat_rows(conv_parts, CONVERGENCE_COLUMNS)
    meta = summary_metadata(coverage_level, metadata)
    files = SummaryFiles.in_folder(out_dir)
    paths = {name: getattr(files, name) for name in SUMMARY_TABLES}
    write_table(perf, paths["performance"], meta)
    write_table(conv, paths["convergence"], meta)
    distance = stopping.merge_distance_counts(distance_parts)
    write_parquet_atomic(distance, paths["stopping_distance"], meta)
    write_parquet_atomic(stopping.merge_zip_rows(zip_parts), paths["zip_pi"], meta)
    return paths
