"""Report section 9, can the stopping rule be trusted? Premature and saddle rates with their
binomial MCSEs (docs/design.md section 2), over the study and in its slowest cells, and the
performance rows whose bias or empirical SE moves by more than 2 MCSEs on the common set
(section 6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from emsim.study.measures import BEST, COMMON_SET, OWN_SET
from emsim.study.report_html import esc, format_estimate, format_number, html_table, with_mcse
from emsim.study.schema import FIT_ID, PROCEDURE


def pooled_rates(conv: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Premature and saddle rates (%, with binomial MCSE) pooled over the non-derived starts
    (and whatever else is not in `keys`), weighted by replicates."""
    rows = conv[conv["start"] != BEST]
    n = rows["n_rep"].astype(float)
    work = rows.loc[:, keys].copy()
    work["n"] = n
    for status in ("premature", "saddle", "converged"):
        work[status] = rows[f"rate_{status}"].astype(float) * n
    work["iterations"] = rows["iterations_mean"].astype(float) * n
    work["polish"] = rows["polish_evals_mean"].astype(float) * n
    total = work.groupby(keys, sort=False).sum(numeric_only=True)
    out = pd.DataFrame(index=total.index)
    out["fits"] = total["n"].astype(np.int64).astype(str)
    for status in ("premature", "saddle"):
        p = total[status] / total["n"]
        mcse = np.sqrt(p * (1 - p) / total["n"])
        out[f"{status} %"] = [
            format_estimate(100 * a, 100 * b) for a, b in zip(p, mcse, strict=True)
        ]
    out["converged %"] = (100 * total["converged"] / total["n"]).map(lambda v: format_number(v, 3))
    out["polish E-steps"] = (total["polish"] / total["n"]).map(lambda v: format_number(v, 3))
    return out.reset_index()


def set_differences(perf: pd.DataFrame, labels: Mapping[str, str]) -> str:
    if perf.empty or "set" not in perf.columns:
        return ""
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
        return (
            "<p>Over the common set (replicates where every method and stopping rule gave a "
            "usable fit) no bias or empirical SE differs from its own-set value by more than "
            "2 Monte Carlo SEs.</p>"
        )
    differ = differ.assign(_gap=(differ["n_ok"] - differ["n_ok_common"])).sort_values(
        "_gap", ascending=False
    )
    shown = differ.head(20).reset_index()
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
    return (
        f"<p>{len(differ)} performance rows change by more than 2 Monte Carlo SEs (bias or "
        "empirical SE) when restricted to the common set: there, which fits fail is not "
        "random, and measures over each method's own usable fits flatter it. The 20 with the "
        "most replicates dropped:</p>" + html_table(table)
    )


def stopping_section(
    rules: Sequence[str],
    tolerance: object,
    threshold: object,
    perf: pd.DataFrame,
    conv: pd.DataFrame,
    labels: Mapping[str, str],
) -> str:
    """Section 9: how the study's stopping `rules` (at `tolerance`; `premature` beyond
    `threshold` SEs of the limit) fared: premature and saddle rates overall and in the slowest
    cells, and the rows where the common set changes the picture."""
    intro = (
        "<p>A stopping rule decides where an iteration ends, not where its maximum is. After "
        "a rule stops a fit, emsim continues the same iteration from that point with SQUAREM "
        "to its limit (the polish) and records <code>distance_to_limit</code>, the largest "
        "|theta_stop - theta_limit| / SE(theta_limit) over the estimated parameters, and "
        "<code>loglik_gap_to_limit</code>. A fit stopped by the rule is <code>saddle</code> "
        "where the observed information is not positive definite, <code>premature</code> "
        f"where the distance exceeds {esc(threshold)} SE, and <code>converged</code> "
        "(usable) only otherwise. "
        f"Rules compared: {esc(', '.join(rules))}; tolerance {esc(tolerance)}.</p>"
    )
    needed = {"stopping", "rate_premature", "rate_saddle", "polish_evals_mean"}
    if conv.empty or not needed <= set(conv.columns):
        return intro + '<p class="note">No convergence results.</p>'
    overall = pooled_rates(conv, list(PROCEDURE))
    primary = conv[conv["stopping"] == rules[0]] if rules[0] in set(conv["stopping"]) else conv
    slow = (
        primary[primary["start"] != BEST]
        .groupby("cell_id")["iterations_mean"]
        .mean()
        .sort_values(ascending=False)
        .head(3)
        .index
    )
    slowest = pooled_rates(conv[conv["cell_id"].isin(slow)], ["cell_id", *PROCEDURE])
    slowest.insert(0, "cell", slowest.pop("cell_id").map(lambda c: labels.get(c, c)))
    return (
        intro + "<p>Premature and saddle rates over every cell and start (the derived "
        "<code>best</code> excluded), with binomial Monte Carlo SEs:</p>"
        + html_table(overall)
        + "<p>The three slowest cells (most iterations under the first rule):</p>"
        + html_table(slowest)
        + set_differences(perf, labels)
        + "<p>Figures: <code>stopping</code>, <code>distance</code> and <code>zip</code> in "
        '<a href="#figures">section 11</a>.</p>'
    )
