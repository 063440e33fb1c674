"""Reading and writing beside the measures: the summary step streams the study's fits one
cell at a time (docs/design.md section 6), applies the formulas of `emsim.study.measures` and
the diagnostics of `emsim.study.stopping`, and writes the summary tables."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, make_dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from emsim.study import stopping
from emsim.study.measures import (
    BEST_EXCLUDED_STATUSES,
    CONVERGENCE_COLUMNS,
    ESTIMAND_COLUMNS,
    PERFORMANCE_COLUMNS,
    add_best_start,
    concat_rows,
    convergence,
    coverage_z,
    estimands,
    performance,
    sort_rows,
)
from emsim.study.parquet_io import atomic_write, provenance_metadata, write_parquet_atomic
from emsim.study.schema import (
    CELL_PARTITION,
    CSV_TABLES,
    HIVE_FILE,
    MEASURE_TABLES,
    SUMMARY_TABLE_SPECS,
    SUMMARY_TABLES,
    summary_path,
)

__all__ = [
    "CSV_TABLES",
    "MEASURE_TABLES",
    "SUMMARY_TABLES",
    "SummaryFiles",
    "SummaryTables",
    "cell_table",
    "gather",
    "gather_files",
    "read_files",
    "read_fragments",
    "read_tables",
    "summarise",
    "summarise_cell",
    "summary_metadata",
    "write_csv_copy",
    "write_tables",
]


# --- the summary tables -----------------------------------------------------------------------


def _paths_as_paths(self) -> None:
    for field in fields(self):
        value = getattr(self, field.name)
        if value is not None:
            object.__setattr__(self, field.name, Path(value))


def _in_folder(cls, folder: str | os.PathLike[str]):
    """The tables as `summarise` writes them into `folder`: ``<folder>/<table>.parquet``."""
    return cls(**{name: summary_path(name, str(folder)) for name in SUMMARY_TABLES})


# One field per table of `schema.SUMMARY_TABLE_SPECS`, in its order: a required table's field
# has no default, the others default to None. Built from the registry so that a new table is a
# new line there, not here.
SummaryFiles = make_dataclass(
    "SummaryFiles",
    [
        (t.name, Path) if t.required else (t.name, Path | None, dataclass_field(default=None))
        for t in SUMMARY_TABLE_SPECS
    ],
    frozen=True,
    namespace={
        "__module__": __name__,  # so that the figure workers can unpickle it
        "__post_init__": _paths_as_paths,
        "in_folder": classmethod(_in_folder),
    },
)
SummaryFiles.__doc__ = """The Parquet files of the summary tables, one field per table
(`schema.SUMMARY_TABLE_SPECS`: performance, convergence, stopping_distance, stopping_rules,
zip_pi, estimands, replicates, precision; strings become paths).

The figures and report steps take the files their rules name (``input.performance``, ...);
a library user gets those `summarise` writes into a folder with `in_folder`. A table whose
field is None or whose file does not exist reads as empty. The replicates and precision tables
are written by the workflow's summary step, not by `summarise`.
"""


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


def read_fragments(
    fragments: list[pads.Fragment], drop: frozenset[str] = frozenset()
) -> pd.DataFrame:
    """The rows of several Parquet fragments (e.g. the chunks of one cell) as one frame,
    without the columns `drop` (not read at all)."""
    if not fragments:
        return pd.DataFrame()
    # Each fragment with its own physical schema: an all-NaN chunk written with a null type must
    # not break the others, so the tables are unified (promoted) here rather than by the dataset.
    return pa.concat_tables(_tables(fragments, drop), promote_options="permissive").to_pandas()


def _tables(fragments: list[pads.Fragment], drop: frozenset[str]) -> list[pa.Table]:
    """Each fragment's table with its own physical schema, without the columns `drop`."""
    return [
        fragment.to_table(columns=[c for c in fragment.physical_schema.names if c not in drop])
        for fragment in fragments
    ]


def read_files(
    files: Iterable[str | os.PathLike[str]], drop: frozenset[str] = frozenset()
) -> pd.DataFrame:
    """The rows of the Parquet `files` that exist, in their order, as one frame, without the
    columns `drop`; empty if none.

    Meant for small outputs such as the kept traces, not for the fits (see `summarise`).
    """
    existing = [f for f in files if Path(f).is_file()]
    if not existing:
        return pd.DataFrame()
    return read_fragments(_file_fragments(existing), drop)


def _file_fragments(files: Iterable[str | os.PathLike[str]]) -> list[pads.Fragment]:
    """The Parquet fragments of `files`, in their order."""
    paths = [str(f) for f in files]
    return list(pads.dataset(paths, format="parquet").get_fragments()) if paths else []


# Fit columns that no measure reads (`best_start_gap` is recomputed by `add_best_start`).
_UNUSED_COLUMNS = frozenset({"loglik_start", "swapped", "best_start_gap", "loglik_gap_to_limit"})
# A cell with more fit rows than this is summarised one model at a time: pandas and the long
# table of `performance` take about 2 kB per fit row, and each call has a fixed cost.
_SLICE_ROWS = 200_000


def _cell_tables(fits_dir: str | os.PathLike[str]) -> Iterator[pa.Table]:
    """Each cell's fit rows as one Arrow table, in cell order."""
    for fragments in _cell_fragments(Path(fits_dir)).values():
        yield cell_table(fragments)


def cell_table(fragments_or_files: Iterable[pads.Fragment | str | os.PathLike[str]]) -> pa.Table:
    """One cell's fit rows (its chunk files, or their fragments) as one compact Arrow table: no
    Python strings and no columns that no measure reads. ``cell_id`` is taken from the files'
    hive folder when the rows lack it."""
    items = list(fragments_or_files)
    fragments = [i for i in items if isinstance(i, pads.Fragment)]
    fragments += _file_fragments(i for i in items if not isinstance(i, pads.Fragment))
    tables = _tables(fragments, _UNUSED_COLUMNS)
    table = pa.concat_tables(tables, promote_options="permissive")
    del tables
    if "cell_id" not in table.column_names and fragments:
        match = HIVE_FILE.match("/".join(Path(fragments[0].path).parts[-2:]))
        cell = match["cell"] if match else ""
        table = table.add_column(0, "cell_id", pa.array([cell] * table.num_rows, pa.string()))
    return table


def _model_slices(table: pa.Table) -> Iterator[pd.DataFrame]:
    """The cell's rows one model at a time when it has more than `_SLICE_ROWS` rows.

    Every measure groups by model, `best` is chosen within a replicate x model x method x
    stopping rule and the common set within a replicate x model x start, so the slices
    summarise exactly as the whole cell does; only one slice at a time becomes a pandas frame
    with its intermediate tables. Smaller cells are one slice, which is faster.
    """
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


@dataclass
class SummaryTables:
    """The measure tables in memory (`schema.MEASURE_TABLES`, one field each): of one cell
    (`summarise_cell`) or of a study (`gather`)."""

    performance: pd.DataFrame
    convergence: pd.DataFrame
    stopping_distance: pd.DataFrame
    stopping_rules: pd.DataFrame
    zip_pi: pd.DataFrame
    estimands: pd.DataFrame


def summarise_cell(
    table: pa.Table,
    coverage_level: float = 0.95,
    best_exclude: tuple[str, ...] = BEST_EXCLUDED_STATUSES,
    *,
    oracle_starts: tuple[str, ...],
) -> SummaryTables:
    """The measures of one cell's fit rows (`cell_table`): adds the derived start ``best``
    (`add_best_start`), then performance, convergence and the stopping-rule diagnostics."""
    perf, conv, distance, rules, zips, targets = [], [], [], [], [], []
    for rows in _model_slices(table):
        rows = add_best_start(rows, best_exclude, oracle_starts=oracle_starts)
        perf.append(performance(rows, coverage_level))
        targets.append(estimands(rows))
        conv.append(convergence(rows))
        distance.append(stopping.distance_counts(rows))
        rules.append(stopping.rule_summary(rows))
        zips.append(stopping.zip_rows(rows))
        del rows
    return SummaryTables(
        performance=sort_rows(concat_rows(perf, PERFORMANCE_COLUMNS), with_parameter=True),
        convergence=sort_rows(concat_rows(conv, CONVERGENCE_COLUMNS), with_parameter=False),
        stopping_distance=stopping.merge_distance_counts(distance),
        stopping_rules=sort_rows(stopping.merge_rule_summaries(rules), with_parameter=False),
        zip_pi=stopping.merge_zip_rows(zips),
        estimands=concat_rows(targets, ESTIMAND_COLUMNS),
    )


def gather(cells: Iterable[SummaryTables]) -> SummaryTables:
    """The study's tables from its cells' (in cell order): rows concatenated, the distance
    counts summed. Equal to summarising all the fits at once."""
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in MEASURE_TABLES}
    for cell in cells:
        for name in MEASURE_TABLES:
            parts[name].append(getattr(cell, name))
    return SummaryTables(**{name: _COMBINE[name](parts[name]) for name in MEASURE_TABLES})


# How the cells' rows of each measure table make the study's: concatenated in cell order, the
# distance counts summed.
_COMBINE = {
    "performance": lambda parts: concat_rows(parts, PERFORMANCE_COLUMNS),
    "convergence": lambda parts: concat_rows(parts, CONVERGENCE_COLUMNS),
    "stopping_distance": stopping.merge_distance_counts,
    "stopping_rules": stopping.merge_rule_summaries,
    "zip_pi": stopping.merge_zip_rows,
    "estimands": lambda parts: concat_rows(parts, ESTIMAND_COLUMNS),
}


def read_tables(files: SummaryFiles) -> SummaryTables:
    """The measure tables back from Parquet (a cell's, as `write_tables` wrote them)."""
    return SummaryTables(**{name: pd.read_parquet(getattr(files, name)) for name in MEASURE_TABLES})


def gather_files(cells: list[SummaryFiles]) -> SummaryTables:
    """`gather` of the cells' tables as `read_tables` reads them (`cells` in cell order).

    A table whose cells' files all hold rows of one schema is concatenated in Arrow and made a
    frame once, not once per cell (most of the gather's time): the frame the cells' frames
    concatenated give. Any other table is combined cell by cell from the tables already read,
    as `gather` does."""
    combined = {}
    for name in MEASURE_TABLES:
        tables = [pq.ParquetFile(getattr(files, name)).read() for files in cells]
        one_schema = len({t.schema.remove_metadata() for t in tables}) == 1
        if one_schema and all(t.num_rows for t in tables):
            parts = [pa.concat_tables(tables).to_pandas()]
        else:
            parts = [table.to_pandas() for table in tables]
        combined[name] = _COMBINE[name](parts)
    return SummaryTables(**combined)


def write_table(
    frame: pd.DataFrame | pa.Table,
    parquet_path: Path,
    meta: Mapping[str, str],
    schema: pa.Schema | None = None,
) -> None:
    """Atomically write `frame` as Parquet (with `meta` as key-value metadata; `schema` fixes
    the column types) and as CSV beside it."""
    write_parquet_atomic(frame, parquet_path, meta, schema)
    rows = frame.to_pandas() if isinstance(frame, pa.Table) else frame
    _write_csv(rows, parquet_path.with_suffix(".csv"))


def _write_csv(rows: pd.DataFrame, csv_path: str | os.PathLike[str]) -> None:
    atomic_write(csv_path, lambda tmp: rows.to_csv(tmp, index=False))


def write_csv_copy(parquet_path: str | os.PathLike[str], csv_path: str | os.PathLike[str]) -> None:
    """Write a summary table's CSV copy from its Parquet file: the bytes `write_table` writes
    from the frame itself (the table's columns and types round-trip through Parquet)."""
    if Path(csv_path) != Path(parquet_path).with_suffix(".csv"):
        raise ValueError(f"{csv_path} is not the CSV copy of {parquet_path}")
    _write_csv(pd.read_parquet(parquet_path), csv_path)


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
    *,
    oracle_starts: tuple[str, ...],
) -> dict[str, Path]:
    """Summarise the fits dataset into performance and convergence tables, one cell at a time.

    Reads ``fits_dir/cell=<cell_id>/chunk=<k>.parquet``, derives the ``best`` start per cell,
    and writes ``performance.parquet``/``.csv`` and ``convergence.parquet``/``.csv`` into
    `out_dir` atomically. The Parquet key-value metadata is `parquet_io.provenance_metadata`
    (emsim version, git commit, config hash, seed, numpy version, creation time) with the entries
    of `metadata` (e.g. config_hash, seed) filled in or overriding, plus ``coverage_level``.
    `best_exclude` are the statuses and `oracle_starts` the starts that cannot be the derived
    start (see `add_best_start`). Also writes the stopping-rule diagnostics of
    `emsim.study.stopping` (``stopping_distance.parquet``, ``stopping_rules.parquet``/``.csv``,
    ``zip_pi.parquet``).
    Returns the paths of the Parquet files by table name (`SUMMARY_TABLES`; the same files as
    ``SummaryFiles.in_folder(out_dir)``).
    """
    coverage_z(coverage_level)  # fail before reading anything if the level is invalid
    tables = gather(
        summarise_cell(table, coverage_level, best_exclude, oracle_starts=oracle_starts)
        for table in _cell_tables(fits_dir)
    )
    files = SummaryFiles.in_folder(out_dir)
    write_tables(tables, files, summary_metadata(coverage_level, metadata), csv=True)
    return {name: getattr(files, name) for name in MEASURE_TABLES}


def write_tables(
    tables: SummaryTables, files: SummaryFiles, meta: Mapping[str, str], csv: bool
) -> None:
    """Atomically write the measure tables to `files` (Parquet with `meta` as key-value
    metadata); with `csv`, those of `CSV_TABLES` also as CSV beside them."""
    for name in MEASURE_TABLES:
        frame, path = getattr(tables, name), getattr(files, name)
        if csv and name in CSV_TABLES:
            write_table(frame, path, meta)
        else:
            write_parquet_atomic(frame, path, meta)
