"""The study on a real SLURM cluster through workflow/profiles/slurm (marker `slurm`).

Needs snakemake-executor-plugin-slurm (`.[slurm]`) and a running SLURM cluster: the one-node
cluster of `bash tests/cluster/start-local-slurm.sh` (its config, /etc/slurm-emsim/slurm.conf, is
passed to every SLURM command as SLURM_CONF), or the cluster SLURM_CONF names when it is set, but
never, by accident, the machine's default cluster. Without them the tests skip, saying why; with
EMSIM_REQUIRE_SLURM=1 (CI) they fail instead.

Each run gets a copy of the Snakefile and workflow/ in a temporary folder (as in test_pipeline.py),
so nothing is written under the checkout's results/; all runs import one temporary copy of src/
(PYTHONPATH), so the SLURM jobs reuse the numba cache that the local run compiled into it. The
study is small: 2 cells x 2 chunks = 4 fit jobs, grouped 2 per SLURM job (`--group-components
fits=2`), so the profile's grouping is exercised and the two SLURM jobs share the node's CPUs.

ADAPTIVE_SLURM is a study with replicates in rounds (issue 11): its gates are checkpoints, so after
round 0 Snakemake, on the submit host, reads the gate and submits the fits of round 1 for the cell
that goes on; it must give the same replicates per cell, and the same fits, as run locally.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads
import pytest
from studyrun import ADAPTIVE, make_workdir, study_hash, summary_table

pytestmark = pytest.mark.slurm

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
REQUIRED = os.environ.get("EMSIM_REQUIRE_SLURM") == "1"
# The cluster of tests/cluster/start-local-slurm.sh: its config, and its srun that restores
# SLURM_CONF in job steps (Snakemake's job step drops SLURM_* variables before calling srun).
LOCAL_CLUSTER = Path("/etc/slurm-emsim")
SLURM_ENV = dict(os.environ)
if "SLURM_CONF" not in SLURM_ENV:
    SLURM_ENV["SLURM_CONF"] = str(LOCAL_CLUSTER / "slurm.conf")
    SLURM_ENV["PATH"] = f"{LOCAL_CLUSTER / 'bin'}{os.pathsep}{SLURM_ENV.get('PATH', '')}"
RUN_TIMEOUT = 240  # seconds for one Snakemake run; a run here takes 15 to 45 s

STUDY = {
    "study": "slurm test study",
    "seed": 11,
    "replicates": 4,
    "chunk_size": 2,
    "traces": 1,
    "grid": {"n": [50], "mu": [[0, 3]], "sigma": [1], "pi": [0.7]},
    "scenarios": [{"n": 80, "mu": [0, 1.5], "sigma": [1, 1.5], "pi": 0.85}],
    "models": ["pi", "equal_var", "full"],
    "methods": ["em", "squarem"],
    "starts": [
        {"name": "fixed", "strategy": "fixed", "values": {"pi": 0.5}},
        {"name": "random", "strategy": "random", "k": 1},
        {"name": "truth", "strategy": "truth"},
    ],
    "em": {"tolerance": 1.0e-6, "max_iterations": 500},
}
N_FIT_JOBS = 4
# Round 0 = replicates 0-19 in both cells; n = 200 meets the target after it, n = 50 runs round 1
# (replicates 20-39) and stops at the maximum: 3 fit jobs, 2 SLURM jobs (one per round).
ADAPTIVE_SLURM = {
    **ADAPTIVE,
    "study": "adaptive slurm test study",
    "replicates": {"min": 20, "max": 40, "step": 20},
    "grid": {**ADAPTIVE["grid"], "pi": [0.5]},
}
KEYS = ["cell_id", "replicate", "model", "method", "start"]
# Beyond the profile: status checks every few seconds rather than the plugin's 40 s (a test run
# is short), 2 fits per SLURM job, and every SLURM log kept for the failure messages.
SLURM_ARGS = (
    "--workflow-profile",
    "workflow/profiles/slurm",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--group-components",
    "fits=2",
    "--slurm-keep-successful-logs",
)
# A round's SLURM job takes 12 to 16 s; the plugin checks after the initial seconds, then adds 10 s
# to every wait that saw no job finish (2 s: checks at 2, 14, 36 s, so a round took 36 s; 5 s:
# at 5, 20 s). Given after SLURM_ARGS, it overrides their 2 s.
ROUND_CHECKS = ("--slurm-init-seconds-before-status-checks", "5")
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")


# --- the cluster ---------------------------------------------------------------------------------


def slurm_cmd(*args: str, timeout: float = 30, check: bool = False):
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=check, env=SLURM_ENV
    )


def _cluster_problem() -> str | None:
    """Why SLURM cannot be used here, or None when it can."""
    if not all(shutil.which(tool) for tool in ("sinfo", "sbatch", "squeue", "scontrol")):
        return "the SLURM client tools (sinfo, sbatch, squeue, scontrol) are not on PATH"
    if not Path(SLURM_ENV["SLURM_CONF"]).is_file():
        return f"no cluster config {SLURM_ENV['SLURM_CONF']} (SLURM_CONF)"
    # find_spec, not import: importing the plugin asks slurmctld for its config (slow when down).
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"
    try:
        ping = slurm_cmd("scontrol", "ping", timeout=15)
        if ping.returncode != 0 or "is UP" not in ping.stdout:
            return f"slurmctld is not up (scontrol ping: {ping.stdout.split(chr(10))[0].strip()})"
        proc = slurm_cmd("sinfo", "-h", "-o", "%T", timeout=15)
    except subprocess.TimeoutExpired:
        return "scontrol/sinfo timed out (slurmctld not answering)"
    if proc.returncode != 0:
        return f"sinfo failed: {(proc.stderr or proc.stdout).strip()[:200]}"
    states = proc.stdout.split()
    if not any(s.rstrip("*~#$@+-") in {"idle", "mixed", "allocated"} for s in states):
        return f"no node takes jobs (sinfo node states: {', '.join(states) or 'none'})"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = _cluster_problem()
    if problem is None:
        return
    if REQUIRED:
        pytest.fail(f"EMSIM_REQUIRE_SLURM=1 but SLURM is not usable: {problem}")
    pytest.skip(f"no SLURM cluster: {problem}; start one with tests/cluster/start-local-slurm.sh")


def slurm_jobs(workdir: Path) -> dict[str, str]:
    """State of every SLURM job (still known to slurmctld) that was run in `workdir`."""
    proc = slurm_cmd("squeue", "-h", "--states=all", "-o", "%i|%T|%Z", check=True)
    jobs = {}
    for line in proc.stdout.splitlines():
        job_id, state, where = line.strip().split("|", 2)
        if Path(where) == workdir:
            jobs[job_id] = state
    return jobs


def cancel_leftovers(workdir: Path) -> None:
    live = [
        j
        for j, s in slurm_jobs(workdir).items()
        if s in {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING"}
    ]
    if live:
        slurm_cmd("scancel", *live)


# --- runs ----------------------------------------------------------------------------------------


def start_snakemake(workdir: Path, src: Path, *args: str) -> subprocess.Popen:
    env = dict(SLURM_ENV, PYTHONPATH=str(src), MPLBACKEND="Agg")
    env.pop("EMSIM_SLURM_PARTITION", None)  # the test cluster's default partition
    env.pop("EMSIM_SLURM_ACCOUNT", None)
    return subprocess.Popen(
        [str(SNAKEMAKE), *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a timeout stops all of it
    )


def stop(proc: subprocess.Popen, workdir: Path) -> str:
    """Kill the run (Snakemake and its local jobs) and cancel its SLURM jobs; its output."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    cancel_leftovers(workdir)
    return out


def finish(proc: subprocess.Popen, workdir: Path, timeout: float = RUN_TIMEOUT) -> str:
    """Wait for the run; on timeout stop Snakemake and cancel its SLURM jobs, then fail."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out = stop(proc, workdir)
        pytest.fail(f"snakemake did not finish in {timeout} s:\n{out[-5000:]}\n{logs(workdir)}")
    if proc.returncode != 0:
        cancel_leftovers(workdir)
        pytest.fail(f"snakemake failed ({proc.returncode}):\n{out[-6000:]}\n{logs(workdir)}")
    return out


def logs(workdir: Path) -> str:
    """The SLURM job logs, for failure messages."""
    text = []
    for log in sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log")):
        text.append(f"--- {log.relative_to(workdir)}\n{log.read_text()[-2000:]}")
    return "\n".join(text)


def read_fits(workdir: Path) -> pd.DataFrame:
    dataset = pads.dataset(workdir / "results" / "fits", format="parquet", partitioning="hive")
    frame = dataset.to_table().to_pandas().drop(columns=["cell", "runtime_s"])
    return frame.sort_values(KEYS, ignore_index=True)


@pytest.fixture(scope="module")
def src(cluster, study_src) -> Path:
    """The session's copy of src/, its engine compiled (tests/conftest.py), for every run of this
    module (PYTHONPATH): neither the local runs nor the SLURM jobs compile it again."""
    return study_src


@pytest.fixture(scope="module")
def local_fits(src, tmp_path_factory) -> pd.DataFrame:
    """The same study's fit rows from a local run, the reference for every SLURM run."""
    workdir = make_workdir(tmp_path_factory.mktemp("local") / "w", STUDY)
    finish(start_snakemake(workdir, src, "--cores", "2", "--until", "fit"), workdir)
    fits = read_fits(workdir)
    # cells x replicates x models x methods x starts
    assert len(fits) == 2 * STUDY["replicates"] * 3 * 2 * 3
    return fits


def assert_complete(workdir: Path, out: str) -> None:
    assert (workdir / "results" / "report" / "index.html").stat().st_size > 0
    # Only the final files are visible: no temp file of an atomic write, no partial file.
    names = sorted(p.name for p in (workdir / "results" / "fits").rglob("*") if p.is_file())
    assert names == sorted(["chunk=0.parquet", "chunk=1.parquet"] * 2), names
    assert "Group job fits" in out  # the profile's grouping was used


# --- tests ---------------------------------------------------------------------------------------


def test_study_on_slurm_equals_local_run(src, local_fits, tmp_path):
    workdir = make_workdir(tmp_path / "w", STUDY)
    t0 = time.monotonic()
    out = finish(start_snakemake(workdir, src, *SLURM_ARGS), workdir)
    elapsed = time.monotonic() - t0
    assert_complete(workdir, out)

    # Every fit job ran inside a SLURM job: 4 fit jobs in 2 groups, 2 sbatch submissions, both
    # seen by slurmctld as COMPLETED; the summary, figures and report ran locally.
    submitted = SUBMITTED.findall(out)
    assert len(submitted) == N_FIT_JOBS // 2, out[-3000:]
    states = slurm_jobs(workdir)
    assert {j: states.get(j) for j in submitted} == dict.fromkeys(submitted, "COMPLETED")

    pd.testing.assert_frame_equal(read_fits(workdir), local_fits)
    print(f"SLURM study: {len(submitted)} SLURM jobs, {elapsed:.1f} s end to end")


def test_fit_job_cancelled_on_the_cluster_is_retried(src, local_fits, tmp_path):
    workdir = make_workdir(tmp_path / "w", STUDY)
    t0 = time.monotonic()
    proc = start_snakemake(workdir, src, *SLURM_ARGS)
    fit_logs = workdir / "results" / "logs" / "fit"
    victim = None
    try:
        # Wait until a SLURM job runs and one of its fits has started (its log exists), then
        # cancel that SLURM job as a user or an administrator would.
        deadline = time.monotonic() + 120
        while victim is None and time.monotonic() < deadline and proc.poll() is None:
            running = [j for j, s in slurm_jobs(workdir).items() if s == "RUNNING"]
            if running and fit_logs.exists() and any(fit_logs.rglob("*.log")):
                victim = min(running, key=int)
                slurm_cmd("scancel", victim)
                break
            time.sleep(0.1)
    finally:
        if victim is None:
            stop(proc, workdir)
    assert victim is not None, "no SLURM job of the study was seen running"
    out = finish(proc, workdir)
    elapsed = time.monotonic() - t0

    # The cancelled job was a real, running SLURM job; Snakemake saw it fail and submitted the
    # group again (profile: retries), and the study completed with the same fits as locally.
    assert slurm_jobs(workdir).get(victim) == "CANCELLED"
    victim_log = workdir / ".snakemake" / "slurm_logs" / "group_fits_fit" / f"{victim}.log"
    assert f"JOB {victim} ON" in victim_log.read_text() and "CANCELLED AT" in victim_log.read_text()
    assert "Error in group fits" in out and "Trying to restart job" in out, out[-3000:]
    submitted = SUBMITTED.findall(out)
    assert victim in submitted and len(submitted) == N_FIT_JOBS // 2 + 1, submitted
    assert_complete(workdir, out)
    pd.testing.assert_frame_equal(read_fits(workdir), local_fits)
    print(f"SLURM study with job {victim} cancelled: {elapsed:.1f} s end to end")


def test_adaptive_study_on_slurm_equals_local_run(src, tmp_path):
    """The rounds of an adaptive study on SLURM: the same replicates per cell, precision and
    fits (manifest's study hash) as locally. Summary and manifest only: no figures, no report."""
    targets = ("summary", "manifest")
    local = make_workdir(tmp_path / "local", ADAPTIVE_SLURM)
    on_slurm = make_workdir(tmp_path / "slurm", ADAPTIVE_SLURM)
    t0 = time.monotonic()
    # Side by side: the SLURM run spends most of its time waiting for the cluster. Locally the
    # jobs are threads (as `make study` runs them), not a Python process each.
    slurm_run = start_snakemake(on_slurm, src, *SLURM_ARGS, *ROUND_CHECKS, *targets)
    try:
        finish(start_snakemake(local, src, "--cores", "2", "--force-use-threads", *targets), local)
    except BaseException:
        stop(slurm_run, on_slurm)
        raise
    out = finish(slurm_run, on_slurm)
    elapsed = time.monotonic() - t0

    # Two rounds, each fitted in its own SLURM job, both COMPLETED; the gates ran locally.
    replicates = summary_table(on_slurm, "replicates").set_index("cell_id")
    assert replicates["rounds"].max() == 2, replicates
    assert sorted(replicates["stop"]) == ["max", "met"], replicates
    submitted = SUBMITTED.findall(out)
    assert len(submitted) == 2, out[-3000:]
    states = slurm_jobs(on_slurm)
    assert {j: states.get(j) for j in submitted} == dict.fromkeys(submitted, "COMPLETED")
    assert "Group job fits" in out

    for table in ("replicates", "precision"):
        pd.testing.assert_frame_equal(summary_table(on_slurm, table), summary_table(local, table))
    assert study_hash(on_slurm) == study_hash(local)
    pd.testing.assert_frame_equal(read_fits(on_slurm), read_fits(local))
    print(f"adaptive SLURM study: {len(submitted)} SLURM jobs, {elapsed:.1f} s end to end")


def test_a_retried_fit_job_asks_for_more_memory_and_time():
    """The fit rule's resources at each attempt (`--retries`): attempt x the first request, so
    a job SLURM ended for its memory or time is not ended again for the same. Tested with
    numbers, not live: the local cluster schedules memory (CR_Core_Memory) but does not enforce
    it (TaskPlugin=task/none, JobAcctGatherType=jobacct_gather/none: no cgroup, no sampling),
    so a job beyond its request is never ended for it there."""
    from studyrun import TINY

    from emsim.study.config import load_study
    from emsim.study.study import fit_job_mem_mb

    study = load_study(TINY)
    for cell in study.cells:
        first = study.fit_mem_mb(cell.cell_id)
        assert first == fit_job_mem_mb(cell.n, study.plan.largest_chunk()) > 0
        assert [study.fit_mem_mb(cell.cell_id, attempt) for attempt in (1, 2, 3)] == [
            first,
            2 * first,
            3 * first,
        ]
        runtime = study.fit_runtime_min(cell.cell_id)
        assert study.fit_runtime_min(cell.cell_id, 3) == 3 * runtime
    rule = (Path(__file__).resolve().parents[1] / "workflow" / "rules" / "fit.smk").read_text()
    assert "mem_mb=lambda wildcards, attempt: STUDY.fit_mem_mb(wildcards.cell, attempt)" in rule
