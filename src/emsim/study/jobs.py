"""What the Snakemake rules of the study call: one function per rule, no statistics here.

Each `run_*` function sends the job's logging, warnings and Python-level output to the rule's
`log:` file (a `run:` block otherwise prints into Snakemake's own terminal output), then calls
the module that does the work: `fitjob.fit_chunk` (a chunk's fits), `summary.summarise_cell`
and `precision.round_decision` (a cell's tables after a round and its next step),
`rounds.write_gate` (whether a cell goes on), `summary.gather` (the study's tables),
`figures.draw_one`, `report.write_report` and `manifest.build_manifest`. The rules name every
file; these functions pass the rule's paths on (the summary tables as a `summary.SummaryFiles`,
each figure as its named output), so the library never rebuilds a file name.

The Snakefile also calls the helpers here for what runs before any job (`remove_damaged_results`,
`warm_engine`, and `prepare_workers` of `job_workers`: where fit jobs run), for the files a rule
depends on (`module_path`) and for which files the rules of an adaptive study read once its
cells' gates exist (`final_outputs`, `cell_final_outputs`, ...).

Every aggregate step reads exactly the files its rule lists as inputs: fit and traces files left
behind by an earlier design (a removed grid value, a changed chunk size) stay on disk but are not
read, and the figures job's log names those it ignored.

Imports of the aggregate modules are deferred so that parsing the Snakefile does not pay for
matplotlib and seaborn: it happens again in every job that runs as a process of its own (on a
cluster, or locally without the default profile's force-use-threads).
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging
import os
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emsim.study.captions import (
    FIGURE_NAMES,
    FIGURE_TABLES,
    TABLE_FIGURE_NAMES,
    TRACE_FIGURE_NAMES,
    caption_path,
)
from emsim.study.figure_workers import draw_figure, figure_cores, figure_pool, longest_first
from emsim.study.integrity import parquet_damage, remember_checked
from emsim.study.job_workers import (
    cancel_scheduler_timers,
    fit_workers,
    freeze_heap,
    prepare_workers,
    rules_run_by,
    runs_fits,
    stop_workers,
)
from emsim.study.schema import (
    BY_PRECISION,
    CSV_TABLES,
    MEASURE_TABLES,
    SUMMARY_TABLE_SPECS,
    SUMMARY_TABLES,
    cell_hash_path,
    summary_csv_path,
    summary_path,
)
from emsim.study.study import Study
from emsim.study.worker_pool import WorkerDied

if TYPE_CHECKING:
    from emsim.study.cell_summary_job import CellSummaryTask
    from emsim.study.summary import SummaryFiles

__all__ = [
    "FIGURE_MODULES",
    "FIGURE_NAMES",
    "FIGURE_TABLES",
    "TABLE_FIGURE_NAMES",
    "TRACE_FIGURE_NAMES",
    "all_cell_summaries",
    "cancel_scheduler_timers",
    "caption_path",
    "cell_final_outputs",
    "cell_hash_parts",
    "cell_hash_path",
    "figure_cores",
    "figure_outputs",
    "figure_pool",
    "fit_job",
    "freeze_heap",
    "job_logging",
    "module_path",
    "parquet_damage",
    "prepare_workers",
    "run_cell_hashes",
    "run_figures",
    "run_fit",
    "run_manifest",
    "run_report",
    "run_report_body",
    "run_study_config",
    "run_summary",
    "run_summary_csv",
    "stop_workers",
    "summary_csv_outputs",
    "summary_outputs",
    "sweep_results",
]


def module_path(name: str) -> str:
    """File of module emsim.study.<name> (or of a full name `emsim.<name>`) as Python would
    import it (without importing it).

    Used as a rule input so that editing, e.g., the plotting code reruns the figures; resolved
    through the import system, so it is the file the job will actually run, wherever emsim is
    installed or whatever PYTHONPATH says.
    """
    spec = importlib.util.find_spec(name if name.startswith("emsim.") else f"emsim.study.{name}")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"emsim.study.{name}")
    return spec.origin


class _FromThread(logging.Filter):
    """Passes the records logged by one thread: the job's own, when jobs run as threads."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread


# Jobs may run as threads of one Snakemake process (the default profile's force-use-threads):
# the root logger's level and warning capture are shared, so the first job to start sets them
# and the last to end restores them.
_shared_lock = threading.Lock()
_jobs_logging = 0
_root_level = logging.WARNING


class DiskFull(OSError):
    """A job's write failed for lack of space; its message is one line for the user."""

    def __str__(self) -> str:
        return self.strerror


@contextlib.contextmanager
def job_logging(log_path: str | os.PathLike[str]) -> Iterator[logging.Logger]:
    """Log (INFO and up) and warnings of the block into `log_path`; an exception is written
    there with its traceback and re-raised. Only records of the calling thread are written, so
    jobs running side by side in threads keep separate logs. In the main thread (a job in its
    own process) stdout and stderr go to the log as well; threads share those streams, so
    there they are left alone (emsim itself does not print in a job)."""
    global _jobs_logging, _root_level
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handler = logging.FileHandler(log_path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_FromThread())
    with _shared_lock:
        if _jobs_logging == 0:
            _root_level = root.level
            root.setLevel(logging.INFO)
            logging.captureWarnings(True)
        _jobs_logging += 1
        root.addHandler(handler)
    logger = logging.getLogger("emsim.study")
    own_process = threading.current_thread() is threading.main_thread()
    try:
        with contextlib.ExitStack() as stack:
            if own_process:
                stream = stack.enter_context(open(log_path, "a", buffering=1))
                stack.enter_context(contextlib.redirect_stdout(stream))
                stack.enter_context(contextlib.redirect_stderr(stream))
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("default")
            try:
                yield logger
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    logger.error("job failed:\n%s", traceback.format_exc())
                    raise
                # A full disk is the user's to fix, not a bug: one line, no traceback.
                where = f" writing {err.filename}" if err.filename else ""
                message = f"disk full{where}: free space and rerun (finished files are kept)"
                logger.error(message)
                raise DiskFull(errno.ENOSPC, message) from None
            except BaseException:
                logger.error("job failed:\n%s", traceback.format_exc())
                raise
    finally:
        with _shared_lock:
            root.removeHandler(handler)
            _jobs_logging -= 1
            if _jobs_logging == 0:
                logging.captureWarnings(False)
                root.setLevel(_root_level)
        handler.close()


def warm_engine(workflow: Any = None, say: Any = None) -> float:
    """Snakemake's `onstart`: load the compiled engine in the main process before any job
    starts, compiling it (once, with one line saying so) where numba's cache has no code for
    this CPU. Locally the jobs are threads of this process and find it loaded; on a cluster
    every job is a new process that loads it from the same cache, so this fills the cache
    before the first job is submitted instead of letting each job of the first wave compile
    at once. Not for a run of `workflow` that fits nothing (`make figures`, a report): loading
    it would cost such a run about 0.6 s, and its exit 0.1 s more. Returns the seconds
    spent."""
    import sys

    if workflow is not None and not runs_fits(rules_run_by(workflow)):
        return 0.0

    from emsim.warmup import compiled_entry_points, load_engine

    say = say or (lambda line: print(line, file=sys.stderr))
    seconds = load_engine()
    compiled = compiled_entry_points()
    if compiled:
        say(
            f"emsim: compiled the engine for this CPU in {seconds:.0f} s "
            f"(cached in {compiled[0].stats.cache_path})"
        )
    return seconds


def _study_metadata(study: Study) -> dict[str, str]:
    from emsim.study.parquet_io import git_commit

    return {
        "config_hash": study.config_hash,
        "config_hash_scope": "full",
        "fit_config_hash": study.fit_hash,
        "seed": str(study.config["seed"]),
        "git_commit": git_commit(),
        "study": str(study.config["study"]),
    }


# --- which files an adaptive study's rules read (docs/design.md section 10) ----------------------
# `gate` is the Snakefile's checkpoint lookup: (cell, round k) -> the path of the cell's gate after
# its round k. It raises until that gate exists, so a rule asking for these waits for it.


def final_rounds(study: Study, gate: Any) -> dict[str, int]:
    """Each cell's last round."""
    from emsim.study.rounds import final_rounds

    return final_rounds(study.cell_ids, study.plan, gate)


def last_cell_summaries(study: Study, table: str, gate: Any) -> list[str]:
    """Every cell's summary `table` after its last round, in cell order (the order of the
    study's tables: cell ids sorted)."""
    last = final_rounds(study, gate)
    return [study.cell_summary_path(table, cell, last[cell]) for cell in sorted(last)]


def final_outputs(study: Study, kind: str, gate: Any) -> list[str]:
    """The `kind` ("fits", "traces") files of every cell's chunks through its last round."""
    from emsim.study.rounds import final_grid_rounds

    # `Study.outputs` reads the plan's grid: each cell's chunks through its last block.
    return study.outputs(kind, final_grid_rounds(study.cell_ids, study.plan, gate))


def cell_final_outputs(study: Study, cell_id: str, gate: Any) -> list[str]:
    """One cell's fits and traces files through its last round (its manifest part's input)."""
    from emsim.study.rounds import final_grid_rounds
    from emsim.study.schema import result_path

    last = final_grid_rounds([cell_id], study.plan, gate)
    chunks = study.cell_chunks(cell_id, last)
    return [result_path(kind, cell_id, k) for kind in ("fits", "traces") for k in chunks]


def cell_hash_parts(study: Study) -> list[str]:
    """Every cell's manifest part (`manifest_cells`), in cell order."""
    return [cell_hash_path(cell) for cell in sorted(study.cell_ids)]


def all_cell_summaries(study: Study, gate: Any) -> list[str]:
    """Every summary table of every cell after each of its rounds: rule all asks for them, so
    that a deleted one is rebuilt."""
    last = final_rounds(study, gate)
    return [
        study.cell_summary_path(table, cell, round_)
        for cell in sorted(last)
        for round_ in range(last[cell] + 1)
        for table in SUMMARY_TABLES
    ]


def sweep_results(study: Study, root: str = "results", move: bool = True) -> dict[str, list[str]]:
    """Before any job: move stale, foreign, edited and unreadable result files out of `root`
    into root/stale/ (`integrity.sweep`), one line each on stderr."""
    from emsim.study.integrity import sweep

    return sweep(study, root, move=move)


def run_study_config(study: Study, output: Any, log: Any) -> None:
    """results/config.yaml: the study's validated config, the defaults filled in, so that it
    alone (`--configfile results/config.yaml --replace-workflow-config`) gives the same study."""
    import yaml

    from emsim.study.parquet_io import atomic_write

    header = (
        f"# The config of the study in this folder (config hash {study.config_hash}), written by\n"
        "# the workflow; `make figures` redraws this study from it.\n"
    )
    text = header + yaml.safe_dump(study.config, sort_keys=False, allow_unicode=True)

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    with job_logging(log[0]) as logger:
        atomic_write(output.config, write)
        logger.info("recorded the study's config in %s", output.config)


# --- rule entry points ------------------------------------------------------------------------


def run_fit(study: Study, wildcards: Any, output: Any, log: Any) -> None:
    """A chunk's fits: in a fit worker where this job is a thread of a Snakemake process that
    has them (the worker then writes the outputs and the log itself, so that no rows cross a
    pipe), else here."""
    task = study.fit_task(wildcards.cell, wildcards.chunk)
    job = (task, str(output.fits), str(output.traces), str(log[0]), study.summary_line())
    _in_job_worker(
        fit_job, job, str(log[0]), f"the fit of cell {task.cell.cell_id} chunk {task.chunk}"
    )


def _in_job_worker(body: Callable[..., Any], args: tuple, log: str, what: str) -> None:
    """`body(*args)` in a fit worker where this job is a thread of a Snakemake process that has
    them (the body writes the job's outputs and log itself, so that no rows cross a pipe),
    else here. A worker that ends without answering fails the job with one line, also logged."""
    pool = fit_workers()
    if pool is None or threading.current_thread() is threading.main_thread():
        body(*args)
        return
    try:
        pool.run(body, *args)
    except WorkerDied as died:
        message = f"{what} failed: {died}"
        with open(log, "a") as stream:
            stream.write(message + "\n")
        raise WorkerDied(message) from None


def fit_job(task: Any, fits: str, traces: str, log_path: str, headline: str) -> dict[str, Any]:
    """The body of a fit job, wherever it runs: the chunk's fits, logged into `log_path`."""
    import multiprocessing

    from emsim.study.fitjob import fit_chunk

    with job_logging(log_path) as logger:
        logger.info("%s", headline)
        worker = " (a fit worker)" if multiprocessing.parent_process() is not None else ""
        logger.info("fitting in process %d%s", os.getpid(), worker)
        return fit_chunk(task, fits, traces)


def run_manifest(study: Study, input: Any, output: Any, log: Any) -> None:
    """results/manifest.json: content hashes of every fits and traces file of the design, per
    cell and for the whole study (`emsim.study.manifest`). Provenance is limited to what the
    fits depend on (the fit config hash, as in their metadata), so that editing, e.g., figure
    options leaves the manifest current; a file written for another fit config is refused."""
    from emsim.study import manifest, manifest_cells
    from emsim.study.parquet_io import emsim_version, git_commit

    files = [*input.fits, *input.traces]
    with job_logging(log[0]) as logger:
        t0 = time.perf_counter()
        provenance = {
            "emsim_version": emsim_version(),
            "git_commit": git_commit(),
            "config_hash": study.fit_hash,
            "config_hash_scope": "fit",
            "fit_config": study.fit_config,
            "seed": int(study.config["seed"]),
            "n_cells": len(study.cells),
            "replicates": study.replicates_given,
            "chunk_size": study.chunk_size,
        }
        try:
            built, rehashed = manifest_cells.build_from_parts(
                Path(output.manifest).parent,
                files,
                input.parts,
                provenance=provenance,
                expect_config_hash=study.fit_hash,
            )
        except manifest.UnreadableFile as err:
            # Damaged or edited after the workflow's start-up check: moved aside, so that the
            # next run refits it instead of failing here again.
            from emsim.study.integrity import move_aside

            where = move_aside(err.path, Path(output.manifest).parent)
            raise RuntimeError(f"{err}; moved it to {where}: rerun the study to refit it") from None
        manifest.write_manifest(output.manifest, built)
        # The next start-up's sweep then reads none of the files the cells' jobs checked.
        remembered = remember_checked(study, Path(output.manifest).parent, input.parts)
        logger.info(
            "manifest of %d files (%s) in %.1f s: study hash %s; %d cell(s) hashed again "
            "from their rows (changed since their part was written)%s; %d file(s) known whole "
            "for the next start-up",
            len(files),
            ", ".join(f"{k}: {v['rows']} rows" for k, v in built["totals"].items()),
            time.perf_counter() - t0,
            built["study_hash"],
            len(rehashed),
            f": {', '.join(rehashed)}" if rehashed else "",
            remembered,
        )


def run_cell_hashes(study: Study, wildcards: Any, input: Any, output: Any, log: Any) -> None:
    """A cell's manifest part (`manifest_cells.cell_part`): the content hashes of its fits and
    traces, computed while other cells fit, so that the manifest job reads no rows, and the
    start-up sweep's checks on the same rows (`integrity.foreign_check`), so that the next
    start-up need not read them (`integrity.remember_checked`). In a fit worker where the run
    has them, as the cell summaries: reading and hashing the rows holds the GIL."""
    files = [f for f in input if f.endswith(".parquet")]
    job = (study, wildcards.cell, files, str(output.part), str(log[0]))
    _in_job_worker(cell_hashes_job, job, str(log[0]), f"the hashes of cell {wildcards.cell}")


def cell_hashes_job(study: Study, cell_id: str, files: list[str], part: str, log: str) -> None:
    """The body of a cell hashes job, wherever it runs."""
    from emsim.study import integrity, manifest_cells

    with job_logging(log) as logger:
        t0 = time.perf_counter()
        hashes = manifest_cells.cell_part(
            "results",
            files,
            study.fit_hash,
            check=integrity.foreign_check(study),
            checked_for=integrity.study_key(study),
        )
        manifest_cells.write_part(part, hashes)
        logger.info(
            "hashed the %d files of cell %s in %.1f s",
            len(files),
            cell_id,
            time.perf_counter() - t0,
        )


def run_cell_summary(
    study: Study, wildcards: Any, input: Any, output: Any, params: Any, log: Any
) -> None:
    """One cell's measures after one round (its fits of rounds 0 .. round), its precision
    targets and what it does next (docs/design.md section 10), in a fit worker where the run
    has them (`cell_summary_job`)."""
    from emsim.study.cell_summary_job import CellSummaryTask

    task = CellSummaryTask(
        cell_id=wildcards.cell,
        round_=int(wildcards.round),
        fits=tuple(str(f) for f in input.fits),
        outputs={name: str(output[name]) for name in output.keys()},
        log=str(log[0]),
        coverage_level=float(params.coverage_level),
        plan=study.plan,
        precision=study.precision,
        oracle_starts=study.oracle_starts,
        cell=study.cell(wildcards.cell).as_dict(),
        metadata=_study_metadata(study),
    )
    _in_job_worker(cell_summary_job, (task,), task.log, f"the summary of cell {task.cell_id}")


def cell_summary_job(task: CellSummaryTask) -> None:
    """The body of a cell summary job, wherever it runs: `cell_summary_job.summarise_round`,
    logged into the task's log."""
    from emsim.study.cell_summary_job import summarise_round

    with job_logging(task.log):
        summarise_round(task)


def run_cell_gate(study: Study, wildcards: Any, input: Any, output: Any, log: Any) -> None:
    """A cell's gate after a round: whether its summary says to go on, and how far
    (`precision.gate_through`, `rounds.write_gate`)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from emsim.study.precision import gate_through
    from emsim.study.rounds import write_gate

    with job_logging(log[0]) as logger:
        (state,) = pq.read_table(input.replicates, columns=["stop", "replicates"]).to_pylist()
        through = gate_through(state, pd.read_parquet(input.precision), study.plan)
        write_gate(output.gate, wildcards.cell, int(wildcards.round), through)
        logger.info(
            "cell %s after round %s: %s",
            wildcards.cell,
            wildcards.round,
            f"goes on through {through} replicates" if through is not None else state["stop"],
        )


def summary_outputs(folder: str = "results/summary") -> dict[str, str]:
    """The summary rule's named outputs, from `schema.SUMMARY_TABLE_SPECS`: each table's
    Parquet file under the table's name."""
    return {name: summary_path(name, folder) for name in SUMMARY_TABLES}


def summary_csv_outputs(
    csv_output: Callable[[str], Any] = str, folder: str = "results/summary"
) -> dict[str, Any]:
    """The summary_csv rule's named outputs: the CSV copy of each table of `CSV_TABLES` under
    ``<table>_csv``, passed through `csv_output` (the rule gives Snakemake's `report`, so that
    the CSVs are listed in its report)."""
    return {f"{name}_csv": csv_output(summary_csv_path(name, folder)) for name in CSV_TABLES}


def run_summary(study: Study, input: Any, output: Any, params: Any, log: Any) -> None:
    """The study's tables from its cells' summaries after their last rounds, in cell order."""
    import pandas as pd

    from emsim.study import precision, summary
    from emsim.study.parquet_io import write_parquet_atomic

    with job_logging(log[0]) as logger:
        t0 = time.perf_counter()
        n_cells = len(input.performance)
        tables = summary.gather_files(
            [
                summary.SummaryFiles(**{name: input[name][i] for name in MEASURE_TABLES})
                for i in range(n_cells)
            ]
        )
        meta = summary.summary_metadata(float(params.coverage_level), _study_metadata(study))
        # The CSV copies are rule summary_csv's: the figures and the report wait only for these.
        summary.write_tables(tables, _summary_files(output), meta, csv=False)
        # The replicates table records the plan it ran under (the replicates figure draws it).
        plan = study.plan
        plan_meta = precision.plan_metadata(plan.minimum, plan.maximum, plan.step)
        gathered = {
            "replicates": (precision.REPLICATES_SCHEMA, {**meta, **plan_meta}),
            "precision": (precision.ASSESSMENT_SCHEMA, meta),
        }
        for spec in SUMMARY_TABLE_SPECS:
            if spec.written_by != BY_PRECISION:
                continue
            schema, table_meta = gathered[spec.name]
            parts = [pd.read_parquet(f) for f in input[spec.name]]
            frame = pd.concat(parts, ignore_index=True) if parts else schema.empty_table()
            write_parquet_atomic(frame, Path(output[spec.name]), table_meta, schema)
        logger.info(
            "gathered the summaries of %d cells in %.1f s", n_cells, time.perf_counter() - t0
        )


def run_summary_csv(input: Any, output: Any, log: Any) -> None:
    """The CSV copies of the summary tables of `CSV_TABLES`, from their Parquet files (the same
    bytes as written from the gathered frames): 0.7 of the summary job's 1.2 s in issue 22's
    study, now beside the figures instead of before them."""
    from emsim.study import summary

    with job_logging(log[0]) as logger:
        t0 = time.perf_counter()
        for name in CSV_TABLES:
            summary.write_csv_copy(input[name], output[f"{name}_csv"])
        logger.info("wrote %d CSV copies in %.1f s", len(CSV_TABLES), time.perf_counter() - t0)


def _summary_files(input: Any) -> SummaryFiles:
    """The summary tables among the rule's named inputs or outputs (`schema.SUMMARY_TABLES`)."""
    from emsim.study.summary import SummaryFiles

    return SummaryFiles(**{name: input[name] for name in SUMMARY_TABLES if name in input.keys()})


# The figures rule's code inputs (emsim.study.<name>): editing any of them redraws the figures.
FIGURE_MODULES: tuple[str, ...] = (
    "figures",
    "figure_data",
    "figure_style",
    "figure_traces",
    "figure_stopping",
    "figure_misspecification",
    "figure_workers",
    "worker_pool",
    "captions",
)


def figure_outputs(names: Iterable[str], report: Callable[..., Any]) -> dict[str, Any]:
    """A figure rule's named outputs: results/figures/<name>.png of each figure of `names`,
    through `report` (Snakemake's, so that the figures are in its report with their captions;
    `run_report` finds a figure by its file's name)."""
    return {
        name: report(f"results/figures/{name}.png", caption=caption_path(name), category="Figures")
        for name in names
    }


def run_figures(
    study: Study, input: Any, output: Any, params: Any, log: Any, run_cores: int | None
) -> None:
    """Draw each figure of the rule's outputs (named by figure) into its output: in a run of
    more than one core in processes, as many as `figure_cores` gives (the longest figure
    first), else in this one. Processes, not threads: drawing holds the GIL. They are forked
    from a fork server (`figure_pool`), not from Snakemake's process, which runs threads of
    its own. The traces are the kept traces files among the inputs (rule traces_figure);
    stale files beside them are never read (and `sweep_results` has moved them to
    results/stale/)."""
    names = [name for name in FIGURE_NAMES if name in output.keys()]
    traces = [str(f) for f in input.get("traces", [])]
    # The traces figure's rule reads no summary table.
    summary = _summary_files(input) if set(SUMMARY_TABLES) & set(input.keys()) else None
    with job_logging(log[0]) as logger:
        threshold = float(study.config["em"]["premature_threshold"])
        task = (summary, traces, int(params.dpi), threshold)
        processes = figure_cores(run_cores)[0]
        workers = min(processes, len(names)) if processes > 1 else 0
        if workers:
            with figure_pool(workers) as pool:
                futures = [
                    pool.submit(draw_figure, name, str(output[name]), *task)
                    for name in longest_first(names)
                ]
                paths = [future.result() for future in futures]
        else:
            paths = [draw_figure(name, str(output[name]), *task) for name in names]
        logger.info(
            "drew %d figures in %s: %s",
            len(paths),
            f"{workers} process(es)" if workers else "the job's process",
            ", ".join(sorted(p.stem for p in paths)),
        )
        missing = [f for f in output if not Path(f).exists()]
        if missing:
            raise RuntimeError(f"the figures job did not write {missing}")


def run_report_body(study: Study, input: Any, output: Any, log: Any) -> None:
    """The report without its figures (`report.write_report_body`), written while they are
    drawn; `run_report` puts them in."""
    from emsim.study import report
    from emsim.study.parquet_io import fit_provenance

    with job_logging(log[0]) as logger:
        provenance = {**_study_metadata(study), **fit_provenance(input.fits)}
        provenance["wall_time_note"] = "first fit job start to last fit job end"
        report.write_report_body(
            _summary_files(input),
            output.body,
            study=study,
            provenance=provenance,
            fits=list(input.fits),
        )
        logger.info("report body: %s (%s)", output.body, provenance)


def run_report(study: Study, input: Any, output: Any, log: Any) -> None:
    from emsim.study import report

    with job_logging(log[0]) as logger:
        # The figure rules' outputs, results/figures/<name>.png (workflow/rules/figures.smk).
        figures = {Path(path).stem: str(path) for path in input.figures}
        report.embed_figures(input.body, figures, input.stopping_rules, output.html)
        logger.info("report: %s (%d figures)", output.html, len(figures))
