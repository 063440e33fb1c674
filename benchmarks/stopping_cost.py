"""What trustworthy statuses cost (issue 9): the default study's fits with the seed's rule
alone, with a second stopping rule, and, given an older source tree, as that code fits them.

Every variant fits the same replicates of every cell of config.yaml (`--replicates` per cell,
one chunk per cell) through `emsim.study.fitjob.fit_chunk`, the function a fit job calls, in a
fresh process whose engine cache is warm (a first pass compiles and is not timed). Variants
run interleaved, `--repeats` rounds, and each reports its best round, so the machine's drift
(up to 3x between days here) hits all of them alike; the ratios are the result.

    python benchmarks/stopping_cost.py [--replicates 100] [--repeats 2]
        [--baseline-src OLD/src]   # e.g. a `git worktree add` of the commit before the polish
        [--variant NAME=SRC:RULE,RULE ...]   # instead of the default variants

e.g. issue 18's cost: `--variant old=OLD/src:abs,aitken --variant main=MAIN/src:abs,aitken
--variant new=src:abs,aitken,score` (the first variant is the reference of the ratios).

Reported per variant: the EM CPU seconds of the fit jobs (the footers' `em_cpu_s`: inside
`fit_batch_by_rule`, polish, Newton and SEs included), the jobs' wall time, and the E-steps of
the path and of the polish per fit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(spec: dict) -> dict:
    """Fit every cell once (in this process) and return the timings."""
    import pyarrow.parquet as pq
    import yaml

    from emsim.study.config import load_study
    from emsim.study.fitjob import fit_chunk

    config = yaml.safe_load(Path(spec["config"]).read_text())
    config["replicates"] = spec["replicates"]
    config["chunk_size"] = spec["replicates"]
    config["traces"] = 0
    if spec["stopping"] is None:  # code from before stopping rules were a design factor
        config["em"] = {k: config["em"][k] for k in ("tolerance", "max_iterations")}
    else:
        config["em"]["stopping"] = spec["stopping"]
    study = load_study(config)
    result = {"em_cpu_s": 0.0, "wall_s": 0.0, "fits": 0, "path_evals": 0, "polish_evals": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for cell in study.cells:
            out = Path(tmp) / f"{cell.cell_id}.parquet"
            began = time.perf_counter()
            traces = Path(tmp) / "traces.parquet"
            if hasattr(study, "fit_task"):
                fit_chunk(study.fit_task(cell.cell_id, 0), out, traces)
            else:  # code from before the fit job took a task
                fit_chunk(cell, 0, study.config, out, traces)
            result["wall_s"] += time.perf_counter() - began
            meta = pq.read_schema(out).metadata
            result["em_cpu_s"] += float(meta[b"em_cpu_s"])
            table = pq.read_table(out).to_pandas()
            result["fits"] += len(table)
            result["path_evals"] += int(table["loglik_evals"].sum())
            if "polish_evals" in table:
                # The path's one polish is reported on each converged rule's row: count it once.
                keys = ["replicate", "model", "method", "start"]
                result["polish_evals"] += int(table.groupby(keys)["polish_evals"].max().sum())
    return result


def run_variant(name: str, src: Path, spec: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"variant {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config.yaml"), help="study config")
    parser.add_argument("--replicates", type=int, default=100, help="replicates per cell")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds (best of)")
    parser.add_argument("--baseline-src", help="an older src/ to compare with (optional)")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=SRC:RULE,RULE (repeatable; replaces the default variants)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    base = {"config": args.config, "replicates": args.replicates}
    variants = {
        "abs": (ROOT / "src", {**base, "stopping": ["abs"]}),
        "abs+aitken": (ROOT / "src", {**base, "stopping": ["abs", "aitken"]}),
    }
    if args.baseline_src:
        variants = {"baseline": (Path(args.baseline_src), {**base, "stopping": None}), **variants}
    if args.variant:
        variants = {}
        for given in args.variant:
            name, rest = given.split("=", 1)
            src, rules = rest.rsplit(":", 1)
            variants[name] = (Path(src).resolve(), {**base, "stopping": rules.split(",")})
    # Warm-up: compile (or load) each source tree's engine before anything is timed.
    warm = {**base, "replicates": 2}
    for name, (src, spec) in variants.items():
        run_variant(name, src, {**warm, "stopping": spec["stopping"]})
    best: dict[str, dict] = {}
    for _ in range(args.repeats):
        for name, (src, spec) in variants.items():
            got = run_variant(name, src, spec)
            if name not in best or got["em_cpu_s"] < best[name]["em_cpu_s"]:
                best[name] = got
    reference = best[next(iter(variants))]
    print(
        f"{'variant':<12} {'EM cpu s':>9} {'ratio':>6} {'wall s':>7} {'ratio':>6} "
        f"{'fits':>7} {'E-steps/fit':>11} {'polish/fit':>10}"
    )
    for name, got in best.items():
        per_fit_path = got["path_evals"] / got["fits"]
        # Rows per fit: one per stopping rule; the polish is per path.
        paths = got["fits"] / max(1, len(variants[name][1]["stopping"] or [None]))
        print(
            f"{name:<12} {got['em_cpu_s']:>9.1f} {got['em_cpu_s'] / reference['em_cpu_s']:>6.2f} "
            f"{got['wall_s']:>7.1f} {got['wall_s'] / reference['wall_s']:>6.2f} "
            f"{got['fits']:>7} {per_fit_path:>11.1f} {got['polish_evals'] / paths:>10.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
