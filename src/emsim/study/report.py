"""The study's HTML report: one self-contained file in ADEMP form.

ADEMP (Morris, White & Crowther 2019): aims, data-generating mechanisms, estimands, methods and
performance measures, followed by the results (tables with Monte Carlo SEs, every figure with its
caption) and the provenance of the run. The file embeds its images (base64 PNG) and its CSS and
links to nothing, so it opens offline, can be mailed, and stays readable when results/ is moved.

Numbers come from the summary tables (`emsim.study.measures`) and captions from
`emsim.study.captions.CAPTIONS`; this module only formats them. The design comes from the loaded
`Study`'s typed members, never from re-reading its config. It assembles the sections; the HTML
helpers live in `report_html`, the cells in `report_cells`, sections 9 and 10 in
`report_stopping` and `report_precision`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Mapping
from importlib import metadata as _metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
import yaml

from emsim.models import MODELS, STATUSES, known_params
from emsim.study.captions import CAPTIONS, FIGURE_NAMES
from emsim.study.measures import BEST, OWN_SET, failure_table
from emsim.study.parquet_io import atomic_write, emsim_version, git_commit, read_metadata
from emsim.study.report_cells import cell_labels, read_table, study_cells
from emsim.study.report_html import (
    CSS,
    MISSING,
    embed_png,
    esc,
    finite,
    format_estimate,
    format_number,
    html_table,
    kv_table,
    percent,
    section,
    with_mcse,
)
from emsim.study.report_precision import replicates_section
from emsim.study.report_stopping import stopping_section
from emsim.study.schema import FIT_ID
from emsim.study.summary import SummaryFiles

if TYPE_CHECKING:
    from emsim.study.study import Study

__all__ = ["collect_provenance", "format_estimate", "format_number", "html_table", "write_report"]

# Shown when the report is drawn without its study, as the config schema's defaults.
DEFAULT_EM_SETTINGS: dict[str, object] = {
    "max_iterations": "1000 (default)",
    "premature_threshold": 0.1,
}


def _em_setting(study: Study | None, key: str) -> object:
    """A display-only EM setting (no typed member of `Study` holds it): as the validated
    config gives it, or its default without a study."""
    if study is None:
        return DEFAULT_EM_SETTINGS[key]
    return study.config["em"][key]


# What each stopping rule's tolerance t means (docs/design.md section 1), for section 4.
RULE_MEANINGS: dict[str, tuple[str, str]] = {
    "abs": (
        "log-likelihood units",
        "stop when one iteration raises the total log-likelihood by less than t (the seed's rule)",
    ),
    "rel": (
        "share of |log-likelihood|",
        "stop when one iteration raises the log-likelihood by less than t x |log-likelihood|",
    ),
    "aitken": (
        "log-likelihood units",
        "stop when Aitken's estimate of the gain still to come is below t",
    ),
    "score": (
        "standard errors",
        "stop when the Newton decrement sqrt(g' I^-1 g) (g the score, I the observed "
        "information, positive definite) is below t: the nearby maximum lies within about t "
        "of its SEs in every parameter",
    ),
    "param": (
        "parameter units",
        "stop when the largest absolute change of a parameter in one iteration is below t "
        "(the residual the SQUAREM and turboEM packages stop on)",
    ),
}


def _rule_rows(study: Study | None) -> pd.DataFrame:
    """One row per stopping rule the study ran, in config order, with its tolerance (the
    score rule's is em.score_tolerance: `Study.tolerances` holds each rule's own)."""
    tolerances = study.tolerances if study is not None else {"abs": 1e-5}
    rules = list(study.stopping) if study is not None else ["abs"]
    rows = []
    for rule in rules:
        unit, meaning = RULE_MEANINGS.get(rule, ("", MISSING))
        rows.append(
            {
                "rule": rule,
                "tolerance t": format_number(tolerances[rule]),
                "unit of t": unit,
                "meaning": meaning,
            }
        )
    return pd.DataFrame(rows)


# --- sections -------------------------------------------------------------------------------


def _aims(title: str) -> str:
    return (
        "<p>To evaluate maximum likelihood estimation of two-component univariate Gaussian "
        "mixtures by the EM algorithm, plain and SQUAREM-accelerated, as in the seed document "
        "(which fits the weight p(Z=1) by EM with the means and a common standard deviation "
        "known): how biased and how precise are the estimates, do Wald intervals from the "
        "observed information reach their nominal coverage, how often and how does EM fail, "
        "and how fast does it converge compared with the theoretical rate (the fraction of "
        "missing information) - across sample size, separation of the components and mixing "
        "proportion, from several starting values.</p>"
        f"<p>Study: <b>{esc(title)}</b>.</p>"
    )


def _grid_text(config: Mapping) -> str:
    """The design as the config states it (a grid and/or scenarios): display only, the cells
    themselves come from the summary tables."""
    grid = config.get("grid")
    parts = []
    if grid:
        items = [f"{esc(k)} ∈ {{{esc(', '.join(map(str, v)))}}}" for k, v in grid.items()]
        parts.append("<p>Full-factorial grid: " + "; ".join(items) + ".</p>")
    scenarios = config.get("scenarios") or []
    if scenarios:
        parts.append(f"<p>Plus {len(scenarios)} explicit scenario(s).</p>")
    return "".join(parts)


def _replicates_text(study: Study | None) -> str:
    if study is None:
        return ""
    plan = study.plan
    if plan.adaptive:
        return (
            f"<p>Replicates per cell: adaptive, <b>{esc(plan.minimum)}</b> to "
            f"<b>{esc(plan.maximum)}</b> (more in rounds of {esc(plan.step)} while a precision "
            'target is missed; <a href="#replicates">section 10</a>).</p>'
        )
    return f"<p>Replicates per cell: <b>{esc(plan.maximum)}</b>.</p>"


def _data_generation(study: Study | None, cells: pd.DataFrame) -> str:
    text = (
        "<p>Each replicate draws n observations as the seed's <code>gen_data</code> does: a "
        "component label Z = 1 when a uniform draw is at most pi (else Z = 2), then Y ~ "
        "Normal(mu_Z, sigma_Z). Every replicate has its own random stream, derived from the "
        "study seed and the cell's parameter values, so results do not depend on chunking, "
        "order or core count, and all models, methods and starts of a replicate see the same "
        "data (common random numbers).</p>"
    )
    text += _replicates_text(study) + (_grid_text(study.config) if study is not None else "")
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
            lambda v: f"{int(v)}" if finite(v) else MISSING
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


def _start_rows(study: Study | None) -> list[dict[str, str]]:
    """One row per start of the config (a random start's draws grouped by its config name),
    then the derived `best`."""
    rows = []
    groups: dict[str, list] = {}
    for spec in study.starts if study is not None else ():
        groups.setdefault(spec.group, []).append(spec)
    for group, specs in groups.items():
        first = specs[0]
        detail: dict[str, Any] = {
            "random": {"k": len(specs)},
            "fixed": {"values": dict(first.values)},
            "quantile": {"pi0": first.pi0},
        }.get(first.strategy, {})
        settings = json.dumps(detail) if detail else MISSING
        rows.append({"start": group, "strategy": first.strategy, "settings": settings})
    rows.append(
        {
            "start": BEST,
            "strategy": "derived",
            "settings": "per replicate, the start with the highest final log-likelihood "
            "(nonfinite fits excluded)",
        }
    )
    return rows


def _methods(study: Study | None, perf: pd.DataFrame, conv: pd.DataFrame) -> str:
    source = conv if not conv.empty else perf

    def in_results(column: str) -> list[str]:
        return list(dict.fromkeys(source[column])) if not source.empty else []

    models = list(study.models) if study is not None else in_results("model")
    methods = list(study.methods) if study is not None else in_results("method")
    starts = in_results("start")
    text = (
        f"<p>Models: {esc(', '.join(models) or MISSING)}. Methods: "
        f"{esc(', '.join(methods) or MISSING)} (<code>em</code>: plain EM; "
        "<code>squarem</code>: SQUAREM acceleration, Varadhan &amp; Roland 2008). Every "
        "replicate is fitted with every model x method x start.</p>"
    )
    text += "<h3>Starts</h3>" + html_table(pd.DataFrame(_start_rows(study)))
    if starts:
        text += f"<p>Starts in the results: {esc(', '.join(map(str, starts)))}.</p>"
    text += (
        "<h3>Stopping rules</h3><p>Every fit runs under each rule below (a design factor: all "
        "rules see the same path of iterates and differ only in where they stop it), or "
        f"stops after <b>{esc(_em_setting(study, 'max_iterations'))}</b> iterations:</p>"
        + html_table(_rule_rows(study))
        + "<p>Each fit ends with exactly one status: "
        f"{esc(', '.join(STATUSES))}. A fit a rule stopped is usable "
        "(<code>converged</code>) only where the limit of its own iteration lies within "
        f"{esc(_em_setting(study, 'premature_threshold'))} standard errors (section 9).</p>"
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
        "MCSE of a mean (iterations, evaluations, run time) = sd / sqrt(n); of a median or 90th "
        "percentile = (x_(k) - x_(j)) / (2 x 1.96), x_(j) and x_(k) the order statistics whose "
        "ranks bracket the quantile with probability at least 95% (binomial; no resampling)",
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
        "measures are missing.</p><ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"
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
                "bias": with_mcse(rows, "bias"),
                "empirical SE": with_mcse(rows, "empse"),
                "RMSE": with_mcse(rows, "rmse"),
                "coverage %": with_mcse(rows, "coverage", 100.0),
                "model SE": with_mcse(rows, "modse"),
                "rel. error model SE %": with_mcse(rows, "relerr_modse"),
            }
        )
        is_open = " open" if i == 0 else ""
        out.append(
            f"<details{is_open}><summary>model {esc(model)} ({len(rows)} rows)</summary>"
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
            "failure rate %": with_mcse(conv, "failure_rate", 100.0),
            "iterations mean": with_mcse(conv, "iterations_mean", digits=3),
            "median": with_mcse(conv, "iterations_median", digits=3),
            "p90": with_mcse(conv, "iterations_p90", digits=3),
            "loglik evals": with_mcse(conv, "loglik_evals_mean", digits=3),
            "runtime ms": with_mcse(conv, "runtime_mean_s", 1000.0, digits=3),
            "rate empirical": conv["rate_empirical_mean"].map(lambda v: format_number(v, 3)),
            "rate theory": conv["rate_theory_mean"].map(lambda v: format_number(v, 3)),
        }
    )
    return (
        '<p class="note">Iterations and rates over converged fits; evaluations and run time '
        'over all fits. Iterations, evaluations and run time are "estimate (Monte Carlo '
        'SE)"; the estimate alone where its MCSE is 0 or cannot be computed (p90 needs 36 '
        "converged fits, the median 6). The start <code>best</code> repeats the chosen "
        "start's fit, so its cost is that of one fit, not of all the starts tried.</p>"
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
    table["failed"] = summary["failure_rate"].map(percent)
    for status in STATUSES:
        table[status] = summary[f"rate_{status}"].map(percent)
    return "<p>Share of all fits of the study (every cell) ending in each status.</p>" + html_table(
        table
    )


def _stopping(
    study: Study | None,
    perf: pd.DataFrame,
    rule_rows: pd.DataFrame,
    counts: pd.DataFrame,
    labels: Mapping[str, str],
) -> str:
    rules = list(study.stopping) if study is not None else ["abs"]
    threshold = _em_setting(study, "premature_threshold")
    return stopping_section(rules, threshold, perf, rule_rows, counts, labels)


def _figures(figures: Mapping[str, Path]) -> str:
    out = []
    for i, name in enumerate(FIGURE_NAMES, start=1):
        path = figures.get(name)
        caption = f"<b>Figure {i}.</b> {esc(CAPTIONS[name])}"
        if path is not None and path.exists():
            out.append(
                f'<figure id="fig-{esc(name)}"><img src="{embed_png(path)}" '
                f'alt="{esc(name)} figure"><figcaption>{caption}</figcaption></figure>'
            )
        else:
            out.append(f'<p class="note">Figure {i} ({esc(name)}.png) was not drawn.</p>')
    # Figures given beyond the standard set (e.g. bias of another parameter) are shown too.
    extra = sorted(
        (name, path) for name, path in figures.items() if name not in FIGURE_NAMES and path.exists()
    )
    for j, (name, path) in enumerate(extra, start=len(FIGURE_NAMES) + 1):
        out.append(
            f'<figure><img src="{embed_png(path)}" alt="{esc(name)}">'
            f"<figcaption><b>Figure {j}.</b> {esc(path.name)}</figcaption></figure>"
        )
    return "\n".join(out)


def _version(package: str) -> str:
    try:
        return _metadata.version(package)
    except _metadata.PackageNotFoundError:
        return "not installed"


def _format_seconds(value: object) -> str:
    if not finite(value):
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
    if finite(info["wall_time_s"]):
        info["wall_time_s"] = _format_seconds(info["wall_time_s"])
    return {k: str(v) for k, v in info.items()}


class _Tables(NamedTuple):
    """The summary tables the report reads (empty when the study did not write one) and the
    performance table's metadata."""

    perf: pd.DataFrame
    conv: pd.DataFrame
    reps: pd.DataFrame
    prec: pd.DataFrame
    rules: pd.DataFrame
    distance: pd.DataFrame
    meta: dict[str, str]

    @classmethod
    def read(cls, summary: SummaryFiles) -> _Tables:
        exists = summary.performance.exists()
        return cls(
            perf=read_table(summary.performance),
            conv=read_table(summary.convergence),
            reps=read_table(summary.replicates),
            prec=read_table(summary.precision),
            rules=read_table(summary.stopping_rules),
            distance=read_table(summary.stopping_distance),
            meta=dict(read_metadata(summary.performance)) if exists else {},
        )


def _sections(
    study: Study | None, tables: _Tables, figures: Mapping[str, Path], prov: Mapping[str, str]
) -> list[tuple[str, str, str]]:
    """(anchor, numbered title, HTML body) of each section, in order."""
    perf, conv, reps, prec, rules, distance, meta = tables
    # The level the summary was computed at; the study's without a performance table.
    default_level = study.config["coverage"]["level"] if study is not None else 0.95
    level = float(meta.get("coverage_level", default_level))
    cells = study_cells(perf, conv, reps)
    labels = cell_labels(cells) if not cells.empty else {}
    return [
        ("aims", "1. Aims", _aims(_title(study))),
        ("data", "2. Data-generating mechanisms", _data_generation(study, cells)),
        ("estimands", "3. Estimands", _estimands()),
        ("methods", "4. Methods", _methods(study, perf, conv)),
        ("measures", "5. Performance measures", _measures_text(level)),
        ("performance", "6. Results: performance", _performance_tables(perf, labels)),
        ("convergence", "7. Results: convergence", _convergence_table(conv, labels)),
        ("failures", "8. Results: failure rates", _failure_table(conv)),
        (
            "stopping",
            "9. Can the stopping rule be trusted?",
            _stopping(study, perf, rules, distance, labels),
        ),
        (
            "replicates",
            "10. Replicates and Monte Carlo precision",
            replicates_section(study, reps, prec, cells),
        ),
        ("figures", "11. Figures", _figures(figures)),
        (
            "provenance",
            "12. Provenance",
            kv_table({k.replace("_", " "): v for k, v in prov.items()})
            + "<details><summary>configuration</summary><pre>"
            + esc(_config_text(study.config if study is not None else {}))
            + "</pre></details>",
        ),
    ]


def _title(study: Study | None) -> str:
    return str((study.config.get("study") if study is not None else None) or "emsim study")


def write_report(
    summary: SummaryFiles,
    figures: Mapping[str, str | os.PathLike[str]],
    out_html: str | os.PathLike[str],
    study: Study | None = None,
    provenance: Mapping[str, object] | None = None,
) -> Path:
    """Write the self-contained HTML report of the study to `out_html` (atomically).

    `summary` names the performance and convergence tables and, when the study wrote them,
    the stopping-rule tables (stopping_rules, stopping_distance) and the replicates and
    precision tables (the report reads no others);
    `figures` the PNGs of `emsim.study.figures.draw_all` by figure name (those of
    `FIGURE_NAMES` in that order, any other name after them); `study` is the loaded study
    (`config.load_study`: its plan, precision targets, starts, models, methods and stopping
    rules for the design, methods and replicates sections; its config for the provenance);
    `provenance` adds or overrides entries of the provenance table (e.g. ``git_commit``,
    ``config_hash``, ``seed``, ``total_fits``, ``wall_time_s``). Missing inputs give a report
    that says so rather than an error.
    """
    tables = _Tables.read(summary)
    config = study.config if study is not None else {}
    prov = collect_provenance(provenance or {}, config, tables.meta, tables.conv)
    paths = {name: Path(path) for name, path in figures.items()}
    sections = _sections(study, tables, paths, prov)
    title = _title(study)
    toc = "".join(f'<li><a href="#{a}">{esc(t.split(". ", 1)[1])}</a></li>' for a, t, _ in sections)
    body = "\n".join(section(a, t, b) for a, t, b in sections)
    document = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}: simulation report</title>
<style>{CSS}</style>
</head>
<body><main>
<h1>{esc(title)}</h1>
<p class="subtitle">Simulation study of the EM algorithm for two-component Gaussian mixtures
(emsim {esc(prov["emsim_version"])}; {esc(prov["total_fits"])} fits;
report created {esc(prov["report_created"])}).</p>
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
