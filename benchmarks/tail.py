"""The study's tail and its fit jobs' scaling (issue 22): where the time after the last fit goes,
and whether two fit jobs on two cores take the time of one.

`tail` runs a study (the default config, scaled by `--replicates` / `--chunk-size`) from scratch
in a temporary copy of the workflow as `make study` runs it (default profile), and reads every
job's start and end from Snakemake's records (.snakemake/metadata, `emsim.study.snakemake_records`).
The tail is from the last fit job's end to the command's end; each rule's jobs in it are listed
with their summed and spanned seconds. Then it reruns only the steps after the fits (`--forcerun
cell_summary summary figures report_body report manifest`) `--tail-repeats` times on the same
fits: the tail's cost without the noise of the fits before it (the cells' summaries, which a
study runs while other cells fit, all in it; the cells' hashes, `cell_hashes`, not).

`scaling` runs a small fits-only study (2 cells at n = 500, 2 at n = 100) with `--cores 1` and
`--cores 2`, jobs as threads of Snakemake's process (`--force-use-threads`, the default profile)
and as processes of their own, and prints the fit phase's wall time of each: jobs scale when
the 2-core time is half the 1-core time.

    python benchmarks/tail.py tail [--replicates 100 --chunk-size 50] [--keep DIR]
    python benchmarks/tail.py tail --issue22 --replicates 500 --chunk-size 250  # make bench's
    python benchmarks/tail.py tail --rerun-tail DIR/study   # the tail again, on kept fits
    python benchmarks/tail.py scaling [--replicates 120 --chunk-size 30]
    python benchmarks/tail.py summary-cpu --study DIR/study   # CPU-s of each cell summary
    python benchmarks/tail.py figures-cpu --study DIR/study   # CPU-s of each figure, report

`summary-cpu` times, in this process, the work of each cell's `cell_summary` job on a kept
study's fits (`summary.cell_table` + `summarise_cell`, `--repeats` times, the first with cold
caches reported apart) and of the `summary` job's gather of the cells' tables: CPU seconds
(time.process_time), so that a busy machine inflates them less than wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

# This checkout's emsim, whatever is installed: scale.py imports it, and summary-cpu times it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
# The CPU clock and CPU model of scale.py, the end-to-end benchmark beside this one.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import children_cpu_s, cpu_model
from study_split import issue22_design

from emsim.study import snakemake_records

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
TAIL_RULES = ("cell_summary", "summary", "figures", "report_body", "report", "manifest")


def workdir(tmp: Path, config: dict) -> Path:
    work = tmp / "study"
    work.mkdir(parents=True)
    shutil.copy2(ROOT / "Snakefile", work / "Snakefile")
    shutil.copytree(ROOT / "workflow", work / "workflow")
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return work


def run(work: Path, cores: int, *args: str, threads: bool = True) -> float:
    """Wall seconds of one Snakemake command in `work`, with the default profile's options
    (jobs as threads unless `threads` is false); its CPU seconds (with everything it started)
    are appended to `CPU_S`."""
    command = [str(SNAKEMAKE), "--cores", str(cores), "--workflow-profile", "none"]
    command += ["--rerun-incomplete", "--keep-going", *args]
    if threads:
        command.append("--force-use-threads")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), MPLBACKEND="Agg")
    began, cpu = time.perf_counter(), children_cpu_s()
    with open(work / "snakemake.log", "a") as log:
        rc = subprocess.run(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - began
    CPU_S.append(children_cpu_s() - cpu)
    if rc.returncode != 0:
        raise SystemExit(f"snakemake failed:\n{(work / 'snakemake.log').read_text()[-3000:]}")
    return wall


CPU_S: list[float] = []


def rule_times(jobs: list[dict], after: float) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for job in jobs:
        if job["end"] <= after or job["rule"] == "fit":
            continue
        entry = out.setdefault(
            job["rule"], {"jobs": 0, "summed_s": 0.0, "first": math.inf, "last": 0.0}
        )
        entry["jobs"] += 1
        entry["summed_s"] += job["end"] - max(job["start"], after)
        entry["first"] = min(entry["first"], max(job["start"], after))
        entry["last"] = max(entry["last"], job["end"])
    return {
        rule: {
            "jobs": e["jobs"],
            "summed_s": round(e["summed_s"], 2),
            "from_s": round(e["first"] - after, 2),
            "to_s": round(e["last"] - after, 2),
        }
        for rule, e in out.items()
    }


def bench_tail(args: argparse.Namespace, tmp: Path) -> dict:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    if args.issue22:
        config = issue22_design(config)
    config.update(replicates=args.replicates, chunk_size=args.chunk_size)
    work = workdir(tmp, config)
    began = time.time()
    wall = run(work, args.cores)
    ended = began + wall
    jobs = snakemake_records.jobs(work)
    last_fit = max(j["end"] for j in jobs if j["rule"] == "fit")
    result = {
        "wall_s": round(wall, 1),
        "cpu_s": round(CPU_S[-1], 1),
        "tail_s": round(ended - last_fit, 1),
        "tail_share": round((ended - last_fit) / wall, 3),
        "tail_jobs": rule_times(jobs, last_fit),
    }
    result["tail_reruns"] = rerun_tail(work, args)
    manifest = json.loads((work / "results" / "manifest.json").read_text())
    result["study_hash"] = manifest["study_hash"]
    result["fit_rows"] = manifest["totals"]["fits"]["rows"]
    return result


def rerun_tail(work: Path, args: argparse.Namespace) -> list[dict]:
    reruns = []
    for _ in range(args.tail_repeats):
        began = time.time()
        wall = run(work, args.cores, "--forcerun", *args.tail_rules)
        reruns.append(
            {
                "wall_s": round(wall, 1),
                "cpu_s": round(CPU_S[-1], 1),
                "jobs": rule_times(snakemake_records.jobs(work), began),
            }
        )
    return reruns


def scaling_config(replicates: int, chunk_size: int) -> dict:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config.update(
        study="fit job scaling: 2 cells at n = 500, 2 at n = 100",
        replicates=replicates,
        chunk_size=chunk_size,
        grid={"n": [100, 500], "mu": [[0, 2]], "sigma": [1], "pi": [0.5, 0.8]},
        scenarios=[],
    )
    return config


def bench_scaling(args: argparse.Namespace, tmp: Path) -> dict:
    config = scaling_config(args.replicates, args.chunk_size)
    out: dict[str, dict] = {}
    for threads in (True, False):
        for cores in (1, 2):
            label = f"{'threads' if threads else 'processes'}, {cores} core(s)"
            work = workdir(tmp / label.replace(" ", "_").replace(",", ""), config)
            targets = [str(p) for p in sorted(fit_targets(work))]
            began = time.time()
            wall = run(work, cores, *targets, threads=threads)
            jobs = [j for j in snakemake_records.jobs(work) if j["rule"] == "fit"]
            span = max(j["end"] for j in jobs) - began
            busy = sum(j["end"] - j["start"] for j in jobs)
            out[label] = {
                "wall_s": round(wall, 1),
                "fit_phase_s": round(span, 1),
                "fit_jobs": len(jobs),
                # A job run as a process of its own is recorded with its start at its end.
                "mean_job_s": round(busy / len(jobs), 2) if busy > 0 else None,
            }
            print(label, out[label], flush=True)
    for mode in ("threads", "processes"):
        one, two = out[f"{mode}, 1 core(s)"], out[f"{mode}, 2 core(s)"]
        out[f"{mode}: speed-up 1 -> 2 cores"] = round(one["fit_phase_s"] / two["fit_phase_s"], 2)
    return out


def fit_targets(work: Path) -> list[str]:
    sys.path.insert(0, str(ROOT / "src"))
    from emsim.study.config import load_study

    study = load_study(
        yaml.safe_load((work / "config.yaml").read_text()),
        work / "workflow/schemas/config.schema.yaml",
    )
    return [*study.outputs("fits"), *study.outputs("traces")]


def bench_summary_cpu(study_dir: Path, repeats: int) -> dict:
    import emsim
    from emsim.study import summary
    from emsim.study.config import load_study

    study = load_study(
        yaml.safe_load((study_dir / "config.yaml").read_text()),
        study_dir / "workflow/schemas/config.schema.yaml",
    )
    cells = sorted((study_dir / "results" / "fits").glob("cell=*"))
    first, best, rows, tables = [], [], [], []
    for cell in cells:
        files = sorted(cell.glob("*.parquet"))
        times = []
        for _ in range(repeats):
            began = time.process_time()
            table = summary.cell_table(files)
            out = summary.summarise_cell(table, oracle_starts=study.oracle_starts)
            times.append(time.process_time() - began)
        first.append(times[0])
        best.append(min(times))
        rows.append(table.num_rows)
        tables.append(out)
    began = time.process_time()
    summary.gather(tables)
    gather_s = time.process_time() - began
    largest = max(range(len(cells)), key=rows.__getitem__)
    return {
        "emsim": str(Path(emsim.__file__).parent),
        "cells": len(cells),
        "fit_rows": sum(rows),
        "cell_summary_cpu_s_first": round(sum(first), 2),
        "cell_summary_cpu_s_best": round(sum(best), 2),
        "largest_cell": {"rows": rows[largest], "cpu_s_best": round(best[largest], 3)},
        "gather_cpu_s": round(gather_s, 3),
    }


def bench_figures_cpu(study_dir: Path, repeats: int) -> dict:
    """CPU seconds (best of `repeats`) of drawing each figure of a kept study in this process
    (`figures.draw_one`, as a figure worker does) and of writing its report: the body (without
    the figures) and the page with them where this emsim splits them, else the whole report."""
    import matplotlib

    matplotlib.use("Agg")
    from emsim.study import figures, jobs, parquet_io, report
    from emsim.study.captions import FIGURE_NAMES
    from emsim.study.config import load_study
    from emsim.study.summary import SummaryFiles

    results = study_dir / "results"
    study = load_study(
        yaml.safe_load((study_dir / "config.yaml").read_text()),
        study_dir / "workflow/schemas/config.schema.yaml",
    )
    summary = SummaryFiles.in_folder(results / "summary")
    traces = sorted(str(p) for p in (results / "traces").glob("cell=*/*.parquet"))
    fits = sorted(str(p) for p in (results / "fits").glob("cell=*/*.parquet"))
    threshold = float(study.config["em"]["premature_threshold"])
    dpi = int(study.config["figures"]["dpi"])

    def best(work) -> float:
        times = []
        for _ in range(repeats):
            began = time.process_time()
            work()
            times.append(time.process_time() - began)
        return round(min(times), 3)

    with tempfile.TemporaryDirectory(prefix="emsim-figures-") as tmp:
        out = Path(tmp)
        drawn = {name: out / f"{name}.png" for name in FIGURE_NAMES}
        # The first figure pays for the font cache and lazy imports, as a worker does not.
        figures.draw_one("rate", summary, traces, out / "warm.png", dpi=dpi, threshold=threshold)
        each = {
            name: best(
                lambda name=name: figures.draw_one(
                    name, summary, traces, drawn[name], dpi=dpi, threshold=threshold
                )
            )
            for name in FIGURE_NAMES
        }
        provenance = {**jobs._study_metadata(study), **parquet_io.fit_provenance(fits)}
        timed = {}
        if hasattr(report, "write_report_body"):
            body = out / "body.html"
            timed["report_body_cpu_s"] = best(
                lambda: report.write_report_body(summary, body, study, provenance, fits)
            )
            timed["report_embed_cpu_s"] = best(
                lambda: report.embed_figures(body, drawn, summary.stopping_rules, out / "r.html")
            )
        else:
            timed["report_cpu_s"] = best(
                lambda: report.write_report(summary, drawn, out / "r.html", study, provenance, fits)
            )
        sizes = {"png_bytes": sum(p.stat().st_size for p in drawn.values())}
        sizes["report_bytes"] = (out / "r.html").stat().st_size
    return {
        "emsim": str(Path(figures.__file__).parent),
        "figures_cpu_s": round(sum(each.values()), 2),
        "figure_cpu_s": each,
        **timed,
        **sizes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("tail", "scaling", "summary-cpu", "figures-cpu"))
    parser.add_argument(
        "--study", help="summary-cpu, figures-cpu: a kept study folder (--keep DIR: DIR/study)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="summary-cpu, figures-cpu: runs of each step"
    )
    parser.add_argument("--replicates", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--tail-repeats", type=int, default=2)
    parser.add_argument(
        "--issue22",
        action="store_true",
        help="tail: the design issue 22 measured (study_split.issue22_design), as make bench runs",
    )
    parser.add_argument("--keep", help="keep the study folder here (for inspection)")
    parser.add_argument(
        "--rerun-tail",
        metavar="STUDY",
        help="only rerun the tail of the study kept (--keep) in this folder, not a new study",
    )
    parser.add_argument("--tail-rules", nargs="+", default=list(TAIL_RULES))
    args = parser.parse_args()
    if args.what == "tail":
        args.replicates = args.replicates or 100
        args.chunk_size = args.chunk_size or 50
    else:
        args.replicates = args.replicates or 120
        args.chunk_size = args.chunk_size or 30
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load {os.getloadavg()}", flush=True)
    if args.what in ("summary-cpu", "figures-cpu"):
        if not args.study:
            raise SystemExit(f"{args.what} needs --study DIR (a study kept with --keep)")
        bench_cpu = bench_summary_cpu if args.what == "summary-cpu" else bench_figures_cpu
        print(json.dumps(bench_cpu(Path(args.study), args.repeats), indent=1))
        return
    if args.rerun_tail:
        print(json.dumps({"tail_reruns": rerun_tail(Path(args.rerun_tail), args)}, indent=1))
        return
    with tempfile.TemporaryDirectory(prefix="emsim-tail-") as tmp:
        bench = bench_tail if args.what == "tail" else bench_scaling
        result = bench(args, Path(tmp))
        if args.keep:
            shutil.copytree(tmp, args.keep, symlinks=True, dirs_exist_ok=True)
    result["cpu"] = cpu_model()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
