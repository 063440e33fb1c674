"""Large studies (issue 5): the DAG of a 10,000-job study, and `summarise` on 10^6 fit rows.

(a) A study of 1000 cells x 10 chunks (tiny n, so only the DAG matters) in a temporary copy of
    the workflow: the wall time of `snakemake -n` (parse, validate, build the DAG of every job and
    print the plan) and its peak memory.
(b) A synthetic fits dataset of 10^6 rows in the study's hive layout
    (fits/cell=<id>/chunk=<k>.parquet, the columns and types of schema.FITS_SCHEMA, statuses and
    estimates drawn around the truth), summarised by `emsim.study.summary.summarise` in a
    subprocess: wall time and peak resident memory (getrusage RUSAGE_CHILDREN ru_maxrss). Two
    layouts: many cells (a study's usual shape) and one cell holding every row (the worst case
    for streaming by cell).

Everything is written under a temporary folder; nothing goes to results/.

    python benchmarks/scale.py                      # both parts
    python benchmarks/scale.py --only dag           # or: --only summarise
    python benchmarks/scale.py --rows 1000000 --cells 50
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from emsim.models import MODELS, PARAMS, STATUSES
from emsim.study.config import Cell
from emsim.study.schema import FITS_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
DAG_LIMIT_S = 60.0
MEMORY_LIMIT_MB = 2048.0

METHODS = ("em", "squarem")
STARTS = ("fixed", "quantile", "random1", "random2", "random3", "truth")
FITS_PER_REPLICATE = len(MODELS) * len(METHODS) * len(STARTS)  # 36, as the default study

# A child that runs a command and reports the command's peak RSS (its own children only, so that
# nothing the benchmark did before is counted).
_MEASURE = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.run(sys.argv[2:], capture_output=True, text=True)
wall = time.perf_counter() - t0
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(sys.argv[1], "w") as f:
    json.dump({"rc": proc.returncode, "wall_s": wall, "peak_mb": peak_kb / 1024,
               "out": (proc.stdout + proc.stderr)[-4000:]}, f)
"""

_SUMMARISE = """
import sys
from emsim.study.summary import summarise
summarise(sys.argv[1], sys.argv[2], 0.95)
"""


def measured(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> dict:
    """Run `cmd` in a fresh measuring child; {rc, wall_s, peak_mb, out}."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        report = Path(tmp.name)
    try:
        subprocess.run(
            [sys.executable, "-c", _MEASURE, str(report), *cmd], cwd=cwd, env=env, check=True
        )
        result = json.loads(report.read_text())
    finally:
        report.unlink(missing_ok=True)
    # Cross-check with this process's own view of its children (the measuring child's peak
    # includes its child's, as ru_maxrss of RUSAGE_CHILDREN is the largest of the waited-for).
    result["children_max_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return result


# --- (a) the DAG of a 10,000-job study -----------------------------------------------------


def big_config(cells: int, chunks: int) -> dict:
    """`cells` cells (a 10 x 10 x ... grid of mu, sigma, pi) x `chunks` chunks of 1 replicate."""
    side = round(cells ** (1 / 3))
    assert side**3 == cells, "cells must be a cube (1000 = 10 x 10 x 10)"
    return {
        "study": f"scale test: {cells} cells x {chunks} chunks",
        "seed": 1,
        "replicates": chunks,
        "chunk_size": 1,
        "traces": 0,
        "grid": {
            "n": [10],
            "mu": [[0.0, 0.5 + 0.25 * i] for i in range(side)],
            "sigma": [0.5 + 0.1 * i for i in range(side)],
            "pi": [round(0.05 + 0.09 * i, 4) for i in range(side)],
        },
        "models": ["full"],
        "methods": ["em"],
        "starts": [{"name": "truth", "strategy": "truth"}],
        "em": {"tolerance": 1e-5, "max_iterations": 10},
    }


def workdir(path: Path, config: dict) -> Path:
    path.mkdir(parents=True)
    shutil.copy2(ROOT / "Snakefile", path / "Snakefile")
    shutil.copytree(ROOT / "workflow", path / "workflow")
    shutil.copytree(ROOT / "src", path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def bench_dag(tmp: Path, cells: int, chunks: int) -> dict:
    work = workdir(tmp / "dag", big_config(cells, chunks))
    env = dict(os.environ, PYTHONPATH=str(work / "src"), MPLBACKEND="Agg")
    result = measured([str(SNAKEMAKE), "-n", "--cores", "1"], cwd=work, env=env)
    if result["rc"] != 0:
        raise SystemExit(f"snakemake -n failed:\n{result['out']}")
    out = result["out"]
    jobs = None
    for line in out.splitlines():  # the job-stats table: "total   <count>"
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
            jobs = int(parts[1])
    result["jobs"] = jobs
    result["nothing_written"] = not (work / "results").exists()
    return result


# --- (b) summarise on 10^6 rows ------------------------------------------------------------


def _cells(count: int) -> list[Cell]:
    out = []
    for i in range(count):
        sep = 1.0 + (i % 4)
        pi = (0.5, 0.8, 0.95)[i % 3]
        out.append(Cell.make(50 + 10 * i, [0.0, sep], [1.0, 1.0 + 0.5 * (i % 2)], pi))
    return out


def _chunk_table(cell: Cell, replicates: range, rng: np.random.Generator) -> pa.Table:
    r = len(replicates)
    rows = r * FITS_PER_REPLICATE
    rep = np.repeat(np.asarray(replicates, dtype=np.int64), FITS_PER_REPLICATE)
    combos = [(m, me, s) for m in MODELS for me in METHODS for s in STARTS]
    model = np.tile(np.array([c[0] for c in combos], dtype=object), r)
    method = np.tile(np.array([c[1] for c in combos], dtype=object), r)
    start = np.tile(np.array([c[2] for c in combos], dtype=object), r)
    status = rng.choice(
        np.array(STATUSES, dtype=object), size=rows, p=(0.9, 0.04, 0.03, 0.02, 0.005, 0.005)
    )
    truth = cell.as_dict()
    cols: dict[str, object] = {
        "cell_id": np.full(rows, cell.cell_id, dtype=object),
        "n": np.full(rows, cell.n, dtype=np.int64),
        **{k: np.full(rows, float(truth[k])) for k in ("mu1", "mu2", "sigma1", "sigma2", "pi")},
        "replicate": rep,
        "model": model,
        "method": method,
        "start": start,
        "status": status,
        "iterations": rng.integers(2, 1000, rows),
        "loglik_evals": rng.integers(3, 1500, rows),
        "runtime_s": rng.exponential(1e-3, rows),
        "loglik": -cell.n * 1.5 + rng.normal(0, 1, rows),
        "loglik_start": -cell.n * 2.0 + rng.normal(0, 1, rows),
    }
    scale = 1.0 / np.sqrt(cell.n)
    for p in PARAMS:
        est = float(truth[p]) + rng.normal(0, scale, rows)
        if p == "pi":
            est = np.clip(est, 1e-3, 1 - 1e-3)
        cols[f"est_{p}"] = est
    cols["swapped"] = rng.random(rows) < 0.01
    for p in PARAMS:
        se = np.abs(rng.normal(scale, 0.1 * scale, rows))
        se[rng.random(rows) < 0.01] = np.nan
        cols[f"se_{p}"] = se
    cols["rate_empirical"] = rng.uniform(0, 1, rows)
    cols["rate_theory"] = rng.uniform(0, 1, rows)
    cols["best_start_gap"] = np.abs(rng.normal(0, 1e-3, rows))
    arrays = [pa.array(cols[f.name], type=f.type) for f in FITS_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=FITS_SCHEMA)


def write_fits(root: Path, rows: int, cells: int, chunk_size: int, seed: int = 0) -> dict:
    """A hive-partitioned fits dataset of about `rows` rows; returns its shape."""
    rng = np.random.default_rng(seed)
    replicates = -(-rows // (cells * FITS_PER_REPLICATE))
    files = written = 0
    for cell in _cells(cells):
        for k, first in enumerate(range(0, replicates, chunk_size)):
            reps = range(first, min(first + chunk_size, replicates))
            path = root / f"cell={cell.cell_id}" / f"chunk={k}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            table = _chunk_table(cell, reps, rng)
            pq.write_table(table, path)
            files += 1
            written += table.num_rows
    size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    return {
        "rows": written,
        "cells": cells,
        "replicates": replicates,
        "files": files,
        "mb": size / 2**20,
    }


def bench_summarise(tmp: Path, rows: int, cells: int, chunk_size: int) -> dict:
    fits = tmp / f"fits-{cells}" / "fits"
    t0 = time.perf_counter()
    shape = write_fits(fits, rows, cells, chunk_size)
    shape["write_s"] = time.perf_counter() - t0
    out = tmp / f"summary-{cells}"
    result = measured([sys.executable, "-c", _SUMMARISE, str(fits), str(out)])
    if result["rc"] != 0:
        raise SystemExit(f"summarise failed:\n{result['out']}")
    import pandas as pd

    shape["performance_rows"] = len(pd.read_parquet(out / "performance.parquet"))
    shape["convergence_rows"] = len(pd.read_parquet(out / "convergence.parquet"))
    return {**shape, **result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["dag", "summarise"])
    parser.add_argument("--cells", type=int, default=1000, help="DAG: cells (a cube)")
    parser.add_argument("--chunks", type=int, default=10, help="DAG: chunks per cell")
    parser.add_argument("--rows", type=int, default=1_000_000, help="summarise: fit rows")
    parser.add_argument(
        "--summary-cells",
        type=int,
        nargs="+",
        default=[50, 1],
        help="summarise: cell counts of the layouts to measure",
    )
    parser.add_argument("--chunk-size", type=int, default=100, help="summarise: replicates/file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="emsim-scale-"))
    ok = True
    try:
        if args.only in (None, "summarise"):
            for cells in args.summary_cells:
                r = bench_summarise(tmp, args.rows, cells, args.chunk_size)
                within = r["peak_mb"] <= MEMORY_LIMIT_MB
                ok &= within
                print(
                    f"summarise: {r['rows']:,} rows in {r['cells']} cell(s) x {r['replicates']} "
                    f"replicates, {r['files']} files ({r['mb']:.0f} MB, written in "
                    f"{r['write_s']:.1f} s): {r['wall_s']:.1f} s, peak RSS {r['peak_mb']:.0f} MB "
                    f"({'within' if within else 'OVER'} {MEMORY_LIMIT_MB:.0f} MB); "
                    f"{r['performance_rows']} performance / {r['convergence_rows']} "
                    f"convergence rows"
                )
        if args.only in (None, "dag"):
            r = bench_dag(tmp, args.cells, args.chunks)
            within = r["wall_s"] <= DAG_LIMIT_S
            ok &= within
            print(
                f"snakemake -n: {args.cells} cells x {args.chunks} chunks = "
                f"{r['jobs']} jobs planned in {r['wall_s']:.1f} s "
                f"({'within' if within else 'OVER'} {DAG_LIMIT_S:.0f} s), peak RSS "
                f"{r['peak_mb']:.0f} MB, nothing written under results/: {r['nothing_written']}"
            )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
