"""`emsim replay`: one fit of a study recomputed on its own from the study's seeds
(docs/design.md section 7).

A fit is named by its row key (cell, replicate, model, method, start, stopping rule). Its
replicate has its own random streams (section 3), so the replicate refitted alone, by the fit
job's own code (`recompute.refit`), gives the row it has in its chunk, bit for bit (`runtime_s`,
the wall clock, aside). Two things a single `emsim.fit` would not reproduce are therefore kept:
all starts of the model and method are fitted (the row's `best_start_gap` compares them), and
all stopping rules (they share one path, whose limit is sought from the furthest stop). Every
replayed fit is traced, whatever the study's `traces`: tracing records the iterates and
changes none of them.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from emsim.models import PARAMS, known_params
from emsim.study.schema import result_path

__all__ = ["FitKey", "Replayed", "check_key", "compare_with_stored", "replay", "stored_row"]


@dataclass(frozen=True)
class FitKey:
    """One fit of a study: the key of its row in results/fits (docs/design.md section 5)."""

    cell: str
    replicate: int
    model: str
    method: str
    start: str
    stopping: str


@dataclass(frozen=True)
class Replayed:
    """A replayed fit: its row (the columns of `schema.FITS_SCHEMA`), its iterates (those of
    `schema.TRACES_SCHEMA`, in the truth's labelling as the row), its replicate's data set, and
    where the study keeps the row."""

    key: FitKey
    row: dict[str, Any]
    trace: pd.DataFrame
    data: np.ndarray
    fits_file: Path

    def result(self):
        """The row as an `emsim.FitResult` (components in the truth's labelling, as the row;
        `runtime_s` the refit's), for the output `emsim fit` prints."""
        from emsim.api import FitResult

        # Parquet keeps a NaN the job wrote as a null; a FitResult holds NaN.
        row = {k: float("nan") if v is None else v for k, v in self.row.items()}
        return FitResult(
            status=row["status"],
            iterations=row["iterations"],
            loglik=row["loglik"],
            loglik_start=row["loglik_start"],
            loglik_evals=row["loglik_evals"],
            params={p: row[f"est_{p}"] for p in PARAMS},
            se={p: row[f"se_{p}"] for p in PARAMS},
            rate_empirical=row["rate_empirical"],
            rate_theory=row["rate_theory"],
            runtime_s=row["runtime_s"],
            model=row["model"],
            method=row["method"],
            stopping=row["stopping"],
            distance_to_limit=row["distance_to_limit"],
            loglik_gap_to_limit=row["loglik_gap_to_limit"],
            polish_evals=row["polish_evals"],
        )

    def known(self) -> dict[str, float]:
        """The values the model held known: the cell's truth."""
        return {p: self.row[p] for p in known_params(self.key.model)}


def _choices(values) -> str:
    return ", ".join(map(str, values))


def check_key(study, key: FitKey) -> None:
    """Raise ValueError, naming the option and the study's choices, for a fit the study does
    not run."""
    if key.cell not in study.cell_ids:
        raise ValueError(
            f"--cell {key.cell!r} is not a cell of the study; choose one of: "
            f"{_choices(study.cell_ids)}"
        )
    if not 0 <= key.replicate < study.replicates:
        raise ValueError(
            f"--replicate {key.replicate} is outside the study's replicates "
            f"0..{study.replicates - 1}"
        )
    for option, value, choices in (
        ("--model", key.model, study.models),
        ("--method", key.method, study.methods),
        ("--start", key.start, study.start_names),
        ("--stopping", key.stopping, study.stopping),
    ):
        if value not in choices:
            raise ValueError(
                f"{option} {value!r} is not one the study ran; choose one of: {_choices(choices)}"
            )


def _chunk_of(study, replicate: int) -> int:
    return next(k for k in range(study.n_chunks) if replicate in study.chunk_replicates(k))


def _one(table: pa.Table, key: FitKey) -> pa.Table:
    mask = None
    for column, value in (
        ("replicate", key.replicate),
        ("model", key.model),
        ("method", key.method),
        ("start", key.start),
        ("stopping", key.stopping),
    ):
        match = pc.equal(table[column], value)
        mask = match if mask is None else pc.and_(mask, match)
    return table.filter(mask)


def replay(results: str | os.PathLike[str], key: FitKey) -> Replayed:
    """Refit the fit `key` of the study recorded in the results folder `results`
    (`recompute.recorded_study`). Raises ValueError for a fit the study does not run."""
    from emsim.study.recompute import recorded_study, refit
    from emsim.study.seeding import simulate_replicates

    study = recorded_study(results)
    check_key(study, key)
    chunk = _chunk_of(study, key.replicate)
    task = study.fit_task(key.cell, chunk)
    task = dataclasses.replace(
        task,
        replicates=[key.replicate],
        models=(key.model,),
        methods=(key.method,),
        # `traces` only decides which replicates keep their iterates.
        fit_config={**task.fit_config, "traces": key.replicate + 1},
    )
    with tempfile.TemporaryDirectory(prefix="emsim-replay-") as tmp:
        tables = refit(task, tmp)
    rows = _one(tables["fits"], key).to_pylist()
    if len(rows) != 1:  # the job writes one row per key; anything else is a broken contract
        raise RuntimeError(f"the refit gave {len(rows)} rows for {key}")
    trace = _one(tables["traces"], key).to_pandas()
    data = simulate_replicates(task.seed, task.cell.as_dict(), [key.replicate])[0]
    fits_file = Path(result_path("fits", key.cell, chunk, str(results)))
    return Replayed(key, rows[0], trace, np.asarray(data, dtype=np.float64), fits_file)


def stored_row(replayed: Replayed) -> pa.Table | None:
    """The study's own row of the replayed fit, or None when its chunk is not (yet) on disk or
    holds no such row."""
    from emsim.study.integrity import read_result

    found, _ = read_result(replayed.fits_file)
    if found is None:
        return None
    row = _one(found, replayed.key)
    return row if row.num_rows == 1 else None


def compare_with_stored(replayed: Replayed) -> tuple[str, ...] | None:
    """The columns in which the replay differs from the study's row (empty: identical,
    `runtime_s` aside), or None when the study holds no row of it."""
    from emsim.study.recompute import differing_columns
    from emsim.study.schema import FITS_SCHEMA

    found = stored_row(replayed)
    if found is None:
        return None
    mine = pa.Table.from_pylist([replayed.row], schema=FITS_SCHEMA)
    return differing_columns(found.select(FITS_SCHEMA.names).cast(FITS_SCHEMA), mine)
