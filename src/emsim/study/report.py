"""The study's HTML report: one self-contained file in ADEMP form.

ADEMP (Morris, White & Crowther 2019): aims, data-generating mechanisms, estimands, methods and
performance measures, followed by the results (tables with Monte Carlo SEs, every figure with its
caption), the provenance of the run and a drill-down to each cell's failed fits. The file embeds
its images (base64 PNG), its CSS and its one small script (sorting and filtering the tables) and
links to nothing, so it opens offline, can be mailed, and stays readable when results/ is moved.

Numbers come from the summary tables (`emsim.study.measures`) and captions from
`emsim.study.captions.CAPTIONS`; this module only formats them. The design comes from the loaded
`Study`'s typed members, never from re-reading its config. It computes each section's values;
the words and markup are Jinja2 templates (templates/, rendered by `report_html.render`). The
HTML helpers live in `report_html`, the cells and the tables' order in `report_cells`, sections
9, 10, 13 and 14 in `report_stopping`, `report_precision`, `report_drilldown` and
`report_misspecification`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata as _metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
import yaml
from markupsafe import Markup

from emsim.models import MODELS, STATUSES, known_params
from emsim.study.captions import CAPTIONS, FIGURE_NAMES
from emsim.study.figure_data import cell_order, stopping_rows
from emsim.study.measures import BEST, OWN_SET, failure_table
from emsim.study.parquet_io import atomic_write, emsim_version, git_commit, read_metadata
from emsim.study.report_cells import (
    cell_labels,
    design_sorted,
    read_table,
    study_cells,
    study_orders,
)
from emsim.study.report_drilldown import drilldown_section, read_failed_fits
from emsim.study.report_html import (
    MISSING,
    cell_anchor,
    embed_png,
    finite,
    format_estimate,
    format_number,
    html_table,
    kv_table,
    percent,
    render,
    template_text,
    with_mcse,
)
from emsim.study.report_misspecification import misspecification_section
from emsim.study.report_precision import replicates_section
from emsim.study.report_stopping import stopping_section
from emsim.study.schema import FIT_ID
from emsim.study.summary import SummaryFiles

if TYPE_CHECKING:
    from emsim.study.study import Study

# Each within-cell factor's values in the order the report lists them (`study_orders`).
Orders = Mapping[str, Sequence[str]]

__all__ = [
    "FIGURES_MARK",
    "collect_provenance",
    "embed_figures",
    "format_estimate",
    "format_number",
    "html_table",
    "write_report",
    "write_report_body",
]

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


# --- sections: each computes and formats its values; its words are in templates/sections/ -----


def _cell_links(frame: pd.DataFrame) -> dict[str, list[str | None]]:
    """The `cell` column of a report table leads to the cell's drill-down (section 13)."""
    return {"cell": [cell_anchor(c) for c in frame["cell_id"]]}


def _data_generation(study: Study | None, cells: pd.DataFrame) -> Markup:
    shown = None
    if not cells.empty:
        table = pd.DataFrame(
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
            table["replicates"] = cells["replicates"].map(
                lambda v: f"{int(v)}" if finite(v) else MISSING
            )
        shown = html_table(table, links=_cell_links(cells))
    config = study.config if study is not None else {}
    return render(
        "sections/data.html.j2",
        plan=study.plan if study is not None else None,
        grid={k: list(map(str, v)) for k, v in (config.get("grid") or {}).items()},
        scenarios=len(config.get("scenarios") or []),
        cells=shown,
        n_cells=len(cells),
    )


def _estimands() -> Markup:
    rows = pd.DataFrame(
        {
            "model": list(MODELS),
            "estimated": [", ".join(MODELS[m]) for m in MODELS],
            "held at the true value": [", ".join(known_params(m)) or MISSING for m in MODELS],
        }
    )
    return render("sections/estimands.html.j2", models=html_table(rows))


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


def _methods(study: Study | None, perf: pd.DataFrame, conv: pd.DataFrame) -> Markup:
    source = conv if not conv.empty else perf

    def in_results(column: str) -> list[str]:
        return list(dict.fromkeys(source[column])) if not source.empty else []

    return render(
        "sections/methods.html.j2",
        models=list(study.models) if study is not None else in_results("model"),
        methods=list(study.methods) if study is not None else in_results("method"),
        starts=html_table(pd.DataFrame(_start_rows(study))),
        starts_in_results=list(map(str, in_results("start"))),
        max_iterations=_em_setting(study, "max_iterations"),
        rules=html_table(_rule_rows(study)),
        statuses=STATUSES,
        premature_threshold=_em_setting(study, "premature_threshold"),
        missing=MISSING,
    )


def _performance_tables(perf: pd.DataFrame, labels: Mapping[str, str], orders: Orders) -> Markup:
    models = []
    if "set" in perf.columns:
        perf = perf[perf["set"] == OWN_SET]
    perf = design_sorted(perf, orders)
    for model in dict.fromkeys(perf["model"]) if not perf.empty else ():
        rows = perf[perf["model"] == model]
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
        models.append((model, len(rows), html_table(table, links=_cell_links(rows))))
    return render("sections/performance.html.j2", models=models)


def _convergence_table(conv: pd.DataFrame, labels: Mapping[str, str], orders: Orders) -> Markup:
    if conv.empty:
        return render("sections/convergence.html.j2", table=None)
    conv = design_sorted(conv, orders)
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
    return render(
        "sections/convergence.html.j2",
        table=html_table(table, links=_cell_links(conv)),
        n_rows=len(table),
    )


def _failure_table(conv: pd.DataFrame, orders: Orders) -> Markup:
    summary = design_sorted(failure_table(conv), orders)
    if summary.empty:
        return render("sections/failures.html.j2", table=None)
    table = summary[list(FIT_ID)].copy()
    table["fits"] = summary["n_fits"].astype(str)
    table["failed"] = summary["failure_rate"].map(percent)
    for status in STATUSES:
        table[status] = summary[f"rate_{status}"].map(percent)
    return render("sections/failures.html.j2", table=html_table(table))


def _stopping(
    study: Study | None,
    perf: pd.DataFrame,
    rule_rows: pd.DataFrame,
    counts: pd.DataFrame,
    labels: Mapping[str, str],
) -> Markup:
    rules = list(study.stopping) if study is not None else ["abs"]
    threshold = _em_setting(study, "premature_threshold")
    return stopping_section(rules, threshold, perf, rule_rows, counts, labels)


def _figure_rows(name: str, rules: pd.DataFrame) -> list[tuple[str, str]]:
    """The rows of a figure drawn by cell (figure `stopping`), top to bottom, each with its
    cell's drill-down anchor: the figure's own order and labels (`figure_data.cell_order`)."""
    if name != "stopping":
        return []
    data = stopping_rows(rules)
    if data.empty:
        return []
    order, labels = cell_order(data)
    return [(cell_anchor(c), labels[c]) for c in order]


def _figures(figures: Mapping[str, Path], rules: pd.DataFrame) -> Markup:
    shown = []
    for i, name in enumerate(FIGURE_NAMES, start=1):
        path = figures.get(name)
        drawn = path is not None and path.exists()
        shown.append(
            {
                "name": name,
                "number": i,
                "caption": CAPTIONS[name],
                "src": embed_png(path) if drawn else None,  # type: ignore[arg-type]
                "rows": _figure_rows(name, rules) if drawn else [],
            }
        )
    # Figures given beyond the standard set (e.g. bias of another parameter) are shown too.
    extra = sorted(
        (name, path) for name, path in figures.items() if name not in FIGURE_NAMES and path.exists()
    )
    more = [
        {"name": name, "number": j, "file": path.name, "src": embed_png(path)}
        for j, (name, path) in enumerate(extra, start=len(FIGURE_NAMES) + 1)
    ]
    return render("sections/figures.html.j2", figures=shown, extra=more)


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
    estimands: pd.DataFrame
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
            estimands=read_table(summary.estimands),
            meta=dict(read_metadata(summary.performance)) if exists else {},
        )


def _sections(
    study: Study | None,
    tables: _Tables,
    figures: Markup,
    prov: Mapping[str, str],
    failed: pd.DataFrame | None,
) -> list[tuple[str, str, Markup]]:
    """(anchor, numbered title, HTML body) of each section, in order; `figures` is section
    11's body (`_figures`, or `FIGURES_MARK` in the report's body)."""
    perf, conv, reps, prec, rules, distance, estimands, meta = tables
    # The level the summary was computed at; the study's without a performance table.
    default_level = study.config["coverage"]["level"] if study is not None else 0.95
    level = float(meta.get("coverage_level", default_level))
    cells = study_cells(perf, conv, reps)
    labels = cell_labels(cells) if not cells.empty else {}
    orders = study_orders(study)
    config = study.config if study is not None else {}
    provenance = render(
        "sections/provenance.html.j2",
        table=kv_table({k.replace("_", " "): v for k, v in prov.items()}),
        config=_config_text(config),
    )
    return [
        ("aims", "1. Aims", render("sections/aims.html.j2", title=_title(study))),
        ("data", "2. Data-generating mechanisms", _data_generation(study, cells)),
        ("estimands", "3. Estimands", _estimands()),
        ("methods", "4. Methods", _methods(study, perf, conv)),
        ("measures", "5. Performance measures", render("sections/measures.html.j2", level=level)),
        ("performance", "6. Results: performance", _performance_tables(perf, labels, orders)),
        ("convergence", "7. Results: convergence", _convergence_table(conv, labels, orders)),
        ("failures", "8. Results: failure rates", _failure_table(conv, orders)),
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
        ("figures", "11. Figures", figures),
        ("provenance", "12. Provenance", provenance),
        (
            "drilldown",
            "13. Drill-down: the fits that did not converge, by cell",
            drilldown_section(failed, cells, labels, conv, orders),
        ),
        # Last, so that sections 1 to 13 keep the numbers the docs cite.
        (
            "misspecification",
            "14. Results: misspecification",
            misspecification_section(perf, labels, estimands),
        ),
    ]


def _title(study: Study | None) -> str:
    return str((study.config.get("study") if study is not None else None) or "emsim study")


# Where section 11's figures go in the report's body (`write_report_body`) until
# `embed_figures` puts them in: the body is written while the figures are drawn (issue 22).
FIGURES_MARK = "<!-- emsim: section 11's figures go here -->"


def write_report(
    summary: SummaryFiles,
    figures: Mapping[str, str | os.PathLike[str]],
    out_html: str | os.PathLike[str],
    study: Study | None = None,
    provenance: Mapping[str, object] | None = None,
    fits: Sequence[str | os.PathLike[str]] | None = None,
) -> Path:
    """Write the self-contained HTML report of the study to `out_html` (atomically).

    `summary` names the performance and convergence tables and, when the study wrote them,
    the stopping-rule tables (stopping_rules, stopping_distance), the replicates and
    precision tables and the estimands (the report reads no others);
    `figures` the PNGs of `emsim.study.figures.draw_all` by figure name (those of
    `FIGURE_NAMES` in that order, any other name after them); `study` is the loaded study
    (`config.load_study`: its plan, precision targets, starts, models, methods and stopping
    rules for the design, methods and replicates sections; its config for the provenance);
    `provenance` adds or overrides entries of the provenance table (e.g. ``git_commit``,
    ``config_hash``, ``seed``, ``total_fits``, ``wall_time_s``); `fits` the fit files
    (results/fits), read for the drill-down of section 13 (its failed fits only; without
    them the section says so). Missing inputs give a report that says so rather than an error.
    The same page as `write_report_body` then `embed_figures`, in one step.
    """
    tables = _Tables.read(summary)
    shown = _figures({name: Path(path) for name, path in figures.items()}, tables.rules)
    return _write_page(_document(tables, shown, study, provenance, fits), out_html)


def write_report_body(
    summary: SummaryFiles,
    out_html: str | os.PathLike[str],
    study: Study | None = None,
    provenance: Mapping[str, object] | None = None,
    fits: Sequence[str | os.PathLike[str]] | None = None,
) -> Path:
    """Write the report without its figures to `out_html`: `write_report`'s page (same
    arguments) with `FIGURES_MARK` for section 11's body, which `embed_figures` fills in. It
    reads no figure, so that the workflow writes it while the figures are drawn."""
    tables = _Tables.read(summary)
    marked = Markup(FIGURES_MARK)
    return _write_page(_document(tables, marked, study, provenance, fits), out_html)


def embed_figures(
    body_html: str | os.PathLike[str],
    figures: Mapping[str, str | os.PathLike[str]],
    stopping_rules: str | os.PathLike[str] | None,
    out_html: str | os.PathLike[str],
) -> Path:
    """Write the report `write_report_body` wrote to `body_html` with section 11's figures
    (`figures` as `write_report` takes them; `stopping_rules` the summary table the stopping
    figure's list of rows comes from) to `out_html`: the page `write_report` writes."""
    body = Path(body_html).read_text(encoding="utf-8")
    if body.count(FIGURES_MARK) != 1:
        raise ValueError(f"{body_html} is not a report body: it has no one place for figures")
    rules = read_table(Path(stopping_rules) if stopping_rules is not None else None)
    shown = _figures({name: Path(path) for name, path in figures.items()}, rules)
    return _write_page(body.replace(FIGURES_MARK, shown), out_html)


def _document(
    tables: _Tables,
    figures: Markup,
    study: Study | None,
    provenance: Mapping[str, object] | None,
    fits: Sequence[str | os.PathLike[str]] | None,
) -> str:
    """The report's page, section 11's body `figures` (`_sections`)."""
    config = study.config if study is not None else {}
    prov = collect_provenance(provenance or {}, config, tables.meta, tables.conv)
    failed = read_failed_fits(fits) if fits is not None else None
    return render(
        "report.html.j2",
        title=_title(study),
        prov=prov,
        sections=_sections(study, tables, figures, prov, failed),
        css=template_text("report.css"),
        script=template_text("report.js"),
    )


def _write_page(document: str, out_html: str | os.PathLike[str]) -> Path:
    out = Path(out_html)
    atomic_write(out, lambda tmp: Path(tmp).write_text(document, encoding="utf-8"))
    return out
