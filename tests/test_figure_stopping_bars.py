"""Figure 9's share panels (usable, premature, saddle) draw a 95% Wilson interval around each
share, not +- 2 binomial MCSE (docs/design.md section 10): a rare status keeps a bar that
starts above 0 and a share of 0 still has one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emsim.study import figure_data as fd
from emsim.study.figure_stopping import _wilson_bars
from emsim.study.measures import coverage_z


def score_interval(events: int, n: int) -> tuple[float, float]:
    """The Wilson interval as the roots p of (events / n - p)^2 = z^2 p (1 - p) / n."""
    z, share = coverage_z(0.95), events / n
    roots = np.roots([1.0 + z * z / n, -(2.0 * share + z * z / n), share * share]).real
    return float(min(roots)), float(max(roots))


@pytest.mark.parametrize(("events", "n"), [(1, 3000), (0, 3000), (3000, 3000), (150, 600)])
def test_a_share_s_bar_is_its_wilson_interval(events, n):
    share = events / n
    rows = pd.DataFrame(
        {
            "rate_premature": [share],
            "rate_premature_mcse": [np.sqrt(share * (1.0 - share) / n)],
            "n_fits": [n],
        }
    )
    points = fd.stopping_panel(rows, "rate_premature", 100.0, log=False)

    bars = _wilson_bars(points, rows, "rate_premature", 100.0)

    low, high = score_interval(events, n)
    x = 100.0 * share
    assert bars["x"].iloc[0] == x
    assert x - bars["minus"].iloc[0] == pytest.approx(100.0 * low, rel=1e-9, abs=1e-12)
    assert x + bars["plus"].iloc[0] == pytest.approx(100.0 * high, rel=1e-9)
    if events == 1:  # +- 2 MCSE would reach below 0 (cut there); Wilson's lower end does not
        assert points["minus"].iloc[0] == x and 0.0 < bars["minus"].iloc[0] < x
    if events == 0:  # the binomial MCSE is 0 here: no bar at all
        assert points["plus"].iloc[0] == 0.0 and bars["plus"].iloc[0] > 0.0
