"""Drawing the figures at less cost, the same figures (issue 22): figure_style.save_png draws a
figure once (the Agg canvas's print_png) where Figure.savefig draws it twice, and must write
the file savefig writes, byte for byte; the traces are read without the columns no figure
draws."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib.figure import Figure
from PIL import Image

from emsim.study.captions import figure_spec
from emsim.study.figure_style import FIXED_TITLES, PNG_OPTIONS, bottom_legend, save_png, styled
from emsim.study.figure_workers import figure_cores
from emsim.study.figures import TRACE_COLUMNS_NOT_DRAWN, FigureInputs
from emsim.study.summary import SummaryFiles, read_files


@styled
def _faceted_figure() -> Figure:
    """A figure whose constrained layout has work to do: shared axes, titles, a log axis,
    a suptitle and a legend outside the axes."""
    rng = np.random.default_rng(7)
    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    axes = fig.subplots(2, 3, sharex=True)
    for i, ax in enumerate(axes.ravel()):
        x = np.geomspace(50, 5000, 4)
        ax.plot(x, rng.normal(size=4) * 10**i, marker="o", label=f"series {i}")
        ax.errorbar(x, rng.normal(size=4), yerr=0.3, capsize=2)
        ax.set_xscale("log")
        ax.set_title(f"panel {i}: a longer title", fontsize=9)
        ax.set_ylabel(r"RMSE $\times\sqrt{n}$" if i % 3 == 0 else "")
    fig.suptitle("Constrained layout, drawn once")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    bottom_legend(fig, handles, labels)
    return fig


@pytest.mark.parametrize("dpi", [72, 120])
def test_save_png_writes_the_file_savefig_writes(tmp_path, dpi):
    # Drawn inside the style, as every figure of the study is (`styled`).
    once = styled(lambda: save_png(_faceted_figure(), tmp_path / "once.png", dpi=dpi))()
    twice = tmp_path / "savefig.png"
    styled(
        lambda: _faceted_figure().savefig(twice, format="png", dpi=dpi, pil_kwargs=PNG_OPTIONS)
    )()
    assert once.read_bytes() == twice.read_bytes()
    with Image.open(once) as image:
        assert image.size == (round(7.0 * dpi), round(4.5 * dpi))


def test_titles_at_the_top_draw_what_matplotlib_places_itself(tmp_path):
    """`styled` fixes the titles' position (FIXED_TITLES) instead of letting matplotlib place
    each from a measure of its axes' ticks: the same file, titles over shared and log axes,
    beside a suptitle and mathtext labels."""
    fixed = styled(lambda: save_png(_faceted_figure.__wrapped__(), tmp_path / "fixed.png"))()

    def placed_by_matplotlib():
        with mpl.rc_context({"axes.titley": None}):
            return save_png(_faceted_figure.__wrapped__(), tmp_path / "auto.png")

    auto = styled(placed_by_matplotlib)()
    assert FIXED_TITLES["axes.titley"] == 1.0
    assert fixed.read_bytes() == auto.read_bytes()


def test_figures_read_the_traces_without_the_columns_they_do_not_draw(tmp_path):
    """The traces figure's input: `summary.read_files`'s rows, in file order, with each file's
    schema promoted (a chunk whose column is all null), less `TRACE_COLUMNS_NOT_DRAWN`."""
    rng = np.random.default_rng(3)
    files = []
    for chunk, rows in enumerate((5, 3)):
        columns = {
            "cell_id": pa.array([f"c{chunk}"] * rows),
            "iteration": pa.array(np.arange(rows)),
            "est_pi": pa.array(rng.uniform(size=rows)),
            "loglik": pa.array(-rng.uniform(10, 20, size=rows)),
            # The second chunk's est_mu1 has no value: written with Arrow's null type.
            "est_mu1": pa.array(rng.normal(size=rows)) if chunk == 0 else pa.nulls(rows),
            "diff_loglik": pa.array(rng.uniform(size=rows)),
        }
        path = tmp_path / f"cell=c{chunk}" / "chunk=0.parquet"
        path.parent.mkdir()
        pq.write_table(pa.table(columns), path)
        files.append(path)
    files.append(tmp_path / "missing.parquet")  # a file that does not exist is skipped
    summary = SummaryFiles.in_folder(tmp_path / "summary")
    assert {"est_mu1", "diff_loglik"} <= TRACE_COLUMNS_NOT_DRAWN
    read = FigureInputs(figure_spec("traces"), summary, files).traces()
    expected = read_files(files).drop(columns=["est_mu1", "diff_loglik"])
    pd.testing.assert_frame_equal(read, expected)
    assert list(read.columns) == ["cell_id", "iteration", "est_pi", "loglik"]
    assert len(read) == 8


@pytest.mark.parametrize(
    ("run_cores", "processes", "claimed"), [(1, 1, 1), (2, 2, 1), (3, 3, 2), (16, 4, 3)]
)
def test_the_figures_job_leaves_a_core_for_the_report_body(run_cores, processes, claimed):
    assert figure_cores(run_cores) == (processes, claimed)


def test_the_figures_job_under_a_cluster_executor_uses_the_host(monkeypatch):
    """Without --cores (a cluster executor), the host's CPUs, as Snakemake's local rules."""
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert figure_cores(None) == (2, 1)
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert figure_cores(None) == (1, 1)
