"""results/manifest.json and `emsim verify`: content hashes of a study's results.

The hashing itself is checked on small tables (row order, wall-clock columns and Parquet
metadata do not count, one ulp does); the end-to-end tests read the session's finished tiny
study and its determinism runs (tests/conftest.py; never the checkout's results/), change only
copies of them, and show that

- the pipeline writes the manifest, and `emsim verify` passes on it, names every altered,
  missing or unreadable file and says how to repair them (exit 1), and rejects a missing or
  unreadable manifest (exit 2);
- a rerun of the study repairs deleted and truncated results, to the same study hash;
- the study hash is the same for --cores 1 and 2 and for chunk_size 3 and 10;
- changing the seed reruns the fit jobs and the manifest (Snakemake's params trigger), and
  editing the manifest code reruns only the manifest (its code input).
test_pipeline.py checks the other triggers (an EM setting, a figure option, plotting code,
coverage level, study name, grid) on the same study, the manifest among the planned jobs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from studyrun import TINY, copy_study, edited, jobs_of, snakemake
from test_cli import assert_one_line_error

from emsim.cli import main
from emsim.study import integrity
from emsim.study import manifest as mf
from emsim.study.config import load_study

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
EMSIM = Path(sys.executable).with_name("emsim")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["verify", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rewrite(path: Path, change) -> None:
    """Rewrite a Parquet file with `change(table) -> table`, keeping its metadata."""
    table = pq.read_table(path)
    pq.write_table(change(table).replace_schema_metadata(table.schema.metadata), path)


def set_value(table: pa.Table, column: str, row: int, value) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    index = table.column_names.index(column)
    return table.set_column(index, column, pa.array(values, type=table.schema.field(column).type))


def copy_results(workdir: Path, dest: Path) -> Path:
    shutil.copytree(workdir / "results", dest, ignore=shutil.ignore_patterns("logs", "figures"))
    return dest


# --- the hash, on small tables ------------------------------------------------------------------


def _fits_table(rows: int = 6, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "cell_id": ["c1"] * rows,
            "replicate": pa.array(np.arange(rows) // 2, type=pa.int64()),
            "model": ["full", "pi"] * (rows // 2),
            "method": ["em"] * rows,
            "start": ["fixed"] * rows,
            "runtime_s": rng.random(rows),
            "est_pi": rng.random(rows),
            "se_mu1": [np.nan] * rows,
            "swapped": [False] * rows,
        }
    )


def test_hash_ignores_row_order_runtime_and_metadata_but_not_one_ulp():
    table = _fits_table()
    reference = mf.table_hash(table)
    shuffled = table.take(pa.array([3, 0, 5, 1, 4, 2]))
    assert mf.table_hash(shuffled) == reference
    other_times = table.set_column(5, "runtime_s", pa.array(np.full(6, 99.0)))
    assert mf.table_hash(other_times) == reference
    assert mf.table_hash(table.replace_schema_metadata({"created": "now"})) == reference
    value = table.column("est_pi")[2].as_py()
    assert mf.table_hash(set_value(table, "est_pi", 2, np.nextafter(value, 1.0))) != reference
    # NaN payloads do not count, the sign of zero does (as in a %.17g text form).
    nan_table = set_value(table, "est_pi", 1, float("nan"))
    other_nan = np.frombuffer(np.uint64(0x7FF8000000000001).tobytes(), np.float64)[0]
    assert mf.table_hash(set_value(nan_table, "est_pi", 1, other_nan)) == mf.table_hash(nan_table)
    zero = set_value(table, "est_pi", 0, 0.0)
    assert mf.table_hash(set_value(zero, "est_pi", 0, -0.0)) != mf.table_hash(zero)
    # The canonical form: the scheme, the row count, then per column a typed header and values.
    data = mf.canonical_bytes(table)
    assert data.startswith(b"emsim-values/2\n6\ncell_id:string:6:0\n")
    assert b"runtime_s" not in data and b"se_mu1:double:6:0\n" in data
    sorted_pi = mf.canonical_table(table).column("est_pi").to_numpy()
    assert sorted_pi.astype("<f8").tobytes() in data


def test_cell_hash_does_not_depend_on_how_rows_are_split_into_files():
    table = _fits_table(rows=8)
    whole = mf.table_hash(table)
    parts = [table.slice(0, 3), table.slice(3, 5)]
    assert mf.table_hash(pa.concat_tables(parts[::-1])) == whole
    cells = {"c1": {"fits": {"hash": whole, "rows": 8}}}
    assert mf.study_hash(cells) == mf.study_hash(
        {"c1": {"fits": {"hash": whole, "rows": 8, "files": 2}}}
    )
    assert mf.study_hash(cells) != mf.study_hash({"c2": {"fits": {"hash": whole, "rows": 8}}})


def test_compare_names_the_cells_that_differ():
    a = {"study_hash": "a", "cells": {"x": {"fits": {"hash": "1", "rows": 3}}}}
    assert mf.compare(a, dict(a)) == []
    b = {
        "study_hash": "b",
        "cells": {"x": {"fits": {"hash": "2", "rows": 3}}, "y": {"fits": {"hash": "3", "rows": 1}}},
    }
    problems = [str(p) for p in mf.compare(a, b)]
    assert problems[0].startswith("cell x: fits differ")
    assert problems[1] == "cell y: only in the second study"


# --- the pipeline writes it; `emsim verify` checks it ---------------------------------------------


@pytest.fixture
def study(tiny_study) -> Path:
    """The session's finished TINY study (--cores 2, chunk_size 3); read-only."""
    return tiny_study


@pytest.mark.slow
def test_pipeline_writes_the_manifest(study):
    spec = load_study(TINY, SCHEMA)
    results = study / "results"
    manifest = json.loads((results / "manifest.json").read_text())
    expected = sorted(
        str(Path(p).relative_to("results")) for k in mf.KINDS for p in spec.outputs(k)
    )
    assert [f["path"] for f in manifest["files"]] == expected
    assert manifest["format"] == mf.FORMAT
    assert manifest["config_hash"] == spec.fit_hash  # the scope of the fits' own metadata
    assert manifest["config_hash_scope"] == "fit"
    assert (
        manifest["emsim_version"]
        == pq.read_schema(results / expected[0]).metadata[b"emsim_version"].decode()
    )
    assert manifest["totals"]["fits"] == {
        "files": len(spec.cells) * spec.n_chunks,
        "rows": len(spec.cells) * spec.replicates * spec.fits_per_replicate,
    }
    assert set(manifest["cells"]) == {c.cell_id for c in spec.cells}
    for entry in manifest["files"]:
        table = pq.read_table(results / entry["path"])
        assert entry["rows"] == table.num_rows
        assert entry["hash"] == mf.table_hash(table)
    assert manifest["study_hash"] == mf.study_hash(manifest["cells"])
    # Written atomically: no temporary file left next to it. (The integrity cache is a dot file
    # of its own, there once a run has checked the study's files: after test_pipeline's reruns
    # of this shared study.)
    dot_files = [p.name for p in results.iterdir() if p.name.startswith(".")]
    assert [name for name in dot_files if name != integrity.CACHE_FILE] == []


@pytest.mark.slow
def test_verify_passes_on_an_untouched_study(study, capsys, monkeypatch):
    proc = subprocess.run(
        [str(EMSIM), "verify", "--results", str(study / "results")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("verify: all 8 files match") and proc.stderr == ""
    monkeypatch.chdir(study)  # the default: ./results
    code, out, _ = run_cli(capsys)
    assert code == 0 and "all 8 files match results/manifest.json" in out


@pytest.mark.slow
def test_verify_names_an_altered_file(study, tmp_path, capsys):
    results = copy_results(study, tmp_path / "results")
    target = sorted((results / "fits").glob("*/chunk=1.parquet"))[0]
    # Wall-clock times and metadata may change without a mismatch ...
    rewrite(target, lambda t: set_value(t, "runtime_s", 0, 123.0))
    code, out, _ = run_cli(capsys, "--results", results)
    assert code == 0, out
    # ... one estimate moved by one ulp may not.
    rewrite(target, lambda t: set_value(t, "est_mu1", 4, np.nextafter(t["est_mu1"][4].as_py(), 9)))
    code, out, err = run_cli(capsys, "--results", results)
    lines = out.splitlines()
    assert code == 1 and err == ""
    assert lines[0].startswith(f"{target.as_posix()}: content differs")
    assert lines[-2] == f"verify: 1 of 8 files differ from {results / 'manifest.json'}"
    assert len(lines) == 4  # the file, the study hash, the summary, how to repair
    assert lines[1].startswith("study: hash ")
    # Its rows differ from the hash its fit job stored: a rerun moves it aside and refits it.
    assert "its rows changed after its fit job wrote them" in lines[0], lines[0]
    assert lines[-1].startswith("repair: rerun the study in "), lines[-1]

    # A lost file: results differ (exit 1), named.
    target.unlink()
    code, out, _ = run_cli(capsys, "--results", results)
    assert code == 1 and f"{target.as_posix()}: missing" in out.splitlines()


@pytest.mark.slow
def test_verify_rejects_bad_input(study, tmp_path, capsys):
    code, out, err = run_cli(capsys, "--results", tmp_path)
    assert_one_line_error(code, out, err, str(tmp_path / "manifest.json"), "no manifest")

    results = copy_results(study, tmp_path / "results")
    (results / "manifest.json").write_text('{"format": "emsim-manifest/1", "cells": ')
    code, out, err = run_cli(capsys, "--results", results)
    assert_one_line_error(code, out, err, "unreadable manifest")
    # JSON nested deeper than Python's recursion limit: one line, not a RecursionError.
    (results / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    code, out, err = run_cli(capsys, "--results", results)
    assert_one_line_error(code, out, err, "unreadable manifest", "nested too deeply")
    code, out, err = run_cli(capsys, "--results", study / "results", "--compare", tmp_path / "x")
    assert_one_line_error(code, out, err, "no manifest", "no such folder")
    # One file listed twice would be counted twice in every total (issue 19, item 10).
    manifest = json.loads((study / "results" / "manifest.json").read_text())
    manifest["files"].append(dict(manifest["files"][0]))
    (results / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = run_cli(capsys, "--results", results)
    assert_one_line_error(code, out, err, manifest["files"][0]["path"], "listed twice")


@pytest.mark.slow
def test_a_rerun_repairs_deleted_and_truncated_results(study, tmp_path, capsys):
    """Issue 13: a deleted fits file made a rerun say "Nothing to be done", and a truncated one
    with a newer time made every rerun fail. `emsim verify` names both and says how to repair;
    a plain rerun refits exactly their two jobs, to the same study hash."""
    work = copy_study(study, tmp_path / "w")  # code link, results and Snakemake's records
    results = work / "results"
    reference = json.loads((results / "manifest.json").read_text())["study_hash"]
    fits = sorted((results / "fits").glob("*/chunk=*.parquet"))
    deleted, truncated = fits[0], fits[-1]
    deleted.unlink()
    truncated.write_bytes(truncated.read_bytes()[:300])
    later = time.time() + 2  # newer than the summary and the manifest: their inputs "changed"
    os.utime(truncated, (later, later))

    code, out, err = run_cli(capsys, "--results", results)
    lines = out.splitlines()
    assert code == 1 and err == "", out + err
    assert f"{deleted.as_posix()}: missing" in lines
    assert any(line.startswith(f"{truncated.as_posix()}: unreadable: ") for line in lines), out
    assert lines[-2] == f"verify: 2 of 8 files differ from {results / 'manifest.json'}"
    assert lines[-1].startswith("repair: rerun the study in "), out
    assert "snakemake --workflow-profile workflow/profiles/default" in lines[-1]

    _, out = snakemake(work)
    damaged = truncated.relative_to(work).as_posix()
    assert f"emsim: {damaged} is damaged (no Parquet magic bytes" in out, out[-3000:]
    jobs = jobs_of(out)
    assert jobs.count("fit") == 2 and {"manifest", "summary", "report"} <= set(jobs), jobs
    assert json.loads((results / "manifest.json").read_text())["study_hash"] == reference
    code, out, _ = run_cli(capsys, "--results", results, "--compare", study / "results")
    assert code == 0 and "hold identical results" in out
    code, out, _ = run_cli(capsys, "--results", results)
    assert code == 0, out
    _, plan = snakemake(work, "-n")
    assert jobs_of(plan) == []


@pytest.mark.slow
def test_manifest_refuses_a_file_of_another_fit_config(study, tmp_path):
    results = copy_results(study, tmp_path / "results")
    files = sorted(str(p) for p in (results / "fits").glob("*/*.parquet"))
    spec = load_study(TINY, SCHEMA)
    assert mf.build_manifest(results, files, expect_config_hash=spec.fit_hash)["study_hash"]
    other = load_study(dict(TINY, seed=6), SCHEMA)
    with pytest.raises(mf.ManifestError, match=r"fits/cell=.*: stale: written for fit config"):
        mf.build_manifest(results, files, expect_config_hash=other.fit_hash)


# --- the same numbers whatever the core count or chunk size ---------------------------------------


@pytest.mark.slow
def test_study_hash_does_not_depend_on_cores_or_chunk_size(
    study, determinism_runs, tmp_path, capsys
):
    reference = json.loads((study / "results" / "manifest.json").read_text())
    one_core = determinism_runs["one_core"]  # --cores 1, a process per job
    chunked = determinism_runs["chunked"]  # chunk_size 10

    for other, n_fits_files in ((one_core, 4), (chunked, 2)):
        manifest = json.loads((other / "results" / "manifest.json").read_text())
        assert manifest["totals"]["fits"]["files"] == n_fits_files
        assert manifest["cells"] == {
            cell: {kind: dict(entry, files=n_fits_files // 2) for kind, entry in kinds.items()}
            for cell, kinds in reference["cells"].items()
        }
        assert manifest["study_hash"] == reference["study_hash"]
        code, out, _ = run_cli(
            capsys, "--results", study / "results", "--compare", other / "results"
        )
        assert code == 0 and "hold identical results" in out, out
    # chunk_size 10: one file per cell, so its file hash is the cell's.
    manifest = json.loads((chunked / "results" / "manifest.json").read_text())
    for entry in manifest["files"]:
        assert entry["hash"] == manifest["cells"][entry["cell_id"]][entry["kind"]]["hash"]

    # A study that differs (another seed's manifest, made by hand here): exit 1, cells named.
    other = json.loads(json.dumps(reference))
    cell = sorted(other["cells"])[0]
    other["cells"][cell]["fits"]["hash"] = "0" * 64
    other["study_hash"] = mf.study_hash(other["cells"])
    (tmp_path / "other.json").write_text(json.dumps(other))
    code, out, _ = run_cli(
        capsys, "--results", study / "results", "--compare", tmp_path / "other.json"
    )
    assert code == 1
    assert out.splitlines()[0].startswith(f"cell {cell}: fits differ")
    assert out.splitlines()[-1].startswith("compare: ") and "differ (1 difference(s))" in out


# --- what a change reruns -------------------------------------------------------------------------


def _plan(workdir: Path, override_file: Path, override: dict) -> tuple[list[str], str]:
    override_file.write_text(yaml.safe_dump(override))
    _, plan = snakemake(workdir, "-n", "--configfile", str(override_file))
    return sorted(jobs_of(plan)), plan


@pytest.mark.slow
def test_changes_rerun_exactly_the_affected_jobs(study, tmp_path):
    _, plan = snakemake(study, "-n")
    assert jobs_of(plan) == []  # complete, manifest included
    # Each of the 2 cells is summarised and hashed by jobs of its own, then gathered.
    # A new config is recorded again in results/config.yaml (`study_config`).
    downstream = ["all", "cell_hashes", "cell_hashes", "cell_summary", "cell_summary"]
    downstream += ["figures", "manifest", "report", "report_body"]
    downstream += ["study_config", "summary", "summary_csv", "traces_figure"]
    every_fit = ["fit"] * 4  # 2 cells x 2 chunks: the seed changes every fit's result
    jobs, plan = _plan(study, tmp_path / "seed.yaml", {"seed": 6})
    assert jobs == sorted(downstream + every_fit), jobs
    # The fits rerun through the params trigger (the fit config hash), the rest as their inputs
    # are updated.
    # (and study_config through its config hash).
    assert plan.count("reason: Params have changed since last execution") == len(every_fit) + 1
    # An EM setting and a figure option: test_pipeline's test_config_changes_rerun_only_what_
    # they_affect plans them on this same study (manifest rerun with the fits, not with figures).
    # Editing the manifest code (a code input; content, not just time) reruns only the manifest
    # and the cells' hashes. The code is the session's shared copy, edited for this dry run only.
    with edited(study / "src" / "emsim" / "study" / "manifest.py", "\n# an edit\n"):
        _, plan = snakemake(study, "-n")
        assert sorted(jobs_of(plan)) == ["all", "cell_hashes", "cell_hashes", "manifest"]
    _, plan = snakemake(study, "-n")
    assert jobs_of(plan) == []
