"""The study pipeline through Snakemake, end to end, in temporary folders.

The finished tiny study and the determinism runs are the session's (tests/conftest.py); a test
that changes a study works on a copy, and every run imports the session's one copy of src/
(tests/studyrun.py), never the checkout's results/.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import yaml
from studyrun import (
    KEYS,
    TINY,
    copy_study,
    edited,
    jobs_of,
    make_workdir,
    read_fits,
    snakemake,
    without_runtime,
)

import emsim
from emsim.study.measures import se_column
from emsim.study.study import Cell

ROOT = Path(__file__).resolve().parents[1]

# docs/design.md section 5, with the Arrow type of each column.
FIT_COLUMNS = {
    "cell_id": pa.string(),
    "n": pa.int64(),
    "mu1": pa.float64(),
    "mu2": pa.float64(),
    "sigma1": pa.float64(),
    "sigma2": pa.float64(),
    "pi": pa.float64(),
    "family": pa.string(),
    "replicate": pa.int64(),
    "model": pa.string(),
    "method": pa.string(),
    "stopping": pa.string(),
    "start": pa.string(),
    "status": pa.string(),
    "iterations": pa.int64(),
    "loglik_evals": pa.int64(),
    "runtime_s": pa.float64(),
    "loglik": pa.float64(),
    "loglik_start": pa.float64(),
    "est_pi": pa.float64(),
    "est_mu1": pa.float64(),
    "est_mu2": pa.float64(),
    "est_sigma1": pa.float64(),
    "est_sigma2": pa.float64(),
    "swapped": pa.bool_(),
    "se_pi": pa.float64(),
    "se_mu1": pa.float64(),
    "se_mu2": pa.float64(),
    "se_sigma1": pa.float64(),
    "se_sigma2": pa.float64(),
    "se_sandwich_pi": pa.float64(),
    "se_sandwich_mu1": pa.float64(),
    "se_sandwich_mu2": pa.float64(),
    "se_sandwich_sigma1": pa.float64(),
    "se_sandwich_sigma2": pa.float64(),
    "rate_empirical": pa.float64(),
    "rate_theory": pa.float64(),
    "best_start_gap": pa.float64(),
    "distance_to_limit": pa.float64(),
    "loglik_gap_to_limit": pa.float64(),
    "polish_evals": pa.int64(),
}
# --- end to end -------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_output_exists_with_design_columns(tiny_study):
    results = tiny_study / "results"
    from emsim.study import jobs
    from emsim.study.config import load_study

    study = load_study(TINY, ROOT / "workflow" / "schemas" / "config.schema.yaml")
    for kind in ("fits", "traces"):
        for rel in study.outputs(kind):
            assert (tiny_study / rel).exists(), rel
    for name in ("performance", "convergence"):
        assert (results / "summary" / f"{name}.parquet").exists()
        assert (results / "summary" / f"{name}.csv").exists()
    for name in jobs.FIGURE_NAMES:
        assert (results / "figures" / f"{name}.png").stat().st_size > 0
    html = (results / "report" / "index.html").read_text()
    assert "data:image/png;base64" in html and "tiny test study" in html

    # One file: exactly the columns of docs/design.md section 5 with their types, and the
    # provenance metadata.
    one = tiny_study / study.outputs("fits")[0]
    schema = pq.read_schema(one)
    assert [(f.name, f.type) for f in schema] == list(FIT_COLUMNS.items())
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    for key in ("emsim_version", "git_commit", "config_hash", "seed", "numpy_version", "created"):
        assert key in meta
    # The whole dataset through pyarrow's hive discovery.
    fits = read_fits(tiny_study)
    assert len(fits) == len(study.cells) * study.replicates * study.fits_per_replicate
    assert not fits.duplicated(KEYS).any()
    assert set(fits["start"]) == {"fixed", "random1", "truth"}
    assert fits["status"].isin(emsim.STATUSES).all()
    assert set(fits["stopping"]) == {"abs", "aitken"}
    traces = pads.dataset(results / "traces", format="parquet", partitioning="hive").to_table()
    assert set(traces.column("replicate").to_pylist()) == {0}
    for kind in ("performance", "convergence"):
        assert (
            pq.read_schema(results / "summary" / f"{kind}.parquet")
            .metadata[b"config_hash"]
            .decode()
            == study.config_hash
        )


def test_each_job_log_holds_only_its_own_job(tiny_study):
    """Jobs ran as threads of one process, two at a time: none leaks lines into another's log."""
    logs = sorted((tiny_study / "results" / "logs" / "fit").glob("cell=*/chunk=*.log"))
    assert len(logs) >= 2
    for log in logs:
        cell, chunk = log.parent.name.removeprefix("cell="), log.stem.removeprefix("chunk=")
        text = log.read_text()
        named = re.findall(r"cell (\S+) chunk (\d+):", text)
        assert named == [(cell, chunk)], (log, named)
        assert text.count(" wrote ") == 1, log
    summary_log = (tiny_study / "results" / "logs" / "summary.log").read_text()
    assert "emsim.study.fit" not in summary_log


def check_se_measures(p, est, se, truth, z, column) -> None:
    """The SE-based measures of one SE type (`column` names their performance columns) against
    Morris et al. (2019, Table 6), over the fits whose interval exists (finite SE)."""
    has_se = np.isfinite(se)
    n_se = int(has_se.sum())
    assert p[column("n_se")] == n_se
    if not n_se:
        assert np.isnan(p[column("coverage")])
        return
    hits = ((est - z * se <= truth) & (truth <= est + z * se))[has_se]
    covered = hits.mean()
    assert p[column("coverage")] == pytest.approx(covered)
    assert p[column("coverage_mcse")] == pytest.approx(np.sqrt(covered * (1 - covered) / n_se))
    if n_se < 2:
        return
    se2 = se[has_se] ** 2
    modse = np.sqrt(se2.mean())
    empse = est[has_se].std(ddof=1)
    assert p[column("modse")] == pytest.approx(modse)
    assert p[column("modse_mcse")] == pytest.approx(
        np.sqrt(se2.var(ddof=1) / (4 * n_se * modse**2))
    )
    assert p[column("relerr_modse")] == pytest.approx(100 * (modse / empse - 1))
    assert p[column("relerr_modse_mcse")] == pytest.approx(
        100
        * (modse / empse)
        * np.sqrt(se2.var(ddof=1) / (4 * n_se * modse**4) + 1 / (2 * (n_se - 1)))
    )


@pytest.mark.slow
def test_summary_matches_measures_recomputed_from_fit_rows(tiny_study):
    fits = read_fits(tiny_study)
    perf = pd.read_parquet(tiny_study / "results" / "summary" / "performance.parquet")
    conv = pd.read_parquet(tiny_study / "results" / "summary" / "convergence.parquet")
    z = NormalDist().inv_cdf(0.975)
    group = ["cell_id", "model", "method", "stopping", "start"]
    checked = 0
    perf = perf[perf["set"] == "own"]
    for (cell, model, method, stopping, start), rows in fits.groupby(group):
        ok = rows[rows["status"] == "converged"]
        c = conv[
            (conv.cell_id == cell)
            & (conv.model == model)
            & (conv.method == method)
            & (conv.stopping == stopping)
            & (conv.start == start)
        ]
        assert len(c) == 1
        assert c["n_rep"].iloc[0] == len(rows)
        assert c["failure_rate"].iloc[0] == pytest.approx(1 - len(ok) / len(rows))
        assert c["rate_converged"].iloc[0] == pytest.approx(len(ok) / len(rows))
        fr = 1 - len(ok) / len(rows)
        assert c["failure_rate_mcse"].iloc[0] == pytest.approx(np.sqrt(fr * (1 - fr) / len(rows)))
        for parameter in ("pi", "mu1"):
            if model == "pi" and parameter != "pi":
                continue
            p = perf[
                (perf.cell_id == cell)
                & (perf.model == model)
                & (perf.method == method)
                & (perf.stopping == stopping)
                & (perf.start == start)
                & (perf.parameter == parameter)
            ]
            assert len(p) == 1
            p = p.iloc[0]
            truth = rows[parameter].iloc[0]
            first = rows.iloc[0]
            if model == "equal_var" and first["sigma1"] != first["sigma2"]:
                # Misspecified (issue 21): the target is the pseudo-true value.
                mu, sigma = (first["mu1"], first["mu2"]), (first["sigma1"], first["sigma2"])
                truth = emsim.pseudo_true(model, "normal", mu, sigma, first["pi"])[parameter]
            est = ok[f"est_{parameter}"]
            assert p["n_ok"] == len(ok)
            if len(ok) < 2:
                continue
            assert p["bias"] == pytest.approx(est.mean() - truth, abs=1e-12)
            assert p["bias_mcse"] == pytest.approx(est.std(ddof=1) / np.sqrt(len(ok)))
            for se_type, se_name in (("observed", "se"), ("sandwich", "se_sandwich")):
                column = functools.partial(se_column, se_type=se_type)
                check_se_measures(p, est, ok[f"{se_name}_{parameter}"], truth, z, column)
            checked += 1
    assert checked > 20


@pytest.mark.slow
def test_snakemake_report_works(tiny_study, tmp_path):
    snakemake(tiny_study, "--report", str(tmp_path / "report.html"), cores=1)
    assert (tmp_path / "report.html").stat().st_size > 0


# --- determinism --------------------------------------------------------------------------------


@pytest.mark.slow
def test_fit_rows_do_not_depend_on_cores_chunk_size_or_executor(tiny_study, determinism_runs):
    reference = without_runtime(read_fits(tiny_study))  # --cores 2, chunk_size 3, threads
    one_core = determinism_runs["one_core"]  # --cores 1, a process per job
    pd.testing.assert_frame_equal(without_runtime(read_fits(one_core)), reference)

    chunked = determinism_runs["chunked"]  # --cores 2, chunk_size 10, threads
    assert len(list((chunked / "results" / "fits").glob("*/*.parquet"))) == 2
    pd.testing.assert_frame_equal(without_runtime(read_fits(chunked)), reference)


@pytest.mark.slow
def test_adding_a_grid_value_leaves_existing_cells_unchanged(tiny_study, study_src, tmp_path):
    extended = copy.deepcopy(TINY)
    extended["grid"]["pi"] = [0.5, 0.7]  # a new cell, and before the old one in the grid
    # In the finished study only the new cell's fit jobs are planned.
    (tmp_path / "extended.yaml").write_text(yaml.safe_dump(extended))
    _, plan = snakemake(
        tiny_study, "-n", "--configfile", str(tmp_path / "extended.yaml"), "--until", "fit"
    )
    assert jobs_of(plan) == ["fit", "fit"]
    planned = set(re.findall(r"results/fits/cell=([^/\s]+)/chunk=", plan))
    assert planned == {Cell.make(40, [0, 3], 1, 0.5).cell_id}
    # Computed afresh, the old cells' rows are identical.
    fresh = make_workdir(tmp_path / "extended", extended, src=study_src)
    snakemake(fresh, "--until", "fit")
    new = without_runtime(read_fits(fresh))
    old = without_runtime(read_fits(tiny_study))
    assert new["cell_id"].nunique() == old["cell_id"].nunique() + 1
    kept = new[new["cell_id"].isin(old["cell_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, old)


# --- rerunning only what changed ----------------------------------------------------------------


@pytest.mark.slow
def test_figures_rerun_without_refitting(tiny_study, tmp_path):
    study = copy_study(tiny_study, tmp_path / "w")
    _, plan = snakemake(study, "-n")
    assert jobs_of(plan) == []  # the finished study is complete
    # On other cores too: the figures job's processes follow the cores, but redraw nothing.
    for cores in (1, 4):
        _, plan = snakemake(study, "-n", cores=cores)
        assert jobs_of(plan) == [], cores
    fits = sorted((study / "results" / "fits").glob("*/*.parquet"))
    fit_times = [f.stat().st_mtime_ns for f in fits]

    # `snakemake figures` on a finished study: nothing to fit or summarise.
    bias = study / "results" / "figures" / "bias.png"
    bias.unlink()
    _, plan = snakemake(study, "-n", "figures")
    assert jobs_of(plan) == ["figures"]

    # Editing the plotting code reruns the figures and the report only. (Snakemake 9 compares
    # checksums of newer inputs, so the file's content must change, not just its mtime.) The
    # code is the session's shared copy: edited for this block only, and only `study` is run.
    # One real run (drawing the figures is the slow part) shows the plans are what is run.
    addition = "\n# an edit of the plotting code\n"
    with edited(study / "src" / "emsim" / "study" / "figures.py", addition):
        _, plan = snakemake(study, "-n")
        assert sorted(jobs_of(plan)) == ["all", "figures", "report", "traces_figure"]
        _, out = snakemake(study)
        assert sorted(jobs_of(out)) == ["all", "figures", "report", "traces_figure"]
    assert bias.stat().st_size > 0
    assert [f.stat().st_mtime_ns for f in fits] == fit_times  # not refitted


@pytest.mark.slow
def test_config_changes_rerun_only_what_they_affect(tiny_study, tmp_path):
    plans = {}

    def plan_with(name: str, override: dict) -> list[str]:
        (tmp_path / name).write_text(yaml.safe_dump(override))
        _, plans[name] = snakemake(tiny_study, "-n", "--configfile", str(tmp_path / name))
        return sorted(jobs_of(plans[name]))

    # Each of the 2 cells is summarised by a job of its own, then gathered (design section 10).
    # Every config change rewrites results/config.yaml (`study_config`), the study's record.
    aggregate = sorted(
        [
            "all",
            "figures",
            "report_body",
            "report",
            "summary",
            "summary_csv",
            "cell_summary",
            "cell_summary",
            "study_config",
        ]
    )
    dpi = plan_with("dpi.yaml", {"figures": {"dpi": 90}})
    # The report's body shows the config (its hash a param), the page only embeds the figures.
    assert dpi == ["all", "figures", "report", "report_body", "study_config", "traces_figure"]
    renamed = plan_with("name.yaml", {"study": "renamed"})
    assert renamed == ["all", "report", "report_body", "study_config"]
    assert plan_with("level.yaml", {"coverage": {"level": 0.9}}) == aggregate
    # What changes a fit reruns every fit job (4 = 2 cells x 2 chunks).
    # New fit files: the cells' hashes and the manifest are rewritten too.
    refit = [*aggregate, "cell_hashes", "cell_hashes", "manifest"]
    # The kept traces are refitted too: the traces figure is redrawn.
    tol = plan_with("tol.yaml", {"em": {"tolerance": 1e-6}})
    assert tol == sorted([*refit, *["fit"] * 4, "traces_figure"])
    # The fits rerun through the params trigger (the fit config hash), the rest as their inputs
    # are updated.
    # (4 fits, and study_config through its config hash)
    assert plans["tol.yaml"].count("reason: Params have changed since last execution") == 5
    # More replicates: only the new chunk of each cell is fitted; it keeps no traces, so the
    # traces figure (which reads only the chunks that do) is not redrawn.
    _, plan = snakemake(tiny_study, "-n", "--config", "replicates=9")
    assert sorted(jobs_of(plan)) == sorted(refit + ["fit"] * 2)
    new_chunks = re.findall(r"output: results/fits/cell=[^/]+/chunk=(\d+)\.parquet", plan)
    assert new_chunks == ["2", "2"]


# An invalid config (grid.sigma [1, -1]; --config replicats=10) failing before any job through
# Snakemake: test_config_corpus.py runs these very cases (sigma-negative, cli-misspelt).
