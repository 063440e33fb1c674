"""`emsim status`: how far a study is, read from what is on disk (docs/design.md section 7).

It only reads: the recorded config (`results/config.yaml`, or the checkout's `config.yaml` before
a run has written it: the cells and the replicate plan),
the footers of the finished fit files (their replicates and `job_elapsed_s`, a few KB each, never
the rows), the gates of an adaptive study, and Snakemake's state in the checkout (a lock in
`.snakemake/locks` while a Snakemake process holds the folder; its newest log, which names every
job it started, finished or saw fail; its markers of the outputs jobs are making). A study in
progress is not slowed: nothing is locked, written or fitted.

The recorded config was validated when the run started, so it is parsed without validating it
again (`config.parse_validated`): that saved about a quarter of the command's time.

The study's ETA (`eta_s`) is the fit jobs' (`eta_fits_s`) and the steps after the last fit
(`after_fits_seconds`: the summary, figures and report, as long as Snakemake's records say they
took last time, else a tenth of the fits' time). Remaining work is costed per cell: the CPU
seconds per replicate its finished chunks took, or, for a cell with none yet, the cost model of
`status_cost` fitted to all finished chunks, which knows a cell's n and its separation (as the
E-steps its population rate asks for: overlapping cells take many more), so that a run whose
first chunks are cheap, or dear, does not cost the rest like them; CPU seconds become wall
seconds at the slowdown (wall over CPU) of the run's latest chunks, so that a share of the cores
taken by other work, or given back, counts as it is now. A running job has done as many seconds
as it has run (its start: Snakemake's log, or its marker in `.snakemake/incomplete`, which
Snakemake dates at the job's start whatever its console shows); one that has run beyond its cost
needs, on average, as long again, and so do its cell's other chunks when no chunk of the cell
has finished. What is left is divided by the jobs the run may run at once (its log's "Provided
cores", or nodes of a cluster executor; fewer if fewer chunks are left), or, where the log does
not say, by the fit jobs running now, or by the concurrency this run achieved: the job seconds
of the chunks it finished over the wall time since it started.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from emsim.study.schema import (
    FOOTER_EM_CPU_S,
    FOOTER_EM_ELAPSED_S,
    FOOTER_JOB_ELAPSED_S,
    FOOTER_JOB_STARTED,
    FOOTER_REPLICATES,
    gate_path,
    hive_files,
    kind_folder,
)
from emsim.study.snakemake_records import incomplete_markers, records
from emsim.study.status_cost import CostModel, fit_cost_model, separation_steps

__all__ = ["CellStatus", "CostModel", "StudyStatus", "fit_cost_model", "read_status", "render"]

# A job's block in Snakemake's log: the time it started (local time), then its rule and keys.
_JOB = re.compile(
    r"^(?:\[([^\]\n]+)\]\n)?(?:local)?rule fit:\n(?:[ \t]+.*\n)*?[ \t]+jobid: (\d+)\n"
    r"(?:[ \t]+.*\n)*?[ \t]+wildcards: cell=([^,\s]+), chunk=(\d+)",
    re.M,
)
_FINISHED = re.compile(r"^Finished jobid: (\d+)", re.M)
_FAILED = re.compile(r"^Error in rule fit:\n(?:[ \t]+.*\n)*?[ \t]+jobid: (\d+)", re.M)
_SLOTS = re.compile(r"^Provided (?:cores|remote nodes|cluster nodes): (\d+)", re.M)
_LOG_NAME = re.compile(r"^(\d{4}-\d\d-\d\dT\d{6}\.\d+)\.snakemake\.log$")
# Snakemake marks each output of a job it started, until the job ends, with a file in
# .snakemake/incomplete named after the output's path (base64): the marker's time is the job's
# start, whatever the console shows (the default profile's quiet log names no job).
_FIT_OUTPUT = re.compile(r"(?:^|/)fits/cell=([^/]+)/chunk=(\d+)\.parquet$")


@dataclass
class CellStatus:
    """One cell: fits done, planned this round and at most; the chunks running and failed."""

    cell_id: str
    n: int
    round: int
    fits_done: int
    fits_planned: int
    fits_max: int
    job_seconds: float
    running: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


@dataclass
class StudyStatus:
    study: str
    fits_done: int
    fits_total: int
    fits_max: int
    running: bool
    # Snakemake's newest log, and when that run started (seconds before now).
    log: str | None
    run_elapsed_s: float | None
    rate_fits_per_s: float | None
    # The study's: the fit jobs' (eta_fits_s) and the steps after the last fit.
    eta_s: float | None
    note: str
    cells: list[CellStatus]
    eta_fits_s: float | None = None

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class _Chunk:
    cell_id: str
    chunk: int
    replicates: int
    job_seconds: float
    started: _dt.datetime | None
    # The job's seconds inside EM (the rest: simulating, starting values, writing the rows).
    em_seconds: float
    n: int = 0
    # The cell's separation as E-steps (status_cost.separation_steps).
    steps: float = 1.0
    # The CPU seconds of the job's thread inside EM (None in files written before they were).
    em_cpu_seconds: float | None = None

    def on_the_cpu(self) -> _Chunk:
        """The chunk with its seconds inside EM counted as CPU seconds, which other work on
        the machine does not stretch (the seconds outside EM are few: kept as they are)."""
        if self.em_cpu_seconds is None:
            return self
        job = self.job_seconds - self.em_seconds + self.em_cpu_seconds
        return replace(self, job_seconds=job, em_seconds=self.em_cpu_seconds)


def _finished_chunks(root: Path, study) -> list[_Chunk]:
    """The study's finished fit files, from their footers only."""
    from emsim.study.parquet_io import read_metadata

    chunks = []
    steps = cell_steps(study)
    for path, cell_id, chunk in hive_files(Path(kind_folder("fits", str(root)))):
        if cell_id not in study.cell_ids or chunk >= study.n_chunks:
            continue
        try:
            meta = read_metadata(path)
            first, _, last = meta[FOOTER_REPLICATES].partition("-")
            started = meta.get(FOOTER_JOB_STARTED)
            job_seconds = float(meta[FOOTER_JOB_ELAPSED_S])
            chunks.append(
                _Chunk(
                    cell_id,
                    chunk,
                    int(last) - int(first) + 1,
                    job_seconds,
                    _dt.datetime.fromisoformat(started) if started else None,
                    float(meta.get(FOOTER_EM_ELAPSED_S, job_seconds)),
                    study.cell(cell_id).n,
                    steps[cell_id],
                    float(meta[FOOTER_EM_CPU_S]) if FOOTER_EM_CPU_S in meta else None,
                )
            )
        except (OSError, KeyError, ValueError):  # written now, or damaged: the next run redoes it
            continue
    return chunks


def cell_steps(study) -> dict[str, float]:
    cap = int(study.config["em"]["max_iterations"])
    return {cell.cell_id: separation_steps(cell, cap) for cell in study.cells}


def _study_of(root: Path, checkout: Path):
    """The study `root` records, parsed without validating it again (the run validated it
    before writing it: half a second saved, most of this command's time); any problem with it
    is then told by the full `recorded_study`. A run writes results/config.yaml among its
    first jobs; before that, the checkout's config.yaml, validated."""
    import yaml

    from emsim.study.config import parse_validated
    from emsim.study.recompute import recorded_study

    recorded = root / "config.yaml"
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return parse_validated(yaml.load(recorded.read_text(), Loader=loader))
    except Exception:  # any problem is told, in one line, by recorded_study below
        pass
    try:
        return recorded_study(root)
    except ValueError:
        if not (checkout / "config.yaml").is_file():
            raise
        return recorded_study(checkout)


def _current_round(root: Path, study, cell_id: str) -> int:
    """The last round the gates send the cell into (0 in a fixed study)."""
    from emsim.study.rounds import read_gate

    round_ = 0
    for k in range(study.plan.rounds - 1):
        gate = Path(gate_path(cell_id, k, str(root)))
        if not gate.is_file() or read_gate(gate) is None:
            break
        round_ = k + 1
    return round_


def _snakemake_state(checkout: Path) -> tuple[bool, Path | None, dict, set[str], dict]:
    """(a Snakemake process holds the folder, its newest log, the fit jobs started and not
    finished {(cell, chunk): jobid}, the jobids that failed, when each of those jobs started
    {(cell, chunk): datetime}). Jobs are read from the log and, while a process holds the
    folder, from its markers of outputs in the making (`_running_markers`)."""
    locks = checkout / ".snakemake" / "locks"
    running = locks.is_dir() and any(locks.iterdir())
    logs = sorted((checkout / ".snakemake" / "log").glob("*.snakemake.log"))
    open_jobs: dict[tuple[str, int], str] = {}
    failed: set[str] = set()
    since: dict[tuple[str, int], _dt.datetime] = {}
    if logs:
        text = logs[-1].read_text(errors="replace")
        finished = set(_FINISHED.findall(text))
        failed = set(_FAILED.findall(text))
        blocks = _JOB.findall(text)
        started = {(cell, int(chunk)): job for _, job, cell, chunk in blocks}
        open_jobs = {key: job for key, job in started.items() if job not in finished}
        for stamp, _, cell, chunk in blocks:
            if (cell, int(chunk)) in open_jobs and stamp:
                try:
                    # Snakemake stamps a job with the local time, as ctime() writes it.
                    when = _dt.datetime.strptime(stamp, "%a %b %d %H:%M:%S %Y").astimezone()
                except ValueError:
                    continue
                since[(cell, int(chunk))] = when
    if running:
        for key, when in _running_markers(checkout).items():
            open_jobs.setdefault(key, f"{key[0]}/{key[1]}")
            since.setdefault(key, when)
    return running, logs[-1] if logs else None, open_jobs, failed, since


def _running_markers(checkout: Path) -> dict[tuple[str, int], _dt.datetime]:
    """{(cell, chunk): start} of the fit jobs Snakemake marks as making their output."""
    found = {}
    for output, started in incomplete_markers(checkout).items():
        match = _FIT_OUTPUT.search(output)
        if match:
            when = _dt.datetime.fromtimestamp(started, _dt.UTC)
            found[(match.group(1), int(match.group(2)))] = when
    return found


def _log_slots(log: Path | None) -> int | None:
    """The jobs the run may run at once, as its log's header gives them (local cores, or
    the nodes of a cluster executor)."""
    try:
        head = log.read_text(errors="replace")[:4000] if log else ""
    except OSError:
        return None
    match = _SLOTS.search(head)
    return int(match.group(1)) if match else None


def _log_started(log: Path | None) -> _dt.datetime | None:
    match = _LOG_NAME.match(log.name) if log else None
    if not match:
        return None
    # Snakemake names its log after the local time it started.
    return _dt.datetime.strptime(match.group(1), "%Y-%m-%dT%H%M%S.%f").astimezone()


def _eta(
    study, cells, chunks, run_start, now, running_since, slots=None
) -> tuple[float | None, float | None]:
    """(fits per second this run, seconds of fit jobs still to run): see the module's note."""
    running = sum(len(cell.running) for cell in cells)
    this_run = [c for c in chunks if run_start and c.started and c.started >= run_start]
    if run_start is None or not this_run:
        return None, None
    wall = (now - run_start).total_seconds()
    per = study.fits_per_replicate
    # As many jobs as the run's cores (or cluster slots) allow finish the rest, or as many
    # chunks as are left if fewer: not the fit jobs running at this moment, one of which
    # may be giving its core to a cell's summary. Where the log does not say, the jobs
    # running now, else the run's concurrency so far.
    done_rate = sum(c.job_seconds for c in this_run) / max(wall, 1e-9)
    chunks_left = sum(
        math.ceil((cell.fits_planned - cell.fits_done) / per / study.chunk_size) for cell in cells
    )
    if slots:
        concurrency = float(max(1, min(slots, chunks_left)))
    else:
        concurrency = float(running) if running else max(1.0, done_rate)
    rate = sum(c.replicates for c in this_run) * per / max(wall, 1e-9)
    # Costs in CPU seconds, turned into wall seconds at the slowdown (wall over CPU) of the
    # run's latest chunks: a chunk measured while other work shared the cores does not cost
    # the rest as if it still did, nor the other way round.
    on_cpu = [c.on_the_cpu() for c in chunks]
    slowdown = _slowdown(this_run)
    model = fit_cost_model(on_cpu)
    steps = cell_steps(study)
    cpu_of_cell: dict[str, float] = {}
    for c in on_cpu:
        cpu_of_cell[c.cell_id] = cpu_of_cell.get(c.cell_id, 0.0) + c.job_seconds
    remaining = 0.0
    for cell in cells:
        done = cell.fits_done / per
        predicted = model.replicate_seconds(cell.n, steps[cell.cell_id])
        cost = slowdown * (cpu_of_cell[cell.cell_id] / done if done else predicted)
        ran = {
            chunk: max((now - running_since[(cell.cell_id, chunk)]).total_seconds(), 0.0)
            for chunk in cell.running
            if (cell.cell_id, chunk) in running_since
        }
        remaining += _cell_seconds_left(
            cost,
            (cell.fits_planned - cell.fits_done) // per,
            {k: (len(study.plan.chunk_replicates(k)), s) for k, s in ran.items()},
            measured=bool(done),
        )
    return rate, remaining / concurrency


# The latest finished chunks whose wall over CPU seconds is the slowdown to come.
RECENT_CHUNKS = 4


def _slowdown(this_run: list[_Chunk]) -> float:
    """Wall over CPU seconds of the run's `RECENT_CHUNKS` latest finished chunks."""
    latest = sorted(this_run, key=lambda c: c.started + _dt.timedelta(seconds=c.job_seconds))
    latest = latest[-RECENT_CHUNKS:]
    cpu = sum(c.on_the_cpu().job_seconds for c in latest)
    return sum(c.job_seconds for c in latest) / cpu if cpu > 0 else 1.0


def _cell_seconds_left(
    cost: float, replicates_left: int, running: dict[int, tuple[int, float]], measured: bool
) -> float:
    """Job seconds a cell still needs: `replicates_left` (its running chunks' included) at
    `cost` seconds each, less what its running chunks {chunk: (replicates, seconds run)} have
    done. A running chunk that has outrun its cost is, seen at a random moment of its run,
    half-way on average: it needs as long again; and when no chunk of the cell has finished
    (`measured` False, its cost only predicted), the cell's other chunks are as dear."""
    left = 0.0
    for replicates, ran in running.values():
        chunk_seconds = cost * replicates
        if ran >= chunk_seconds:
            chunk_seconds = 2.0 * ran
            if not measured:
                cost = max(cost, chunk_seconds / replicates)
        left += chunk_seconds - ran
        replicates_left -= replicates
    return left + max(replicates_left, 0) * cost


def read_status(
    results: str | os.PathLike[str] = "results", now: _dt.datetime | None = None
) -> StudyStatus:
    """The study in `results` as it stands on disk (its checkout: the folder above it), as of
    `now` (default: now; another moment for benchmarks/eta_accuracy.py's replay)."""
    root = Path(results)
    checkout = root.resolve().parent
    study = _study_of(root, checkout)
    chunks = _finished_chunks(root, study)
    running, log, open_jobs, failed, running_since = _snakemake_state(checkout)
    per = study.fits_per_replicate
    cells = []
    for cell in study.cells:
        mine = [c for c in chunks if c.cell_id == cell.cell_id]
        round_ = _current_round(root, study, cell.cell_id)
        done_chunks = {c.chunk for c in mine}
        cells.append(
            CellStatus(
                cell_id=cell.cell_id,
                n=cell.n,
                round=round_,
                fits_done=sum(c.replicates for c in mine) * per,
                fits_planned=study.plan.replicates_through(round_) * per,
                fits_max=study.plan.maximum * per,
                job_seconds=sum(c.job_seconds for c in mine),
                running=sorted(
                    k
                    for (c, k), job in open_jobs.items()
                    if c == cell.cell_id and running and job not in failed and k not in done_chunks
                ),
                failed=sorted(
                    k for (c, k), job in open_jobs.items() if c == cell.cell_id and job in failed
                ),
            )
        )
    return _assemble(study, cells, chunks, (running, log, running_since, checkout), now)


def _assemble(study, cells, chunks, snakemake, now=None) -> StudyStatus:
    running, log, running_since, checkout = snakemake
    now = now or _dt.datetime.now(_dt.UTC)
    run_start = _log_started(log) if running else None
    done = sum(c.fits_done for c in cells)
    total = sum(c.fits_planned for c in cells)
    rate, eta_fits = (
        _eta(study, cells, chunks, run_start, now, running_since, _log_slots(log))
        if running
        else (None, None)
    )
    eta = None
    if done >= total:
        eta = eta_fits = 0.0
        note = "every planned fit is done"
    elif running:
        note = "running" if eta_fits is not None else "running; no chunk finished yet in this run"
        if eta_fits is not None:
            fits_wall = (now - run_start).total_seconds() + eta_fits
            eta = eta_fits + after_fits_seconds(checkout, fits_wall)
    else:
        note = "nothing running: no Snakemake process holds this folder"
    if not running and done >= total:
        note += "; nothing running"
    return StudyStatus(
        study=str(study.config["study"]),
        fits_done=done,
        fits_total=total,
        fits_max=sum(c.fits_max for c in cells),
        running=running,
        log=str(log) if log else None,
        run_elapsed_s=(now - run_start).total_seconds() if run_start else None,
        rate_fits_per_s=rate,
        eta_s=eta,
        note=note,
        cells=cells,
        eta_fits_s=eta_fits,
    )


# The steps after the last fit (summary, figures, report), as a share of the fit jobs' wall
# time, where no run of them is on record: 10% on the default study, 2 cores (README).
AFTER_FITS_SHARE = 0.10
_AFTER_FITS_RULES = ("summary", "figures", "report")


def after_fits_seconds(checkout: Path, fits_wall_s: float) -> float:
    """Seconds the steps after the last fit will take: as long as their last recorded run
    (Snakemake's records of their outputs: each one's rule, start and end), or, without a
    record of each, `AFTER_FITS_SHARE` of the fit jobs' wall time."""
    spans: dict[str, float] = {}
    for output, entry in records(checkout).items():
        if not output.startswith(("results/summary/", "results/figures/", "results/report/")):
            continue
        try:
            rule, seconds = entry["rule"], float(entry["endtime"]) - float(entry["starttime"])
        except (KeyError, TypeError, ValueError):
            continue
        if rule in _AFTER_FITS_RULES:
            spans[rule] = max(spans.get(rule, 0.0), seconds)
    if all(rule in spans for rule in _AFTER_FITS_RULES):
        return sum(spans.values())
    return AFTER_FITS_SHARE * max(fits_wall_s, 0.0)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return (
        f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"
    )


def render(status: StudyStatus) -> str:
    """The status as text: the study's totals, one line per cell, the ETA."""
    share = status.fits_done / status.fits_total if status.fits_total else 1.0
    lines = [
        f"study {status.study!r}: {status.fits_done:,} of {status.fits_total:,} fits done "
        f"({share:.0%}); at most {status.fits_max:,} (adaptive rounds)"
        if status.fits_max != status.fits_total
        else f"study {status.study!r}: {status.fits_done:,} of {status.fits_total:,} fits done "
        f"({share:.0%})",
        status.note + (f" (log {status.log})" if status.running and status.log else ""),
        "",
        f"{'cell':<40} {'round':>5} {'done':>9} {'planned':>9} {'at most':>9}  running  failed",
    ]
    for cell in status.cells:
        lines.append(
            f"{cell.cell_id:<40} {cell.round:>5} {cell.fits_done:>9,} {cell.fits_planned:>9,} "
            f"{cell.fits_max:>9,}  {_chunks(cell.running):<7}  {_chunks(cell.failed)}"
        )
    rate = f"{status.rate_fits_per_s:,.0f} fits/s" if status.rate_fits_per_s else "no rate yet"
    lines += [
        "",
        f"rate this run: {rate}; ETA of the fits: {_duration(status.eta_fits_s)}, of the "
        f"study (summary, figures and report after them): {_duration(status.eta_s)}",
    ]
    failed = sum(len(c.failed) for c in status.cells)
    if failed:
        lines.append(
            f"{failed} fit job(s) failed in the last run: see their logs in results/logs/fit"
        )
    return "\n".join(lines) + "\n"


def _chunks(chunks: list[int]) -> str:
    return ",".join(f"#{k}" for k in chunks) if chunks else "-"
