"""Where a fit job's CPU goes (issue 22: "diagnostics at a small price"): the chunk 0 fit job of
every cell of issue 22's design (`study_split.issue22_design`: 21 normal cells, abs + aitken)
run in this process at `--replicates` per cell, with the CPU seconds (time.process_time) of
each phase summed over all cells:

- engine path: `engine.run` from `api` (the shared path and the engine's polish);
- path limit: `api._path_limit`, the limit beyond the polish (`limit.find_limits`), and within
  it the SQUAREM continuation rounds, the trust-region ascent, Newton and the certification
  passes;
- information at stops: SEs and sandwich SEs at each rule's stop;
- rows: assembling the fit rows.

    python benchmarks/fit_phases.py [--replicates 50] [--cell PREFIX]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import cpu_model
from study_split import issue22_design

from emsim import api, limit
from emsim.study import fitjob
from emsim.study.config import default_schema_path, load_study
from emsim.study.jobs import warm_engine

ROOT = Path(__file__).resolve().parents[1]
PHASES = (
    (api.engine, "run", "engine path and polish"),
    (api, "_path_limit", "path limit (all of find_limits)"),
    (limit, "_continue", "  continuation rounds"),
    (limit, "_trust_region_finish", "  trust-region ascent"),
    (limit, "_newton_finish", "  Newton"),
    (limit, "_reassess", "  certification passes"),
    (api, "_information_at_stops", "information at stops"),
    (fitjob, "_rows", "rows"),
)


def timed(spent: dict[str, float]) -> None:
    """Wrap every phase's function so that its CPU seconds add up in `spent`."""
    for module, name, label in PHASES:
        inner = getattr(module, name)

        def wrapper(*args, _inner=inner, _label=label, **kwargs):
            began = time.process_time()
            try:
                return _inner(*args, **kwargs)
            finally:
                spent[_label] += time.process_time() - began

        setattr(module, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=50)
    parser.add_argument("--cell", default="", help="only cells whose id starts with this")
    args = parser.parse_args()
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    study = load_study(issue22_design(config, args.replicates), default_schema_path())
    warm_engine()
    spent: dict[str, float] = collections.defaultdict(float)
    timed(spent)
    began = time.process_time()
    with tempfile.TemporaryDirectory() as folder:
        for cell in study.cells:
            if cell.cell_id.startswith(args.cell):
                task = study.fit_task(cell.cell_id, 0)
                fitjob.fit_chunk(task, Path(folder) / "fits.parquet", Path(folder) / "t.parquet")
    total = time.process_time() - began
    print(f"{cpu_model()}; {args.replicates} replicates per cell; fit jobs' CPU {total:.2f} s")
    for _, _, label in PHASES:
        print(f"{label:<34} {spent[label]:7.2f} s  {100 * spent[label] / total:5.1f}%")


if __name__ == "__main__":
    main()
