"""The study's HTML report: one self-contained file in ADEMP form.

ADEMP (Morris, White & Crowther 2019): aims, data-generating mechanisms, estimands, methods and
performance measures, followed by the results (tables with Monte Carlo SEs, every figure with its
caption) and the provenance of the run. The file embeds its images (base64 PNG) and its CSS and
links to nothing, so it opens offline, can be mailed, and stays readable when results/ is moved.

Numbers come from the summary tables (`emsim.study.measures`) and captions from
`emsim.study.captions.CAPTIONS`; this module only formats them.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
import platform
from collections.abc import Mapping
from importlib import metadata as _metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

from emsim.models import MODELS, STATUSES, known_params
from emsim.study.captions import CAPTIONS, FIGURE_NAMES, add_design_factors, cell_label
from emsim.study.measures import BEST, COMMON_SET, OWN_SET, failure_table
from emsim.study.parquet_io import atomic_write, emsim_version, git_commit, read_metadata
from emsim.study.precision import STOP_FIXED, STOP_MAX, STOP_MET
from emsim.study.schema import CELL_KEYS, FIT_ID, PROCEDURE
from emsim.study.summary import SummaryFiles

MISSING = "–"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d1d1f; background: #fff; line-height: 1.45; }
main { max-width: 1200px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.8rem; margin-bottom: .2rem; }
h2 { border-bottom: 2px solid #d0d7de; padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { margin-top: 1.4rem; }
.subtitle { color: #57606a; margin-top: 0; }
nav ol { columns: 2; font-size: .95rem; }
nav a, a { color: #0969da; text-decoration: none; }
.table-wrap { overflow-x: auto; max-height: 38rem; overflow-y: auto; margin: .6rem 0 1rem;
              border: 1px solid #d0d7de; border-radius: 6px; }
table { border-collapse: collapse; font-size: .82rem; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .55rem; border-bottom: 1px solid #eaeef2; text-align: right;
         white-space: nowrap; }
th { background: #f6f8fa; position: sticky; top: 0; z-index: 1; }
td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
table.kv td:first-child { font-weight: 600; }
table.kv td { text-align: left; white-space: normal; }
details { margin: .5rem 0; }
summary { cursor: pointer; font-weight: 600; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #d0d7de; border-radius: 6px; }
figcaption { color: #3d444d; font-size: .92rem; margin-top: .4rem; }
pre { background: #f6f8fa; padding: .8rem; border-radius: 6px; overflow-x: auto;
      font-size: .8rem; }
.note { color: #57606a; font-size: .9rem; }
code { background: #f6f8fa; padding: 0 .2rem; border-radius: 3px; }
"""


# --- formatting -----------------------------------------------------------------------------


def _finite(x: object) -> bool:
    try:
        return math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def format_number(value: object, digits: int = 4) -> str:
    """`value` with `digits` significant digits; a dash for missing or non-finite values."""
    if not _finite(value):
        return MISSING
    return f"{float(value):.{digits}g}"  # type: ignore[arg-type]


def format_estimate(estimate: object, mcse: object) -> str:
    """ "estimate (MCSE)", both rounded to the MCSE's precision (two significant digits of it).

    Digits beyond the Monte Carlo error are noise, so they are not shown. Without a usable MCSE
    the estimate alone is shown with four significant digits.
    """
    if not _finite(estimate):
        return MISSING
    est = float(estimate)  # type: ignore[arg-type]
    if not _finite(mcse) or float(mcse) <= 0:  # type: ignore[arg-type]
        return format_number(est)
    err = float(mcse)  # type: ignore[arg-type]
    decimals = min(10, max(0, 1 - math.floor(math.log10(err))))
    return f"{est:.{decimals}f} ({err:.{decimals}f})"


def _with_mcse(frame: pd.DataFrame, column: str, scale: float = 1.0) -> list[str]:
    """Column `column` of `frame` formatted as "estimate (MCSE)" from `column` and its _mcse."""
    mcse = frame[f"{column}_mcse"].astype(float) * scale
    return [
        format_estimate(e, m)
        for e, m in zip(frame[column].astype(float) * scale, mcse, strict=True)
    ]


def _percent(value: object) -> str:
    return f"{100 * float(value):.1f}%" if _finite(value) else MISSING  # type: ignore[arg-type]


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def html_table(frame: pd.DataFrame, css_class: str = "") -> str:
    """An HTML table of already formatted (string) cells, escaped, in a scrolling wrapper."""
    if frame.empty:
        return '<p class="note">No rows.</p>'
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False, name=None)
    )
    cls = f' class="{_esc(css_class)}"' if css_class else ""
    return (
        f'<div class="table-wrap"><table{cls}><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{rows}\n</tbody></table></div>"
    )


def _kv_table(pairs: Mapping[str, object]) -> str:
    frame = pd.DataFrame({"": list(pairs), "value": [str(v) for v in pairs.values()]})
    return html_table(frame, "kv")


# --- reading --------------------------------------------------------------------------------


def _read(path: Path | None) -> pd.DataFrame:
    if path is None or not path.exists():
        return pd.DataFrame()
    return pq.read_table(path).to_pandas()


def _cells(
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
    return _design_order(cells)


def _design_order(cells: pd.DataFrame) -> pd.DataFrame:
    return cells.sort_values(["n", "separation", "sigma_ratio", "pi", "cell_id"], kind="stable")


def _cell_labels(cells: pd.DataFrame) -> dict[str, str]:
    return {row["cell_id"]: cell_label(row) for _, row in cells.iterrows()}


# --- sections -------------------------------------------------------------------------------


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{_esc(anchor)}"><h2>{_esc(title)}</h2>\n{body}\n</section>'


def _aims(config: Mapping) -> str:
    return (
        "<p>To evaluate maximum likelihood estimation of two-component univariate Gaussian "
        "mixtures by the EM algorithm, plain and SQUAREM-accelerated, as in the seed document "
        "(which fits the weight p(Z=1) by EM with the means and a common standard deviation "
        "known): how biased and how precise are the estimates, do Wald intervals from the "
        "observed information reach their nominal coverage, how often and how does EM fail, "
        "and how fast does it converge compared with the theoretical rate (the fraction of "
        "missing information) - across sample size, separation of the components and mixing "
        "proportion, from several starting values.</p>"
        f"<p>Study: <b>{_esc(config.get('study', 'emsim study'))}</b>.</p>"
    )


def _grid_text(config: Mapping) -> str:
    grid = config.get("grid")
    parts = []
    if isinstance(grid, Mapping):
        items = [f"{_esc(k)} ∈ {{{_esc(', '.join(map(str, v)))}}}" for k, v in grid.items()]
        parts.append("<p>Full-factorial grid: " + "; ".join(items) + ".</p>")
    scenarios = config.get("scenarios") or []
    if scenarios:
        parts.append(f"<p>Plus {len(scenarios)} explicit scenario(s).</p>")
    return "".join(parts)


def _data_generation(config: Mapping, cells: pd.DataFrame) -> str:
    replicates = config.get("replicates")
    text = (
        "<p>Each replicate draws n observations as the seed's <code>gen_data</code> does: a "
        "component label Z = 1 when a uniform draw is at most pi (else Z = 2), then Y ~ "
        "Normal(mu_Z, sigma_Z). Every replicate has its own random stream, derived from the "
        "study seed and the cell's parameter values, so results do not depend on chunking, "
        "order or core count, and all models, methods and starts of a replicate see the same "
        "data (common random numbers).</p>"
    )
    if isinstance(replicates, Mapping):
        text += (
            f"<p>Replicates per cell: adaptive, <b>{_esc(replicates.get('min'))}</b> to "
            f"<b>{_esc(replicates.get('max'))}</b> (more in rounds of "
            f"{_esc(replicates.get('step', replicates.get('min')))} while a precision target "
            'is missed; <a href="#replicates">section 10</a>).</p>'
        )
    elif replicates is not None:
        text += f"<p>Replicates per cell: <b>{_esc(replicates)}</b>.</p>"
    text += _grid_text(config)
    if cells.empty:
        return text + '<p class="note">No cells in the summary.</p>'
    shown = pd.DataFrame(
        {
            "cell": cells["cell_id"],
            "n": cells["n"].map(lambda v: f"{int(v)}"),
            "mu1": cells["mu1"].map(format_number),
            "mu2": cells["mu2"].map(format_number),
            "sigma1": cells["sigma1"].map(format_number),
            "sigma2": cells["sigma2"].map(format_number),
            "pi": cells["pi"].map(format_number),
            "|mu2 - mu1|/sigma1": cells["separation"].map(format_number),
        }
    )
    if "replicates" in cells:
        shown["replicates"] = cells["replicates"].map(
            lambda v: f"{int(v)}" if _finite(v) else MISSING
        )
    return text + f"<h3>Scenarios ({len(cells)} cells)</h3>" + html_table(shown)


def _estimands() -> str:
    rows = pd.DataFrame(
        {
            "model": list(MODELS),
            "estimated": [", ".join(MODELS[m]) for m in MODELS],
            "held at the true value": [", ".join(known_params(m)) or MISSING for m in MODELS],
        }
    )
    return (
        "<p>The estimands are the data-generating parameter values of each cell: pi = P(Z=1), "
        "mu1, mu2, sigma1, sigma2. Estimates are aligned to the truth's component labels "
        "before comparison (label switching). Each model estimates some of them and holds the "
        "others at their true values:</p>"
        + html_table(rows)
        + "<p>The <code>equal_var</code> model's common sigma is reported once, as parameter "
        "<code>sigma</code>, with true value sigma1 where sigma1 = sigma2; in cells with "
        "unequal sigmas it has no true value (the model is misspecified) and only its "
        "empirical and model-based SEs are reported.</p>"
    )


def _methods(config: Mapping, perf: pd.DataFrame, conv: pd.DataFrame) -> str:
    source = conv if not conv.empty else perf
    models = config.get("models") or (
        list(dict.fromkeys(source["model"])) if not source.empty else []
    )
    methods = config.get("methods") or (
        list(dict.fromkeys(source["method"])) if not source.empty else []
    )
    starts = list(dict.fromkeys(source["start"])) if not source.empty else []
    text = (
        f"<p>Models: {_esc(', '.join(models) or MISSING)}. Methods: "
        f"{_esc(', '.join(methods) or MISSING)} (<code>em</code>: plain EM; "
        "<code>squarem</code>: SQUAREM acceleration, Varadhan &amp; Roland 2008). Every "
        "replicate is fitted with every model x method x start.</p>"
    )
    rows = []
    for st in config.get("starts") or []:
        detail = {k: v for k, v in st.items() if k not in ("name", "strategy")}
        rows.append(
            {
                "start": st.get("name", ""),
                "strategy": st.get("strategy", ""),
                "settings": json.dumps(detail) if detail else MISSING,
            }
        )
    rows.append(
        {
            "start": BEST,
            "strategy": "derived",
            "settings": "per replicate, the start with the highest final log-likelihood "
            "(nonfinite fits excluded)",
        }
    )
    text += "<h3>Starts</h3>" + html_table(pd.DataFrame(rows))
    if starts:
        text += f"<p>Starts in the results: {_esc(', '.join(map(str, starts)))}.</p>"
    em = config.get("em") or {}
    tol = em.get("tolerance", "1e-05 (default)")
    cap = em.get("max_iterations", "1000 (default)")
    text += (
        "<p>Stopping rule (the seed's): stop after the first iteration whose increase of the "
        f"total log-likelihood is below <b>{_esc(tol)}</b>, or after <b>{_esc(cap)}</b> "
        "iterations. Each fit ends with exactly one status: "
        f"{_esc(', '.join(STATUSES))}.</p>"
    )
    return text


def _measures_text(level: float) -> str:
    items = [
        "bias = mean(est) - theta; MCSE = empSE / sqrt(n_ok)",
        "empirical SE (empSE) = sd(est); MCSE = empSE / sqrt(2 (n_ok - 1))",
        "MSE = mean((est - theta)^2); MCSE = sqrt(sum(((est - theta)^2 - MSE)^2) / "
        "(n_ok (n_ok - 1))); RMSE = sqrt(MSE) with MCSE = MCSE(MSE) / (2 RMSE)",
        f"coverage C of the {level:.0%} Wald interval est +- z SE; MCSE = sqrt(C (1 - C) / n)",
        "model SE = sqrt(mean(SE^2)); MCSE = sqrt(Var(SE^2) / (4 n_se modSE^2))",
        "relative error of the model SE = 100 (modSE / empSE - 1) %, both over the same n_se "
        "fits; MCSE = 100 (modSE / empSE) sqrt(Var(SE^2) / (4 n_se modSE^4) + 1 / (2 (n_se - 1)))",
        "convergence: share of fits per status (failure rate with binomial MCSE), iterations "
        "of converged fits (mean, median, 90th percentile), log-likelihood evaluations, run "
        "time, and EM's empirical rate against the fraction of missing information",
    ]
    return (
        "<p>Morris, White &amp; Crowther (2019), Table 6, per cell x model x method x stopping "
        "rule x start (x parameter), over the n_ok replicates whose fit is usable (status "
        "<code>converged</code>: stopped by the rule at a maximum; of n_rep); other statuses "
        "are failures and are missing for the performance measures. Coverage, the model SE and "
        "its relative error use the n_se usable fits with a finite SE, all three the same "
        "fits. Each row comes in two sets: <code>own</code> (the group's own usable fits) "
        "and <code>common</code> (the replicates in which every method and stopping rule of "
        "the same model and start gave a usable fit). With fewer than 2 fits the SD-based "
        "measures are missing.</p><ul>" + "".join(f"<li>{_esc(i)}</li>" for i in items) + "</ul>"
    )


def _performance_tables(perf: pd.DataFrame, labels: Mapping[str, str]) -> str:
    if perf.empty:
        return '<p class="note">No performance results.</p>'
    out = [
        '<p class="note">Each entry is "estimate (Monte Carlo SE)". Coverage and the relative '
        "error of the model SE are in percent.</p>"
    ]
    if "set" in perf.columns:
        perf = perf[perf["set"] == OWN_SET]
    for i, (model, rows) in enumerate(perf.groupby("model", sort=False)):
        table = pd.DataFrame(
            {
                "cell": rows["cell_id"].map(lambda c: labels.get(c, c)),
                "method": rows["method"],
                "stopping": rows["stopping"],
                "start": rows["start"],
                "parameter": rows["parameter"],
                "true value": rows["true_value"].map(format_number),
                "n_ok / n_rep": rows["n_ok"].astype(str) + " / " + rows["n_rep"].astype(str),
                "bias": _with_mcse(rows, "bias"),
                "empirical SE": _with_mcse(rows, "empse"),
                "RMSE": _with_mcse(rows, "rmse"),
                "coverage %": _with_mcse(rows, "coverage", 100.0),
                "model SE": _with_mcse(rows, "modse"),
                "rel. error model SE %": _with_mcse(rows, "relerr_modse"),
            }
        )
        is_open = " open" if i == 0 else ""
        out.append(
            f"<details{is_open}><summary>model {_esc(model)} ({len(rows)} rows)</summary>"
            + html_table(table)
            + "</details>"
        )
    return "\n".join(out)


def _convergence_table(conv: pd.DataFrame, labels: Mapping[str, str]) -> str:
    if conv.empty:
        return '<p class="note">No convergence results.</p>'
    table = pd.DataFrame(
        {
            "cell": conv["cell_id"].map(lambda c: labels.get(c, c)),
            "model": conv["model"],
            "method": conv["method"],
            "stopping": conv["stopping"],
            "start": conv["start"],
            "n_rep": conv["n_rep"].astype(str),
            "failure rate %": _with_mcse(conv, "failure_rate", 100.0),
            "iterations mean": conv["iterations_mean"].map(lambda v: format_number(v, 3)),
            "median": conv["iterations_median"].map(lambda v: format_number(v, 3)),
            "p90": conv["iterations_p90"].map(lambda v: format_number(v, 3)),
            "loglik evals": conv["loglik_evals_mean"].map(lambda v: format_number(v, 3)),
            "runtime ms": (1000 * conv["runtime_mean_s"].astype(float)).map(
                lambda v: format_number(v, 3)
            ),
            "rate empirical": conv["rate_empirical_mean"].map(lambda v: format_number(v, 3)),
            "rate theory": conv["rate_theory_mean"].map(lambda v: format_number(v, 3)),
        }
    )
    return (
        '<p class="note">Iterations and rates over converged fits; evaluations and run time '
        "over all fits. The start <code>best</code> repeats the chosen start's fit, so its "
        "cost is that of one fit, not of all the starts tried.</p>"
        f"<details><summary>convergence by cell ({len(table)} rows)</summary>"
        + html_table(table)
        + "</details>"
    )


def _failure_table(conv: pd.DataFrame) -> str:
    summary = failure_table(conv)
    if summary.empty:
        return '<p class="note">No fits.</p>'
    table = summary[list(FIT_ID)].copy()
    table["fits"] = summary["n_fits"].astype(str)
    table["failed"] = summary["failure_rate"].map(_percent)
    for status in STATUSES:
        table[status] = summary[f"rate_{status}"].map(_percent)
    return "<p>Share of all fits of the study (every cell) ending in each status.</p>" + html_table(
        table
    )


def _pooled_rates(conv: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
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


def _set_differences(perf: pd.DataFrame, labels: Mapping[str, str]) -> str:
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
            "bias own": _with_mcse(shown, "bias"),
            "bias common": _with_mcse(shown, "bias_common"),
            "EmpSE own": _with_mcse(shown, "empse"),
            "EmpSE common": _with_mcse(shown, "empse_common"),
        }
    )
    return (
        f"<p>{len(differ)} performance rows change by more than 2 Monte Carlo SEs (bias or "
        "empirical SE) when restricted to the common set: there, which fits fail is not "
        "random, and measures over each method's own usable fits flatter it. The 20 with the "
        "most replicates dropped:</p>" + html_table(table)
    )


def _stopping_section(config: Mapping, perf: pd.DataFrame, conv: pd.DataFrame, labels) -> str:
    em = config.get("em") or {}
    rules = em.get("stopping") or ["abs"]
    tolerance = em.get("tolerance", 1e-5)
    threshold = em.get("premature_threshold", 0.1)
    intro = (
        "<p>A stopping rule decides where an iteration ends, not where its maximum is. After "
        "a rule stops a fit, emsim continues the same iteration from that point with SQUAREM "
        "to its limit (the polish) and records <code>distance_to_limit</code>, the largest "
        "|theta_stop - theta_limit| / SE(theta_limit) over the estimated parameters, and "
        "<code>loglik_gap_to_limit</code>. A fit stopped by the rule is <code>saddle</code> "
        "where the observed information is not positive definite, <code>premature</code> "
        f"where the distance exceeds {_esc(threshold)} SE, and <code>converged</code> "
        "(usable) only otherwise. "
        f"Rules compared: {_esc(', '.join(rules))}; tolerance {_esc(tolerance)}.</p>"
    )
    needed = {"stopping", "rate_premature", "rate_saddle", "polish_evals_mean"}
    if conv.empty or not needed <= set(conv.columns):
        return intro + '<p class="note">No convergence results.</p>'
    overall = _pooled_rates(conv, list(PROCEDURE))
    primary = conv[conv["stopping"] == rules[0]] if rules[0] in set(conv["stopping"]) else conv
    slow = (
        primary[primary["start"] != BEST]
        .groupby("cell_id")["iterations_mean"]
        .mean()
        .sort_values(ascending=False)
        .head(3)
        .index
    )
    slowest = _pooled_rates(conv[conv["cell_id"].isin(slow)], ["cell_id", *PROCEDURE])
    slowest.insert(0, "cell", slowest.pop("cell_id").map(lambda c: labels.get(c, c)))
    return (
        intro + "<p>Premature and saddle rates over every cell and start (the derived "
        "<code>best</code> excluded), with binomial Monte Carlo SEs:</p>"
        + html_table(overall)
        + "<p>The three slowest cells (most iterations under the first rule):</p>"
        + html_table(slowest)
        + _set_differences(perf, labels)
        + "<p>Figures: <code>stopping</code>, <code>distance</code> and <code>zip</code> in "
        '<a href="#figures">section 11</a>.</p>'
    )


# --- replicates and Monte Carlo precision ----------------------------------------------------

MEASURE_NAMES = {"bias_mcse": "MCSE of the bias", "coverage_mcse": "MCSE of the coverage"}
STOP_NAMES = {
    STOP_MET: "met",
    STOP_MAX: "max (target missed)",
    STOP_FIXED: "fixed",
}


def _targets(config: Mapping, prec: pd.DataFrame) -> list[tuple[str, str, float]]:
    """(measure, parameter, target) of each precision target: from the config's `precision`
    block, else from the precision table."""
    # TEMP(i20-config): until the report takes a Study (study.precision).
    from emsim.study.config import _parse_precision
    from emsim.study.starts import expand_starts

    try:
        precision = _parse_precision(config, expand_starts(config["starts"]))
    except (KeyError, TypeError, ValueError):
        precision = None
    if precision is not None:
        return [(t.measure, t.parameter, t.value) for t in precision.targets]
    if prec.empty:
        return []
    rows = prec.drop_duplicates(["measure", "parameter"])
    return list(zip(rows["measure"], rows["parameter"], rows["target"].astype(float), strict=True))


def _target_name(measure: str, parameter: str) -> str:
    return f"{MEASURE_NAMES.get(measure, measure)} of {parameter}"


def _scope_text(block: Mapping) -> str:
    parts = []
    for key in ("models", "methods", "stopping", "starts"):
        chosen = block.get(key)
        parts.append(f"{key}: {', '.join(map(str, chosen)) if chosen else 'all'}")
    return "; ".join(parts)


def _reached(row: pd.Series | None) -> str:
    """A target's MCSE reached in a cell, marked met (✓) or missed (✗)."""
    if row is None:
        return MISSING
    if int(row["rows"]) == 0:
        return "no rows"
    mark = "✓" if bool(row["met"]) else "✗"
    value = format_number(row["reached"], 3) if _finite(row["reached"]) else "no MCSE"
    return f"{value} {mark}"


def _worst_row(row: pd.Series) -> str:
    parts = [row.get(f"worst_{key}") for key in FIT_ID]
    return " / ".join(str(p) for p in parts if pd.notna(p)) or MISSING


def _replicates_section(
    config: Mapping, reps: pd.DataFrame, prec: pd.DataFrame, cells: pd.DataFrame
) -> str:
    """The replicate plan, the replicates and the MCSE reached per cell and target, and the
    cells that stopped at max (or, in a fixed study, ended) without meeting a target."""
    plan = config.get("replicates")
    adaptive = isinstance(plan, Mapping)
    targets = _targets(config, prec)
    figure = FIGURE_NAMES.index("replicates") + 1
    see = f'<a href="#fig-replicates">Figure {figure}</a>'
    out = []
    if adaptive:
        out.append(
            f"<p>Each cell ran <b>{_esc(plan.get('min'))}</b> replicates, then "
            f"<b>{_esc(plan.get('step', plan.get('min')))}</b> more per round while one of its "
            f"precision targets was missed, up to <b>{_esc(plan.get('max'))}</b>. Replicates "
            "are added, never redrawn: the first r replicates of a cell are the same whatever "
            "the targets decided.</p>"
        )
    if targets:
        block = config.get("precision") or {}
        out.append(
            "<p>Targets (Monte Carlo SE at most the target in every performance row they apply "
            "to: own set, rows with a true value; a row without an MCSE misses it). Applies to "
            f"{_esc(_scope_text(block) if block else 'every row')}.</p>"
            + html_table(
                pd.DataFrame(
                    {
                        "target": [_target_name(m, p) for m, p, _ in targets],
                        "at most": [format_number(v) for *_, v in targets],
                    }
                )
            )
        )
    if reps.empty:
        if cells.empty or "replicates" not in cells or not cells["replicates"].notna().any():
            return "".join(out) + '<p class="note">No replicates table.</p>'
        reps = cells[[*CELL_KEYS, "replicates"]].assign(rounds=np.nan, stop=None)
        out.append(
            '<p class="note">The replicates table is missing: replicates per cell from the '
            "convergence table.</p>"
        )
    table = _design_order(add_design_factors(reps))
    labels = _cell_labels(table)
    counts = table["replicates"].astype(float)
    n_cells = len(table)
    if not targets and counts.nunique() == 1:
        out.append(
            f"<p>All {n_cells} cells ran <b>{int(counts.iloc[0])}</b> replicates (a fixed "
            f"number; no precision targets). {see} shows them across the design.</p>"
        )
        return "".join(out)
    stop = table["stop"].fillna("") if "stop" in table else pd.Series("", index=table.index)
    met, at_max = int((stop == STOP_MET).sum()), int((stop == STOP_MAX).sum())
    spread = (
        f"{int(counts.iloc[0])} each"
        if counts.nunique() == 1
        else f"from {int(counts.min())} to {int(counts.max())}, median {counts.median():g}"
    )
    summary = f"<p>{n_cells} cells ran {int(counts.sum())} replicates in all ({spread}). "
    if adaptive:
        high = float(plan.get("max", counts.max()))
        summary += (
            f"{met} met every target, {at_max} stopped at the maximum without meeting one "
            f"(listed below). A fixed study of {int(high)} replicates per cell would have "
            f"run {int(high * n_cells)}: this one ran "
            f"{_percent(counts.sum() / (high * n_cells))} of that. "
        )
    elif targets:
        summary += (
            "The number of replicates was fixed: the targets are assessed after it, not pursued. "
        )
    out.append(summary + f"{see} shows the replicates across the design.</p>")
    shown = pd.DataFrame(
        {
            "cell": table["cell_id"].map(labels),
            "replicates": counts.map(lambda v: f"{int(v)}"),
            "rounds": table["rounds"].map(lambda v: f"{int(v)}" if _finite(v) else MISSING),
            "stop": stop.map(lambda v: STOP_NAMES.get(v, v or MISSING)),
        }
    )
    by_target = (
        {key: rows.set_index("cell_id") for key, rows in prec.groupby(["measure", "parameter"])}
        if not prec.empty
        else {}
    )
    for measure, parameter, value in targets:
        rows = by_target.get((measure, parameter))
        shown[f"{_target_name(measure, parameter)} (≤ {format_number(value)})"] = [
            _reached(rows.loc[c] if rows is not None and c in rows.index else None)
            for c in table["cell_id"]
        ]
    if targets:
        out.append(
            '<p class="note">Per target: the largest MCSE reached over the rows it applies '
            "to, ✓ met, ✗ missed.</p>"
        )
    out.append(html_table(shown))
    if not targets:
        return "".join(out)
    heading = (
        "Cells that stopped at max without meeting a target"
        if adaptive
        else "Targets missed (a fixed study: no more replicates were run)"
    )
    out.append(f'<h3 id="missed-targets">{_esc(heading)}</h3>')
    missed = prec[~prec["met"].astype(bool)] if not prec.empty else prec
    if adaptive and not missed.empty:
        missed = missed[missed["cell_id"].isin(table.loc[stop == STOP_MAX, "cell_id"])]
    if missed.empty:
        out.append(
            "<p>None: every cell met every target.</p>"
            if not prec.empty
            else '<p class="note">No precision table.</p>'
        )
        return "".join(out)
    order = {c: i for i, c in enumerate(table["cell_id"])}
    missed = missed.assign(_order=missed["cell_id"].map(order)).sort_values("_order", kind="stable")
    out.append(
        f"<p>{missed['cell_id'].nunique()} cell(s), {len(missed)} target(s) missed; the worst "
        "row is the performance row (model / method / stopping / start) with the largest MCSE, "
        "or the first without one.</p>"
        + html_table(
            pd.DataFrame(
                {
                    "cell": missed["cell_id"].map(lambda c: labels.get(c, c)),
                    "replicates": missed["replicates"].map(lambda v: f"{int(v)}"),
                    "target": [
                        f"{_target_name(m, p)} ≤ {format_number(v)}"
                        for m, p, v in zip(
                            missed["measure"], missed["parameter"], missed["target"], strict=True
                        )
                    ],
                    "reached": missed["reached"].map(
                        lambda v: format_number(v, 3) if _finite(v) else "no MCSE"
                    ),
                    "rows": missed["rows"].map(lambda v: f"{int(v)}"),
                    "worst row": [_worst_row(r) for _, r in missed.iterrows()],
                }
            )
        )
    )
    return "".join(out)


def _embed_png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _figures(figures: Mapping[str, Path]) -> str:
    out = []
    for i, name in enumerate(FIGURE_NAMES, start=1):
        path = figures.get(name)
        caption = f"<b>Figure {i}.</b> {_esc(CAPTIONS[name])}"
        if path is not None and path.exists():
            out.append(
                f'<figure id="fig-{_esc(name)}"><img src="{_embed_png(path)}" '
                f'alt="{_esc(name)} figure"><figcaption>{caption}</figcaption></figure>'
            )
        else:
            out.append(f'<p class="note">Figure {i} ({_esc(name)}.png) was not drawn.</p>')
    # Figures given beyond the standard set (e.g. bias of another parameter) are shown too.
    extra = sorted(
        (name, path) for name, path in figures.items() if name not in FIGURE_NAMES and path.exists()
    )
    for j, (name, path) in enumerate(extra, start=len(FIGURE_NAMES) + 1):
        out.append(
            f'<figure><img src="{_embed_png(path)}" alt="{_esc(name)}">'
            f"<figcaption><b>Figure {j}.</b> {_esc(path.name)}</figcaption></figure>"
        )
    return "\n".join(out)


def _version(package: str) -> str:
    try:
        return _metadata.version(package)
    except _metadata.PackageNotFoundError:
        return "not installed"


def _format_seconds(value: object) -> str:
    if not _finite(value):
        return str(value)
    s = float(value)  # type: ignore[arg-type]
    return f"{s:.1f} s ({s / 60:.1f} min)" if s >= 60 else f"{s:.2f} s"


def _config_text(config: Mapping) -> str:
    """The config as YAML, the form the user wrote it in (flow style keeps pairs on one line)."""
    plain = json.loads(json.dumps(config, default=str))
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=None, allow_unicode=True)


def collect_provenance(
    provenance: Mapping[str, object],
    config: Mapping,
    summary_meta: Mapping[str, str],
    conv: pd.DataFrame,
) -> dict[str, str]:
    """What ran, with which versions and inputs; entries of `provenance` take precedence.

    Keys are snake_case (``git_commit``, ``config_hash``, ``wall_time_s``, ...); any extra key
    the caller passes is shown as well.
    """
    total = int(conv.loc[conv["start"] != BEST, "n_rep"].sum()) if not conv.empty else 0
    info: dict[str, object] = {
        "emsim_version": emsim_version(),
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "pandas_version": pd.__version__,
        "pyarrow_version": _version("pyarrow"),
        "matplotlib_version": _version("matplotlib"),
        "seaborn_version": _version("seaborn"),
        "snakemake_version": _version("snakemake"),
        "platform": platform.platform(),
        "git_commit": summary_meta.get("git_commit") or git_commit() or "not a git checkout",
        "config_hash": summary_meta.get("config_hash") or MISSING,
        "seed": config.get("seed", summary_meta.get("seed", MISSING)),
        "total_fits": total,
        "wall_time_s": "not recorded",
        "summary_created": summary_meta.get("created", MISSING),
        "report_created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    for key, value in provenance.items():
        norm = str(key).strip().lower().replace(" ", "_").replace("-", "_")
        if value is not None and value != "":
            info[norm] = value
    if _finite(info["wall_time_s"]):
        info["wall_time_s"] = _format_seconds(info["wall_time_s"])
    return {k: str(v) for k, v in info.items()}


def write_report(
    summary: SummaryFiles,
    figures: Mapping[str, str | os.PathLike[str]],
    out_html: str | os.PathLike[str],
    config: Mapping | None = None,
    provenance: Mapping[str, object] | None = None,
) -> Path:
    """Write the self-contained HTML report of the study to `out_html` (atomically).

    `summary` names the performance and convergence tables and, when the study wrote them,
    the replicates and precision tables (the report reads no others);
    `figures` the PNGs of `emsim.study.figures.draw_all` by figure name (those of
    `FIGURE_NAMES` in that order, any other name after them); `config` is the validated study
    config (for the design and methods sections); `provenance` adds or overrides entries of
    the provenance table (e.g. ``git_commit``, ``config_hash``, ``seed``, ``total_fits``,
    ``wall_time_s``). Missing inputs give a report that says so rather than an error.
    """
    config = dict(config or {})
    figures = {name: Path(path) for name, path in figures.items()}
    perf = _read(summary.performance)
    conv = _read(summary.convergence)
    meta = read_metadata(summary.performance) if summary.performance.exists() else {}
    level = float(meta.get("coverage_level", (config.get("coverage") or {}).get("level", 0.95)))
    reps = _read(summary.replicates)
    prec = _read(summary.precision)
    cells = _cells(perf, conv, reps)
    labels = _cell_labels(cells) if not cells.empty else {}
    prov = collect_provenance(provenance or {}, config, meta, conv)
    title = str(config.get("study") or "emsim study")

    sections = [
        ("aims", "1. Aims", _aims(config)),
        ("data", "2. Data-generating mechanisms", _data_generation(config, cells)),
        ("estimands", "3. Estimands", _estimands()),
        ("methods", "4. Methods", _methods(config, perf, conv)),
        ("measures", "5. Performance measures", _measures_text(level)),
        ("performance", "6. Results: performance", _performance_tables(perf, labels)),
        ("convergence", "7. Results: convergence", _convergence_table(conv, labels)),
        ("failures", "8. Results: failure rates", _failure_table(conv)),
        (
            "stopping",
            "9. Can the stopping rule be trusted?",
            _stopping_section(config, perf, conv, labels),
        ),
        (
            "replicates",
            "10. Replicates and Monte Carlo precision",
            _replicates_section(config, reps, prec, cells),
        ),
        ("figures", "11. Figures", _figures(figures)),
        (
            "provenance",
            "12. Provenance",
            _kv_table({k.replace("_", " "): v for k, v in prov.items()})
            + "<details><summary>configuration</summary><pre>"
            + _esc(_config_text(config))
            + "</pre></details>",
        ),
    ]
    toc = "".join(
        f'<li><a href="#{a}">{_esc(t.split(". ", 1)[1])}</a></li>' for a, t, _ in sections
    )
    body = "\n".join(_section(a, t, b) for a, t, b in sections)
    document = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}: simulation report</title>
<style>{CSS}</style>
</head>
<body><main>
<h1>{_esc(title)}</h1>
<p class="subtitle">Simulation study of the EM algorithm for two-component Gaussian mixtures
(emsim {_esc(prov["emsim_version"])}; {_esc(prov["total_fits"])} fits;
report created {_esc(prov["report_created"])}).</p>
<nav><ol>{toc}</ol></nav>
{body}
<p class="note">References: Morris TP, White IR, Crowther MJ (2019). Using simulation studies to
evaluate statistical methods. Statistics in Medicine 38:2074-2102. Rücker G, Schwarzer G (2014).
Presenting simulation results in a nested loop plot. BMC Medical Research Methodology 14:129.
Varadhan R, Roland C (2008). Simple and globally convergent methods for accelerating the
convergence of any EM algorithm. Scandinavian Journal of Statistics 35:335-353.</p>
</main></body>
</html>
"""
    out = Path(out_html)
    atomic_write(out, lambda tmp: Path(tmp).write_text(document, encoding="utf-8"))
    return out
