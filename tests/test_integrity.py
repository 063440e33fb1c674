"""Issue 19: the files under results/ are the study (items 1-6, and of 9 the flipped bytes).

One small study (two cells, six replicates, chunk_size 2) is run once for the module; each test
changes a copy of it (studyrun.copy_study) and reruns the same Snakemake command.
"""

from __future__ import annotations

import json
import random
import shlex
import subprocess

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import yaml
from studyrun import ROOT, copy_study, jobs_of, make_workdir, snakemake, study_hash

from emsim.cli import main as emsim_main
from emsim.study import manifest as manifest_module
from emsim.study.manifest import ROWS_HASH_KEY, rows_hash

pytestmark = pytest.mark.slow

SMALL = {
    "study": "integrity test study",
    "seed": 11,
    "replicates": 6,
    "chunk_size": 2,
    "traces": 1,
    "grid": {"n": [40], "mu": [[0, 3]], "sigma": [1], "pi": [0.5, 0.8]},
    "scenarios": [],
    "models": ["pi", "full"],
    "methods": ["em"],
    "starts": [
        {"name": "fixed", "strategy": "fixed", "values": {"pi": 0.5}},
        {"name": "truth", "strategy": "truth"},
    ],
    "em": {"stopping": ["abs"]},
}
# Another study for the same checkout: one cell in common, one new, fewer replicates and
# another chunk size.
SECOND = dict(
    SMALL,
    study="second study",
    replicates=4,
    chunk_size=4,
    grid={"n": [40], "mu": [[0, 3]], "sigma": [1], "pi": [0.5, 0.7]},
)
FITS_PER_REPLICATE = 4  # 2 models x 1 method x 2 starts x 1 stopping rule


@pytest.fixture(scope="module")
def small(study_src, tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("integrity") / "w", SMALL, src=study_src)
    snakemake(workdir)
    return workdir


def verify(capsys, *args):
    capsys.readouterr()
    code = emsim_main(["verify", *map(str, args)])
    return code, capsys.readouterr().out


def fits_files(work):
    return sorted((work / "results" / "fits").glob("cell=*/chunk=*.parquet"))


def set_est_pi(path, row, value, restamp=False):
    """Change one est_pi, keeping the metadata (with `restamp`, also its rows hash: a forger)."""
    table = pq.read_table(path)
    values = table["est_pi"].to_pylist()
    values[row] = value
    table = table.set_column(table.column_names.index("est_pi"), "est_pi", pa.array(values))
    if restamp:
        meta = dict(table.schema.metadata)
        meta[ROWS_HASH_KEY.encode()] = rows_hash(table).encode()
        table = table.replace_schema_metadata(meta)
    pq.write_table(table, path)


def test_every_deleted_output_is_rebuilt_and_only_what_depends_on_it(small, tmp_path):
    work = copy_study(small, tmp_path / "w")
    results = work / "results"
    before = study_hash(work)
    cells = sorted((results / "cells").iterdir())
    for path in [results / "summary", results / "figures" / "bias.png", cells[0]]:
        subprocess.run(["rm", "-rf", str(path)], check=True)
    _, out = snakemake(work)
    assert "Nothing to be done" not in out
    ran = jobs_of(out)
    assert "fit" not in ran and "manifest" not in ran, ran
    assert ran.count("cell_summary") == 1 and {"summary", "figures", "report"} <= set(ran), ran
    for table in ("performance", "convergence", "replicates", "precision"):
        assert (results / "summary" / f"{table}.parquet").is_file()
        assert (results / "summary" / f"{table}.csv").is_file()
    assert (results / "figures" / "bias.png").is_file() and cells[0].is_dir()
    assert study_hash(work) == before
    # One CSV alone: only its rule, which nothing else reads.
    (results / "summary" / "performance.csv").unlink()
    _, out = snakemake(work)
    assert set(jobs_of(out)) == {"summary_csv", "all"}, jobs_of(out)
    assert (results / "summary" / "performance.csv").is_file()


README_PYARROW = 'pads.dataset("results/fits", format="parquet").to_table()'
README_DUCKDB = "SELECT * FROM read_parquet('results/fits/*/*.parquet', hive_partitioning = false)"


def test_readme_gives_the_read_recipes_tested_here():
    readme = (ROOT / "README.md").read_text()
    assert README_PYARROW.replace("pads.", "ds.") in readme
    assert README_DUCKDB in readme


def test_a_second_config_in_the_same_checkout_is_all_a_reader_of_results_sees(
    small, tmp_path, monkeypatch
):
    work = copy_study(small, tmp_path / "w")
    (work / "second.yaml").write_text(yaml.safe_dump(SECOND))
    # Neither a dry run nor `snakemake --lint` (`make lint`) moves anything: they only say so.
    for looking in ("-n", "--lint"):
        _, out = snakemake(work, "--configfile", "second.yaml", looking, check=False)
        assert "would move to results/stale/" in out, out[-3000:]
        assert not (work / "results" / "stale").exists(), looking
    _, out = snakemake(work, "--configfile", "second.yaml")
    assert "left by an earlier study" in out and "moved to results/stale/" in out, out[-3000:]
    manifest = json.loads((work / "results" / "manifest.json").read_text())
    expected_cells = {"n40_mu0-3_s1-1_pi0.5", "n40_mu0-3_s1-1_pi0.7"}
    monkeypatch.chdir(work)  # the recipes read results/ of the current folder
    rows = {
        "pyarrow": pads.dataset("results/fits", format="parquet").to_table().to_pandas(),
        "duckdb": duckdb.sql(README_DUCKDB).df(),
    }
    for reader, frame in rows.items():
        assert len(frame) == 2 * 4 * FITS_PER_REPLICATE, reader
        assert len(frame) == manifest["totals"]["fits"]["rows"], reader
        assert "cell" not in frame.columns, reader
        cells = {c.rsplit("_", 1)[0] for c in frame["cell_id"]}
        assert cells == expected_cells, reader
        assert sorted(set(frame["replicate"])) == [0, 1, 2, 3], reader
    assert (work / "results" / "stale" / "fits").is_dir()
    recorded = yaml.safe_load((work / "results" / "config.yaml").read_text())
    assert recorded["study"] == "second study" and recorded["replicates"] == 4


def test_a_foreign_file_is_named_and_refitted(small, tmp_path, capsys):
    work = copy_study(small, tmp_path / "w")
    before = study_hash(work)
    cells = sorted((work / "results" / "fits").iterdir())
    first, second = (sorted(d.glob("chunk=*.parquet")) for d in cells)
    second[1].write_bytes(first[0].read_bytes())  # another cell's chunk under this one
    code, out = snakemake(work)
    shown = second[1].relative_to(work).as_posix()
    assert f"emsim: {shown} holds cell {first[0].parent.name[5:]} chunk 0" in out, out[-3000:]
    assert jobs_of(out).count("fit") == 1
    assert study_hash(work) == before
    code, out = verify(capsys, "--results", work / "results")
    assert code == 0, out


def test_an_edited_file_is_named_and_refitted_and_never_in_the_manifest(small, tmp_path, capsys):
    work = copy_study(small, tmp_path / "w")
    before = study_hash(work)
    target = fits_files(work)[2]
    set_est_pi(target, 0, 0.123)
    code, out = verify(capsys, "--results", work / "results")
    assert code == 1 and f"{target.as_posix()}: content differs" in out, out
    _, out = snakemake(work)
    shown = target.relative_to(work).as_posix()
    assert f"emsim: {shown} its rows changed after its fit job wrote them" in out, out[-3000:]
    assert jobs_of(out).count("fit") == 1
    assert study_hash(work) == before
    code, out = verify(capsys, "--results", work / "results")
    assert code == 0, out
    assert 0.123 not in pq.read_table(target)["est_pi"].to_pylist()


def test_a_file_with_flipped_bytes_is_named_refitted_and_the_rest_kept(small, tmp_path):
    work = copy_study(small, tmp_path / "w")
    before = study_hash(work)
    target = fits_files(work)[1]
    data = bytearray(target.read_bytes())
    for i in random.Random(3).sample(range(4, len(data) - 4), 2000):
        data[i] ^= 0xFF
    target.write_bytes(bytes(data))
    others = {p: p.stat().st_mtime_ns for p in fits_files(work) if p != target}
    code, out = snakemake(work, check=False)
    assert code == 0 and "Traceback" not in out, out[-3000:]
    assert f"emsim: {target.relative_to(work).as_posix()}" in out
    assert jobs_of(out).count("fit") == 1
    assert {p: p.stat().st_mtime_ns for p in others} == others
    assert study_hash(work) == before


def test_manifest_is_never_built_over_rows_changed_after_the_start_up_check(small, tmp_path):
    work = copy_study(small, tmp_path / "w")
    results = work / "results"
    files = [*fits_files(work), *sorted((results / "traces").glob("*/*.parquet"))]
    set_est_pi(files[0], 1, 0.5)
    with pytest.raises(manifest_module.UnreadableFile, match="its rows changed after"):
        manifest_module.build_manifest(results, files)


def test_verify_recompute_refits_chunks_and_names_a_forged_file(small, tmp_path, capsys):
    work = copy_study(small, tmp_path / "w")
    results = work / "results"
    code, out = verify(capsys, "--results", results, "--recompute", "3", "--seed", "4")
    assert code == 0, out
    assert out.splitlines()[-1] == (
        "recompute: the refitted rows of all 6 files match (3 chunk(s) drawn with --seed 4)"
    )
    # A forger who restamps the rows hash and rebuilds the manifest passes the hash checks;
    # only refitting finds the changed value.
    target = fits_files(work)[4]
    set_est_pi(target, 0, 0.321, restamp=True)
    old = json.loads((results / "manifest.json").read_text())
    computed = ("format", "study_hash", "hashing", "totals", "cells", "files")
    provenance = {k: v for k, v in old.items() if k not in computed}
    files = [*fits_files(work), *results.glob("traces/*/*")]
    built = manifest_module.build_manifest(results, files, provenance=provenance)
    manifest_module.write_manifest(results / "manifest.json", built)
    code, out = verify(capsys, "--results", results)
    assert code == 0, out
    code, out = verify(capsys, "--results", results, "--recompute", "6", "--replicates", "0")
    lines = out.splitlines()
    assert code == 1, out
    assert f"{target.as_posix()}: refit of replicates 2-3 differs in est_pi" in lines, out
    assert lines[-1].startswith("recompute: 1 of 12 files differ from their refit"), out


def test_make_figures_redraws_the_study_in_results_not_the_default_config(small, tmp_path):
    work = copy_study(small, tmp_path / "w")
    (work / "config.yaml").write_text(yaml.safe_dump(SECOND))  # a default that was not run
    plan = subprocess.run(
        ["make", "-s", "-n", "-f", str(ROOT / "Makefile"), "figures", "STAMP=", "CORES=2"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    command = shlex.split(next(line for line in plan.splitlines() if "snakemake" in line))
    args = command[1:]
    cores = args.index("--cores")
    del args[cores : cores + 2]  # the helper gives its own
    _, out = snakemake(work, "-n", *args)
    assert sorted(jobs_of(out)) == ["figures", "report", "traces_figure"], out[-3000:]


def test_a_full_disk_is_one_line_and_the_old_file_is_kept(tmp_path, monkeypatch):
    """Issue 19, item 9: a write that fails for lack of space leaves the file it would have
    replaced as it was, and the job says "disk full" in one line, without a traceback."""
    import errno

    import pandas as pd

    from emsim.study import jobs
    from emsim.study.parquet_io import write_parquet_atomic

    target = tmp_path / "summary" / "table.parquet"
    target.parent.mkdir()
    write_parquet_atomic(pd.DataFrame({"x": [1.0, 2.0]}), target)
    before = target.read_bytes()

    def no_space(table, where, **kwargs):
        with open(where, "wb") as half:
            half.write(b"PAR1")
        raise OSError(errno.ENOSPC, "No space left on device", str(where))

    monkeypatch.setattr(pq, "write_table", no_space)
    log = tmp_path / "job.log"
    with pytest.raises(jobs.DiskFull) as raised, jobs.job_logging(log):
        write_parquet_atomic(pd.DataFrame({"x": [3.0]}), target)

    assert str(raised.value).startswith("disk full writing ")
    assert "\n" not in str(raised.value)
    logged = log.read_text()
    assert "disk full" in logged and "Traceback" not in logged
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.parquet"]
