"""Figures and the HTML report, drawn from a small synthetic study.

The figures are checked as images (they open, have a sensible size and are not blank), including
on empty and degenerate inputs (which rows and values they show is tested in
tests/test_figure_data.py), and the report as a document: self-contained (every figure embedded,
nothing fetched from the network), with the ADEMP sections and the tables.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from markupsafe import escape

from emsim.study import figure_data, figures, jobs, schema, stopping
from emsim.study.captions import (
    CAPTIONS,
    FIGURE_NAMES,
    FIGURE_TABLES,
    FIGURES,
    TABLE_FIGURE_NAMES,
    TRACE_FIGURE_NAMES,
    add_design_factors,
    caption_path,
    cell_label,
    figure_spec,
)
from emsim.study.config import load_study
from emsim.study.figures import draw_all, plot_seed_trace
from emsim.study.measures import (
    CONVERGENCE_COLUMNS,
    PERFORMANCE_COLUMNS,
    add_best_start,
    convergence,
    performance,
)
from emsim.study.precision import (
    ASSESSMENT_SCHEMA,
    REPLICATES_SCHEMA,
    STOP_MAX,
    STOP_MET,
    Precision,
    Target,
    assess,
    decide,
    plan_metadata,
    replicates_row,
)
from emsim.study.report import (
    FIGURES_MARK,
    embed_figures,
    format_estimate,
    write_report,
    write_report_body,
)
from emsim.study.summary import (
    CSV_TABLES,
    MEASURE_TABLES,
    SUMMARY_TABLES,
    SummaryFiles,
    SummaryTables,
    summarise,
    write_csv_copy,
)

ROOT = Path(__file__).resolve().parents[1]
# The oracle starts of the synthetic fits (a study finds its own by strategy).
ORACLES = ("truth",)
PARAMS = ("pi", "mu1", "mu2", "sigma1", "sigma2")


def figure_paths(folder: Path) -> dict[str, Path]:
    """Each figure's PNG in `folder`, named as the figures rule names them."""
    return {name: folder / f"{name}.png" for name in FIGURE_NAMES}


def synthetic_fits(reps: int = 8, seed: int = 0) -> pd.DataFrame:
    """2 n x 2 separations x 2 pi, all models, both methods, two starts, some failures."""
    rng = np.random.default_rng(seed)
    rows = []
    for n, sep, pi in itertools.product((100, 1000), (1.0, 3.0), (0.5, 0.8)):
        cell = {
            "cell_id": f"n{n}_d{sep:g}_pi{pi:g}",
            "n": n,
            "mu1": 0.0,
            "mu2": sep,
            "sigma1": 1.0,
            "sigma2": 1.0,
            "pi": pi,
            "family": "normal",
        }
        for r, model, method, start in itertools.product(
            range(reps), ("pi", "equal_var", "full"), ("em", "squarem"), ("fixed", "truth")
        ):
            sd = 0.5 / np.sqrt(n)
            est = {p: cell[p] + rng.normal(0.02 / sep if p == "pi" else 0.0, sd) for p in PARAMS}
            if model == "pi":
                est.update({p: cell[p] for p in PARAMS[1:]})
            if model == "equal_var":
                est["sigma2"] = est["sigma1"]
            se = {p: (sd if model != "pi" or p == "pi" else np.nan) for p in PARAMS}
            status = (
                "converged"
                if rng.random() > 0.15
                else str(
                    rng.choice(
                        ["max_iterations", "degenerate", "boundary", "nonfinite", "decreased"]
                    )
                )
            )
            rate = min(0.95, 0.8 / sep)
            rows.append(
                {
                    **cell,
                    "replicate": r,
                    "model": model,
                    "method": method,
                    "start": start,
                    "status": status,
                    "iterations": int(rng.integers(5, 80) / sep) + 1,
                    "loglik_evals": 40,
                    "runtime_s": 1e-4 * n,
                    "loglik": -1.4 * n + rng.normal(),
                    "loglik_start": -2.0 * n,
                    **{f"est_{p}": v for p, v in est.items()},
                    "swapped": False,
                    **{f"se_{p}": v for p, v in se.items()},
                    "rate_empirical": rate + rng.normal(0, 0.02),
                    "rate_theory": rate,
                    "best_start_gap": np.nan,
                }
            )
    return pd.DataFrame(rows)


def synthetic_traces(fits: pd.DataFrame) -> pd.DataFrame:
    """EM-like paths: pi-hat approaches the truth geometrically, loglik rises to a maximum."""
    rows = []
    kept = fits[fits["replicate"] == 0].drop_duplicates(
        ["cell_id", "replicate", "model", "method", "start"]
    )
    for fit in kept.itertuples():
        p0 = 0.5 if fit.start == "fixed" else fit.pi
        for t in range(12):
            p = fit.pi + (0.3 - fit.pi) * 0.6**t if p0 == 0.5 else fit.pi
            rows.append(
                {
                    "cell_id": fit.cell_id,
                    "n": fit.n,
                    "mu1": fit.mu1,
                    "mu2": fit.mu2,
                    "sigma1": fit.sigma1,
                    "sigma2": fit.sigma2,
                    "pi": fit.pi,
                    "replicate": fit.replicate,
                    "model": fit.model,
                    "method": fit.method,
                    "start": fit.start,
                    "iteration": t,
                    "est_pi": p,
                    "est_mu1": fit.mu1,
                    "est_mu2": fit.mu2,
                    "est_sigma1": 1.0,
                    "est_sigma2": 1.0,
                    "loglik": -1.4 * fit.n - 3 * fit.n * (p - fit.pi) ** 2,
                    "diff_loglik": np.nan,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict[str, Path]:
    """Fits (hive dataset), summary, traces and figures of the synthetic study."""
    root = tmp_path_factory.mktemp("study")
    fits = synthetic_fits()
    for cell_id, rows in fits.groupby("cell_id"):
        folder = root / "fits" / f"cell={cell_id}"
        folder.mkdir(parents=True)
        rows.to_parquet(folder / "chunk=0.parquet", index=False)
        trace_dir = root / "traces" / f"cell={cell_id}"
        trace_dir.mkdir(parents=True)
        synthetic_traces(rows).to_parquet(trace_dir / "chunk=0.parquet", index=False)
    summarise(
        root / "fits",
        root / "summary",
        metadata={"config_hash": "cafe", "seed": "11"},
        oracle_starts=ORACLES,
    )
    traces = sorted((root / "traces").glob("cell=*/*.parquet"))
    paths = draw_all(
        SummaryFiles.in_folder(root / "summary"), traces, figure_paths(root / "figures")
    )
    return {"root": root, **paths}


def assert_readable_png(path: Path, min_side: int = 200) -> None:
    assert path.exists(), path
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4), image.shape
    height, width = image.shape[:2]
    assert height >= min_side and width >= min_side, image.shape
    rgb = image[..., :3]
    # Not blank: a visible share of pixels is not background white, and colours vary.
    assert (rgb.min(axis=2) < 0.9).mean() > 0.005, f"{path.name} looks blank"
    assert rgb.std() > 0.02, f"{path.name} looks blank"


def test_draw_all_draws_every_figure(study):
    assert set(FIGURE_NAMES) <= set(study)
    for name in FIGURE_NAMES:
        assert study[name] == study["root"] / "figures" / f"{name}.png"
        assert_readable_png(study[name])
    assert sorted(p.name for p in (study["root"] / "figures").iterdir()) == sorted(
        f"{name}.png" for name in FIGURE_NAMES
    )  # nothing else, in particular no temp files


def test_seed_trace_figure(tmp_path):
    seed = pd.read_csv(ROOT / "tests" / "data" / "seed_progress_R.csv")
    path = plot_seed_trace(seed, tmp_path / "seed.png")
    assert_readable_png(path)
    # the fits' trace naming (est_pi) works as well
    path = plot_seed_trace(seed.rename(columns={"pi": "est_pi"}), tmp_path / "seed2.png")
    assert_readable_png(path)


EMPTY_PERF = pd.DataFrame(columns=list(PERFORMANCE_COLUMNS))
EMPTY_CONV = pd.DataFrame(columns=list(CONVERGENCE_COLUMNS))


@functools.cache
def degenerate_inputs() -> dict[str, dict[str, pd.DataFrame]]:
    """The inputs of every figure (summary tables and traces) that a failed or tiny study
    produces."""
    fits = add_best_start(synthetic_fits(reps=3), oracle_starts=ORACLES)
    fits["distance_to_limit"] = np.where(fits["replicate"] == 0, np.nan, 0.05)
    one_cell = fits[fits["cell_id"] == fits["cell_id"].iloc[0]]
    all_failed = fits.assign(status="nonfinite", loglik=np.nan, est_pi=np.nan)
    one_rep = fits[fits["replicate"] == 0]
    cases = {"one_cell": one_cell, "all_failed": all_failed, "one_replicate": one_rep}
    inputs = {
        "empty": {
            "performance": EMPTY_PERF,
            "convergence": EMPTY_CONV,
            "stopping_distance": stopping.distance_counts(fits.iloc[:0]),
            "stopping_rules": stopping.rule_summary(fits.iloc[:0]),
            "zip_pi": stopping.zip_rows(fits.iloc[:0]),
            "traces": pd.DataFrame(),
        }
    }
    for case, rows in cases.items():
        kept = rows[(rows["start"] != "best") & (rows["replicate"] == rows["replicate"].min())]
        inputs[case] = {
            "performance": performance(rows),
            "convergence": convergence(rows),
            "stopping_distance": stopping.distance_counts(rows),
            "stopping_rules": stopping.rule_summary(rows),
            "zip_pi": stopping.zip_rows(rows),
            "traces": synthetic_traces(kept).assign(est_pi=np.nan if case == "all_failed" else 0.5),
        }
    return inputs


# Each figure drawn from the degenerate inputs by its plotting function.
DEGENERATE_DRAWERS = {
    "traces": lambda d, path: figures.plot_traces(d["traces"], path),
    "bias": lambda d, path: figures.plot_bias(d["performance"], path),
    "rmse": lambda d, path: figures.plot_rmse(d["performance"], path),
    "coverage": lambda d, path: figures.plot_coverage(d["performance"], path),
    "misspecification": lambda d, path: figures.plot_misspecification(
        d["performance"].assign(family="t(df=5)"), path
    ),
    "iterations": lambda d, path: figures.plot_iterations(d["convergence"], path),
    "rate": lambda d, path: figures.plot_rate(d["convergence"], path),
    "failures": lambda d, path: figures.plot_failures(d["convergence"], path),
    "nested_loop": lambda d, path: figures.plot_nested_loop(d["performance"], path),
    "stopping": lambda d, path: figures.plot_stopping(d["stopping_rules"], path),
    "distance": lambda d, path: figures.plot_distance(d["stopping_distance"], path),
    "zip": lambda d, path: figures.plot_zip(d["zip_pi"], d["convergence"], d["performance"], path),
    "replicates": lambda d, path: figures.plot_replicates(
        figure_data.replicates_from_convergence(d["convergence"]), path
    ),
}


@pytest.mark.parametrize("case", ["empty", "one_cell", "all_failed", "one_replicate"])
def test_figures_survive_degenerate_input(tmp_path, case):
    assert set(DEGENERATE_DRAWERS) == set(FIGURE_NAMES)
    inputs = degenerate_inputs()[case]
    for name in FIGURE_NAMES:
        path = DEGENERATE_DRAWERS[name](inputs, tmp_path / f"{name}.png")
        assert_readable_png(path, min_side=150)
    assert_readable_png(figures.plot_seed_trace(pd.DataFrame(), tmp_path / "seed.png"), 150)


def test_every_figure_has_a_drawer_that_reads_only_its_listed_tables(study, tmp_path):
    """Issue 20: one registry of figures (`captions.FIGURES`, each with the tables it reads);
    `figures.DRAWERS` draws exactly those figures, and a drawer asking for a table its entry
    does not list is refused, so the list the figures rule takes its inputs from is true."""
    assert tuple(figures.DRAWERS) == FIGURE_NAMES == tuple(f.name for f in FIGURES)
    assert set(FIGURE_TABLES) <= set(SUMMARY_TABLES)
    assert set(FIGURE_TABLES) == {t for f in FIGURES for t in f.tables}
    summary = SummaryFiles.in_folder(study["root"] / "summary")
    inputs = figures.FigureInputs(figure_spec("zip"), summary, [])
    assert inputs.table("zip_pi").equals(pd.read_parquet(summary.zip_pi)) and len(
        inputs.table("zip_pi")
    )
    with pytest.raises(ValueError, match="'zip' reads table 'stopping_distance'"):
        inputs.table("stopping_distance")
    with pytest.raises(ValueError, match="does not list the traces"):
        inputs.traces()
    # The figures of the kept traces and those of the tables are every figure, once; the two
    # figure rules take their outputs (and the tables rule its inputs) from these lists.
    assert set(TRACE_FIGURE_NAMES) == {f.name for f in FIGURES if f.traces}
    assert sorted(TRACE_FIGURE_NAMES + TABLE_FIGURE_NAMES) == sorted(FIGURE_NAMES)
    rule = (ROOT / "workflow" / "rules" / "figures.smk").read_text()
    for listed in ("jobs.FIGURE_TABLES", "jobs.TABLE_FIGURE_NAMES", "jobs.TRACE_FIGURE_NAMES"):
        assert listed in rule, listed


def test_draw_all_on_missing_inputs(tmp_path):
    missing = SummaryFiles.in_folder(tmp_path / "no_summary")
    traces = [tmp_path / "no_traces" / "cell=a" / "chunk=0.parquet"]
    paths = draw_all(missing, traces, figure_paths(tmp_path / "figures"), dpi=60)
    for name in FIGURE_NAMES:
        assert_readable_png(paths[name], min_side=150)
    # The optional tables may be left out altogether: those figures say "no data" as well.
    only_two = SummaryFiles(missing.performance, missing.convergence)
    assert only_two.stopping_distance is None and only_two.zip_pi is None
    paths = draw_all(only_two, [], {"zip": tmp_path / "zip.png"}, dpi=60)
    assert_readable_png(paths["zip"], min_side=150)


def test_figures_go_where_named_and_read_only_the_listed_files(study, tmp_path):
    """Issue 12: a figure is drawn into the path the rule names (no file name rebuilt from a
    folder) from exactly the traces files listed, not from whatever lies beside them."""
    root = study["root"]
    summary = SummaryFiles.in_folder(root / "summary")
    traces = sorted((root / "traces").glob("cell=*/*.parquet"))
    out = tmp_path / "elsewhere" / "paths.png"
    out.parent.mkdir()
    assert figures.draw_one("traces", summary, reversed(traces), out) == out
    assert sorted(p.name for p in out.parent.iterdir()) == ["paths.png"]
    # The same files in another order give the same figure; no files give the empty one.
    assert out.read_bytes() == study["traces"].read_bytes()
    empty = figures.draw_one("traces", summary, [], tmp_path / "empty.png")
    one = figures.draw_one("traces", summary, traces[:1], tmp_path / "one.png")
    assert len({empty.read_bytes(), one.read_bytes(), out.read_bytes()}) == 3


def test_summary_files_are_those_summarise_writes(study, tmp_path):
    root = study["root"]
    files = SummaryFiles.in_folder(root / "summary")
    assert tuple(f.name for f in dataclasses.fields(files)) == SUMMARY_TABLES
    written = summarise(root / "fits", tmp_path / "summary", oracle_starts=ORACLES)
    # `summarise` writes the measure tables; the replicates and precision tables are the
    # workflow's (its summary step), so a library summary has none.
    assert written == {
        name: getattr(SummaryFiles.in_folder(tmp_path / "summary"), name) for name in MEASURE_TABLES
    }
    assert all(getattr(files, name).is_file() for name in MEASURE_TABLES)
    assert not any(getattr(files, name).exists() for name in ("replicates", "precision"))
    # The CSV copies are those the registry asks for, of the tables `summarise` writes.
    csvs = sorted(p.stem for p in (tmp_path / "summary").glob("*.csv"))
    assert csvs == sorted(set(CSV_TABLES) & set(MEASURE_TABLES))
    assert csvs == ["convergence", "estimands", "performance", "stopping_rules"]
    # The workflow's summary_csv rule writes each copy from the Parquet file alone: the bytes
    # `summarise` wrote from the frame in memory.
    for name in csvs:
        csv = tmp_path / "summary" / f"{name}.csv"
        written_from_frame = csv.read_bytes()
        csv.unlink()
        write_csv_copy(csv.with_suffix(".parquet"), csv)
        assert csv.read_bytes() == written_from_frame, name
    # Paths given as strings (Snakemake's) are kept as paths.
    assert SummaryFiles(str(files.performance), str(files.convergence)).performance == (
        files.performance
    )


def test_summary_tables_follow_from_one_registry():
    """Issue 20: SummaryFiles' fields, the measure and CSV tables and the summary rule's outputs
    all come from `schema.SUMMARY_TABLE_SPECS`."""
    specs = schema.SUMMARY_TABLE_SPECS
    fields = dataclasses.fields(SummaryFiles)
    assert tuple(f.name for f in fields) == SUMMARY_TABLES == tuple(s.name for s in specs)
    required = [f.name for f in fields if f.default is dataclasses.MISSING]
    assert required == [s.name for s in specs if s.required] == ["performance", "convergence"]
    measures = [s.name for s in specs if s.written_by == schema.BY_MEASURES]
    assert tuple(f.name for f in dataclasses.fields(SummaryTables)) == MEASURE_TABLES
    assert list(MEASURE_TABLES) == measures
    assert list(CSV_TABLES) == [s.name for s in specs if s.csv]
    assert jobs.summary_outputs(folder="out") == {s.name: f"out/{s.name}.parquet" for s in specs}
    csvs = jobs.summary_csv_outputs(lambda path: f"report:{path}", folder="out")
    assert csvs == {f"{s.name}_csv": f"report:out/{s.name}.csv" for s in specs if s.csv}
    rule = (ROOT / "workflow" / "rules" / "summary.smk").read_text()
    assert "jobs.summary_outputs(" in rule and "jobs.summary_csv_outputs(" in rule
    assert ".csv" not in rule


def test_captions_are_written_once_and_shown_by_both_reports():
    # Snakemake's report reads the caption files the figures rule names; the HTML report shows
    # CAPTIONS, read from the same files. No other copy exists.
    folder = ROOT / "src" / "emsim" / "study" / "figure_captions"
    assert sorted(p.stem for p in folder.glob("*.rst")) == sorted(FIGURE_NAMES)
    for name in FIGURE_NAMES:
        path = Path(caption_path(name))
        assert path.samefile(folder / f"{name}.rst")
        assert CAPTIONS[name] == " ".join(path.read_text().split()) != ""
    assert sorted(p.name for p in (ROOT / "workflow" / "report").glob("*.rst")) == ["workflow.rst"]
    # Both figure rules take their outputs from jobs.figure_outputs, which gives Snakemake's
    # report each figure's caption file.
    rule = (ROOT / "workflow" / "rules" / "figures.smk").read_text()
    assert rule.count("jobs.figure_outputs(") == 2
    given = jobs.figure_outputs(FIGURE_NAMES, lambda path, **kw: (path, kw))
    for name in FIGURE_NAMES:
        assert given[name] == (
            f"results/figures/{name}.png",
            {"caption": caption_path(name), "category": "Figures"},
        )
    with pytest.raises(ValueError, match="unknown figure"):
        caption_path("nope")


def test_format_estimate():
    assert format_estimate(0.012341, 0.00056) == "0.01234 (0.00056)"
    assert format_estimate(-1.5, 0.25) == "-1.50 (0.25)"
    assert format_estimate(12.3456, 3.2) == "12.3 (3.2)"
    assert format_estimate(0.5, float("nan")) == "0.5"
    assert format_estimate(float("nan"), 0.1) == "–"


EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)

CONFIG = {
    "study": "synthetic test study",
    "seed": 11,
    "replicates": 8,
    "grid": {"n": [100, 1000], "mu": [[0, 1], [0, 3]], "sigma": [1], "pi": [0.5, 0.8]},
    "models": ["pi", "equal_var", "full"],
    "methods": ["em", "squarem"],
    "starts": [
        {"name": "fixed", "strategy": "fixed", "values": {"pi": 0.5}},
        {"name": "truth", "strategy": "truth"},
    ],
    "em": {"tolerance": 1e-5, "max_iterations": 1000},
    "coverage": {"level": 0.95},
}


def test_report_is_self_contained_and_complete(study, tmp_path):
    root = study["root"]
    out = write_report(
        SummaryFiles.in_folder(root / "summary"),
        {name: study[name] for name in FIGURE_NAMES},
        tmp_path / "report" / "index.html",
        load_study(CONFIG),
        {"wall_time_s": 12.5, "git_commit": "0123abcd", "snakemake_version": "9.0"},
    )
    assert out.exists()
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert html.count('src="data:image/png;base64,') == len(FIGURE_NAMES)
    for name in FIGURE_NAMES:
        assert f'id="fig-{name}"' in html
    assert not EXTERNAL.search(html), EXTERNAL.search(html)
    # One inline script (sorting and filtering the tables), nothing loaded from anywhere.
    assert "<link" not in html and html.count("<script") == 1 and "<script>" in html
    for section in (
        "aims",
        "data",
        "estimands",
        "methods",
        "measures",
        "performance",
        "convergence",
        "failures",
        "figures",
        "provenance",
    ):
        assert f'<section id="{section}">' in html, section
    assert html.count("<table") >= 6
    # the performance table shows "estimate (MCSE)" as the summary has it
    perf = pd.read_parquet(root / "summary" / "performance.parquet")
    row = perf[(perf["n_ok"] >= 2) & perf["bias_mcse"].notna()].iloc[0]
    assert format_estimate(row["bias"], row["bias_mcse"]) in html
    # provenance: caller's entries, the summary's metadata and computed totals
    assert "0123abcd" in html and "cafe" in html and "12.50 s" in html
    total = int((synthetic_fits()["start"] != "best").sum())
    assert f"<td>total fits</td><td>{total}</td>" in html
    assert "synthetic test study" in html


def test_report_shows_the_figures_it_is_given_by_name(study, tmp_path):
    """Issue 12: the report embeds the figures passed to it by name, not a folder's PNGs."""
    root = study["root"]
    extra = {"bias": study["bias"], "bias_of_mu1": study["rmse"]}
    out = write_report(
        SummaryFiles.in_folder(root / "summary"), extra, tmp_path / "index.html", load_study(CONFIG)
    )
    html = out.read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 2
    assert 'id="fig-bias"' in html and 'alt="bias_of_mu1"' in html
    assert f"<b>Figure {len(FIGURE_NAMES) + 1}.</b> rmse.png" in html
    assert html.count("was not drawn") == len(FIGURE_NAMES) - 1


def test_report_body_then_its_figures_is_the_report_of_one_step(study, tmp_path):
    """Issue 22: the workflow writes the report's body while the figures are drawn
    (`write_report_body`, which reads no figure) and then puts them in (`embed_figures`):
    the page, byte for byte, that `write_report` writes in one step."""
    root = study["root"]
    summary = SummaryFiles.in_folder(root / "summary")
    drawn = {name: study[name] for name in FIGURE_NAMES}
    fits = sorted((root / "fits").glob("cell=*/*.parquet"))
    # The creation time is given, so that both pages state the same one.
    provenance = {"report_created": "2026-01-02T03:04:05+00:00", "git_commit": "0123abcd"}
    whole = write_report(
        summary, drawn, tmp_path / "whole.html", load_study(CONFIG), provenance, fits
    )
    body = write_report_body(summary, tmp_path / "body.html", load_study(CONFIG), provenance, fits)
    text = body.read_text(encoding="utf-8")
    assert text.count(FIGURES_MARK) == 1 and "data:image/png" not in text
    out = embed_figures(body, drawn, summary.stopping_rules, tmp_path / "index.html")
    html = out.read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == len(FIGURE_NAMES)
    assert out.read_bytes() == whole.read_bytes()
    with pytest.raises(ValueError, match="is not a report body"):
        embed_figures(out, drawn, summary.stopping_rules, tmp_path / "again.html")


def test_report_without_results(tmp_path):
    summary = SummaryFiles.in_folder(tmp_path / "summary")
    out = write_report(summary, figure_paths(tmp_path / "figures"), tmp_path / "index.html", None)
    html = out.read_text(encoding="utf-8")
    assert "No performance results." in html
    assert "was not drawn" in html
    assert not EXTERNAL.search(html)


# --- replicates and Monte Carlo precision (issue 11) ------------------------------------------

ADAPTIVE = {"min": 4, "max": 8, "step": 4}


def adaptive_summary(study, folder: Path) -> tuple[SummaryFiles, float]:
    """The synthetic study's summary with the replicates and precision tables an adaptive study
    writes: one bias-MCSE target for pi, set between the cells' worst MCSEs so that some cells
    meet it and the others stop at max (all cells ran `max` replicates here)."""
    summary = SummaryFiles.in_folder(study["root"] / "summary")
    perf = pd.read_parquet(summary.performance)
    probe = Precision(targets=(Target("bias_mcse", "pi", 1.0),))
    worst = sorted(
        assess(rows, probe, ADAPTIVE["max"])["reached"].iloc[0]
        for _, rows in perf.groupby("cell_id")
    )
    target = (worst[len(worst) // 2 - 1] + worst[len(worst) // 2]) / 2
    precision = Precision(targets=(Target("bias_mcse", "pi", target),))
    assessments, replicates = [], []
    for _, rows in perf.groupby("cell_id"):
        assessment = assess(rows, precision, ADAPTIVE["max"])
        stop = decide(assessment, ADAPTIVE["max"], ADAPTIVE["max"], adaptive=True)
        assessments.append(assessment)
        cell = rows.iloc[0]
        replicates.append(replicates_row(cell, ADAPTIVE["max"], 2, stop, assessment))
    folder.mkdir(parents=True, exist_ok=True)
    reps_path, prec_path = folder / "replicates.parquet", folder / "precision.parquet"
    plan = plan_metadata(ADAPTIVE["min"], ADAPTIVE["max"], ADAPTIVE["step"])
    table = pa.Table.from_pandas(
        pd.concat(replicates, ignore_index=True), REPLICATES_SCHEMA, preserve_index=False
    )
    pq.write_table(table.replace_schema_metadata(plan), reps_path)
    pq.write_table(
        pa.Table.from_pandas(
            pd.concat(assessments, ignore_index=True), ASSESSMENT_SCHEMA, preserve_index=False
        ),
        prec_path,
    )
    files = dataclasses.replace(summary, replicates=reps_path, precision=prec_path)
    return files, target


def adaptive_config(target: float) -> dict:
    return {**CONFIG, "replicates": ADAPTIVE, "precision": {"bias_mcse": {"pi": target}}}


def test_replicates_figure_adaptive_and_fixed(study, tmp_path):
    files, _ = adaptive_summary(study, tmp_path / "summary")
    adaptive = figures.draw_one("replicates", files, [], tmp_path / "adaptive.png")
    assert_readable_png(adaptive)
    # Without the replicates table the counts come from the convergence table.
    assert_readable_png(study["replicates"])
    reps = pd.read_parquet(files.replicates)
    fixed = figures.plot_replicates(reps.assign(stop="fixed"), tmp_path / "fixed.png")
    assert_readable_png(fixed)
    assert len({adaptive.read_bytes(), fixed.read_bytes(), study["replicates"].read_bytes()}) == 3
    empty = figures.plot_replicates(reps.iloc[:0], tmp_path / "empty.png")
    assert_readable_png(empty, min_side=150)


def linked_cell(cell_id: str, label: str) -> str:
    """A table's cell column: the cell's label, leading to its drill-down (section 13)."""
    return f'<td><a href="#cell-{cell_id}">{label}</a></td>'


def _section(html: str, anchor: str) -> str:
    start = html.index(f'<section id="{anchor}">')
    return html[start : html.index("</section>", start)]


def test_report_lists_replicates_targets_and_cells_stopped_at_max(study, tmp_path):
    files, target = adaptive_summary(study, tmp_path / "summary")
    html = write_report(
        files,
        {name: study[name] for name in FIGURE_NAMES},
        tmp_path / "index.html",
        load_study(adaptive_config(target)),
    ).read_text(encoding="utf-8")
    # Sections up to 9 keep their numbers (docs and config.yaml cite "report section 9").
    assert "9. Can the stopping rule be trusted?" in html
    section = _section(html, "replicates")
    assert "10. Replicates and Monte Carlo precision" in section
    reps = pd.read_parquet(files.replicates)
    prec = pd.read_parquet(files.precision)
    stopped = reps[reps["stop"] == STOP_MAX]
    assert 0 < len(stopped) < len(reps) and set(reps["stop"]) == {STOP_MET, STOP_MAX}
    assert f"{len(reps) - len(stopped)} met every target, {len(stopped)} stopped" in section
    table, missed = section.split('id="missed-targets"')
    # Every cell in the table with its replicates; the missed list names exactly the cells
    # that stopped at max, each with the MCSE it reached and its worst row.
    labels = {}
    for _, row in add_design_factors(reps).iterrows():
        labels[row["cell_id"]] = cell_label(row)
        shown = linked_cell(row["cell_id"], labels[row["cell_id"]])
        assert f"{shown}<td>{ADAPTIVE['max']}</td>" in table
    for _, row in prec.iterrows():
        shown = linked_cell(row["cell_id"], labels[row["cell_id"]])
        assert (shown in missed) == (not row["met"])
        if not row["met"]:
            reached = f"{row['reached']:.3g}"
            worst = f"{row['worst_model']} / {row['worst_method']}"
            assert reached in missed and worst in missed
    assert 'href="#fig-replicates"' in section


def test_report_replicates_of_a_fixed_study_and_missing_tables(study, tmp_path):
    summary = SummaryFiles.in_folder(study["root"] / "summary")
    assert not summary.replicates.exists()  # summarise does not write it: from convergence
    html = write_report(summary, {}, tmp_path / "fixed.html", load_study(CONFIG)).read_text("utf-8")
    section = _section(html, "replicates")
    cells = pd.read_parquet(summary.convergence)["cell_id"].nunique()
    assert f"All {cells} cells ran <b>{CONFIG['replicates']}</b> replicates" in section
    assert "missed-targets" not in section
    # No tables at all: the section says so.
    empty = SummaryFiles.in_folder(tmp_path / "none")
    html = write_report(empty, {}, tmp_path / "none.html", load_study(adaptive_config(0.01)))
    section = _section(html.read_text("utf-8"), "replicates")
    assert "No replicates table." in section and "MCSE of the bias of pi" in section


# --- the typed study and the convergence MCSEs (issue 20 items 1 and 8) --------------------


def test_report_convergence_table_shows_each_cost_with_its_mcse(study, tmp_path):
    summary = SummaryFiles.in_folder(study["root"] / "summary")
    html = write_report(summary, {}, tmp_path / "index.html", load_study(CONFIG)).read_text("utf-8")
    section = _section(html, "convergence")
    conv = pd.read_parquet(summary.convergence)
    columns = ("iterations_mean", "iterations_median", "loglik_evals_mean")
    shown = 0
    for _, row in conv.iterrows():
        for column in columns:
            text = format_estimate(row[column], row[f"{column}_mcse"], digits=3)
            assert f"<td>{text}</td>" in section, (column, text)
            shown += "(" in text
        runtime = format_estimate(
            1000 * row["runtime_mean_s"], 1000 * row["runtime_mean_s_mcse"], digits=3
        )
        assert f"<td>{runtime}</td>" in section
    # Some entries carry an MCSE (8 replicates: the median's needs 6 converged fits).
    assert shown > len(conv)
    assert "90th percentile = (x_(k) - x_(j)) / (2 x 1.96)" in _section(html, "measures")


def test_report_plan_with_min_equal_to_max_is_a_fixed_study(study, tmp_path):
    """Issue 20: {min: 8, max: 8} runs one round; the report says so (it used to call it
    adaptive because `replicates` was a mapping)."""
    files, target = adaptive_summary(study, tmp_path / "summary")
    config = {**CONFIG, "replicates": {"min": 8, "max": 8}, "precision": {"bias_mcse": target}}
    html = write_report(files, {}, tmp_path / "index.html", load_study(config)).read_text("utf-8")
    assert "Replicates per cell: <b>8</b>." in _section(html, "data")
    section = _section(html, "replicates")
    assert "The number of replicates was fixed" in section
    assert "Targets missed (a fixed study" in section and "Each cell ran" not in section


def test_report_methods_and_targets_come_from_the_typed_study(study, tmp_path):
    files, _ = adaptive_summary(study, tmp_path / "summary")
    config = {
        **adaptive_config(0.01),
        "starts": [
            {"name": "fixed", "strategy": "fixed", "values": {"pi": 0.5}},
            {"name": "quantile", "strategy": "quantile"},
            {"name": "draw", "strategy": "random", "k": 2},
            {"name": "truth", "strategy": "truth"},
        ],
        "em": {
            "stopping": ["abs", "aitken", "score"],
            "tolerance": {"abs": 1e-5, "aitken": 1e-7},
            "score_tolerance": 0.02,
        },
        "precision": {"coverage_mcse": {"pi": 0.02}, "starts": ["draw"], "methods": ["em"]},
    }
    loaded = load_study(config)
    html = write_report(files, {}, tmp_path / "index.html", loaded).read_text("utf-8")
    methods = _section(html, "methods")
    # One row per configured start: the random draws grouped under their config name, each
    # strategy with the settings the fits used (the quantile split's default pi0 included).
    draw, quantile = escape(json.dumps({"k": 2})), escape(json.dumps({"pi0": 0.5}))
    assert f"<td>draw</td><td>random</td><td>{draw}</td>" in methods
    assert f"<td>quantile</td><td>quantile</td><td>{quantile}</td>" in methods
    # Issue 18: every rule the study ran, with its own tolerance (score's is
    # em.score_tolerance, in SEs) and what it means, in config order.
    rules = methods.split("<h3>Stopping rules</h3>", 1)[1].split("</table>", 1)[0]
    shown = [
        (row.split("</td>")[0], row.split("<td>")[1].split("</td>")[0])
        for row in rules.split("<tr><td>")[1:]
    ]
    assert shown == [("abs", "1e-05"), ("aitken", "1e-07"), ("score", "0.02")]
    assert "<td>score</td><td>0.02</td><td>standard errors</td>" in rules
    assert "Newton decrement" in rules and escape("the seed's rule") in rules
    assert "Rules compared: abs, aitken, score (section 4)" in html
    section = _section(html, "replicates")
    # The scope as the config gave it: draw1, draw2 -> draw.
    assert "Applies to models: all; methods: em; stopping: all; starts: draw." in section
    # The study's one target (the precision table on disk holds other ones).
    targets = section.split("Applies to", 1)[1].split("</table>", 1)[0]
    assert "<td>MCSE of the coverage of pi</td><td>0.02</td>" in targets
    assert "MCSE of the bias" not in targets
    assert "<th>MCSE of the coverage of pi (≤ 0.02)</th>" in section
    plan = loaded.plan
    assert f"Each cell ran <b>{plan.minimum}</b> replicates, then" in section
    # The projected step: on to the count the MCSE projects, on the plan's grid, up to max.
    assert f"rounded up to a multiple of <b>{plan.step}</b>" in section
    assert f"up to <b>{plan.maximum}</b>" in section


def section9_rules() -> pd.DataFrame:
    """`stopping_rules` rows: two cells x one procedure, hand-set shares and E-steps."""
    design = {"mu1": 0.0, "mu2": 1.0, "sigma1": 1.0, "sigma2": 1.0, "family": "normal"}
    rows = []
    for cell_id, n, pi, n_fits, shares, evals, evals_mcse, dist in (
        ("slow", 5000, 0.8, 10, (0.5, 0.2, 0.1, 0.2), 100.0, 3.0, 0.05),
        ("fast", 100, 0.5, 30, (0.9, 0.1, 0.0, 0.0), 40.0, 2.0, 0.002),
    ):
        row = {"cell_id": cell_id, "n": n, **design, "pi": pi}
        row |= {"model": "full", "method": "squarem", "stopping": "score", "n_fits": n_fits}
        for status, share in zip(stopping.RULE_STATUSES, shares, strict=True):
            row[f"rate_{status}"] = share
            row[f"rate_{status}_mcse"] = np.sqrt(share * (1 - share) / n_fits)
        row |= {"n_distance": n_fits, "distance_median": dist, "distance_median_mcse": 0.001}
        row |= {"loglik_evals_mean": evals, "loglik_evals_mean_mcse": evals_mcse}
        row |= {"loglik_evals_median": evals, "loglik_evals_median_mcse": np.nan}
        rows.append(row)
    return pd.DataFrame(rows)[list(stopping.RULE_COLUMNS)]


def test_section9_pools_the_cells_and_shows_the_slowest():
    """Issue 18: section 9's numbers per model x method x rule, pooled over cells by fits
    (binomial MCSE of the pooled share; a stratified mean's MCSE for the E-steps), the median
    distance as the histogram bin holding it, and the slowest cell's own row."""
    from emsim.study.report_stopping import pooled_rules, slowest_cells, stopping_section

    rules = section9_rules()
    pooled = pooled_rules(rules).iloc[0]
    assert pooled["n_fits"] == 40
    assert pooled["rate_converged"] == pytest.approx((5 + 27) / 40)
    assert pooled["rate_converged_mcse"] == pytest.approx(np.sqrt(0.8 * 0.2 / 40))
    assert pooled["rate_premature"] == pytest.approx(5 / 40)
    assert pooled["rate_saddle"] == pytest.approx(1 / 40)
    assert pooled["loglik_evals_mean"] == pytest.approx((10 * 100 + 30 * 40) / 40)
    assert pooled["loglik_evals_mean_mcse"] == pytest.approx(np.hypot(10 * 3, 30 * 2) / 40)
    assert slowest_cells(rules, "score") == ["slow", "fast"]
    # 40 fits' distances: 25 in [10^-2.75, 10^-2.5), 15 beyond: the median is in the first.
    counts = pd.DataFrame(
        {
            "model": "full",
            "method": "squarem",
            "stopping": "score",
            "status": ["converged", "premature"],
            "log10_lo": [-2.75, -1.5],
            "log10_hi": [-2.5, -1.25],
            "count": [25, 15],
        }
    )
    html = stopping_section(["score"], 0.1, pd.DataFrame(), rules, counts, {"slow": "n=5000"})
    overall, slowest = html.split("<table")[1:3]
    assert "<td>40</td><td>80.0 (6.3)</td><td>12.5 (5.2)</td><td>2.5 (2.5)</td>" in overall
    assert "<td>0.0018 to 0.0032</td><td>55.0 (1.7)</td>" in overall
    # The slowest cell first, with its own median distance and MCSE.
    first = slowest.split("<tr><td>")[1]
    assert first.startswith(
        '<a href="#cell-slow">n=5000</a></td><td>full</td><td>squarem</td><td>score</td><td>10</td>'
    )
    assert "<td>0.0500 (0.0010)</td><td>100.0 (3.0)</td>" in first
    empty = stopping_section(["abs"], 0.1, pd.DataFrame(), rules.iloc[:0], counts, {})
    assert "No stopping-rule results" in empty


def test_shares_and_pi_intervals_stay_within_0_and_1():
    """Issue 23: coverage's error bars end at the axis' [0, 1], the zip plot's intervals for pi
    at 0 and 1; whether an interval covers pi is still decided on the whole interval."""
    below, above = figure_data.clipped_error(
        np.array([0.99, 0.5, 0.02]), np.array([0.05, 0.05, 0.05]), (0.0, 1.0)
    )
    np.testing.assert_allclose(below, [0.05, 0.05, 0.02])
    np.testing.assert_allclose(above, [0.01, 0.05, 0.05])
    rows = pd.DataFrame({"pi": 0.95, "est_pi": [0.97, 0.5], "se_pi": [0.05, 0.1]})
    shown = figure_data.zip_intervals(rows, 1.96)
    assert shown["hi"].max() == 1.0 and shown["lo"].min() >= 0.0
    assert list(shown["covers"]) == [True, False]


_DRAW_UNDER_SERVER_IMPORTS = """
import sys
from pathlib import Path
import emsim.study.server_imports as server_imports
from emsim.study.figures import draw_all
server_imports.undo()
import seaborn._statistics
from emsim.study.captions import FIGURE_NAMES
from emsim.study.summary import SummaryFiles
root, out = Path(sys.argv[1]), Path(sys.argv[2])
draw_all(SummaryFiles.in_folder(root / "summary"), sorted((root / "traces").glob("*/*.parquet")),
         {name: out / f"{name}.png" for name in FIGURE_NAMES})
print(seaborn._statistics._no_scipy)
"""


def test_the_fork_servers_imports_draw_every_figure_byte_for_byte(study, tmp_path):
    """The figure workers' fork server imports the plotting code without scipy.linalg and
    scipy.stats (`server_imports`: seaborn then uses its own KDE, which no figure draws). Every
    figure drawn after those imports is the same file as one drawn after the usual ones."""
    import os
    import subprocess
    import sys

    script = tmp_path / "draw.py"
    script.write_text(_DRAW_UNDER_SERVER_IMPORTS)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), MPLBACKEND="Agg")
    done = subprocess.run(
        [sys.executable, str(script), str(study["root"]), str(tmp_path / "figures")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]  # seaborn did import without scipy.stats
    for name in FIGURE_NAMES:
        drawn = (tmp_path / "figures" / f"{name}.png").read_bytes()
        assert drawn == study[name].read_bytes(), name
