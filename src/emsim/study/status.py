"""`emsim status`: how far a study is, read from what is on disk (docs/design.md section 7).

It only reads: the recorded config (`results/config.yaml`, or the checkout's `config.yaml` before
a run has written it: the cells and the replicate plan),
the footers of the finished fit files (their replicates and `job_elapsed_s`, a few KB each, never
the rows), the gates of an adaptive study, and Snakemake's state in the checkout (a lock in
`.snakemake/locks` while a Snakemake process holds the folder; its newest log, which names every
job it started, finished or saw fail). A study in progress is not slowed: nothing is locked,
written or fitted.

The recorded config was validated when the run started, so it is parsed without validating it
again (`config.parse_validated`): that saved about a quarter of the command's time.

The ETA is of the fit jobs (the summary, figures and report after them take seconds to a
minute). Remaining work is costed per cell: the job seconds per replicate its finished chunks
took, or, for a cell with none yet, `fixed + per_point * n` fitted to all finished chunks
(`fit_cost_model`: a fit's set-up, starting values and rows cost the same at any n, which a
cost in proportion to n misses). A running job has done as many seconds as it has run (its
start is in Snakemake's log); one that has run beyond its cost needs, on average, as long again,
and so do its cell's other chunks when no chunk of the cell has finished. What is left is
divided by the fit jobs running now (Snakemake's log names them; as many as the run's cores or
cluster slots allow), or, where the log does not show them, by the concurrency this run
achieved: the job seconds of the chunks it finished over the wall time since it started.
The cost of a cell depends on more than n (overlapping components take many more iterations),
so early in a run, before any chunk of a dear cell has finished, the ETA is low.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from emsim.study.schema import (
    FOOTER_EM_ELAPSED_S,
    FOOTER_JOB_ELAPSED_S,
    FOOTER_JOB_STARTED,
    FOOTER_REPLICATES,
    gate_path,
    hive_files,
    kind_folder,
)

__all__ = ["CellStatus", "CostModel", "StudyStatus", "fit_cost_model", "read_status", "render"]

# A job's block in Snakemake's log: the time it started (local time), then its rule and keys.
_JOB = re.compile(
    r"^(?:\[([^\]\n]+)\]\n)?(?:local)?rule fit:\n(?:[ \t]+.*\n)*?[ \t]+jobid: (\d+)\n"
    r"(?:[ \t]+.*\n)*?[ \t]+wildcards: cell=([^,\s]+), chunk=(\d+)",
    re.M,
)
_FINISHED = re.compile(r"^Finished jobid: (\d+)", re.M)
_FAILED = re.compile(r"^Error in rule fit:\n(?:[ \t]+.*\n)*?[ \t]+jobid: (\d+)", re.M)
_LOG_NAME = re.compile(r"^(\d{4}-\d\d-\d\dT\d{6}\.\d+)\.snakemake\.log$")


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
    eta_s: float | None
    note: str
    cells: list[CellStatus]

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


def _finished_chunks(root: Path, study) -> list[_Chunk]:
    """The study's finished fit files, from their footers only."""
    from emsim.study.parquet_io import read_metadata

    chunks = []
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
                )
            )
        except (OSError, KeyError, ValueError):  # written now, or damaged: the next run redoes it
            continue
    return chunks


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
    """(a Snakemake process holds the folder, its newest log, the fit jobs that log started
    and did not finish {(cell, chunk): jobid}, the jobids that failed, when each of those
    jobs started {(cell, chunk): datetime})."""
    locks = checkout / ".snakemake" / "locks"
    running = locks.is_dir() and any(locks.iterdir())
    logs = sorted((checkout / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        return running, None, {}, set(), {}
    text = logs[-1].read_text(errors="replace")
    finished = set(_FINISHED.findall(text))
    failed = set(_FAILED.findall(text))
    blocks = _JOB.findall(text)
    started = {(cell, int(chunk)): job for _, job, cell, chunk in blocks}
    open_jobs = {key: job for key, job in started.items() if job not in finished}
    since = {}
    for stamp, _, cell, chunk in blocks:
        if (cell, int(chunk)) in open_jobs and stamp:
            try:
                # Snakemake stamps a job with the local time, as ctime() writes it.
                when = _dt.datetime.strptime(stamp, "%a %b %d %H:%M:%S %Y").astimezone()
            except ValueError:
                continue
            since[(cell, int(chunk))] = when
    return running, logs[-1], open_jobs, failed, since


def _log_started(log: Path | None) -> _dt.datetime | None:
    match = _LOG_NAME.match(log.name) if log else None
    if not match:
        return None
    # Snakemake names its log after the local time it started.
    return _dt.datetime.strptime(match.group(1), "%Y-%m-%dT%H%M%S.%f").astimezone()


@dataclass(frozen=True)
class CostModel:
    """Job seconds of one replicate of a cell of n points: `fixed + per_point * n`. The fixed
    part (a fit's set-up, its starting values, its rows) is what a cost in proportion to n
    misses, and it is most of a small cell's cost."""

    fixed: float
    per_point: float

    def replicate_seconds(self, n: int) -> float:
        return self.fixed + self.per_point * n


def fit_cost_model(chunks: list[_Chunk]) -> CostModel | None:
    """`fixed + per_point * n` fitted to the finished chunks' job seconds per replicate,
    weighted by their replicates (least squares, neither part below 0). The footers hold a
    chunk's seconds, not each model's or method's; every chunk runs all of them, so a chunk's
    seconds per replicate is the cost to model. With one n only (one finished chunk, or
    several of one cell size) the slope is not identified: the seconds outside EM are taken
    as fixed and the EM seconds as growing with n."""
    if not chunks:
        return None
    weights = [float(c.replicates) for c in chunks]
    xs = [float(c.n) for c in chunks]
    ys = [c.job_seconds / c.replicates for c in chunks]
    total = sum(weights)
    mean_x = sum(w * x for w, x in zip(weights, xs, strict=True)) / total
    mean_y = sum(w * y for w, y in zip(weights, ys, strict=True)) / total
    sxx = sum(w * (x - mean_x) ** 2 for w, x in zip(weights, xs, strict=True))
    if sxx <= 1e-12 * max(mean_x, 1.0) ** 2 * total:
        em = sum(c.em_seconds for c in chunks) / sum(c.replicates for c in chunks)
        em = min(max(em, 0.0), mean_y)
        return CostModel(mean_y - em, em / mean_x)
    sxy = sum(w * (x - mean_x) * (y - mean_y) for w, x, y in zip(weights, xs, ys, strict=True))
    slope = sxy / sxx
    fixed = mean_y - slope * mean_x
    if slope < 0:
        return CostModel(mean_y, 0.0)
    if fixed < 0:
        # Through the origin: the cost in proportion to n that fits the chunks best.
        sxy0 = sum(w * x * y for w, x, y in zip(weights, xs, ys, strict=True))
        return CostModel(0.0, sxy0 / sum(w * x * x for w, x in zip(weights, xs, strict=True)))
    return CostModel(fixed, slope)


def _eta(study, cells, chunks, run_start, now, running_since) -> tuple[float | None, float | None]:
    """(fits per second this run, seconds of fit jobs still to run): see the module's note."""
    running = sum(len(cell.running) for cell in cells)
    this_run = [c for c in chunks if run_start and c.started and c.started >= run_start]
    if run_start is None or not this_run:
        return None, None
    wall = (now - run_start).total_seconds()
    # The jobs running now, as many as the run's cores allow, finish the rest; without them
    # in the log (another executor), the run's concurrency so far.
    done_rate = sum(c.job_seconds for c in this_run) / max(wall, 1e-9)
    concurrency = float(running) if running else max(1.0, done_rate)
    per = study.fits_per_replicate
    rate = sum(c.replicates for c in this_run) * per / max(wall, 1e-9)
    model = fit_cost_model(chunks)
    remaining = 0.0
    for cell in cells:
        done = cell.fits_done / per
        cost = cell.job_seconds / done if done else model.replicate_seconds(cell.n)
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


def read_status(results: str | os.PathLike[str] = "results") -> StudyStatus:
    """The study in `results` as it stands on disk (its checkout: the folder above it)."""
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
    return _assemble(study, cells, chunks, running, log, running_since)


def _assemble(study, cells, chunks, running, log, running_since) -> StudyStatus:
    now = _dt.datetime.now(_dt.UTC)
    run_start = _log_started(log) if running else None
    done = sum(c.fits_done for c in cells)
    total = sum(c.fits_planned for c in cells)
    rate, eta = (
        _eta(study, cells, chunks, run_start, now, running_since) if running else (None, None)
    )
    if done >= total:
        eta, note = 0.0, "every planned fit is done"
    elif running:
        note = "running" if eta is not None else "running; no chunk finished yet in this run"
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
    )


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
    lines += ["", f"rate this run: {rate}; ETA of the fits: {_duration(status.eta_s)}"]
    failed = sum(len(c.failed) for c in status.cells)
    if failed:
        lines.append(
            f"{failed} fit job(s) failed in the last run: see their logs in results/logs/fit"
        )
    return "\n".join(lines) + "\n"


def _chunks(chunks: list[int]) -> str:
    return ",".join(f"#{k}" for k in chunks) if chunks else "-"
