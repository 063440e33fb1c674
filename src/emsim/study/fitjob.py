"""One fit job of the study: one cell x one chunk of replicates (docs/design.md sections 3 to 5).

The job draws the chunk's replicates (each from its own stream, `seeding`), fits every
model x method x start to the same data (a model and method's distinct starts in one
`api.fit_starts_by_rule` call), aligns the estimates to the truth's labels, and writes one row
per (replicate, model, method, start) to `results/fits/cell=<id>/chunk=<k>.parquet`, plus the
per-iteration traces of the cell's first `traces` replicates to
`results/traces/cell=<id>/chunk=<k>.parquet` (an empty file with the same schema when the chunk
holds none of them, so that the rule's output always exists).

Label alignment: a mixture's likelihood does not change when the components are exchanged, so
an estimate is compared with the truth only after choosing the labelling closer to it. For the
models that estimate the means the components are exchanged (pi -> 1 - pi, mu1 <-> mu2,
sigma1 <-> sigma2, and the standard errors with them) when the swapped means are strictly
closer to the true means in Euclidean distance; `swapped` records it. The `pi` model holds the
means at the truth, so its labels are fixed by construction and never swapped. A trace is
aligned with its fit's final decision so that a whole path is drawn in one labelling.

`best_start_gap` is set per replicate x model x method (`measures.best_start_gap`): the highest
log-likelihood among the starts that could be the derived start `best` (not an oracle `truth`
start, status not `nonfinite`, finite log-likelihood; other failures included) minus the fit's
own log-likelihood. It is > 0 (beyond the tolerance) for a fit stuck at a local maximum, < 0 on
an oracle start when `best` missed a higher maximum, and NaN for a `nonfinite` fit or when no
start is eligible (docs/design.md sections 5 and 6).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import emsim
from emsim.api import fit_starts_by_rule, prepare_data
from emsim.models import PARAMS, estimated_params, known_params
from emsim.study.config import canonical_json
from emsim.study.manifest import rows_hash_metadata
from emsim.study.measures import best_start_gap
from emsim.study.parquet_io import provenance_metadata, write_parquet_atomic
from emsim.study.schema import (
    CELL_PARAMS,
    FAMILY,
    FITS_SCHEMA,
    FOOTER_CELL_ID,
    FOOTER_CHUNK,
    FOOTER_CONFIG_HASH_SCOPE,
    FOOTER_EM_CPU_S,
    FOOTER_EM_ELAPSED_S,
    FOOTER_FIT_CONFIG,
    FOOTER_JOB_ELAPSED_S,
    FOOTER_JOB_STARTED,
    FOOTER_REPLICATES,
    TRACES_SCHEMA,
)
from emsim.study.seeding import simulate_replicates
from emsim.study.starts import start_values
from emsim.study.study import FitTask
from emsim.warmup import load_engine

__all__ = ["align_to_truth", "fit_chunk"]

log = logging.getLogger("emsim.study.fit")


def _swap_mask(params: Mapping[str, np.ndarray], truth: Mapping[str, float], model: str):
    if "mu1" not in estimated_params(model):
        return np.zeros(len(params["pi"]), dtype=bool)
    m1, m2 = params["mu1"], params["mu2"]
    keep = (m1 - truth["mu1"]) ** 2 + (m2 - truth["mu2"]) ** 2
    swap = (m2 - truth["mu1"]) ** 2 + (m1 - truth["mu2"]) ** 2
    # NaN compares False: a non-finite estimate keeps its labels.
    return swap < keep


def _swapped(values: Mapping[str, np.ndarray], mask: np.ndarray, se: bool = False):
    out = {p: np.asarray(v, dtype=np.float64).copy() for p, v in values.items()}
    if not mask.any():
        return out
    for a, b in (("mu1", "mu2"), ("sigma1", "sigma2")):
        out[a][mask], out[b][mask] = values[b][mask], values[a][mask]
    if not se:  # the se of pi is that of 1 - pi
        out["pi"][mask] = 1.0 - values["pi"][mask]
    return out


def align_to_truth(
    params: Mapping[str, np.ndarray],
    se: Mapping[str, np.ndarray],
    truth: Mapping[str, float],
    model: str,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Estimates and SEs in the truth's labelling, and the mask of rows that were swapped."""
    mask = _swap_mask(params, truth, model)
    return _swapped(params, mask), _swapped(se, mask, se=True), mask


def _trace_columns(
    trace: pd.DataFrame, truth: Mapping[str, float], swap: bool, model: str
) -> dict[str, np.ndarray]:
    n_it = len(trace)
    values = {}
    for p in PARAMS:
        if p in trace.columns and p in estimated_params(model):
            values[p] = trace[p].to_numpy(dtype=np.float64)
        else:  # held known: the truth, as in the fit rows
            values[p] = np.full(n_it, float(truth[p]))
    if swap:
        values = _swapped(values, np.ones(n_it, dtype=bool))
    return {
        "iteration": trace["iteration"].to_numpy(dtype=np.int64),
        **{f"est_{p}": values[p] for p in PARAMS},
        "loglik": trace["loglik"].to_numpy(dtype=np.float64),
        "diff_loglik": trace["diff_loglik"].to_numpy(dtype=np.float64),
    }


def _stacked(blocks: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """One frame from blocks of equal columns, built once: a frame per block and a concat
    cost more than the fits of a small cell."""
    return pd.DataFrame({k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]})


def fit_chunk(task: FitTask, out_path: str | Path, traces_path: str | Path) -> dict[str, Any]:
    """Fit the chunk of replicates `task` (built by `Study.fit_task`) describes; write the fit
    rows to `out_path` and the kept traces to `traces_path`. Returns a small summary."""
    # job_elapsed_s and em_elapsed_s time the job, not loading the engine from numba's cache
    # (the first job of a process does that; `emsim warmup` compiled it at set-up).
    load_engine()
    started_at = _dt.datetime.now(_dt.UTC)
    began = time.perf_counter()
    cell = task.cell.as_dict()
    replicates = list(task.replicates)
    log.info(
        "cell %s chunk %s: replicates %d-%d, n=%d",
        task.cell.cell_id,
        task.chunk,
        replicates[0],
        replicates[-1],
        task.cell.n,
    )

    blocks, trace_blocks, em_seconds, em_cpu_seconds = _fit_all(task, cell, replicates)
    fits = _stacked(blocks)
    # Rows in reading order: replicate, then model, method, start and stopping rule in config
    # order.
    fits = fits.sort_values("replicate", kind="stable", ignore_index=True)
    fits = _with_design(fits, cell)
    fits["best_start_gap"] = best_start_gap(fits, oracle_starts=task.oracle_starts)

    if trace_blocks:
        traces = _with_design(_stacked(trace_blocks), cell)
    else:
        traces = TRACES_SCHEMA.empty_table().to_pandas()

    elapsed = time.perf_counter() - began
    meta = provenance_metadata(
        config_hash=task.fit_hash,
        seed=task.seed,
        extra={
            # The hash covers only what changes a fit (config.FIT_KEYS): editing figure options
            # must not make these files look stale.
            FOOTER_CONFIG_HASH_SCOPE: "fit",
            FOOTER_FIT_CONFIG: canonical_json(task.fit_config),
            FOOTER_CELL_ID: cell["cell_id"],
            FOOTER_CHUNK: task.chunk,
            FOOTER_REPLICATES: f"{replicates[0]}-{replicates[-1]}",
            FOOTER_JOB_STARTED: started_at.isoformat(timespec="milliseconds"),
            FOOTER_JOB_ELAPSED_S: f"{elapsed:.6f}",
            FOOTER_EM_ELAPSED_S: f"{em_seconds:.6f}",
            FOOTER_EM_CPU_S: f"{em_cpu_seconds:.6f}",
        },
    )
    # The traces first, the fits last: the cells' summaries read the fits alone, so a job killed
    # between its two files must leave the fits missing, not present beside missing traces.
    # Snakemake then reruns the job before any summary reads the chunk; with the fits present,
    # a resumed adaptive study summarised them, then refitted the job for its traces and left
    # the summary older than the fits it had read (tests/test_resume.py).
    write_parquet_atomic(
        traces, traces_path, meta, schema=TRACES_SCHEMA, derived_metadata=rows_hash_metadata
    )
    write_parquet_atomic(
        fits, out_path, meta, schema=FITS_SCHEMA, derived_metadata=rows_hash_metadata
    )
    statuses = fits["status"].value_counts().to_dict()
    log.info(
        "wrote %d fits (%s) in %.2f s (%.2f s in EM); %d trace rows",
        len(fits),
        ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())),
        elapsed,
        em_seconds,
        len(traces),
    )
    return {"rows": len(fits), "elapsed_s": elapsed, "em_s": em_seconds, "statuses": statuses}


def _fit_all(
    task: FitTask, cell: Mapping[str, Any], replicates: list[int]
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], float, float]:
    """Every model x method x start of the task on the chunk's data: the fit-row blocks, the
    kept trace blocks, and the wall and CPU seconds spent in EM."""
    truth = {p: float(cell[p]) for p in PARAMS}
    seed = task.seed
    em = task.fit_config["em"]
    Y = simulate_replicates(seed, cell, replicates)
    starts = {s.name: start_values(s, Y, truth, seed, cell, replicates) for s in task.starts}
    # Checked and put in working units once for the chunk's fits (every model and method).
    data = prepare_data(Y)
    keep_trace = np.asarray(replicates) < int(task.fit_config["traces"])

    blocks: list[dict[str, np.ndarray]] = []
    trace_blocks: list[dict[str, np.ndarray]] = []
    em_seconds = 0.0
    # CPU time of this thread: jobs may share a process (threads), where wall time inside a
    # call would also count time spent waiting for the other job's Python code.
    em_cpu_seconds = 0.0
    for model in task.models:
        known = {p: truth[p] for p in known_params(model)} or None
        distinct, of_spec = _distinct_starts([starts[s.name] for s in task.starts], model)
        for method in task.methods:
            t0 = time.perf_counter()
            cpu0 = time.thread_time()
            # The model's distinct starts in one call (the limit's steps then serve them all);
            # the rows of each are those of a call of its own.
            fitted = fit_starts_by_rule(
                data,
                distinct,
                trace=keep_trace,
                model=model,
                method=method,
                known=known,
                tolerances=task.tolerances,
                max_iterations=int(em["max_iterations"]),
                premature_threshold=float(em["premature_threshold"]),
            )
            em_seconds += time.perf_counter() - t0
            em_cpu_seconds += time.thread_time() - cpu0
            for spec, k in zip(task.starts, of_spec, strict=True):
                for res in fitted[k].values():
                    block, traced = _rows(res, replicates, spec.name, truth, keep_trace)
                    blocks.append(block)
                    trace_blocks += traced
    return blocks, trace_blocks, em_seconds, em_cpu_seconds


def _distinct_starts(
    starts: list[Mapping[str, np.ndarray]], model: str
) -> tuple[list[Mapping[str, np.ndarray]], list[int]]:
    """The distinct starts of `starts` for `model`, and which of them each start is. Two start
    names may give the same start (the default study's `fixed` {pi: 0.5} and `quantile` at 0.5
    do): equal in every parameter the model estimates (the others are held at the truth), so
    the fit, a function of data, start and settings, is computed once and its rows are filed
    under both names."""
    distinct: list[Mapping[str, np.ndarray]] = []
    of_start = []
    for start in starts:
        same = (
            k
            for k, earlier in enumerate(distinct)
            if all(np.array_equal(start[p], earlier[p]) for p in estimated_params(model))
        )
        k = next(same, len(distinct))
        if k == len(distinct):
            distinct.append(start)
        of_start.append(k)
    return distinct, of_start


def _rows(
    res: emsim.BatchFitResult,
    replicates: list[int],
    start: str,
    truth: Mapping[str, float],
    keep_trace: np.ndarray,
) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """The fit rows (FITS_SCHEMA order, without the design) of one batch and its kept traces."""
    params, se, swapped = align_to_truth(res.params, res.se, truth, res.model)
    sandwich = _swapped(res.se_sandwich, swapped, se=True)
    rows = len(replicates)
    labels = {
        "model": np.full(rows, res.model, dtype=object),
        "method": np.full(rows, res.method, dtype=object),
        "stopping": np.full(rows, res.stopping, dtype=object),
        "start": np.full(rows, start, dtype=object),
    }
    block = {
        "replicate": np.asarray(replicates, dtype=np.int64),
        **labels,
        "status": np.asarray(res.status, dtype=object),
        "iterations": np.asarray(res.iterations, dtype=np.int64),
        "loglik_evals": np.asarray(res.loglik_evals, dtype=np.int64),
        "runtime_s": np.asarray(res.runtime_s, dtype=np.float64),
        "loglik": np.asarray(res.loglik, dtype=np.float64),
        "loglik_start": np.asarray(res.loglik_start, dtype=np.float64),
        **{f"est_{p}": params[p] for p in PARAMS},
        "swapped": swapped,
        **{f"se_{p}": se[p] for p in PARAMS},
        **{f"se_sandwich_{p}": sandwich[p] for p in PARAMS},
        "rate_empirical": np.asarray(res.rate_empirical, dtype=np.float64),
        "rate_theory": np.asarray(res.rate_theory, dtype=np.float64),
        "distance_to_limit": np.asarray(res.distance_to_limit, dtype=np.float64),
        "loglik_gap_to_limit": np.asarray(res.loglik_gap_to_limit, dtype=np.float64),
        "polish_evals": np.asarray(res.polish_evals, dtype=np.int64),
    }
    trace_blocks = []
    for i in np.flatnonzero(keep_trace):
        trace = res.traces[i] if len(res.traces) else None
        if trace is None or len(trace) == 0:
            continue
        steps = len(trace)
        trace_blocks.append(
            {
                "replicate": np.full(steps, replicates[i], dtype=np.int64),
                **{k: np.full(steps, v[0], dtype=object) for k, v in labels.items()},
                **_trace_columns(trace, truth, bool(swapped[i]), res.model),
            }
        )
    return block, trace_blocks


def _with_design(frame: pd.DataFrame, cell: Mapping[str, Any]) -> pd.DataFrame:
    design = {
        "cell_id": str(cell["cell_id"]),
        "n": int(cell["n"]),
        **{p: float(cell[p]) for p in CELL_PARAMS[1:]},
        FAMILY: str(cell[FAMILY]),
    }
    for i, (name, value) in enumerate(design.items()):
        frame.insert(i, name, value)
    return frame
