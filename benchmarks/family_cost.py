"""What the default study's family scenarios cost (issue 21): its fits with and without them.

Two variants of config.yaml: `without` (its normal cells only) and `with` (those plus the
family scenarios, config.yaml's own when it has them, else `CANDIDATES`). Each fits
`--replicates` replicates of every cell (one chunk per cell) through
`emsim.study.fitjob.fit_chunk`, the function a fit job calls, in this one warm process (a first
pass loads the engine and is not timed). The variants run interleaved, `--repeats` rounds, each
reporting its best round, so the machine's drift hits both alike (the pattern of
benchmarks/stopping_cost.py). Reported: each variant's wall seconds and the share the family
cells add, (with - without) / without; and, steadier on a shared machine, each cell's best
time over every run of it (the normal cells run in both variants): the family cells' sum over
the normal cells' sum, and each family cell's seconds and share.

Then each family cell against the normal cell of the same design (n, mu, sigma, pi), where the
config has one: CPU seconds (this process's, so other load on a shared machine counts less
than in wall time), the E-steps its fits took (`loglik_evals + polish_evals` of the fit rows,
counted once per fitted path: the stopping rules share one, and two start names with the same
start values share one fit; the continuation of emsim.limit is not counted) and CPU
microseconds per E-step. A ratio of cell costs above the ratio of E-steps is implementation
cost (per E-step, and what is not an E-step: the limit, the sandwich); the ratio of E-steps is
statistical cost, the iterations the family's data demand. Last, the CPU seconds of each family
cell's pseudo-true values (`emsim.pseudo_true.fixed_points` for every model: the summary's
estimands), which a normal cell does not spend.

    python benchmarks/family_cost.py [--replicates 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from emsim.families import family_from_label
from emsim.models import MODELS
from emsim.pseudo_true import fixed_points
from emsim.study.config import load_study
from emsim.study.fitjob import fit_chunk

ROOT = Path(__file__).resolve().parents[1]
# Scenarios to price when config.yaml has no family scenario yet.
CANDIDATES = [
    {"n": 500, "mu": [0, 4], "sigma": 1, "pi": 0.8, "family": {"name": "t", "df": 4}},
    {
        "n": 500,
        "mu": [0, 4],
        "sigma": 1,
        "pi": 0.8,
        "family": {"name": "contaminated", "epsilon": 0.05, "scale": 5},
    },
    {"n": 5000, "mu": [0, 4], "sigma": 1, "pi": 0.8, "family": {"name": "t", "df": 4}},
]


def _is_family(scenario: dict) -> bool:
    return scenario.get("family", "normal") not in ("normal", {"name": "normal"})


def variants(config: dict) -> dict[str, dict]:
    """`without` and `with` the family scenarios (config.yaml's, else `CANDIDATES`)."""
    scenarios = config.get("scenarios", [])
    normal = [s for s in scenarios if not _is_family(s)]
    families = [s for s in scenarios if _is_family(s)] or CANDIDATES
    without, with_ = copy.deepcopy(config), copy.deepcopy(config)
    without["scenarios"], with_["scenarios"] = normal, normal + families
    return {"without": without, "with": with_}


def e_steps(fits: pd.DataFrame) -> int:
    """E-steps the cell's fits computed: once per path (rules share it) and per distinct start
    (start names with the same start values share the fit, and so its loglik_start)."""
    path = ["replicate", "model", "method", "start"]
    per_path = fits.groupby(path, sort=False).agg(
        loglik_start=("loglik_start", "first"),
        evals=("loglik_evals", "max"),
        polish=("polish_evals", "max"),
    )
    per_path = per_path.reset_index().drop_duplicates(
        ["replicate", "model", "method", "loglik_start"]
    )
    return int(per_path["evals"].sum() + per_path["polish"].sum())


def fit_all(config: dict, replicates: int, folder: Path, cpu: dict | None = None) -> dict:
    """Wall seconds of fit_chunk per cell (label -> seconds); with `cpu`, also each cell's
    (CPU seconds, E-steps, design key) into it."""
    config = dict(config, replicates=replicates, chunk_size=replicates)
    study = load_study(config)
    seconds = {}
    for cell in study.cells:
        out = folder / f"{cell.cell_id}.parquet"
        began, cpu_began = time.perf_counter(), time.process_time()
        fit_chunk(study.fit_task(cell.cell_id, 0), out, folder / "traces.parquet")
        seconds[cell.cell_id] = time.perf_counter() - began
        if cpu is not None:
            spent = time.process_time() - cpu_began
            design = (cell.n, (cell.mu1, cell.mu2), (cell.sigma1, cell.sigma2), cell.pi)
            if cell.cell_id not in cpu or spent < cpu[cell.cell_id][0]:
                cpu[cell.cell_id] = (spent, e_steps(pd.read_parquet(out)), design, cell.family)
    return seconds


def print_family_against_normal(cpu: dict) -> None:
    """Each family cell against the normal cell of its design: CPU, E-steps, per E-step."""
    normal = {design: cid for cid, (_, _, design, family) in cpu.items() if family == "normal"}
    print("family cell vs the normal cell of the same design (best CPU s; E-steps; us/E-step)")
    for cid, (seconds, steps, design, family) in cpu.items():
        if family == "normal" or design not in normal:
            continue
        base_s, base_steps, _, _ = cpu[normal[design]]
        print(f"  {cid}")
        print(
            f"    CPU {seconds:6.2f} s vs {base_s:6.2f} s ({seconds / base_s:.2f}x); "
            f"E-steps {steps} vs {base_steps} ({steps / base_steps:.2f}x); "
            f"{1e6 * seconds / steps:.1f} vs {1e6 * base_s / base_steps:.1f} us per E-step "
            f"({seconds / steps / (base_s / base_steps):.2f}x)"
        )
        mu, sigma, pi = design[1], design[2], design[3]
        began = time.process_time()
        for model in MODELS:
            fixed_points(model, family_from_label(family), mu, sigma, pi)
        print(f"    pseudo-true values (summary): {time.process_time() - began:.2f} CPU s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config.yaml"), help="study config")
    parser.add_argument("--replicates", type=int, default=20, help="replicates per cell")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (best of)")
    args = parser.parse_args(argv)
    configs = variants(yaml.safe_load(Path(args.config).read_text()))
    best: dict[str, dict[str, float]] = {}
    cell_best: dict[str, float] = {}
    cpu: dict[str, tuple] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fit_all(configs["with"], 2, Path(tmp))  # warm-up: the engine, imports, caches
        for _ in range(args.repeats):
            for name, config in configs.items():
                got = fit_all(config, args.replicates, Path(tmp), cpu)
                if name not in best or sum(got.values()) < sum(best[name].values()):
                    best[name] = got
                for cell_id, seconds in got.items():
                    cell_best[cell_id] = min(seconds, cell_best.get(cell_id, seconds))
    without, with_ = (sum(best[name].values()) for name in ("without", "with"))
    print(f"{args.replicates} replicates per cell, best of {args.repeats} interleaved rounds")
    print(f"without family scenarios: {without:7.1f} s ({len(best['without'])} cells)")
    print(f"with family scenarios:    {with_:7.1f} s ({len(best['with'])} cells)")
    print(f"added share (variant totals): {100 * (with_ / without - 1):.1f}%")
    normal = sum(cell_best[c] for c in best["without"])
    added = {c: t for c, t in cell_best.items() if c not in best["without"]}
    print(f"added share (per-cell bests): {100 * sum(added.values()) / normal:.1f}%")
    for cell_id, seconds in added.items():
        print(f"  {cell_id:<48} {seconds:6.2f} s  {100 * seconds / normal:5.1f}%")
    for cell_id in best["without"]:
        if cell_id.startswith("n5000") or cell_id.startswith("n500_mu0-4"):
            print(f"  normal {cell_id:<41} {cell_best[cell_id]:6.2f} s")
    print_family_against_normal(cpu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
