"""Report section 13, the drill-down: per cell, the fits that did not converge, by status, each
with the `emsim replay` command that recomputes it alone from the study's seeds.

The statuses and their counts come from the fit rows themselves (`results/fits`, only the
columns shown are read, and only the rows whose status is not ``converged``); each status lists
its first `SHOWN_PER_STATUS` fits in the design's order (replicate, then model, method, rule
and start as the study lists them), which keeps the page small whatever the study's size. The
tables and figure 9 link each cell here through `report_html.cell_anchor`.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence

import pandas as pd
import pyarrow.parquet as pq
from markupsafe import Markup

from emsim.models import DEFAULT_STOPPING, STATUSES
from emsim.study.measures import BEST, CONVERGED
from emsim.study.report_cells import design_sorted
from emsim.study.report_html import MISSING, cell_anchor, format_number, html_table, render
from emsim.study.schema import ROW_KEY

SHOWN_PER_STATUS = 20
# What a fit row tells about a failure, beside its key: how far the fit stopped from the limit
# of its own iteration (in SEs and in log-likelihood) and how far below the replicate's best
# start it ended. A fit whose iteration hardly gains more but which another start beats by
# units of log-likelihood stalled at a saddle or a local maximum (docs/design.md section 2).
FAILURE_COLUMNS: tuple[str, ...] = (
    *ROW_KEY,
    "status",
    "iterations",
    "distance_to_limit",
    "loglik_gap_to_limit",
    "best_start_gap",
)


def read_failed_fits(fit_files: Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """The rows of `fit_files` whose status is not converged, with `FAILURE_COLUMNS` (those a
    file lacks, e.g. fits written before stopping rules, as missing values)."""
    frames = []
    for path in fit_files:
        present = set(pq.read_schema(path).names)
        columns = [c for c in FAILURE_COLUMNS if c in present]
        table = pq.read_table(path, columns=columns, filters=[("status", "!=", CONVERGED)])
        frames.append(table.to_pandas())
    failed = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for column in FAILURE_COLUMNS:
        if column not in failed:
            failed[column] = DEFAULT_STOPPING if column == "stopping" else pd.NA
    return failed[list(FAILURE_COLUMNS)]


def replay_command(fit: Mapping[str, object]) -> str:
    """The `emsim replay` call that recomputes `fit` (a fit row) from the study's seeds."""
    options = {
        "--cell": fit["cell_id"],
        "--replicate": fit["replicate"],
        "--model": fit["model"],
        "--method": fit["method"],
        "--start": fit["start"],
        "--stopping": fit["stopping"],
    }
    return "emsim replay " + " ".join(f"{k} {shlex.quote(str(v))}" for k, v in options.items())


def _status_table(shown: list[dict]) -> Markup:
    """The table of one status's failed fits shown (fit rows as records, in order)."""
    table = pd.DataFrame(
        {
            "replicate": [str(fit["replicate"]) for fit in shown],
            "model": [fit["model"] for fit in shown],
            "method": [fit["method"] for fit in shown],
            "stopping": [fit["stopping"] for fit in shown],
            "start": [fit["start"] for fit in shown],
            "iterations": [
                MISSING if pd.isna(fit["iterations"]) else f"{fit['iterations']}" for fit in shown
            ],
            "distance to limit (SE)": [format_number(fit["distance_to_limit"], 3) for fit in shown],
            "log-lik to limit": [format_number(fit["loglik_gap_to_limit"], 3) for fit in shown],
            "log-lik below best start": [format_number(fit["best_start_gap"], 3) for fit in shown],
            "replay": [replay_command(fit) for fit in shown],
        },
        dtype=object,
    )
    return html_table(table, "sortable drill")


def _cell_entry(cell_id: str, label: str, fits: pd.DataFrame, total: int | None) -> dict:
    # Each status's positions in the frame, then only the rows shown as records: a mask per
    # status over the frame, and iterrows over the rows shown, had been most of the time.
    positions = fits.groupby("status", sort=False).indices
    statuses = []
    # In the order of `STATUSES` (the failures after converged), others after by name.
    for status in [
        *(s for s in STATUSES if s in positions),
        *sorted(set(positions) - set(STATUSES)),
    ]:
        rows = positions[status]
        shown = fits.iloc[rows[:SHOWN_PER_STATUS]].to_dict("records")
        statuses.append({"status": status, "count": len(rows), "table": _status_table(shown)})
    return {
        "anchor": cell_anchor(cell_id),
        "cell_id": cell_id,
        "label": label,
        "failed": len(fits),
        "total": total,
        "statuses": statuses,
    }


def drilldown_section(
    failed: pd.DataFrame | None,
    cells: pd.DataFrame,
    labels: Mapping[str, str],
    conv: pd.DataFrame,
    orders: Mapping[str, Sequence[str]],
) -> Markup:
    """Section 13: per cell of `cells` (in design order) its failed fits by status, the first
    `SHOWN_PER_STATUS` of each with their replay command; `failed` from `read_failed_fits`
    (None: the fit rows were not given), the fits per cell from the convergence table."""
    totals = (
        conv[conv["start"] != BEST].groupby("cell_id")["n_rep"].sum()
        if not conv.empty
        else pd.Series(dtype=float)
    )
    entries = []
    if failed is not None and not cells.empty:
        # Within a status: by replicate, then the design's order of the procedures.
        ordered = design_sorted(failed, orders).sort_values("replicate", kind="stable")
        by_cell = dict(tuple(ordered.groupby("cell_id", sort=False)))
        for cell_id in cells["cell_id"]:
            fits = by_cell.get(cell_id, ordered.iloc[:0])
            total = int(totals[cell_id]) if cell_id in totals.index else None
            entries.append(_cell_entry(cell_id, labels.get(cell_id, cell_id), fits, total))
    return render(
        "sections/drilldown.html.j2",
        given=failed is not None,
        cells=entries,
        shown=SHOWN_PER_STATUS,
    )
