"""figure_style.save_png draws a figure once (the Agg canvas's print_png) where Figure.savefig
draws it twice: the file must be the one savefig writes, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from emsim.study.figure_style import bottom_legend, save_png, styled


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
    styled(lambda: _faceted_figure().savefig(twice, format="png", dpi=dpi))()
    assert once.read_bytes() == twice.read_bytes()
    with Image.open(once) as image:
        assert image.size == (round(7.0 * dpi), round(4.5 * dpi))
