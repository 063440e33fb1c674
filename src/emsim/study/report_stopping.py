"""Report section 9, can the stopping rule be trusted? Per model x method x stopping rule the
usable, premature, saddle and capped shares with their binomial MCSEs (docs/design.md section
2), the median distance to the limit and the E-steps per fit, over the study and in its slowest
cells (the `stopping_rules` table and the distance histogram, section 6), and the performance
rows whose bias or empirical SE moves by more than 2 MCSEs on the common set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from markupsafe import Markup

from emsim.study.measures import BEST, COMMON_SET, CONVERGED, OWN_SET
from emsim.study.report_html import (
    MISSING,
    cell_anchor,
    format_number,
    html_table,
    render,
    with_mcse,
)
from emsim.study.schema import FIT_ID, PROCEDURE
from emsim.study.stopping import LOG10_EDGES, RULE_COLUMNS, median_bins

# The shares report section 9 shows per rule, with their column titles.
SHOWN_SHARES: tuple[tuple[str, str], ...] = (
    (CONVERGED, "usable %"),
    ("premature", "premature %"),
    ("saddle", "saddle %"),
    ("max_iterations", "capped %"),
)


def pooled_rules(rules: pd.DataFrame) -> pd.DataFrame:
    """The `stopping_rules` rows pooled over the cells per model x method x stopping rule:
    fits summed, shares weighted by fits (binomial MCSE of the pooled share), E-steps per fit
    weighted by fits with the MCSE of a stratified mean, sqrt(sum (n_c MCSE_c)^2) / N, the
    cells being independent."""
    keys = list(PROCEDURE)
    n = rules["n_fits"].astype(float)
    work = rules.loc[:, keys].assign(n_fits=n)
    for status, _ in SHOWN_SHARES:
        work[f"rate_{status}"] = rules[f"rate_{status}"].astype(float) * n
    work["loglik_evals_mean"] = rules["loglik_evals_mean"].astype(float) * n
    work["_var"] = (rules["loglik_evals_mean_mcse"].astype(float) * n) ** 2
    total = work.groupby(keys, sort=False).sum(numeric_only=True)
    fits = total["n_fits"].where(total["n_fits"] > 0)
    out = pd.DataFrame(index=total.index)
    out["n_fits"] = total["n_fits"].astype(np.int64)
    for status, _ in SHOWN_SHARES:
        p = total[f"rate_{status}"] / fits
        out[f"rate_{status}"] = p
        out[f"rate_{status}_mcse"] = np.sqrt(p * (1.0 - p) / fits)
    out["loglik_evals_mean"] = total["loglik_evals_mean"] / fits
    out["loglik_evals_mean_mcse"] = np.sqrt(total["_var"]) / fits
    return out.reset_index()


def _rules_table(rows: pd.DataFrame, distance: list[str]) -> pd.DataFrame:
    """The section's table of `rows` (pooled or one cell's): per procedure the fits, the
    shares with their MCSEs (in percent), the median distance as given and E-steps per fit."""
    table = rows.loc[:, list(PROCEDURE)].copy()
    table["fits"] = rows["n_fits"].astype(np.int64).astype(str)
    for status, title in SHOWN_SHARES:
        table[title] = with_mcse(rows, f"rate_{status}", 100.0)
    table["median distance (SE)"] = distance
    table["E-steps per fit"] = with_mcse(rows, "loglik_evals_mean", digits=3)
    return table


def _bin_text(lo: float, hi: float) -> str:
    """A median bin of the distance histogram, in SEs (its open end bins say so)."""
    if lo <= LOG10_EDGES[0]:
        return f"< {format_number(10.0**hi, 2)}"
    if hi >= LOG10_EDGES[-1]:
        return f"> {format_number(10.0**lo, 2)}"
    return f"{format_number(10.0**lo, 2)} to {format_number(10.0**hi, 2)}"


def _pooled_distance(pooled: pd.DataFrame, counts: pd.DataFrame) -> list[str]:
    """Each pooled row's median distance: the histogram bin that holds it."""
    bins = median_bins(counts).set_index(list(PROCEDURE))
    out = []
    for key in pooled[list(PROCEDURE)].itertuples(index=False, name=None):
        out.append(
            _bin_text(bins.at[key, "log10_lo"], bins.at[key, "log10_hi"])
            if key in bins.index
            else MISSING
        )
    return out


def slowest_cells(rules: pd.DataFrame, primary: str, k: int = 3) -> list[str]:
    """The `k` cells whose fits under the `primary` rule (else every rule) took the most
    E-steps, on average over their models and methods."""
    rows = rules[rules["stopping"] == primary] if primary in set(rules["stopping"]) else rules
    by_cell = rows.groupby("cell_id", sort=False)["loglik_evals_mean"].mean()
    return list(by_cell.sort_values(ascending=False, kind="stable").head(k).index)


def set_differences(perf: pd.DataFrame, labels: Mapping[str, str]) -> dict | None:
    """The performance rows whose bias or empirical SE moves by more than 2 MCSEs on the
    common set: their count and a table of the 20 with the most replicates dropped (None
    without the common set, no table where none moves)."""
    if perf.empty or "set" not in perf.columns:
        return None
    keys = ["cell_id", *FIT_ID, "parameter"]
    own = perf[perf["set"] == OWN_SET].set_index(keys)
    # Named so that _with_mcse finds "<measure>_common_mcse" beside "<measure>_common".
    renamed = {
        "n_ok": "n_ok_common",
        "bias": "bias_common",
        "bias_mcse": "bias_common_mcse",
        "empse": "empse_common",
        "empse_mcse": "empse_common_mcse",
    }
    common = perf[perf["set"] == COMMON_SET].set_index(keys)[list(renamed)].rename(columns=renamed)
    both = own.join(common, how="inner")
    both = both[both.index.get_level_values("start") != BEST]
    shifted = (both["bias"] - both["bias_common"]).abs() > 2 * both["bias_mcse"]
    widened = (both["empse"] - both["empse_common"]).abs() > 2 * both["empse_mcse"]
    differ = both[(shifted | widened) & (both["n_ok"] != both["n_ok_common"])]
    if differ.empty:
        return {"count": 0, "table": None}
    differ = differ.assign(_gap=(differ["n_ok"] - differ["n_ok_common"])).sort_values(
        "_gap", ascending=False
    )
    shown = differ.head(20).reset_index()
    anchors = [cell_anchor(c) for c in shown["cell_id"]]
    table = pd.DataFrame(
        {
            "cell": shown["cell_id"].map(lambda c: labels.get(c, c)),
            "model": shown["model"],
            "method": shown["method"],
            "stopping": shown["stopping"],
            "start": shown["start"],
            "parameter": shown["parameter"],
            "n_ok own / common": shown["n_ok"].astype(str)
            + " / "
            + shown["n_ok_common"].astype(str),
            "bias own": with_mcse(shown, "bias"),
            "bias common": with_mcse(shown, "bias_common"),
            "EmpSE own": with_mcse(shown, "empse"),
            "EmpSE common": with_mcse(shown, "empse_common"),
        }
    )
    return {"count": len(differ), "table": html_table(table, links={"cell": anchors})}


def stopping_section(
    rules: Sequence[str],
    threshold: object,
    perf: pd.DataFrame,
    rule_rows: pd.DataFrame,
    counts: pd.DataFrame,
    labels: Mapping[str, str],
) -> Markup:
    """Section 9: how the study's stopping `rules` fared (`premature` beyond `threshold` SEs
    of the limit), per model x method x rule from the `stopping_rules` table (`rule_rows`)
    and the distance histogram (`counts`): over the study and in its slowest cells; and the
    rows where the common set changes the picture."""
    differences = set_differences(perf, labels)
    if rule_rows.empty or not set(RULE_COLUMNS) <= set(rule_rows.columns):
        return render(
            "sections/stopping.html.j2",
            rules=rules,
            threshold=threshold,
            overall=None,
            differences=differences,
        )
    pooled = pooled_rules(rule_rows)
    overall = _rules_table(pooled, _pooled_distance(pooled, counts))
    slow = slowest_cells(rule_rows, rules[0])
    rows = rule_rows[rule_rows["cell_id"].isin(slow)]
    rows = rows.assign(_rank=rows["cell_id"].map({c: i for i, c in enumerate(slow)}))
    rows = rows.sort_values("_rank", kind="stable")
    slowest = _rules_table(rows, with_mcse(rows, "distance_median", digits=3))
    slowest.insert(0, "cell", rows["cell_id"].map(lambda c: labels.get(c, c)).to_numpy())
    return render(
        "sections/stopping.html.j2",
        rules=rules,
        threshold=threshold,
        overall=html_table(overall),
        slowest=html_table(slowest, links={"cell": [cell_anchor(c) for c in rows["cell_id"]]}),
        differences=differences,
    )
