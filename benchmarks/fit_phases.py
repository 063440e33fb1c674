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

and the diagnostics' share of the fit jobs' CPU (issue 22's target: at most 10%): the limit
beyond the polish (all of `find_limits`, timed) plus the engine's polish, which runs inside the
engine path and is charged its share of that path's CPU by E-steps weighted by n
(`polish_share`: each path's polish E-steps against its own E-steps to its last rule's stop
plus the polish; the rules of one path share both).

    python benchmarks/fit_phases.py [--replicates 50] [--cell PREFIX]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import cpu_model
from study_split import issue22_design

from emsim import api, limit
from emsim.engine import POLISH_MAX_EVALS
from emsim.study import fitjob
from emsim.study.config import default_schema_path, load_study
from emsim.study.jobs import warm_engine
from emsim.study.schema import FIT_ID

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


ENGINE_PATH = PHASES[0][2]
LIMIT_SEARCH = PHASES[1][2]
DIAGNOSTICS_TARGET = 0.10


@contextlib.contextmanager
def timed(spent: dict[str, float]) -> Iterator[None]:
    """Wrap every phase's function so that its CPU seconds add up in `spent`; the functions
    are themselves again after the block."""
    originals = [(module, name, getattr(module, name)) for module, name, _ in PHASES]
    for module, name, label in PHASES:
        inner = getattr(module, name)

        def wrapper(*args, _inner=inner, _label=label, **kwargs):
            began = time.process_time()
            try:
                return _inner(*args, **kwargs)
            finally:
                spent[_label] += time.process_time() - began

        setattr(module, name, wrapper)
    try:
        yield
    finally:
        for module, name, inner in originals:
            setattr(module, name, inner)


class PolishShare(NamedTuple):
    """E-steps weighted by n: the polish's, those of the polishes its cap ended, and all of
    the engine path's (the path's own to its last rule's stop, plus the polish)."""

    polish: float
    capped: float
    evals: float


def polish_share(fits: pd.DataFrame) -> PolishShare:
    """The polish's E-steps against the engine path's over the fit rows' paths, each weighted
    by its n: a path is one cell x replicate x fit id but its stopping rule, whose rules share
    the iterates and the polish; its E-steps run to its last rule's stop. A polish the cap of
    POLISH_MAX_EVALS ended is a crawling fit's, which the limit search then takes on."""
    path = fits.groupby(["cell_id", "replicate", *[k for k in FIT_ID if k != "stopping"]])
    per_path = path.agg(
        n=("n", "first"), evals=("loglik_evals", "max"), polish=("polish_evals", "max")
    )
    weighted = per_path["polish"] * per_path["n"]
    polish = float(weighted.sum())
    capped = float(weighted[per_path["polish"] >= POLISH_MAX_EVALS].sum())
    return PolishShare(polish, capped, polish + float((per_path["evals"] * per_path["n"]).sum()))


def measure(replicates: int = 50, cell_prefix: str = "") -> dict:
    """CPU seconds per phase of the chunk 0 fit job of each cell of issue 22's design (those
    whose id starts with `cell_prefix`) at `replicates`, the fit jobs' CPU (`total`) and the
    diagnostics' share of it (module doc)."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    study = load_study(issue22_design(config, replicates), default_schema_path())
    warm_engine()
    spent: dict[str, float] = collections.defaultdict(float)
    polish = capped = evals = 0.0
    total = 0.0
    with tempfile.TemporaryDirectory() as folder, timed(spent):
        fits_path = Path(folder) / "fits.parquet"
        for cell in study.cells:
            if cell.cell_id.startswith(cell_prefix):
                task = study.fit_task(cell.cell_id, 0)
                began = time.process_time()
                fitjob.fit_chunk(task, fits_path, Path(folder) / "t.parquet")
                total += time.process_time() - began
                share = polish_share(pd.read_parquet(fits_path))
                polish, capped = polish + share.polish, capped + share.capped
                evals += share.evals
    polish_cpu = spent[ENGINE_PATH] * polish / evals if evals else 0.0
    return {
        "total": total,
        "phases": dict(spent),
        "polish_evals_share": polish / evals if evals else 0.0,
        "polish_capped_share": capped / polish if polish else 0.0,
        "polish_cpu": polish_cpu,
        "diagnostics_share": (polish_cpu + spent[LIMIT_SEARCH]) / total if total else 0.0,
    }


def describe(result: dict) -> str:
    """One line on the diagnostics' share of a `measure` result, against its target."""
    limit_s = result["phases"].get(LIMIT_SEARCH, 0.0)
    return (
        f"diagnostics: of {result['total']:.1f} CPU-s of fit jobs, the polish "
        f"{result['polish_cpu']:.2f} s ({result['polish_evals_share']:.1%} of the engine's "
        f"E-steps, by n; {result['polish_capped_share']:.0%} of it on paths its cap of "
        f"{POLISH_MAX_EVALS} ended) + the limit search (find_limits) {limit_s:.2f} s = "
        f"{result['diagnostics_share']:.1%} (target <= {DIAGNOSTICS_TARGET:.0%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=50)
    parser.add_argument("--cell", default="", help="only cells whose id starts with this")
    args = parser.parse_args()
    result = measure(args.replicates, args.cell)
    total, spent = result["total"], result["phases"]
    print(f"{cpu_model()}; {args.replicates} replicates per cell; fit jobs' CPU {total:.2f} s")
    for _, _, label in PHASES:
        seconds = spent.get(label, 0.0)
        print(f"{label:<34} {seconds:7.2f} s  {100 * seconds / total:5.1f}%")
    print(describe(result))


if __name__ == "__main__":
    main()
