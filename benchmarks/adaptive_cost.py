"""What adaptive replication saves (issue 11): an adaptive study against the fixed study of the
same design, from their results folders.

1. The targets: the largest MCSE of the bias and of the coverage, per parameter, over every
   own-set performance row of the fixed study (its worst cell). `--write-config` writes them as
   a config to merge into config.yaml (`replicates: {min, max, step}` and `precision`).
2. Replay: the fixed study's own fits, cut at min, then where each cell's MCSE projects (the
   workflow's jumps), decide per cell when the targets are met (the same `summarise_cell`,
   `assess`, `decide` and `projected_replicates` as the workflow). Replicate r is the same in
   both studies, so this predicts the adaptive study's replicates exactly; with `--adaptive` it
   is checked against the adaptive run's `replicates` table.
3. Cost: fits, fit jobs, summed EM CPU seconds and the wall-clock span of the fit jobs (from
   the Parquet footers, `parquet_io.fit_provenance`) of each study; `--wall-fixed`/`--wall-adaptive`
   add the whole runs' wall times measured outside (e.g. `/usr/bin/time`). The EM CPU ratio of
   two runs carries two machine states; the replay's at the fixed run's own cost per replicate
   of each cell (`replay_cpu`) is one run's.
4. Schedule (from Snakemake's job records beside each results folder, as benchmarks/scale.py
   reads them): the span of the run's jobs, how busy the cores were with fit jobs over the fit
   phase, and when each cell's last fit ended. Gates that wait for the slowest cell leave
   cores idle between rounds and make the cheap cells end late; a gate per cell does neither.

    python benchmarks/adaptive_cost.py --fixed results --write-config cost.yaml
    snakemake --cores 2 --configfile cost.yaml   # in another checkout or results folder
    python benchmarks/adaptive_cost.py --fixed results --adaptive /tmp/cost/results \\
        --config config.yaml --config cost.yaml
"""

from __future__ import annotations

import argparse
import glob
import json
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import yaml

from emsim.study.config import load_study
from emsim.study.measures import OWN_SET, PARAMETER_ORDER
from emsim.study.parquet_io import fit_provenance
from emsim.study.precision import STOP_MET, assess, decide, projected_replicates
from emsim.study.summary import cell_table, summarise_cell

MEASURES = ("bias_mcse", "coverage_mcse")


def worst_cell_targets(performance: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per measure and parameter the largest MCSE over the own-set rows with a true value,
    rounded up at 4 significant digits (so that the worst cell meets it at the same size)."""
    rows = performance[(performance["set"] == OWN_SET) & performance["true_value"].notna()]
    out: dict[str, dict[str, float]] = {}
    for measure in MEASURES:
        worst = rows.groupby("parameter")[measure].max()
        out[measure] = {p: _round_up(float(worst[p])) for p in PARAMETER_ORDER if p in worst}
    return out


def _round_up(x: float, digits: int = 4) -> float:
    scale = 10 ** (digits - 1 - math.floor(math.log10(abs(x))))
    return math.ceil(x * scale) / scale


def replay(fixed: Path, study) -> pd.DataFrame:
    """Each cell's replicates under the study's plan and targets, from the fixed study's fits."""
    targets = study.precision
    plan = study.plan
    level = float(study.config["coverage"]["level"])
    oracles = study.oracle_starts
    rows = []
    for cell in study.cells:
        files = sorted(glob.glob(str(fixed / "fits" / f"cell={cell.cell_id}" / "*.parquet")))
        table = cell_table(files)
        frame = table.to_pandas()
        replicates, rounds = plan.minimum, 1
        while True:
            part = frame[frame["replicate"] < replicates]
            tables = summarise_cell(
                pa.Table.from_pandas(part, preserve_index=False), level, oracle_starts=oracles
            )
            assessment = assess(tables.performance, targets, replicates)
            stop = decide(assessment, replicates, plan.maximum, adaptive=True)
            if stop != "continue":
                rows.append(
                    {
                        "cell_id": cell.cell_id,
                        "replicates": replicates,
                        "rounds": rounds,
                        "stop": stop,
                    }
                )
                break
            # The workflow's jump (docs/design.md section 10).
            replicates, rounds = projected_replicates(assessment, replicates, plan), rounds + 1
    return pd.DataFrame(rows)


def schedule(results: Path, cores: int) -> dict | None:
    """Span, fit-phase core use and cells' end times of the run that wrote `results`."""
    from emsim.study.snakemake_records import jobs as recorded_jobs

    jobs = recorded_jobs(results.parent)
    fits = [j for j in jobs if j["rule"] == "fit"]
    if not fits:
        return None
    begin = min(j["start"] for j in jobs)
    fit_span = max(j["end"] for j in fits) - min(j["start"] for j in fits)
    busy = sum(j["end"] - j["start"] for j in fits)
    cell_end: dict[str, float] = {}
    for job in fits:
        cell = job["outputs"][0].split("cell=")[1].split("/")[0]
        cell_end[cell] = max(cell_end.get(cell, 0.0), job["end"] - begin)
    ends = sorted(cell_end.values())
    return {
        "span_s": round(max(j["end"] for j in jobs) - begin, 1),
        "fit_phase_s": round(fit_span, 1),
        "fit_core_use": round(busy / (cores * fit_span), 3),
        "cell_end_median_s": round(ends[len(ends) // 2], 1),
        "cell_end_max_s": round(ends[-1], 1),
        "checkpoint_jobs": sum(j["rule"] in ("round_gate", "cell_gate") for j in jobs),
    }


def replay_cpu(fixed: Path, predicted: pd.DataFrame, replicates: int) -> tuple[float, float]:
    """(the replay's EM CPU-s at the fixed run's own cost per replicate of each cell, the fixed
    run's EM CPU-s): a ratio from one run. The two runs' own EM CPU-s put two machine states
    in one ratio: on this shared machine the same fits' CPU time varied by a quarter from one
    run to the next (issue 22), and the fixed study, both cores always fitting, was the one
    more exposed to it."""
    replayed = fixed_total = 0.0
    for row in predicted.itertuples():
        files = sorted(glob.glob(str(fixed / "fits" / f"cell={row.cell_id}" / "*.parquet")))
        cell_cpu = fit_provenance(files)["em_cpu_time_s"]
        fixed_total += cell_cpu
        replayed += cell_cpu * row.replicates / replicates
    return replayed, fixed_total


def cost(results: Path) -> dict:
    files = sorted(glob.glob(str(results / "fits" / "cell=*" / "chunk=*.parquet")))
    return fit_provenance(files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fixed", type=Path, required=True, help="results folder of the fixed study")
    ap.add_argument("--adaptive", type=Path, help="results folder of the adaptive study")
    ap.add_argument("--config", action="append", default=[], help="config files, merged in order")
    ap.add_argument("--write-config", type=Path, help="write the worst-cell targets as a config")
    ap.add_argument("--plan", default="100,500,100", help="min,max,step of the adaptive plan")
    ap.add_argument("--wall-fixed", type=float, help="wall seconds of the whole fixed run")
    ap.add_argument("--wall-adaptive", type=float, help="wall seconds of the whole adaptive run")
    ap.add_argument(
        "--also-adaptive",
        type=Path,
        action="append",
        default=[],
        help="more adaptive results folders of the same design (e.g. another gate layout): cost",
    )
    ap.add_argument("--cores", type=int, default=2, help="cores the runs had (for core use)")
    ap.add_argument(
        "--json",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "results" / "bench" / "adaptive_cost.json",
        help="with --adaptive: the ratios, for benchmarks/run.py (make bench) to print",
    )
    args = ap.parse_args()

    perf = pd.read_parquet(args.fixed / "summary" / "performance.parquet")
    targets = worst_cell_targets(perf)
    low, high, step = (int(x) for x in args.plan.split(","))
    print("targets (the fixed study's worst cell):")
    for measure, values in targets.items():
        print(f"  {measure}: " + ", ".join(f"{p} {v:g}" for p, v in values.items()))
    if args.write_config:
        body = {"replicates": {"min": low, "max": high, "step": step}, "precision": targets}
        args.write_config.write_text(yaml.safe_dump(body, sort_keys=False))
        print(f"wrote {args.write_config}")
    if not args.config:
        return

    config: dict = {}
    for path in args.config:
        config.update(yaml.safe_load(Path(path).read_text()))
    study = load_study(config)
    predicted = replay(args.fixed, study)
    per = study.fits_per_replicate
    fixed_fits = len(study.cells) * int(perf["n_rep"].max()) * per
    used = int(predicted["replicates"].sum()) * per
    total_reps = len(study.cells) * int(perf["n_rep"].max())
    met = int((predicted["stop"] == STOP_MET).sum())
    print(
        f"replay: {len(predicted)} cells, {met} met, replicates "
        f"{int(predicted['replicates'].sum())} of {total_reps}: {used:,} fits against "
        f"{fixed_fits:,} ({used / fixed_fits:.1%}); rounds: at most "
        f"{int(predicted['rounds'].max())}, of the plan's {study.plan.rounds}"
    )
    print(predicted.groupby("replicates").size().rename("cells").to_string())
    replayed, fixed_cpu = replay_cpu(args.fixed, predicted, int(perf["n_rep"].max()))
    same_run = replayed / fixed_cpu
    print(
        f"EM CPU of the replay at the fixed run's costs per replicate: {replayed:.1f} of "
        f"{fixed_cpu:.1f} CPU-s: {same_run:.3f} (one run's machine state)"
    )
    fixed_cost = cost(args.fixed)
    print(
        "fixed:   ",
        {k: fixed_cost.get(k) for k in ("total_fits", "fit_jobs", "em_cpu_time_s", "wall_time_s")},
        "whole run",
        args.wall_fixed,
    )
    if args.adaptive:
        reps = pd.read_parquet(args.adaptive / "summary" / "replicates.parquet")
        merged = predicted.merge(
            reps[["cell_id", "replicates", "stop"]], on="cell_id", suffixes=("_replay", "_run")
        )
        same = (merged["replicates_replay"] == merged["replicates_run"]).all()
        print(f"adaptive run's replicates per cell equal the replay: {bool(same)}")
        # Cells that ran as many replicates as the fixed study hold the same rows bit for bit
        # (the manifest's content hashes; the number of files differs with the rounds).
        a_cells = json.loads((args.adaptive / "manifest.json").read_text())["cells"]
        f_cells = json.loads((args.fixed / "manifest.json").read_text())["cells"]
        full = reps.loc[reps["replicates"] == int(perf["n_rep"].max()), "cell_id"]
        equal = all(
            a_cells[c][kind]["hash"] == f_cells[c][kind]["hash"]
            for c in full
            for kind in ("fits", "traces")
        )
        print(
            f"{len(full)} cells at the fixed size: content hashes equal the fixed study's: {equal}"
        )
        adaptive_cost = cost(args.adaptive)
        print(
            "adaptive:",
            {
                k: adaptive_cost.get(k)
                for k in ("total_fits", "fit_jobs", "em_cpu_time_s", "wall_time_s")
            },
            "whole run",
            args.wall_adaptive,
        )
        ratio = adaptive_cost["em_cpu_time_s"] / fixed_cost["em_cpu_time_s"]
        print(f"EM CPU adaptive / fixed: {ratio:.3f} (two runs)")
        ratios = {
            "em_cpu_ratio": ratio,
            "em_cpu_basis": (
                f"summed em_cpu_s of the two runs' fit jobs; {same_run:.3f}x at the fixed "
                "run's own costs per replicate (replay_cpu)"
            ),
            "em_cpu_ratio_same_run": same_run,
        }
        if args.wall_fixed and args.wall_adaptive:
            print(f"whole-run wall adaptive / fixed: {args.wall_adaptive / args.wall_fixed:.3f}")
            ratios["wall_ratio"] = args.wall_adaptive / args.wall_fixed
            ratios["wall_basis"] = "whole runs' wall (--wall-fixed, --wall-adaptive)"
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(ratios, indent=2) + "\n")
        print(f"wrote {args.json}")
    for label, results in [("fixed", args.fixed), ("adaptive", args.adaptive)] + [
        (f"also {p}", p) for p in args.also_adaptive
    ]:
        if results is None:
            continue
        found = schedule(results, args.cores)
        print(f"schedule {label}:", found)
        if label.startswith("also"):
            other = cost(results)
            print(f"  EM CPU / fixed: {other['em_cpu_time_s'] / fixed_cost['em_cpu_time_s']:.3f}")


if __name__ == "__main__":
    main()
