"""The work of a `cell_summary` job (docs/design.md section 10): one cell's measures after one
round, its precision targets and what it does next, written to the job's outputs.

Everything it needs travels in a `CellSummaryTask`, so that it runs in a fit worker process
where the run has them (`job_workers`; `jobs.cell_summary_job` logs it), as a fit job's does.
A summary is a few tenths of a second of pandas; as a thread of Snakemake's process it held the
interpreter lock that Snakemake's scheduler needs, so cores idled between jobs while cells were
summarised (in issue 22's adaptive benchmark, 43 summaries and 8.8 core-s with no job running).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emsim.study.schema import SUMMARY_TABLES, gate_path

if TYPE_CHECKING:
    from emsim.study.precision import Precision
    from emsim.study.rounds import ReplicatePlan

__all__ = ["CellSummaryTask", "summarise_round"]


@dataclass(frozen=True)
class CellSummaryTask:
    """One cell's summary after its round `round_`: the fit files of rounds 0 .. round_, the
    job's output paths by table (`schema.SUMMARY_TABLES`) and log, and the study's settings it
    uses (`cell`: the cell's design columns, `metadata`: the tables' footer)."""

    cell_id: str
    round_: int
    fits: tuple[str, ...]
    outputs: dict[str, str]
    log: str
    coverage_level: float
    plan: ReplicatePlan
    precision: Precision | None
    oracle_starts: tuple[str, ...]
    cell: dict[str, Any]
    metadata: dict[str, str]


def summarise_round(task: CellSummaryTask) -> None:
    """Summarise the cell's fits so far, decide its next step and write every table; logs to
    the "emsim.study" logger (into the job's log under `jobs.job_logging`)."""
    from emsim.study import precision, summary
    from emsim.study.parquet_io import write_parquet_atomic
    from emsim.study.rounds import grid_round

    logger = logging.getLogger("emsim.study")
    t0 = time.perf_counter()
    worker = " (a fit worker)" if multiprocessing.parent_process() is not None else ""
    logger.info("summarising in process %d%s", os.getpid(), worker)
    table = summary.cell_table(list(task.fits))
    # The gate before this round exists: the fits read were chosen by it.
    block = grid_round(task.cell_id, task.round_, task.plan, gate_path)
    replicates = task.plan.replicates_through(block)
    found = len(set(table["replicate"].to_pylist())) if table.num_rows else 0
    if found != replicates:
        raise RuntimeError(
            f"cell {task.cell_id} round {task.round_}: its fit files hold {found} "
            f"replicates, not the {replicates} of rounds 0..{task.round_}"
        )
    tables = summary.summarise_cell(table, task.coverage_level, oracle_starts=task.oracle_starts)
    decision = precision.round_decision(task.precision, tables.performance, replicates, task.plan)
    assessment, stop = decision.assessment, decision.stop
    meta = summary.summary_metadata(task.coverage_level, task.metadata)
    files = summary.SummaryFiles(**{name: task.outputs[name] for name in SUMMARY_TABLES})
    summary.write_tables(tables, files, meta, csv=False)
    write_parquet_atomic(assessment, task.outputs["precision"], meta, precision.ASSESSMENT_SCHEMA)
    state = precision.replicates_row(task.cell, replicates, task.round_ + 1, stop, assessment)
    write_parquet_atomic(state, task.outputs["replicates"], meta, precision.REPLICATES_SCHEMA)
    missed = assessment.loc[~assessment["met"].astype(bool)]
    going_to = f" (through {decision.next_replicates})" if stop == precision.GO_ON else ""
    logger.info(
        "cell %s round %d: %d replicates, %d of %d targets met -> %s%s (%.1f s)%s",
        task.cell_id,
        task.round_,
        replicates,
        len(assessment) - len(missed),
        len(assessment),
        stop,
        going_to,
        time.perf_counter() - t0,
        "".join(
            f"; {r.measure} {r.parameter}: {r.reached:.4g} > {r.target:.4g} "
            f"({r.worst_model}/{r.worst_method}/{r.worst_stopping}/{r.worst_start})"
            for r in missed.itertuples()
        ),
    )
