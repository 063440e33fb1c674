"""Where the default study's wall time goes (issue 4, target 5): EM against everything else.

Runs the study of config.yaml from scratch in a temporary copy of the workflow, the way
`make study` runs it (default profile, all cores), and splits cores x wall time into
  - EM: CPU time of the fit jobs inside `emsim.fit_batch` (from the fit files' footers, as
    `emsim.study.parquet_io.fit_provenance` reads them for the report);
  - fit jobs, other: the rest of the fit jobs' time (simulating data, assembling and writing
    the Parquet files);
  - idle during fits: cores without a fit job while fit jobs ran;
  - Snakemake start-up: from the command's start to the first fit job (imports, parsing the
    workflow, validating the config, building the DAG);
  - summary, figures, report: from the last fit job's end to the command's end.
The numba cache is warm (compiling the engine is a once-per-install cost, reported apart).

`--issue22` runs the design issue 22's numbers were set on instead of config.yaml as it is:
its 21 normal cells (the family scenarios added since are left out) under the stopping rules
[abs, aitken] (config.yaml has since added `score`), 378,000 EM paths at 500 replicates.

    python benchmarks/study_split.py [--config config.yaml] [--cores N] [--issue22]
        [--replicates R]
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
from typing import Any

import yaml

from emsim.study.parquet_io import fit_provenance

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
ISSUE22_STOPPING = ["abs", "aitken"]


def issue22_design(config: dict[str, Any], replicates: int | None = None) -> dict[str, Any]:
    """`config` as the design issue 22 measured (see the module doc), optionally with another
    replicate count; the rest of `config` is kept."""
    design = {**config, "em": {**config["em"], "stopping": list(ISSUE22_STOPPING)}}
    design["scenarios"] = [s for s in config.get("scenarios", []) if "family" not in s]
    if replicates is not None:
        design["replicates"] = replicates
        design["chunk_size"] = min(int(config["chunk_size"]), replicates)
    return design


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
        "fit_rows": times["total_fits"],
        "fit_jobs": times["fit_jobs"],
        "core_seconds": {k: round(v, 1) for k, v in parts.items()},
        "share": {k: round(v / core_s, 3) for k, v in parts.items()},
        "em_share": round(em / core_s, 3),
    }


def run_study(config: Path | dict[str, Any], cores: int) -> dict:
    """Run the study of `config` (a file, or the config itself) the way `make study` does, in
    a temporary folder, and split its cores x wall time. The result also holds the config's
    stopping rules, so that EM paths = fit rows / rules."""
    body = config if isinstance(config, dict) else yaml.safe_load(config.read_text())
    with tempfile.TemporaryDirectory(prefix="emsim-split-") as tmp:
        work = Path(tmp)
        shutil.copy2(ROOT / "Snakefile", work / "Snakefile")
        shutil.copytree(ROOT / "workflow", work / "workflow")
        (work / "config.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
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
        result = split(work / "results", began, wall, cores)
    stopping = body["em"].get("stopping") or ["abs"]
    return {
        **result,
        "command": " ".join(command[1:]),
        "replicates": body["replicates"],
        "stopping": list(stopping),
        "em_paths": result["fit_rows"] // len(stopping),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--issue22", action="store_true", help="issue 22's design (module doc)")
    parser.add_argument("--replicates", type=int, help="with --issue22: replicates per cell")
    args = parser.parse_args(argv)
    config: Path | dict[str, Any] = args.config
    if args.issue22:
        config = issue22_design(yaml.safe_load(args.config.read_text()), args.replicates)
    result = run_study(config, args.cores)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
