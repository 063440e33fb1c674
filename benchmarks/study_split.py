"""Where the default study's wall time goes (issue 4, target 5): EM against everything else.

Runs the study of config.yaml from scratch in a temporary copy of the workflow, the way
`make study` runs it (default profile, all cores), and splits cores x wall time into
  - EM: CPU time of the fit jobs inside `emsim.fit_batch` (from the fit files' footers);
  - fit jobs, other: the rest of the fit jobs' time (simulating data, assembling and writing
    the Parquet files);
  - idle during fits: cores without a fit job while fit jobs ran;
  - Snakemake start-up: from the command's start to the first fit job (imports, parsing the
    workflow, validating the config, building the DAG);
  - summary, figures, report: from the last fit job's end to the command's end.
The numba cache is warm (compiling the engine is a once-per-install cost, reported apart).

    python benchmarks/study_split.py [--config config.yaml] [--cores N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def fit_footers(results: Path) -> list[dict[str, str]]:
    footers = []
    for path in sorted((results / "fits").glob("cell=*/chunk=*.parquet")):
        meta = pq.read_metadata(path).metadata or {}
        footers.append({k.decode(): v.decode() for k, v in meta.items()})
    return footers


def split(footers: list[dict[str, str]], began: dt.datetime, wall: float, cores: int) -> dict:
    starts = [dt.datetime.fromisoformat(f["job_started"]) for f in footers]
    ends = [
        s + dt.timedelta(seconds=float(f["job_elapsed_s"]))
        for s, f in zip(starts, footers, strict=True)
    ]
    first, last = min(starts), max(ends)
    startup = (first - began).total_seconds()
    fit_span = (last - first).total_seconds()
    tail = wall - startup - fit_span
    em = sum(float(f["em_cpu_s"]) for f in footers)
    jobs = sum(float(f["job_elapsed_s"]) for f in footers)
    core_s = cores * wall
    parts = {
        "EM (CPU in fit_batch)": em,
        "fit jobs, other": jobs - em,
        "idle during fits": cores * fit_span - jobs,
        "Snakemake start-up": cores * startup,
        "summary, figures, report": cores * tail,
    }
    return {
        "cores": cores,
        "wall_s": round(wall, 1),
        "fit_jobs": len(footers),
        "core_seconds": {k: round(v, 1) for k, v in parts.items()},
        "share": {k: round(v / core_s, 3) for k, v in parts.items()},
        "em_share": round(em / core_s, 3),
    }


def run_study(config: Path, cores: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="emsim-split-") as tmp:
        work = Path(tmp)
        shutil.copy2(ROOT / "Snakefile", work / "Snakefile")
        shutil.copytree(ROOT / "workflow", work / "workflow")
        shutil.copy2(config, work / "config.yaml")
        command = [
            str(SNAKEMAKE),
            "--cores",
            str(cores),
            "--workflow-profile",
            "workflow/profiles/default",
            "--quiet",
        ]
        began = dt.datetime.now(dt.UTC)
        clock = time.perf_counter()
        subprocess.run(command, cwd=work, check=True, capture_output=True, env=dict(os.environ))
        wall = time.perf_counter() - clock
        return split(fit_footers(work / "results"), began, wall, cores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    result = run_study(args.config, args.cores)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
