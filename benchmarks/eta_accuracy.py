"""How right `emsim status`'s ETA is (issue 23: within 20% of the real remaining time once 10%
of the fits are done, on the default study, 2 quiet cores).

`run` fits a study (the checkout's config.yaml, or `--config`) from scratch in a temporary copy
of the workflow, as `make study` does (`snakemake --cores 2 --workflow-profile
workflow/profiles/default all`), and polls `emsim status --json` every `--interval` seconds
while it runs. At the first poll where the fits done pass 10%, 25% and 50% of the fits planned,
it compares the ETA then with the time the fits really took from then on (the last fit job's
end, from the fit files' footers) and with the time to the end of the run (the summary,
figures and report after the fits included), and prints both errors, (ETA - real) / real.
Each poll's text output is kept (`--keep DIR` keeps the whole study, its polls in
DIR/eta_polls.jsonl and the status text at 10% in DIR/status_at_10pct.txt).

`replay DIR` recomputes those ETAs on a kept study with the checkout's code now: the state at
each moment is rebuilt from the study's files (the fit files that had finished, Snakemake's log
cut there, markers of the jobs running then, a lock held) and `read_status` is asked as of
then. It needs no new run, so a cost model can be compared with another on the same timeline.
It also prints the cost model's own error, in CPU seconds (`cost_model_cpu`): on a shared
machine the wall-clock ETA is mostly as right as the guess that the share of the cores other
work takes stays as it is now.

    python benchmarks/eta_accuracy.py run [--cores 2] [--interval 5] [--keep DIR]
    python benchmarks/eta_accuracy.py replay DIR
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SHARES = (0.10, 0.25, 0.50)


def study_copy(work: Path, config: Path) -> Path:
    work.mkdir(parents=True)
    shutil.copy2(ROOT / "Snakefile", work / "Snakefile")
    shutil.copytree(ROOT / "workflow", work / "workflow")
    shutil.copy2(config, work / "config.yaml")
    return work


def poll(results: Path) -> tuple[dict, str]:
    from emsim.study.status import read_status, render

    status = read_status(results)
    return status.as_json(), render(status)


def fit_ends(results: Path) -> list[tuple[float, float]]:
    """(start, end) in epoch seconds of every finished fit job, from the files' footers."""
    from emsim.study.parquet_io import read_metadata
    from emsim.study.schema import FOOTER_JOB_ELAPSED_S, FOOTER_JOB_STARTED

    spans = []
    for path in sorted((results / "fits").glob("cell=*/chunk=*.parquet")):
        meta = read_metadata(path)
        start = dt.datetime.fromisoformat(meta[FOOTER_JOB_STARTED]).timestamp()
        spans.append((start, start + float(meta[FOOTER_JOB_ELAPSED_S])))
    return spans


def errors(polls: list[dict], fits_end: float, run_end: float) -> list[dict]:
    rows = []
    for share in SHARES:
        first = next(
            (p for p in polls if p["eta_s"] is not None and p["done"] >= share * p["total"]),
            None,
        )
        if first is None:
            rows.append({"share": share, "eta_s": None})
            continue
        to_fits, to_end = fits_end - first["t"], run_end - first["t"]
        rows.append(
            {
                "share": share,
                "done": first["done"],
                "eta_s": round(first["eta_s"], 1),
                "fits_left_s": round(to_fits, 1),
                "run_left_s": round(to_end, 1),
                "error_vs_fits": round((first["eta_s"] - to_fits) / to_fits, 3),
                "error_vs_run": round((first["eta_s"] - to_end) / to_end, 3),
            }
        )
    return rows


def bench_run(args: argparse.Namespace, tmp: Path) -> dict:
    work = study_copy(Path(args.keep) if args.keep else tmp / "study", Path(args.config))
    results = work / "results"
    command = [str(SNAKEMAKE), "--cores", str(args.cores)]
    command += ["--workflow-profile", "workflow/profiles/default", "all"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), MPLBACKEND="Agg")
    began = time.time()
    with open(work / "snakemake.out", "w") as out:
        process = subprocess.Popen(command, cwd=work, env=env, stdout=out, stderr=out)
        polls, texts = [], {}
        while process.poll() is None:
            time.sleep(args.interval)
            try:
                status, text = poll(results)
            except Exception:  # before Snakemake wrote its first files
                continue
            if not status["running"]:
                continue
            polls.append(
                {
                    "t": time.time(),
                    "done": status["fits_done"],
                    "total": status["fits_total"],
                    "eta_s": status["eta_s"],
                }
            )
            for share in SHARES:
                if share not in texts and status["fits_done"] >= share * status["fits_total"]:
                    texts[share] = text
    run_end = time.time()
    if process.returncode != 0:
        raise SystemExit(f"snakemake failed: see {work / 'snakemake.out'}")
    (work / "eta_polls.jsonl").write_text("".join(json.dumps(p) + "\n" for p in polls))
    if SHARES[0] in texts:
        (work / "status_at_10pct.txt").write_text(texts[SHARES[0]])
    (work / "run_end.txt").write_text(f"{run_end}\n")
    spans = fit_ends(results)
    fits_end = max(end for _, end in spans)
    return {
        "wall_s": round(run_end - began, 1),
        "fits_wall_s": round(fits_end - began, 1),
        "polls": len(polls),
        "eta": errors(polls, fits_end, run_end),
        "status_at_10pct": texts.get(SHARES[0]),
    }


def state_at(study: Path, when: float, into: Path) -> Path:
    """A checkout as `study` stood at epoch time `when`: its config, the fit files finished by
    then, Snakemake's log up to then and a lock."""
    from emsim.study.parquet_io import read_metadata
    from emsim.study.schema import FOOTER_JOB_ELAPSED_S, FOOTER_JOB_STARTED

    results = into / "results"
    (results / "fits").mkdir(parents=True)
    shutil.copy2(study / "results" / "config.yaml", results / "config.yaml")
    markers = into / ".snakemake" / "incomplete"
    markers.mkdir(parents=True)
    for path in (study / "results" / "fits").glob("cell=*/chunk=*.parquet"):
        meta = read_metadata(path)
        start = dt.datetime.fromisoformat(meta[FOOTER_JOB_STARTED]).timestamp()
        relative = path.relative_to(study)
        if start + float(meta[FOOTER_JOB_ELAPSED_S]) <= when:
            target = into / relative
            target.parent.mkdir(exist_ok=True)
            target.symlink_to(path)
        elif start <= when:
            # Snakemake's marker of a job making this file, dated at its start.
            marker = markers / base64.urlsafe_b64encode(str(relative).encode()).decode()
            marker.write_text('{"external_jobid": null}')
            os.utime(marker, (start, start))
    log = max((study / ".snakemake" / "log").glob("*.snakemake.log"))
    text = log.read_text()
    cut = len(text)
    for stamp in re.finditer(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]\n", text, re.M):
        if dt.datetime.strptime(stamp.group(1), "%a %b %d %H:%M:%S %Y").timestamp() > when:
            cut = stamp.start()
            break
    (into / ".snakemake" / "log").mkdir()
    (into / ".snakemake" / "log" / log.name).write_text(text[:cut])
    (into / ".snakemake" / "locks").mkdir()
    (into / ".snakemake" / "locks" / "0.input.lock").write_text("")
    return results


def cost_model_errors(study: Path) -> list[dict]:
    """The cost model alone, other work on the machine aside: at each share of the fit jobs
    finished (in the order they ended), the CPU seconds the remaining chunks were costed at
    (their cell's finished chunks per replicate, else the model fitted to the finished ones)
    against the CPU seconds they took."""
    from emsim.study.status import _finished_chunks, _study_of, cell_steps, fit_cost_model

    root = study / "results"
    plan = _study_of(root, study)
    steps = cell_steps(plan)
    chunks = sorted(
        _finished_chunks(root, plan), key=lambda c: c.started.timestamp() + c.job_seconds
    )
    rows = []
    for share in SHARES:
        k = math.ceil(share * len(chunks))
        done = [c.on_the_cpu() for c in chunks[:k]]
        model = fit_cost_model(done)
        per_cell: dict[str, list[float]] = {}
        for c in done:
            seconds, replicates = per_cell.get(c.cell_id, (0.0, 0))
            per_cell[c.cell_id] = [seconds + c.job_seconds, replicates + c.replicates]
        predicted = sum(
            c.replicates
            * (
                per_cell[c.cell_id][0] / per_cell[c.cell_id][1]
                if c.cell_id in per_cell
                else model.replicate_seconds(c.n, steps[c.cell_id])
            )
            for c in chunks[k:]
        )
        real = sum(c.on_the_cpu().job_seconds for c in chunks[k:])
        rows.append(
            {
                "share": share,
                "cpu_s_left_predicted": round(predicted, 1),
                "cpu_s_left": round(real, 1),
                "error": round(predicted / real - 1, 3),
            }
        )
    return rows


def bench_replay(args: argparse.Namespace, tmp: Path) -> dict:
    from emsim.study.status import read_status

    study = Path(args.study).resolve()
    polls = [json.loads(line) for line in (study / "eta_polls.jsonl").read_text().splitlines()]
    run_end = float((study / "run_end.txt").read_text())
    fits_end = max(end for _, end in fit_ends(study / "results"))
    replayed = []
    for k, p in enumerate(polls):
        results = state_at(study, p["t"], tmp / f"at{k}")
        now = dt.datetime.fromtimestamp(p["t"], dt.UTC)
        status = read_status(results, now=now)
        replayed.append({**p, "eta_s": status.eta_s, "done": status.fits_done})
        if status.fits_done >= SHARES[-1] * status.fits_total and status.eta_s is not None:
            break
    return {
        "eta": errors(replayed, fits_end, run_end),
        "cost_model_cpu": cost_model_errors(study),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fit a study and poll its status")
    run.add_argument("--config", default=str(ROOT / "config.yaml"))
    run.add_argument("--cores", type=int, default=2)
    run.add_argument("--interval", type=float, default=5.0)
    run.add_argument("--keep", help="run the study in this new folder and keep it")
    replay = sub.add_parser("replay", help="the ETAs of a kept study, with this code")
    replay.add_argument("study")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emsim-eta-") as tmp:
        if args.command == "run":
            result = bench_run(args, Path(tmp))
        else:
            result = bench_replay(args, Path(tmp))
    text = result.pop("status_at_10pct", None)
    print(json.dumps(result, indent=1))
    if text:
        print("\nemsim status at 10% of the fits:\n" + text)


if __name__ == "__main__":
    main()
