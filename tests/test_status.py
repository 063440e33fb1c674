"""Issue 23: `emsim status` counts a study's fits from what is on disk, finished or mid-way.

The study is the session's TINY (tests/conftest.py); the mid-way states are copies of it with
chunk files removed and Snakemake's state (its lock, its log cut before a job finished or with
the job failed) as a run in progress leaves it. Every expected count is computed here from the
config and the files' footers.
"""

from __future__ import annotations

import json
import re
import shutil

import pyarrow.parquet as pq
import pytest
from studyrun import TINY, copy_study

from emsim.cli import main as emsim_main

pytestmark = pytest.mark.slow

FITS_PER_REPLICATE = 3 * 2 * 3 * 2  # TINY's models x methods x starts x rules
CELLS = 2


def status(capsys, workdir, *extra):
    capsys.readouterr()
    code = emsim_main(["status", "--results", str(workdir / "results"), *extra])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out) if "--json" in extra else out


def chunk_files(workdir):
    return sorted((workdir / "results" / "fits").glob("cell=*/chunk=*.parquet"))


@pytest.fixture
def copied(tiny_study, tmp_path):
    """A copy of the tiny study with only the log of the run that fitted it: other tests run
    Snakemake in the shared study too (dry runs, lint), and each run writes a log."""
    workdir = copy_study(tiny_study, tmp_path / "w")
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    fitted = [log for log in logs if "rule fit:" in log.read_text()]
    assert fitted, "no log of the run that fitted the tiny study"
    for log in logs:
        if log != fitted[0]:
            log.unlink()
    return workdir


def test_a_finished_study_is_all_done_with_nothing_running(capsys, tiny_study):
    report = status(capsys, tiny_study, "--json")
    total = CELLS * TINY["replicates"] * FITS_PER_REPLICATE
    assert report["fits_done"] == report["fits_total"] == report["fits_max"] == total
    assert report["eta_s"] == 0 and report["running"] is False
    assert "nothing running" in report["note"]
    assert [c["fits_done"] for c in report["cells"]] == [total // CELLS] * CELLS
    text = status(capsys, tiny_study)
    assert f"{total:,} of {total:,} fits done (100%)" in text
    assert "nothing running" in text


def test_removed_chunks_are_not_counted_and_nothing_runs(capsys, copied):
    gone = chunk_files(copied)[1]
    gone_replicates = pq.read_table(gone, columns=["replicate"]).column(0).unique()
    gone.unlink()
    report = status(capsys, copied, "--json")
    total = CELLS * TINY["replicates"] * FITS_PER_REPLICATE
    assert report["fits_total"] == total
    assert report["fits_done"] == total - len(gone_replicates) * FITS_PER_REPLICATE
    cell = next(c for c in report["cells"] if c["cell_id"] in str(gone))
    assert cell["fits_done"] == (TINY["replicates"] - len(gone_replicates)) * FITS_PER_REPLICATE
    assert report["running"] is False and report["eta_s"] is None
    assert report["note"].startswith("nothing running")


def _cut_log_before_finish(workdir, cell_id: str, chunk: int) -> str:
    """The copy's Snakemake log as it stood while the fit job of `cell_id`/`chunk` ran: its
    real text up to the line saying that job finished. Returns the jobid."""
    log = next((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    text = log.read_text()
    block = re.search(
        rf"rule fit:\n(?:\s+.*\n)*?\s+jobid: (\d+)\n(?:\s+.*\n)*?\s+wildcards: cell={cell_id}, "
        rf"chunk={chunk}\n",
        text,
    )
    assert block, "the log does not name the job"
    jobid = block.group(1)
    finish = text.index(f"Finished jobid: {jobid} ")
    log.write_text(text[:finish])
    return jobid


def _stamp_job_start(workdir, jobid: str, when) -> None:
    """Set the time Snakemake's log gives for the start of job `jobid` (None: no time)."""
    log = next((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    text = log.read_text()
    stamp = "" if when is None else f"[{when.strftime('%a %b %d %H:%M:%S %Y')}]\n"
    text, count = re.subn(
        rf"^(?:\[[^\]\n]+\]\n)?((?:local)?rule fit:\n(?:\s+.*\n)*?\s+jobid: {jobid}\n)",
        lambda m: stamp + m.group(1),
        text,
        flags=re.M,
    )
    assert count == 1
    log.write_text(text)


def test_a_running_job_and_the_eta_of_what_is_left(capsys, copied):
    """Mid-run: one chunk missing, its job started and not finished in Snakemake's log, a lock
    held. Without the job's start time the ETA is that chunk's cost (the cell's other chunk's
    job seconds per replicate, as many replicates) over the jobs running (one); a job that has
    run far beyond that cost needs, on average, as long again."""
    import datetime as dt

    files = chunk_files(copied)
    gone, kept = files[1], files[0]  # the two chunks of the first cell
    cell_id = gone.parent.name.removeprefix("cell=")
    assert kept.parent == gone.parent
    gone.unlink()
    jobid = _cut_log_before_finish(copied, cell_id, 1)
    _stamp_job_start(copied, jobid, None)
    locks = copied / ".snakemake" / "locks"
    locks.mkdir(exist_ok=True)
    (locks / "0.input.lock").write_text("")
    report = status(capsys, copied, "--json")
    assert report["running"] is True
    cell = next(c for c in report["cells"] if c["cell_id"] == cell_id)
    assert cell["running"] == [1] and cell["failed"] == []
    meta = pq.read_schema(kept).metadata
    per_replicate = float(meta[b"job_elapsed_s"]) / 3
    # One job runs: it finishes the rest alone.
    assert report["eta_s"] == pytest.approx(3 * per_replicate, rel=1e-9)
    assert report["rate_fits_per_s"] > 0
    text = status(capsys, copied)
    assert re.search(rf"{cell_id}\s+0\s+108\s+216\s+216\s+#1\s+-", text), text
    _stamp_job_start(copied, jobid, dt.datetime.now() - dt.timedelta(seconds=600))
    assert 3 * per_replicate < 1
    assert status(capsys, copied, "--json")["eta_s"] == pytest.approx(600, abs=5)


def test_a_failed_job_is_named(capsys, copied):
    gone = chunk_files(copied)[1]
    cell_id = gone.parent.name.removeprefix("cell=")
    gone.unlink()
    jobid = _cut_log_before_finish(copied, cell_id, 1)
    log = next((copied / ".snakemake" / "log").glob("*.snakemake.log"))
    with log.open("a") as f:
        f.write(
            "[Sun Dec  6 03:14:13 2026]\nError in rule fit:\n    message: None\n"
            f"    jobid: {jobid}\n    output: {gone.relative_to(copied)}\n"
        )
    report = status(capsys, copied, "--json")
    cell = next(c for c in report["cells"] if c["cell_id"] == cell_id)
    assert cell["failed"] == [1] and cell["running"] == []
    assert "1 fit job(s) failed" in status(capsys, copied)


def test_before_the_run_records_its_config_the_checkouts_is_read(capsys, copied):
    (copied / "results" / "config.yaml").unlink()
    for folder in ("fits", "traces"):
        shutil.rmtree(copied / "results" / folder)
    report = status(capsys, copied, "--json")
    assert report["fits_done"] == 0
    assert report["fits_total"] == CELLS * TINY["replicates"] * FITS_PER_REPLICATE


def test_no_study_is_one_line(capsys, tmp_path):
    assert emsim_main(["status", "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no recorded config" in err


def _footers(costs):
    """Finished chunks as their footers give them: (n, replicates, job seconds, EM seconds)."""
    from emsim.study.status import _Chunk

    return [
        _Chunk(f"c{i}", 0, reps, seconds, None, em, n)
        for i, (n, reps, seconds, em) in enumerate(costs)
    ]


def test_the_cost_model_recovers_a_fixed_cost_and_a_cost_per_point():
    """Chunks whose job seconds are exactly reps x (a + b n): the fit gives a and b back, and
    so costs a cell of an n no chunk had; a cost in proportion to n alone would not."""
    from emsim.study.status import fit_cost_model

    a, b = 0.05, 2e-5
    sizes = [(5000, 20), (5000, 30), (1000, 20), (200, 10)]
    model = fit_cost_model(_footers([(n, r, r * (a + b * n), r * b * n) for n, r in sizes]))
    assert model.fixed == pytest.approx(a, rel=1e-9)
    assert model.per_point == pytest.approx(b, rel=1e-9)
    assert model.replicate_seconds(50) == pytest.approx(a + b * 50, rel=1e-9)
    proportional = sum(r * (a + b * n) for n, r in sizes) / sum(r * n for n, r in sizes) * 50
    assert proportional < 0.2 * model.replicate_seconds(50)


def test_with_one_cell_size_the_seconds_outside_em_are_the_fixed_cost():
    """One n gives no slope: the footer's EM seconds grow with n, the rest is fixed."""
    from emsim.study.status import fit_cost_model

    model = fit_cost_model(_footers([(5000, 20, 12.0, 10.0)]))
    assert model.fixed == pytest.approx(2.0 / 20, rel=1e-12)
    assert model.per_point == pytest.approx(10.0 / 20 / 5000, rel=1e-12)
    assert fit_cost_model([]) is None


def test_a_negative_intercept_or_slope_is_not_extrapolated():
    from emsim.study.status import fit_cost_model

    # Dearer small cells (a cap of iterations reached at small n): a flat cost, the mean.
    flat = fit_cost_model(_footers([(100, 10, 10 * 0.3, 0.0), (1000, 10, 10 * 0.1, 0.0)]))
    assert (flat.fixed, flat.per_point) == (pytest.approx(0.2), 0.0)
    # A line through both points would cost a cell of n = 10 below 0: through the origin.
    origin = fit_cost_model(_footers([(100, 10, 10 * 0.01, 0.0), (1000, 10, 10 * 0.5, 0.0)]))
    assert origin.fixed == 0.0 and origin.replicate_seconds(10) > 0


def test_a_running_chunk_counts_what_it_has_done_and_what_it_shows():
    from emsim.study.status import _cell_seconds_left

    # 100 replicates left at 0.1 s, a chunk of 20 running for 0.5 s: 10 - 0.5 seconds left.
    assert _cell_seconds_left(0.1, 100, {3: (20, 0.5)}, measured=True) == pytest.approx(9.5)
    # It ran 8 s, beyond its predicted 2 s: as long again for it, and (the cell's cost only
    # predicted) 8 x 2 / 20 s for each of the 80 other replicates.
    left = _cell_seconds_left(0.1, 100, {3: (20, 8.0)}, measured=False)
    assert left == pytest.approx(8.0 + 80 * 16.0 / 20)
