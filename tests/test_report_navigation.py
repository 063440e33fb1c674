"""Issue 23: the report one can navigate. Its tables list rows in the design's order
(numerically: n = 100 before n = 1000), every cell name leads to the cell's drill-down, and the
drill-down lists each cell's fits that did not converge, by status, with counts, the first
`SHOWN_PER_STATUS` of each and the `emsim replay` command that recomputes each one.

Drawn from the synthetic study of tests/test_figures_report.py (its fit rows on disk)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import escape
from test_figures_report import CONFIG, ORACLES, _section, synthetic_fits

from emsim.study.config import load_study
from emsim.study.report import write_report
from emsim.study.report_cells import design_sorted, study_orders
from emsim.study.report_drilldown import SHOWN_PER_STATUS, read_failed_fits, replay_command
from emsim.study.summary import SummaryFiles, summarise

ROW = re.compile(r"<tr>(.*?)</tr>", re.DOTALL)
CELL = re.compile(r"<td>(.*?)</td>", re.DOTALL)


def table_rows(html: str) -> list[list[str]]:
    """Each body row of the tables in `html` as its cells' text (links removed)."""
    rows = []
    for row in ROW.findall(html):
        cells = [re.sub(r"<[^>]+>", "", c) for c in CELL.findall(row)]
        if cells:
            rows.append(cells)
    return rows


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    return build_report(tmp_path_factory.mktemp("navigation"))


def build_report(root: Path) -> dict:
    """The synthetic study's fits, with a larger share of failures in one cell (more than
    SHOWN_PER_STATUS of one status), and its report with the drill-down, in `root`."""
    fits = synthetic_fits(reps=12, seed=3)
    heavy = fits["cell_id"] == "n100_d1_pi0.5"
    fits.loc[heavy & (fits["replicate"] % 2 == 0), "status"] = "max_iterations"
    fits = fits.assign(stopping="abs", distance_to_limit=0.25, loglik_gap_to_limit=0.00125)
    # Each fit's gap below its replicate's best start: its replicate number, so that the
    # drill-down's rows can be told apart.
    fits["best_start_gap"] = fits["replicate"] + 0.5
    files = []
    for cell_id, rows in fits.groupby("cell_id"):
        folder = root / "fits" / f"cell={cell_id}"
        folder.mkdir(parents=True)
        rows.to_parquet(folder / "chunk=0.parquet", index=False)
        files.append(folder / "chunk=0.parquet")
    summarise(root / "fits", root / "summary", metadata={"seed": "11"}, oracle_starts=ORACLES)
    study = load_study({**CONFIG, "replicates": 12})
    out = write_report(
        SummaryFiles.in_folder(root / "summary"), {}, root / "index.html", study, fits=files
    )
    return {
        "html": out.read_text("utf-8"),
        "path": out,
        "fits": fits,
        "files": files,
        "study": study,
    }


def test_tables_follow_the_design_numerically(report):
    conv = _section(report["html"], "convergence")
    shown = [row[:5] for row in table_rows(conv)]
    assert shown, "no convergence rows"
    # n = 100 before n = 1000 (a string sort put "n=1000" first), the models in config order.
    sizes = [int(re.match(r"n=(\d+)", row[0]).group(1)) for row in shown]
    assert sizes == sorted(sizes) and sizes[0] == 100
    first_cell = [row for row in shown if row[0] == shown[0][0]]
    models = list(dict.fromkeys(row[1] for row in first_cell))
    assert models == list(report["study"].models)


def test_design_sorted_orders_cells_then_procedures():
    frame = pd.DataFrame(
        {
            "cell_id": ["big", "small_far", "small_near_pi8", "small_near", "small_near"],
            "n": [5000, 50, 50, 50, 50],
            "mu1": 0.0,
            "mu2": [1.0, 4.0, 1.0, 1.0, 1.0],
            "sigma1": 1.0,
            "sigma2": 1.0,
            "pi": [0.5, 0.5, 0.8, 0.5, 0.5],
            "model": ["pi", "pi", "pi", "full", "pi"],
        }
    )
    ordered = design_sorted(frame, study_orders(None))
    assert list(zip(ordered["cell_id"], ordered["model"], strict=True)) == [
        ("small_near", "pi"),
        ("small_near", "full"),
        ("small_near_pi8", "pi"),
        ("small_far", "pi"),
        ("big", "pi"),
    ]


def test_every_cell_name_leads_to_its_drilldown(report):
    html = report["html"]
    anchors = set(re.findall(r'id="(cell-[^"]+)"', html))
    cells = set(report["fits"]["cell_id"])
    assert anchors == {f"cell-{c}" for c in cells}
    for section in ("data", "performance", "convergence"):
        targets = set(re.findall(r'href="#(cell-[^"]+)"', _section(html, section)))
        assert targets == anchors, section


def test_drilldown_lists_failed_fits_by_status_with_counts_and_replay(report):
    html = report["html"]
    fits = report["fits"]
    failed = fits[fits["status"] != "converged"]
    drill = _section(html, "drilldown")
    for cell_id, rows in failed.groupby("cell_id"):
        start = drill.index(f'id="cell-{cell_id}"')
        end = drill.find('<div class="drill-cell"', start)
        block = drill[start : end if end > 0 else len(drill)]
        counts = rows["status"].value_counts()
        assert f"{len(rows)} fit(s) did not converge" in block
        for status, count in counts.items():
            assert f"{status}: {count} fit(s)" in block
        # At most SHOWN_PER_STATUS rows per status, each with its replay command.
        commands = re.findall(r"emsim replay [^<]+", block)
        assert len(commands) == sum(min(c, SHOWN_PER_STATUS) for c in counts)
        # Within a status by replicate: the first command is that of the status's first fit.
        status = block.split("<summary>", 1)[1].split(":", 1)[0]
        first = rows[rows["status"] == status].sort_values("replicate", kind="stable").iloc[0]
        assert commands[0] == str(escape(replay_command(first)))
        # Each row shows how far its iteration is from its limit and how far below the best
        # start the fit ended: the first row is the first fit's.
        table = block[block.index("<table") : block.index("</table>")]
        header = re.findall(r"<th[^>]*>(.*?)</th>", table)
        first_row = table_rows(table)[0]
        shown = dict(zip(header, first_row, strict=True))
        assert shown["log-lik to limit"] == "0.00125"
        assert shown["log-lik below best start"] == f"{first['replicate'] + 0.5:.3g}"
    heavy = failed[failed["cell_id"] == "n100_d1_pi0.5"]
    assert (heavy["status"] == "max_iterations").sum() > SHOWN_PER_STATUS
    assert f"the first {SHOWN_PER_STATUS} shown" in drill


def test_replay_command_names_every_key_of_the_fit():
    fit = {
        "cell_id": "n50_mu0-1_s1-1_pi0.5_a073a7a4",
        "replicate": 7,
        "model": "full",
        "method": "squarem",
        "start": "random2",
        "stopping": "score",
    }
    assert replay_command(fit) == (
        "emsim replay --cell n50_mu0-1_s1-1_pi0.5_a073a7a4 --replicate 7 --model full "
        "--method squarem --start random2 --stopping score"
    )


def test_read_failed_fits_reads_only_the_failures(report):
    failed = read_failed_fits(report["files"])
    expected = report["fits"][report["fits"]["status"] != "converged"]
    assert len(failed) == len(expected) and (failed["status"] != "converged").all()
    assert set(failed["distance_to_limit"]) == {0.25}
    assert set(failed["loglik_gap_to_limit"]) == {0.00125}
    assert (failed["best_start_gap"] == failed["replicate"] + 0.5).all()


def test_report_without_fits_says_so(report, tmp_path: Path):
    root = Path(report["files"][0]).parents[2]
    out = write_report(SummaryFiles.in_folder(root / "summary"), {}, tmp_path / "r.html")
    assert "The fit rows were not given to the report" in _section(out.read_text(), "drilldown")
