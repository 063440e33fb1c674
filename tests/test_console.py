"""Issue 23: plain `snakemake` in a checkout is quiet and says where the report is.

A four-cell study run as a user runs it (`snakemake --cores 2` in the folder, the checkout's
default profile read by Snakemake itself through profiles/default): the console holds one
progress line per job and ends with the report's path; `--quiet host` on the command line
brings back each job's rule and reason.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from studyrun import SNAKEMAKE, TINY, make_workdir

pytestmark = pytest.mark.slow

FOUR_CELLS = dict(
    TINY,
    study="console test study",
    replicates=4,
    chunk_size=4,
    grid={"n": [40, 60], "mu": [[0, 3]], "sigma": [1], "pi": [0.7, 0.9]},
    scenarios=[],
    models=["pi"],
    methods=["em"],
)


def _plain_snakemake(workdir, *args):
    env = dict(os.environ, PYTHONPATH=str((workdir / "src").resolve()), MPLBACKEND="Agg")
    proc = subprocess.run(
        [str(SNAKEMAKE), "--cores", "2", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_plain_snakemake_is_quiet_and_names_the_report(study_src, tmp_path):
    workdir = make_workdir(tmp_path / "w", FOUR_CELLS, src=study_src)
    (workdir / "profiles").mkdir()
    (workdir / "profiles" / "default").symlink_to("../workflow/profiles/default")
    out = _plain_snakemake(workdir)
    jobs = int(re.search(r"^total\s+(\d+)$", out, re.M).group(1))
    # fits, cell summaries, cell hashes; config, summary, summary CSVs, figures, traces figure,
    # report body, report, ...
    assert jobs == 4 + 4 + 4 + 9
    assert len(out.encode()) < 5000, out
    progress = re.findall(r"^(\d+) of (\d+) steps \(\d+%\) done$", out, re.M)
    assert [int(done) for done, _ in progress] == list(range(1, jobs + 1))
    assert "reason:" not in out and "rule fit:" not in out
    report = (workdir / "results" / "report" / "index.html").resolve()
    assert report.is_file()
    last = out.rstrip().splitlines()[-4:]
    assert f"Report: {report}" in last, last
    # Snakemake's own flag brings back each job's block, with its reason.
    out = _plain_snakemake(workdir, "-n", "--forcerun", "report", "--quiet", "host")
    assert re.search(
        r"^(?:local)?rule report:\n(?:\s+.*\n)*?\s+reason: Forced execution", out, re.M
    )
