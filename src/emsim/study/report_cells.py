"""The study's cells as the report lists them: read from the summary tables, in design order
(sample size, separation, sigma ratio, pi), each with its label and replicates."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from emsim.study.captions import add_design_factors, cell_label
from emsim.study.measures import BEST
from emsim.study.schema import CELL_KEYS


def read_table(path: Path | None) -> pd.DataFrame:
    """A summary table, or an empty frame when the study did not write it."""
    if path is None or not path.exists():
        return pd.DataFrame()
    return pq.read_table(path).to_pandas()


def study_cells(
    perf: pd.DataFrame, conv: pd.DataFrame, reps: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The cells of the study with their design values and replicates (from the replicates
    table, else the most replicates of any fit group in the convergence table)."""
    design = list(CELL_KEYS)
    reps = pd.DataFrame() if reps is None else reps
    source = next((t for t in (conv, perf, reps) if not t.empty), pd.DataFrame())
    if source.empty:
        return pd.DataFrame(columns=design)
    cells = add_design_factors(source.drop_duplicates("cell_id")[design])
    if not reps.empty:
        cells["replicates"] = cells["cell_id"].map(reps.set_index("cell_id")["replicates"])
    elif not conv.empty:
        counts = conv[conv["start"] != BEST].groupby("cell_id")["n_rep"].max()
        cells["replicates"] = cells["cell_id"].map(counts)
    return design_order(cells)


def design_order(cells: pd.DataFrame) -> pd.DataFrame:
    return cells.sort_values(["n", "separation", "sigma_ratio", "pi", "cell_id"], kind="stable")


def cell_labels(cells: pd.DataFrame) -> dict[str, str]:
    return {row["cell_id"]: cell_label(row) for _, row in cells.iterrows()}
