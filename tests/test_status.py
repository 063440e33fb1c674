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
    return copy_study(tiny_study, tmp_path / "w")


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


def test_a_running_job_and_the_eta_of_what_is_left(capsys, copied):
    """Mid-run: one chunk missing, its job started and not finished in Snakemake's log, a lock
    held. The ETA is that chunk's cost (the cell's other chunk's job seconds per replicate, as
    many replicates) over the jobs running (one)."""
    files = chunk_files(copied)
    gone, kept = files[1], files[0]  # the two chunks of the first cell
    cell_id = gone.parent.name.removeprefix("cell=")
    assert kept.parent == gone.parent
    gone.unlink()
    _cut_log_before_finish(copied, cell_id, 1)
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
