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
    # The chunk costs as many CPU seconds as its cell's other chunk took (3 replicates each)
    # at the slowdown, wall over CPU seconds, of the run's (at most 4) latest chunks; one job
    # runs (one chunk is left, of the log's 2 cores): it finishes the rest alone.
    footers = [
        {k.decode(): v.decode() for k, v in pq.read_schema(path).metadata.items()}
        for path in chunk_files(copied)
    ]

    def ended(m):
        return dt.datetime.fromisoformat(m["job_started"]).timestamp() + float(m["job_elapsed_s"])

    footers.sort(key=ended)
    walls = [float(m["job_elapsed_s"]) for m in footers]
    cpus = [
        w - float(m["em_elapsed_s"]) + float(m["em_cpu_s"])
        for w, m in zip(walls, footers, strict=True)
    ]
    slowdown = sum(walls[-4:]) / sum(cpus[-4:])
    meta = {k.decode(): v.decode() for k, v in pq.read_schema(kept).metadata.items()}
    kept_cpu = float(meta["job_elapsed_s"]) - float(meta["em_elapsed_s"]) + float(meta["em_cpu_s"])
    per_replicate = slowdown * kept_cpu / 3
    assert report["eta_fits_s"] == pytest.approx(3 * per_replicate, rel=1e-9)
    assert report["rate_fits_per_s"] > 0
    text = status(capsys, copied)
    assert re.search(rf"{cell_id}\s+0\s+108\s+216\s+216\s+#1\s+-", text), text
    _stamp_job_start(copied, jobid, dt.datetime.now() - dt.timedelta(seconds=600))
    assert 3 * per_replicate < 600  # it has run beyond its cost
    assert status(capsys, copied, "--json")["eta_fits_s"] == pytest.approx(600, abs=5)


def _running_without_a_log_of_jobs(copied):
    """The copy mid-run as the default (quiet) profile leaves it: one chunk missing, its job
    in the making (Snakemake's marker of its output, dated 30 s ago), a lock held, and a log
    of this run that names no job. Returns the cell."""
    import base64
    import datetime as dt
    import os
    import time

    gone = chunk_files(copied)[1]
    cell_id = gone.parent.name.removeprefix("cell=")
    gone.unlink()
    snake = copied / ".snakemake"
    for log in (snake / "log").glob("*.snakemake.log"):
        log.unlink()
    started = dt.datetime.now() - dt.timedelta(seconds=120)
    (snake / "log" / f"{started.strftime('%Y-%m-%dT%H%M%S.%f')}.snakemake.log").write_text("")
    (snake / "locks").mkdir(exist_ok=True)
    (snake / "locks" / "0.input.lock").write_text("")
    (snake / "incomplete").mkdir(exist_ok=True)
    output = str(gone.relative_to(copied)).encode()
    marker = snake / "incomplete" / base64.urlsafe_b64encode(output).decode()
    marker.write_text('{"external_jobid": null}')
    os.utime(marker, (time.time() - 30, time.time() - 30))
    return cell_id


def test_a_job_the_log_does_not_name_is_found_by_its_marker(capsys, copied):
    cell_id = _running_without_a_log_of_jobs(copied)
    report = status(capsys, copied, "--json")
    cell = next(c for c in report["cells"] if c["cell_id"] == cell_id)
    assert report["running"] is True and cell["running"] == [1]


def test_the_study_eta_adds_the_steps_after_the_fits(capsys, copied):
    """Where Snakemake has records of the summary, figures and report, they take as long
    again; without, AFTER_FITS_SHARE of the fit jobs' wall time (elapsed and to come)."""
    import base64
    import json as json_

    from emsim.study.status import AFTER_FITS_SHARE, after_fits_seconds

    metadata = copied / ".snakemake" / "metadata"
    shutil.rmtree(metadata, ignore_errors=True)
    assert after_fits_seconds(copied, 200.0) == pytest.approx(AFTER_FITS_SHARE * 200.0)
    metadata.mkdir()
    spans = {"summary": 12.5, "figures": 20.0, "report": 3.25, "fit": 99.0}
    for rule, seconds in spans.items():
        output = f"results/{rule}/x.parquet" if rule != "fit" else "results/fits/x.parquet"
        name = base64.urlsafe_b64encode(output.encode()).decode()
        entry = {"rule": rule, "starttime": 1000.0, "endtime": 1000.0 + seconds}
        (metadata / name).write_text(json_.dumps(entry))
    # The fit's record is not of a step after the fits.
    assert after_fits_seconds(copied, 200.0) == pytest.approx(12.5 + 20.0 + 3.25)


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
    """Finished chunks as their footers give them, one cell each: (n, separation steps,
    replicates, job seconds, EM seconds)."""
    from emsim.study.status import _Chunk

    return [
        _Chunk(f"c{i}", 0, reps, seconds, None, em, n, steps)
        for i, (n, steps, reps, seconds, em) in enumerate(costs)
    ]


def test_the_cost_model_recovers_the_costs_of_n_and_of_separation():
    """Chunks whose EM seconds are exactly reps x exp(a) n^g steps^b and whose other seconds
    are reps x f: the fit gives f, a, g and b back, and so costs a cell whose n and separation
    no finished cell had; a cost in proportion to n alone would not."""
    import math

    from emsim.study.status import fit_cost_model

    f, a, g, b = 0.004, -11.0, 0.8, 0.3
    cells = [(5000, 1000.0, 20), (5000, 4.0, 30), (500, 245.0, 20), (50, 1000.0, 10)]
    costs = []
    for n, steps, reps in cells:
        em = reps * math.exp(a) * n**g * steps**b
        costs.append((n, steps, reps, em + reps * f, em))
    model = fit_cost_model(_footers(costs))
    assert model.fixed == pytest.approx(f, rel=1e-9)
    assert (model.log_scale, model.n_power, model.steps_power) == pytest.approx((a, g, b))
    expected = f + math.exp(a) * 50**g * 4.0**b
    assert model.replicate_seconds(50, 4.0) == pytest.approx(expected, rel=1e-9)
    seconds = sum(c[3] for c in costs)
    proportional = seconds / sum(reps * n for n, _, reps in cells) * 50
    assert proportional < 0.5 * expected


def test_what_the_finished_cells_do_not_identify_takes_its_prior():
    """One cell: its seconds outside EM are the fixed cost, its EM seconds grow as n (prior
    g = 1) and not with separation (b = 0)."""
    from emsim.study.status import fit_cost_model
    from emsim.study.status_cost import N_POWER_PRIOR, STEPS_POWER_PRIOR

    model = fit_cost_model(_footers([(5000, 245.0, 20, 12.0, 10.0)]))
    assert (model.n_power, model.steps_power) == (N_POWER_PRIOR, STEPS_POWER_PRIOR) == (1, 0)
    assert model.fixed == pytest.approx(2.0 / 20, rel=1e-12)
    assert model.replicate_seconds(500, 4.0) == pytest.approx(0.1 + 10.0 / 20 / 10, rel=1e-12)
    assert fit_cost_model([]) is None


def test_an_exponent_a_few_cells_pull_out_of_range_takes_its_prior():
    """Dearer small cells (their fits reach the cap of iterations) would give cost falling
    with n: the n exponent is set to its prior 1, and the separation's is fitted alone."""
    from emsim.study.status import fit_cost_model

    cells = [(100, 10.0, 10, 3.0), (1000, 10.0, 10, 1.0), (1000, 100.0, 10, 2.0)]
    model = fit_cost_model(_footers([(n, s, r, em, em) for n, s, r, em in cells]))
    assert model.n_power == 1.0 and 0 <= model.steps_power <= 1
    assert model.replicate_seconds(10, 10.0) > 0


def test_the_separation_cost_is_emss_own_rate_at_the_truth():
    """status_cost's quadrature rate equals the largest eigenvalue of I_complete^-1 I_missing
    that emsim's engine computes (information.information, Louis' sums) on a large sample
    drawn from the cell's mixture, at the data-generating values."""
    import numpy as np

    from emsim.information import information
    from emsim.study.status_cost import population_rate, separation_steps

    rng = np.random.default_rng(7)
    for pi, mu2, sigma2 in [(0.5, 2.0, 1.0), (0.8, 3.0, 1.5), (0.95, 4.0, 1.0)]:
        n = 400_000
        first = rng.random(n) < pi
        y = np.where(first, rng.normal(0.0, 1.0, n), rng.normal(mu2, sigma2, n))
        params = np.array([[pi, 0.0, mu2, 1.0, sigma2]])
        _, sample_rate, _ = information(y[None, :], params, "full")
        assert population_rate(pi, 0.0, mu2, 1.0, sigma2) == pytest.approx(sample_rate[0], abs=0.01)

    class Cell:
        pi, mu1, mu2, sigma1, sigma2 = 0.8, 0.0, 1.0, 1.0, 1.0

    # Separation 1: the population rate is 1 to within the cap's resolution.
    assert separation_steps(Cell, 1000) == 1000.0
    Cell.mu2 = 4.0
    assert 1.0 < separation_steps(Cell, 1000) < 10.0


def test_a_running_chunk_counts_what_it_has_done_and_what_it_shows():
    from emsim.study.status import _cell_seconds_left

    # 100 replicates left at 0.1 s, a chunk of 20 running for 0.5 s: 10 - 0.5 seconds left.
    assert _cell_seconds_left(0.1, 100, {3: (20, 0.5)}, measured=True) == pytest.approx(9.5)
    # It ran 8 s, beyond its predicted 2 s: as long again for it, and (the cell's cost only
    # predicted) 8 x 2 / 20 s for each of the 80 other replicates.
    left = _cell_seconds_left(0.1, 100, {3: (20, 8.0)}, measured=False)
    assert left == pytest.approx(8.0 + 80 * 16.0 / 20)
