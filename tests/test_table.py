"""Issue 23: `emsim table` prints one measure as a design x method table with its MCSE.

Every expected entry is read here from the performance table the command reads (a made-up one
whose design is stored out of order, and the session's finished TINY study) and formatted by
the test itself.
"""

from __future__ import annotations

import io
import itertools
import random

import numpy as np
import pandas as pd
import pytest

from emsim.cli import main as emsim_main

DESIGN = ["n", "mu1", "mu2", "sigma1", "sigma2", "pi"]


def _made_up_performance() -> pd.DataFrame:
    """Cells stored in an order that is neither the design's nor the strings' (5000 < 50 as
    text), two methods, two models, two rules, one NaN value and one NaN MCSE."""
    rng = random.Random(3)
    cells = [(5000, 0, 2, 1, 1, 0.8), (50, 0, 4, 1, 1, 0.5), (500, 0, 2, 1, 1, 0.8)]
    cells += [(50, 0, 2, 1, 1, 0.95), (50, 0, 2, 1, 1, 0.5)]
    rows = []
    for cell, model, stopping, start, method, set_ in itertools.product(
        cells,
        ["full", "pi"],
        ["score", "abs"],
        ["truth", "fixed"],
        ["squarem", "em"],
        ["own", "common"],
    ):
        row = dict(zip(DESIGN, cell, strict=True), cell_id=f"c{cell[0]}_{cell[2]}_{cell[5]}")
        row.update(model=model, method=method, stopping=stopping, start=start, parameter="pi")
        row.update(set=set_, bias=rng.uniform(-0.1, 0.1), bias_mcse=rng.uniform(0, 0.01))
        rows.append(row)
    perf = pd.DataFrame(rows)
    perf.loc[3, "bias"] = np.nan
    perf.loc[5, "bias_mcse"] = np.nan
    return perf


@pytest.fixture(scope="module")
def made_up(tmp_path_factory) -> tuple[pd.DataFrame, str]:
    results = tmp_path_factory.mktemp("table") / "results"
    (results / "summary").mkdir(parents=True)
    perf = _made_up_performance()
    perf.to_parquet(results / "summary" / "performance.parquet")
    return perf, str(results)


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = emsim_main(["table", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_csv_rows_follow_the_design_and_hold_the_tables_numbers(capsys, made_up):
    perf, results = made_up
    code, out, _ = run(
        capsys, "--measure", "bias", "--parameter", "pi", "--format", "csv", "--results", results
    )
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    own = perf[perf["set"] == "own"].assign(separation=lambda f: (f["mu2"] - f["mu1"]).abs())
    # The design order: n, separation, pi; then model (as MODELS: pi before full), and the
    # rules and starts alphabetically (this made-up table has no recorded config).
    model_rank = {"pi": 0, "full": 1}
    expected = (
        own.drop_duplicates(["cell_id", "model", "stopping", "start"])
        .assign(_m=lambda f: f["model"].map(model_rank))
        .sort_values(["n", "separation", "pi", "_m", "stopping", "start"])
    )
    assert table[["n", "separation", "pi", "model", "stopping", "start"]].values.tolist() == (
        expected[["n", "separation", "pi", "model", "stopping", "start"]].values.tolist()
    )
    assert table["n"].tolist()[0] == 50 and table["n"].tolist()[-1] == 5000
    assert list(table.columns[-4:]) == ["em", "em_mcse", "squarem", "squarem_mcse"]
    for _, row in table.iterrows():
        for method in ("em", "squarem"):
            source = own[
                (own["n"] == row["n"])
                & (own["separation"] == row["separation"])
                & (own["pi"] == row["pi"])
                & (own["model"] == row["model"])
                & (own["stopping"] == row["stopping"])
                & (own["start"] == row["start"])
                & (own["method"] == method)
            ]
            assert len(source) == 1
            for column, value in ((method, "bias"), (f"{method}_mcse", "bias_mcse")):
                want = source[value].iloc[0]
                assert (np.isnan(want) and np.isnan(row[column])) or row[column] == want


def test_markdown_and_latex_entries_are_value_and_mcse_in_parentheses(capsys, made_up):
    perf, results = made_up
    pick = ["--model", "full", "--stopping", "abs", "--start", "fixed", "--set", "common"]
    base = ["--measure", "bias", "--parameter", "pi", "--results", results, *pick]
    source = perf[
        (perf["model"] == "full")
        & (perf["stopping"] == "abs")
        & (perf["start"] == "fixed")
        & (perf["set"] == "common")
    ].sort_values(["n", "mu2", "pi"])
    code, markdown, _ = run(capsys, *base, "--digits", "4")
    assert code == 0
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert lines[0] == "| n | Δ/σ₁ | π | model | rule | start | em | squarem |"
    for line, (_, cell) in zip(
        lines[1:], source.drop_duplicates("cell_id").iterrows(), strict=True
    ):
        got = [part.strip() for part in line.strip("|").split("|")]
        assert got[:3] == [f"{cell['n']}", f"{cell['mu2']:g}", f"{cell['pi']:g}"]
        for method, text in zip(("em", "squarem"), got[-2:], strict=True):
            mine = source[(source["cell_id"] == cell["cell_id"]) & (source["method"] == method)]
            assert text == f"{mine['bias'].iloc[0]:.4f} ({mine['bias_mcse'].iloc[0]:.4f})"
    code, latex, _ = run(capsys, *base, "--format", "latex")
    assert code == 0
    body = latex.split("\\midrule\n")[1].split("\\bottomrule")[0].splitlines()
    assert len(body) == len(lines) - 1
    first = source[source["n"] == 50].sort_values(["mu2", "pi"]).iloc[:2]
    em = first[first["method"] == "em"].iloc[0]
    assert f"{em['bias']:.3f} ({em['bias_mcse']:.3f})" in body[0]
    assert body[0].endswith(r" \\") and r"\begin{tabular}{rrrlllcc}" in latex


def test_an_undefined_value_is_na(capsys, made_up):
    perf, results = made_up
    row = perf.loc[3]
    args = ["--measure", "bias", "--parameter", "pi", "--results", results]
    args += ["--model", row["model"], "--stopping", row["stopping"], "--start", row["start"]]
    code, out, _ = run(capsys, *args, "--set", row["set"])
    assert code == 0
    assert sum("| NA" in line for line in out.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--parameter", "pj"], ["--parameter 'pj'", "pi"]),
        (["--parameter", "pi", "--model", "fll"], ["--model 'fll'", "full, pi"]),
        (["--parameter", "pi", "--stopping", "rel"], ["--stopping 'rel'", "score, abs"]),
        (["--parameter", "pi", "--format", "html"], ["--format", "html"]),
        (["--parameter", "pi", "--digits", "-1"], ["--digits -1"]),
    ],
)
def test_bad_input_is_one_line_naming_the_option(capsys, made_up, args, needles):
    _, results = made_up
    code, out, err = run(capsys, "--measure", "bias", "--results", results, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and all(needle in err for needle in needles), err


def test_a_folder_without_a_summary_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "--measure", "bias", "--parameter", "pi", "--results", tmp_path)
    assert code == 2 and "no performance table" in err and err.count("\n") == 1


@pytest.mark.slow
def test_on_a_finished_study_in_config_order(capsys, tiny_study):
    """TINY: the rules and starts in its config's order, `best` last; every number is the
    performance table's."""
    from studyrun import TINY, summary_table

    perf = summary_table(tiny_study, "performance")
    results = tiny_study / "results"
    code, out, _ = run(
        capsys,
        "--measure",
        "coverage",
        "--parameter",
        "mu1",
        "--format",
        "csv",
        "--results",
        results,
        "--model",
        "full",
    )
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    starts = [s["name"] for s in TINY["starts"] if s["strategy"] != "random"]
    seen = list(dict.fromkeys(table["start"]))
    assert [s for s in seen if s in starts] == starts and seen[-1] == "best"
    assert list(dict.fromkeys(table["stopping"])) == TINY["em"]["stopping"]
    own = perf[(perf["set"] == "own") & (perf["parameter"] == "mu1") & (perf["model"] == "full")]
    assert len(table) * 2 == len(own)
    for _, row in table.iterrows():
        for method in TINY["methods"]:
            source = own[
                (own["n"] == row["n"])
                & (own["stopping"] == row["stopping"])
                & (own["start"] == row["start"])
                & (own["method"] == method)
            ]
            assert source["coverage"].iloc[0] == row[method]
            assert source["coverage_mcse"].iloc[0] == row[f"{method}_mcse"]


def test_cells_of_one_design_and_several_families_are_told_apart(capsys, tmp_path):
    # The default study's t(4) and contaminated cells share n, mu, sigma and pi with a normal
    # cell: without a family column their rows were indistinguishable.
    perf = _made_up_performance()
    perf["family"] = "normal"
    twins = perf[perf["cell_id"] == "c500_2_0.8"]
    for label in ("t(df=4.0)", "contaminated(epsilon=0.05,scale=5.0)"):
        twin = twins.assign(family=label, cell_id=f"c500_2_0.8_{label}")
        perf = pd.concat([perf, twin.assign(bias=twin["bias"] + len(label))], ignore_index=True)
    results = tmp_path / "results"
    (results / "summary").mkdir(parents=True)
    perf.to_parquet(results / "summary" / "performance.parquet")
    args = ["--measure", "bias", "--parameter", "pi", "--results", results]
    args += ["--model", "full", "--stopping", "abs", "--start", "truth", "--set", "own"]
    code, out, _ = run(capsys, *args, "--format", "csv")
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    twins_rows = table[(table["n"] == 500) & (table["separation"] == 2)]
    # Normal first, then the other families, each with its own numbers.
    assert list(twins_rows["family"]) == [
        "normal",
        "contaminated(epsilon=0.05,scale=5.0)",
        "t(df=4.0)",
    ]
    chosen = perf[(perf["model"] == "full") & (perf["stopping"] == "abs")]
    chosen = chosen[(chosen["start"] == "truth") & (chosen["set"] == "own")]
    for _, row in twins_rows.iterrows():
        expected = chosen[(chosen["family"] == row["family"]) & (chosen["n"] == 500)]
        expected = expected[expected["method"] == "em"]["bias"]
        assert row["em"] == pytest.approx(float(expected.iloc[0]), abs=0)
    code, out, _ = run(capsys, *args, "--format", "latex")
    assert r"\begin{tabular}{rrrllllcc}" in out
    assert "t(df=4.0) & full & abs & truth" in out
