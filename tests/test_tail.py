"""The study's tail (issue 22): the manifest's faster hashing gives the hashes the plain
definition gives, and the workflow runs each cell's summary as soon as the cell's fits exist.

The manifest sorts a file by unique keys with numpy (`_unique_key_order`) and hashes a cell of
several files from its files' sorted rows without sorting again when the files hold
consecutive keys; both must give exactly the hashes of `table_hash` on the concatenated rows
(sorted by Arrow), for shuffled rows, repeated keys, nulls in a key and files out of order.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emsim.study import manifest as mf
from emsim.study.manifest import ROWS_HASH_KEY


def _rows(replicates: range, seed: int, shuffle: bool = True) -> pa.Table:
    rng = random.Random(seed)
    keys = [
        ("c1", r, model, method, stopping, start)
        for r in replicates
        for model in ("pi", "full", "equal_var")
        for method in ("em", "squarem")
        for stopping in ("abs", "aitken")
        for start in ("fixed", "truth", "random_2", "Zäh")
    ]
    if shuffle:
        rng.shuffle(keys)
    columns = list(zip(*keys, strict=True))
    values = np.random.default_rng(seed).standard_normal(len(keys))
    values[::7] = np.nan
    return pa.table(
        {
            "cell_id": pa.array(columns[0], pa.string()),
            "replicate": pa.array(columns[1], pa.int64()),
            "model": pa.array(columns[2], pa.string()),
            "method": pa.array(columns[3], pa.string()),
            "stopping": pa.array(columns[4], pa.string()),
            "start": pa.array(columns[5], pa.string()),
            "est_pi": pa.array(values, pa.float64()),
            "runtime_s": pa.array(np.arange(len(keys), dtype=float)),
        }
    )


def _arrow_sorted(table: pa.Table) -> pa.Table:
    """The canonical table as Arrow's sort gives it (the definition before issue 22)."""
    table = table.replace_schema_metadata(None).drop_columns(["runtime_s"])
    keys = [k for k in mf.SORT_KEYS if k in table.column_names]
    table = table.sort_by([(k, "ascending") for k in keys])
    if table.group_by(keys).aggregate([]).num_rows < table.num_rows:
        table = table.sort_by([(c, "ascending") for c in table.column_names])
    return table


@pytest.mark.parametrize("case", ["unique", "repeated keys", "null key", "one row", "empty"])
def test_canonical_table_sorts_as_arrow_does(case):
    table = _rows(range(5), seed=3)
    if case == "repeated keys":
        table = pa.concat_tables([table, table.slice(10, 30)])
    elif case == "null key":
        start = table["start"].to_pylist()
        start[4] = None
        table = table.set_column(5, "start", pa.array(start, pa.string()))
    elif case == "one row":
        table = table.slice(0, 1)
    elif case == "empty":
        table = table.slice(0, 0)
    fast, reference = mf.canonical_table(table), _arrow_sorted(table)
    assert fast.schema == reference.schema
    # Value by value (NaN equal to NaN), the row order included.
    assert fast.to_pandas().equals(reference.to_pandas())


def _write_chunks(root: Path, chunks: list[pa.Table]) -> list[Path]:
    paths = []
    for k, table in enumerate(chunks):
        path = root / "fits" / "cell=c1" / f"chunk={k}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {ROWS_HASH_KEY: mf.table_hash(table)}
        pq.write_table(table.replace_schema_metadata(meta), path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("order", ["consecutive", "out of order", "overlapping"])
def test_cell_hash_of_chunk_files_is_the_hash_of_their_rows(tmp_path, order):
    blocks = {"consecutive": [range(0, 4), range(4, 9), range(9, 10)]}
    blocks["out of order"] = blocks["consecutive"][::-1]
    # Replicates 3 and 4 in both files, with other values: keys repeat, so the cell's rows
    # are sorted by every column.
    blocks["overlapping"] = [range(0, 5), range(3, 8)]
    chunks = [_rows(r, seed=1 + i) for i, r in enumerate(blocks[order])]
    paths = _write_chunks(tmp_path, chunks)
    built = mf.build_manifest(tmp_path, paths, require_rows_hash=True)
    whole = pa.concat_tables(chunks)
    cell = built["cells"]["c1"]["fits"]
    assert cell["hash"] == mf.table_hash(whole)
    assert cell["rows"] == whole.num_rows and cell["files"] == len(chunks)
    assert [f["hash"] for f in built["files"]] == [mf.table_hash(t) for t in chunks]


def test_a_changed_value_in_any_chunk_changes_the_cell_hash(tmp_path):
    chunks = [_rows(range(0, 3), seed=1), _rows(range(3, 6), seed=2)]
    reference = mf.build_manifest(tmp_path / "a", _write_chunks(tmp_path / "a", chunks))
    values = chunks[1]["est_pi"].to_numpy(zero_copy_only=False).copy()
    values[5] = np.nextafter(values[5], np.inf) if np.isfinite(values[5]) else 0.0
    chunks[1] = chunks[1].set_column(6, "est_pi", pa.array(values))
    changed = mf.build_manifest(tmp_path / "b", _write_chunks(tmp_path / "b", chunks))
    assert changed["files"][0]["hash"] == reference["files"][0]["hash"]
    assert changed["cells"]["c1"]["fits"]["hash"] != reference["cells"]["c1"]["fits"]["hash"]


def _cell_files(root: Path, cell: str, chunks: list[pa.Table]) -> list[Path]:
    paths = []
    for k, table in enumerate(chunks):
        table = table.set_column(0, "cell_id", pa.array([cell] * table.num_rows, pa.string()))
        path = root / "fits" / f"cell={cell}" / f"chunk={k}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {ROWS_HASH_KEY: mf.table_hash(table), "config_hash": "cfg"}
        pq.write_table(table.replace_schema_metadata(meta), path)
        paths.append(path)
    return paths


def test_manifest_from_parts_is_the_manifest_and_rehashes_a_file_changed_since(tmp_path):
    from emsim.study import manifest_cells as mc

    files = {
        cell: _cell_files(tmp_path, cell, [_rows(range(0, 3), 1), _rows(range(3, 5), 2)])
        for cell in ("a", "b")
    }
    parts = []
    for cell, paths in files.items():
        parts.append(tmp_path / "hashes" / f"cell={cell}.json")
        mc.write_part(parts[-1], mc.cell_part(tmp_path, paths, "cfg"))
    every = [p for paths in files.values() for p in paths]
    reference = mf.build_manifest(tmp_path, every, {"seed": 1}, "cfg", require_rows_hash=True)
    built, again = mc.build_from_parts(tmp_path, every, parts, {"seed": 1}, "cfg")
    assert built == reference and again == []
    # A missing part, or one of another fit config: that cell is hashed from its rows.
    parts[0].unlink()
    built, again = mc.build_from_parts(tmp_path, every, parts, {"seed": 1}, "cfg")
    assert built == reference and again == ["a"]
    with pytest.raises(mf.ManifestError, match="stale"):
        mc.build_from_parts(tmp_path, every, parts, {"seed": 1}, "other")
    # A file edited after its part was written (its stamp changed) is hashed again and caught.
    table = pq.read_table(files["b"][1])
    values = table["est_pi"].to_pylist()
    values[0] = 0.123
    pq.write_table(table.set_column(6, "est_pi", pa.array(values)), files["b"][1])
    with pytest.raises(mf.UnreadableFile, match="its rows changed after"):
        mc.build_from_parts(tmp_path, every, parts, {"seed": 1}, "cfg")


_PREPARE = """
import os, sys
from multiprocessing import forkserver
from types import SimpleNamespace
from emsim.study import jobs

def fake_workflow(rules, cores, threads):
    jobs_ = [SimpleNamespace(rule=SimpleNamespace(name=r)) for r in rules]
    return SimpleNamespace(
        resource_settings=SimpleNamespace(cores=cores),
        dag=SimpleNamespace(needrun_jobs=lambda: iter(jobs_)),
        local_exec=True,
        execution_settings=SimpleNamespace(use_threads=threads),
    )

if __name__ == "__main__":
    rules, cores, threads = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3] == "True"
    fits = jobs.prepare_workers(fake_workflow(rules, cores, threads))
    server = forkserver._forkserver._forkserver_pid
    fit_parent = jobs.fit_workers().run(os.getppid) if fits else None
    with jobs.figure_pool(2) as pool:
        parent = pool.submit(os.getppid).result()
    print(fits, server, parent, forkserver._forkserver._forkserver_pid, fit_parent)
"""


@pytest.mark.parametrize(
    ("rules", "cores", "threads", "server", "fits"),
    [
        ("fit,figures,report", 2, False, True, False),
        ("fit,figures,report", 2, True, True, True),
        ("fit,summary", 2, True, True, True),
        ("cell_gate,summary", 2, True, True, True),
        ("fit,summary", 2, False, False, False),
        ("figures", 1, True, False, False),
        ("fit,figures", 1, True, False, False),
    ],
)
def test_onstart_starts_the_worker_server_only_for_a_run_with_work_for_it(
    tmp_path, rules, cores, threads, server, fits
):
    """A run whose DAG draws the figures, or fits as threads, on more than one core starts the
    fork server before any job (its imports then overlap Snakemake's scheduling); the fit
    workers and the figures job's pool fork their workers from that server, not from one of
    their own. Fit jobs that are processes of their own already (no force-use-threads, or a
    cluster) and runs on one core get no fit workers."""
    import subprocess
    import sys

    script = tmp_path / "prepare.py"
    script.write_text(_PREPARE)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    out = subprocess.run(
        [sys.executable, str(script), rules, str(cores), str(threads)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    said, server_before, worker_parent, server_after, fit_parent = out.stdout.split()
    assert said == str(fits)
    # Started in onstart: a server exists before the pool; else the pool starts it.
    assert (server_before != "None") == server
    assert int(worker_parent) == int(server_after)
    if server:
        assert int(server_before) == int(server_after)
    if fits:
        assert int(fit_parent) == int(server_after)


@pytest.mark.parametrize(
    ("rules", "loads"),
    [
        ({"fit", "summary", "figures"}, True),
        ({"cell_gate", "summary"}, True),
        ({"figures", "traces_figure", "report"}, False),
        ({"report_body", "report"}, False),
    ],
)
def test_onstart_loads_the_engine_only_for_a_run_that_fits(monkeypatch, rules, loads):
    """`make figures` and a rewritten report fit nothing: their `onstart` does not load the
    compiled engine (about 0.6 s, and 0.1 s more at exit). A run with fit jobs, or with a gate
    that may add some, loads it before its first job."""
    from types import SimpleNamespace

    from emsim import warmup
    from emsim.study import jobs

    loaded = []
    monkeypatch.setattr(warmup, "load_engine", lambda: loaded.append(True) or 0.25)
    monkeypatch.setattr(warmup, "compiled_entry_points", lambda: [])
    jobs_ = [SimpleNamespace(rule=SimpleNamespace(name=r)) for r in sorted(rules)]
    workflow = SimpleNamespace(dag=SimpleNamespace(needrun_jobs=lambda: iter(jobs_)))
    seconds = jobs.warm_engine(workflow, say=lambda line: None)
    assert loaded == ([True] if loads else [])
    assert seconds == (0.25 if loads else 0.0)
