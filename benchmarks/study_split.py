"""Where the default study's wall time goes (issue 4, target 5): EM against everything else.

Runs the study of config.yaml from scratch in a temporary copy of the workflow, the way
`make study` runs it (default profile, all cores), and splits cores x wall time into
  - EM: CPU time of the fit jobs inside `emsim.fit_batch` (from the fit files' footers, as
    `emsim.study.jobs.fit_provenance` reads them for the report);
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

from emsim.study.jobs import fit_provenance

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def split(results: Path, began: dt.datetime, wall: float, cores: int) -> dict:
    fits = sorted((results / "fits").glob("cell=*/chunk=*.parquet"))
    times = fit_provenance(fits)
    first = dt.datetime.fromisoformat(times["first_fit_job_started"])
    startup = (first - began).total_seconds()
    fit_span = times["wall_time_s"]
    em, jobs = times["em_cpu_time_s"], times["fit_job_time_s"]
    core_s = cores * wall
    parts = {
        "EM (CPU in fit_batch)": em,
        "fit jobs, other": jobs - em,
        "idle during fits": cores * fit_span - jobs,
        "Snakemake start-up": cores * startup,
        "summary, figures, report": cores * (wall - startup - fit_span),
    }
    return {
        "cores": cores,
        "wall_s": round(wall, 1),
        "fit_jobs": times["fit_jobs"],
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
        return split(work / "results", began, wall, cores)


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
