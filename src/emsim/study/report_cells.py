"""The study's cells as the report lists them: read from the summary tables, in design order
(sample size, separation, sigma ratio, pi), each with its label and replicates; and the order of
the report's tables: by the design, numerically, then model, method, stopping rule and start
in the study's order (`design_sorted`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from emsim.models import MODELS, PARAMS, STATUSES, STOPPING_RULES
from emsim.study.captions import add_design_factors, cell_label
from emsim.study.measures import BEST
from emsim.study.schema import CELL_KEYS, FIT_ID

if TYPE_CHECKING:
    from emsim.study.study import Study

# The cell's design factors, outermost first: the order of the figures against n.
DESIGN_KEYS: tuple[str, ...] = ("n", "separation", "sigma_ratio", "pi")
# Within a cell: the procedure and start, then the parameter and the status of a fit.
WITHIN_CELL_KEYS: tuple[str, ...] = (*FIT_ID, "parameter", "status")


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


def study_orders(study: Study | None) -> dict[str, Sequence[str]]:
    """The order of each within-cell factor's values: the study's config order (its models,
    methods, rules and starts, the derived ``best`` last), else the package's."""
    orders: dict[str, Sequence[str]] = {
        "model": tuple(MODELS),
        "method": ("em", "squarem"),
        "stopping": STOPPING_RULES,
        "start": (BEST,),
        "parameter": (*PARAMS, "sigma"),
        "status": STATUSES,
    }
    if study is not None:
        orders |= {
            "model": tuple(study.models),
            "method": tuple(study.methods),
            "stopping": tuple(study.stopping),
            "start": (*study.start_names, BEST),
        }
    return orders


def _rank(values: pd.Series, order: Sequence[str]) -> pd.Series:
    """Each value's place: its position in `order`, the values not in it after, by name."""
    # Factorised first: a Python look-up per distinct value, not per row (the drill-down's
    # tables have tens of thousands of rows).
    codes, distinct = pd.factorize(values.astype(str))
    others = sorted(set(distinct) - set(order))
    place = {v: i for i, v in enumerate([*order, *others])}
    by_code = np.array([place[v] for v in distinct] + [len(place)], dtype=float)
    return pd.Series(by_code[codes], index=values.index)


def design_sorted(frame: pd.DataFrame, orders: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """`frame`'s rows by the design of their cell, numerically (n, separation, sigma ratio,
    pi), then by model, method, stopping rule, start, parameter and status in `orders`
    (`study_orders`); the columns it has of these, a stable sort otherwise."""
    if frame.empty:
        return frame
    work = add_design_factors(frame) if "cell_id" in frame else frame.copy()
    keys = [k for k in DESIGN_KEYS if k in work.columns]
    for key in WITHIN_CELL_KEYS:
        if key in work.columns:
            work[f"_rank_{key}"] = _rank(work[key], orders.get(key, ()))
            keys.append(f"_rank_{key}")
    order = work.sort_values(keys, kind="stable").index
    return frame.loc[order]
