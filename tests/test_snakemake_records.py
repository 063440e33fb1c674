"""Snakemake's records and markers are read whatever the length of the output's path: Snakemake
cuts a name longer than a file name may be into folders marked "@" (its persistence module's
_record_path), and a reader of one folder level missed those outputs. A real run's records are
read in test_adaptive and test_status; here the names are made as Snakemake makes them."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from emsim.study import snakemake_records
from emsim.study.status import after_fits_seconds

NAME_MAX = 255


def _record_path(folder: Path, output: str) -> Path:
    """Where Snakemake keeps the record of `output` under `folder`."""
    name = base64.urlsafe_b64encode(output.encode()).decode()
    parts = [name[i : i + NAME_MAX - 1] for i in range(0, len(name), NAME_MAX - 1)]
    return folder.joinpath(*["@" + part for part in parts[:-1]], parts[-1])


def _write_record(checkout: Path, output: str, **record) -> Path:
    path = _record_path(checkout / ".snakemake" / "metadata", output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


LONG = "results/figures/" + "a_very_long_figure_name_" * 10 + ".png"


def test_records_include_outputs_whose_names_are_cut_into_folders(tmp_path):
    assert len(base64.urlsafe_b64encode(LONG.encode())) > NAME_MAX
    long_record = _write_record(
        tmp_path, LONG, rule="figures", job_hash=1, starttime=10.0, endtime=12.5
    )
    assert long_record.parent.name.startswith("@")
    _write_record(
        tmp_path, "results/summary/bias.csv", rule="summary", job_hash=2, starttime=1.0, endtime=4.0
    )
    (tmp_path / ".snakemake" / "metadata" / "not base64!").write_text("{}")
    _write_record(tmp_path, "results/being_written", rule="fit", job_hash=3).write_text("{")

    found = snakemake_records.records(tmp_path)

    assert set(found) == {LONG, "results/summary/bias.csv"}
    assert found[LONG]["rule"] == "figures"


def test_jobs_group_outputs_by_job_earliest_first(tmp_path):
    _write_record(tmp_path, "results/b.parquet", rule="fit", job_hash=7, starttime=5.0, endtime=9.0)
    _write_record(tmp_path, LONG, rule="fit", job_hash=7, starttime=4.0, endtime=8.0)
    _write_record(
        tmp_path, "results/a.parquet", rule="summary", job_hash=8, starttime=1.0, endtime=2.0
    )

    jobs = snakemake_records.jobs(tmp_path)

    assert [job["rule"] for job in jobs] == ["summary", "fit"]
    assert sorted(jobs[1]["outputs"]) == sorted(["results/b.parquet", LONG])
    assert (jobs[1]["start"], jobs[1]["end"]) == (4.0, 9.0)


def test_markers_are_dated_at_their_jobs_start(tmp_path):
    output = "results/fits/cell=" + "x" * 200 + "/chunk=3.parquet"
    marker = _record_path(tmp_path / ".snakemake" / "incomplete", output)
    marker.parent.mkdir(parents=True)
    marker.write_text("")
    os.utime(marker, (1000.0, 1000.0))

    assert snakemake_records.incomplete_markers(tmp_path) == {output: 1000.0}


def test_after_fits_seconds_counts_a_step_recorded_under_a_long_name(tmp_path):
    _write_record(
        tmp_path, "results/summary/bias.csv", rule="summary", job_hash=1, starttime=0.0, endtime=3.0
    )
    _write_record(
        tmp_path, "results/report/index.html", rule="report", job_hash=2, starttime=0.0, endtime=1.0
    )
    # Without the figures' record the estimate is the share of the fits' time.
    without = after_fits_seconds(tmp_path, 100.0)
    _write_record(tmp_path, LONG, rule="figures", job_hash=3, starttime=10.0, endtime=12.5)

    assert after_fits_seconds(tmp_path, 100.0) == 3.0 + 1.0 + 2.5 != without
