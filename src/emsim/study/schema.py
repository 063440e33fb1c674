"""The study's data contracts, spelled out once (docs/design.md sections 3 to 5).

Every module that writes, reads, keys, hashes or lays out study results takes the names from
here: the design columns of a cell, the key of a fit row, the Arrow schemas of the fit and trace
files, where those files live, the keys of their Parquet footers, and the start names the
measures treat specially. A change of contract is a change of this file (and of
docs/design.md), never of the modules that use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from emsim.models import PARAMS

__all__ = [
    "ASSESSMENT_SCHEMA",
    "BEST_START",
    "BY_MEASURES",
    "BY_PRECISION",
    "CELL_KEYS",
    "CELL_PARAMS",
    "CELL_PARTITION",
    "CSV_TABLES",
    "DESIGN_FIELDS",
    "FAMILY",
    "FITS_SCHEMA",
    "FIT_ID",
    "FOOTER_CELL_ID",
    "FOOTER_CHUNK",
    "FOOTER_CONFIG_HASH_SCOPE",
    "FOOTER_EM_CPU_S",
    "FOOTER_EM_ELAPSED_S",
    "FOOTER_FIT_CONFIG",
    "FOOTER_JOB_ELAPSED_S",
    "FOOTER_JOB_STARTED",
    "FOOTER_REPLICATES",
    "HIVE_FILE",
    "MEASURE_TABLES",
    "PLAN_METADATA",
    "PROCEDURE",
    "REPLICATES_SCHEMA",
    "RESULT_KINDS",
    "ROW_KEY",
    "SUMMARY_TABLES",
    "SUMMARY_TABLE_SPECS",
    "TRACES_SCHEMA",
    "TRACE_KEY",
    "SummaryTable",
    "cell_folders",
    "cell_summary_path",
    "gate_path",
    "hive_files",
    "kind_folder",
    "result_path",
    "summary_csv_path",
    "summary_path",
]

# --- columns --------------------------------------------------------------------------------

# A cell's data-generating values (section 3): its seeds derive from them, in this order.
CELL_PARAMS: tuple[str, ...] = ("n", "mu1", "mu2", "sigma1", "sigma2", "pi")
# The components' family (`emsim.families`' label: ``normal``, ``t(df=5.0)``); it enters a
# cell's seeds only when it is not normal (section 3).
FAMILY = "family"
# The design columns every fit and trace row starts with, and that group every measure.
CELL_KEYS: tuple[str, ...] = ("cell_id", *CELL_PARAMS, FAMILY)
# How a fit was made, apart from its start; with the start, what tells apart the fits of one
# replicate (section 5).
PROCEDURE: tuple[str, ...] = ("model", "method", "stopping")
FIT_ID: tuple[str, ...] = (*PROCEDURE, "start")
# One fit row; one trace row adds its iteration.
ROW_KEY: tuple[str, ...] = ("cell_id", "replicate", *FIT_ID)
TRACE_KEY: tuple[str, ...] = (*ROW_KEY, "iteration")

DESIGN_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("cell_id", pa.string()),
    ("n", pa.int64()),
    *((p, pa.float64()) for p in CELL_PARAMS[1:]),
    (FAMILY, pa.string()),
    ("replicate", pa.int64()),
)
_FIT_ID_FIELDS = tuple((name, pa.string()) for name in FIT_ID)

FITS_SCHEMA = pa.schema(
    [
        *DESIGN_FIELDS,
        *_FIT_ID_FIELDS,
        ("status", pa.string()),
        ("iterations", pa.int64()),
        ("loglik_evals", pa.int64()),
        ("runtime_s", pa.float64()),
        ("loglik", pa.float64()),
        ("loglik_start", pa.float64()),
        *[(f"est_{p}", pa.float64()) for p in PARAMS],
        ("swapped", pa.bool_()),
        *[(f"se_{p}", pa.float64()) for p in PARAMS],
        *[(f"se_sandwich_{p}", pa.float64()) for p in PARAMS],
        ("rate_empirical", pa.float64()),
        ("rate_theory", pa.float64()),
        ("best_start_gap", pa.float64()),
        ("distance_to_limit", pa.float64()),
        ("loglik_gap_to_limit", pa.float64()),
        ("polish_evals", pa.int64()),
    ]
)
TRACES_SCHEMA = pa.schema(
    [
        *DESIGN_FIELDS,
        *_FIT_ID_FIELDS,
        ("iteration", pa.int64()),
        *[(f"est_{p}", pa.float64()) for p in PARAMS],
        ("loglik", pa.float64()),
        ("diff_loglik", pa.float64()),
    ]
)

# --- files (section 4) ------------------------------------------------------------------------

RESULT_KINDS: tuple[str, ...] = ("fits", "traces")
# Hive layout under a kind's folder: the cell and chunk are readable from the path alone.
_CELL_FOLDER = "cell={cell}"
_RESULT_FILE = _CELL_FOLDER + "/chunk={chunk}.parquet"
HIVE_FILE = re.compile(r"^cell=(?P<cell>[^/]+)/chunk=(?P<chunk>[0-9]+)\.parquet$")
# The partition a kind's folder is read with: cell ids stay strings whatever they look like.
CELL_PARTITION = pa.schema([("cell", pa.string())])


def kind_folder(kind: str, root: str = "results") -> str:
    """The folder holding every `kind` file ("fits" or "traces")."""
    if kind not in RESULT_KINDS:
        raise ValueError(f"unknown result kind {kind!r}; expected one of {RESULT_KINDS}")
    return f"{root}/{kind}"


def cell_folders(folder: str | Path) -> dict[str, Path]:
    """{cell id: its folder} of the `cell=<id>` folders directly under `folder` (results/fits,
    results/traces, results/cells), in path order; empty when `folder` does not exist."""
    prefix = _CELL_FOLDER.format(cell="")
    return {
        path.name[len(prefix) :]: path
        for path in sorted(Path(folder).glob(_CELL_FOLDER.format(cell="*")))
        if path.is_dir()
    }


def result_path(kind: str, cell: str = "{cell}", chunk: object = "{chunk}", root="results") -> str:
    """The path of one cell's chunk of `kind`; left as a Snakemake pattern by default."""
    return f"{kind_folder(kind, root)}/{_RESULT_FILE.format(cell=cell, chunk=chunk)}"


def hive_files(folder: str | Path) -> list[tuple[Path, str, int]]:
    """(path, cell id, chunk) of every file under a kind's `folder` laid out as `result_path`
    lays it out, in path order; files that do not follow the layout are no results and are
    left out. Empty when the folder does not exist."""
    folder = Path(folder)
    found = []
    for path in sorted(folder.glob(_RESULT_FILE.format(cell="*", chunk="*"))):
        match = HIVE_FILE.match(path.relative_to(folder).as_posix())
        if match:
            found.append((path, match["cell"], int(match["chunk"])))
    return found


# --- the summary tables (sections 6 and 10) ---------------------------------------------------

# Who writes a summary table: `summary.summarise` computes the measure tables (section 6) from
# the fits; the workflow's summary step gathers the replicates each cell ran and its precision
# targets from the cells' summaries (section 10).
BY_MEASURES = "measures"
BY_PRECISION = "precision"


@dataclass(frozen=True)
class SummaryTable:
    """One table of the summary step, ``results/summary/<name>.parquet``."""

    name: str
    written_by: str  # BY_MEASURES or BY_PRECISION
    # Also written as ``<name>.csv`` beside the Parquet file (a table for people to open).
    csv: bool
    # Every `summary.SummaryFiles` must name it; the others may be left out (None).
    required: bool = False


# The one list of the summary tables, in the order of `summary.SummaryFiles`' fields (required
# first): the fields, the summary rules' outputs and the CSV copies all follow from it.
SUMMARY_TABLE_SPECS: tuple[SummaryTable, ...] = (
    SummaryTable("performance", BY_MEASURES, csv=True, required=True),
    SummaryTable("convergence", BY_MEASURES, csv=True, required=True),
    SummaryTable("stopping_distance", BY_MEASURES, csv=False),
    SummaryTable("stopping_rules", BY_MEASURES, csv=True),
    SummaryTable("zip_pi", BY_MEASURES, csv=False),
    # Each cell x model x parameter's data-generating and pseudo-true value (section 6).
    SummaryTable("estimands", BY_MEASURES, csv=True),
    SummaryTable("replicates", BY_PRECISION, csv=True),
    SummaryTable("precision", BY_PRECISION, csv=True),
)
SUMMARY_TABLES: tuple[str, ...] = tuple(t.name for t in SUMMARY_TABLE_SPECS)
MEASURE_TABLES: tuple[str, ...] = tuple(
    t.name for t in SUMMARY_TABLE_SPECS if t.written_by == BY_MEASURES
)
CSV_TABLES: tuple[str, ...] = tuple(t.name for t in SUMMARY_TABLE_SPECS if t.csv)


def summary_path(table: str, folder: str = "results/summary") -> str:
    """Where the summary step writes `table`."""
    return f"{folder}/{table}.parquet"


def summary_csv_path(table: str, folder: str = "results/summary") -> str:
    """The CSV copy of `table` beside its Parquet file (the tables of `CSV_TABLES`)."""
    return f"{folder}/{table}.csv"


# --- the replicates and precision tables (section 10) ---------------------------------------

_CELL_FIELDS = [f for f in DESIGN_FIELDS if f[0] in CELL_KEYS]
# The `precision` table: one row per cell x target after the cell's last round
# (`precision.assess`).
ASSESSMENT_SCHEMA = pa.schema(
    [
        *_CELL_FIELDS,
        ("replicates", pa.int64()),
        ("measure", pa.string()),
        ("parameter", pa.string()),
        ("target", pa.float64()),
        ("reached", pa.float64()),
        ("met", pa.bool_()),
        ("rows", pa.int64()),
        *((f"worst_{key}", pa.string()) for key in FIT_ID),
    ]
)
# The `replicates` table: one row per cell, the replicates it ran, in how many rounds, and why
# it stopped (`met`, `max`, `fixed`; `continue` only in a cell's summary before its last round:
# the STOP_* names of `precision`).
REPLICATES_SCHEMA = pa.schema(
    [
        *_CELL_FIELDS,
        ("replicates", pa.int64()),
        ("rounds", pa.int64()),
        ("stop", pa.string()),
        ("targets", pa.int64()),
        ("targets_met", pa.int64()),
    ]
)
# The gathered `replicates` table's key-value metadata also records the plan its cells ran
# under (`precision.plan_metadata`).
PLAN_METADATA: tuple[str, ...] = ("replicates_min", "replicates_max", "replicates_step")


# Each cell's summary tables after each of its rounds, and its gate after each round that says
# whether and how far it goes on (sections 4 and 10).
_CELL_SUMMARY_FILE = "cells/cell={cell}/round={round}/{table}.parquet"
_GATE_FILE = "rounds/cell={cell}/round={round}.json"


def cell_summary_path(
    table: str, cell: str = "{cell}", round_: object = "{round}", root: str = "results"
) -> str:
    """One cell's summary `table` after round `round_`; a Snakemake pattern by default."""
    return f"{root}/{_CELL_SUMMARY_FILE.format(cell=cell, round=round_, table=table)}"


def cell_hash_path(cell: str = "{cell}", root: str = "results") -> str:
    """A cell's manifest part (its files' hashes, `manifest_cells`); a pattern by default."""
    return f"{root}/hashes/cell={cell}.json"


def gate_path(cell: str = "{cell}", round_: object = "{round}", root: str = "results") -> str:
    """Cell `cell`'s gate after its round `round_` (whether and how far it goes on); a pattern
    by default."""
    return f"{root}/{_GATE_FILE.format(cell=cell, round=round_)}"


# --- footers (section 4): key-value metadata a fit job adds to both of its files -------------

FOOTER_CONFIG_HASH_SCOPE = "config_hash_scope"
FOOTER_FIT_CONFIG = "fit_config"
FOOTER_CELL_ID = "cell_id"
FOOTER_CHUNK = "chunk"
FOOTER_REPLICATES = "replicates"
FOOTER_JOB_STARTED = "job_started"
FOOTER_JOB_ELAPSED_S = "job_elapsed_s"
FOOTER_EM_ELAPSED_S = "em_elapsed_s"
FOOTER_EM_CPU_S = "em_cpu_s"

# --- start names the measures treat apart (section 6) ---------------------------------------

# The derived start: per replicate, the fit of highest log-likelihood among the real starts.
# Which starts are oracles (they know the data-generating values, so are never candidates for
# `best`) is no name: the study decides it by strategy (`Study.oracle_starts`), and every
# function that derives `best` takes them as a required argument.
BEST_START = "best"
