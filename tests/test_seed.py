"""The seed document's fit reproduced: its 19-row table from R, at full precision."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emsim.demo import run_seed_demo

REFERENCE = Path(__file__).parent / "data" / "seed_progress_R.csv"


@pytest.fixture(scope="module")
def demo():
    return run_seed_demo()


def test_table_matches_r_to_1e9(demo):
    reference = pd.read_csv(REFERENCE)
    table = demo.table
    assert demo.status == "converged"
    assert list(table.columns) == ["Iteration", "p(Z=1)", "loglik", "diff_loglik"]
    assert len(table) == 19 and table["Iteration"].iloc[-1] == 18
    np.testing.assert_array_equal(table["Iteration"], reference["iteration"])
    np.testing.assert_allclose(table["p(Z=1)"], reference["pi"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(table["loglik"], reference["loglik"], rtol=1e-9, atol=0)
    # The increments decide when the fit stops, so they must agree well beyond the tolerance.
    np.testing.assert_allclose(
        table["diff_loglik"].iloc[1:], reference["diff_loglik"].iloc[1:], rtol=1e-4, atol=1e-8
    )


def test_head_is_the_seed_documents(demo):
    printed = [0.2415, -0.4071, 0.01312, 2.756, -0.4597, 1.505]
    head = demo.head.to_numpy()
    for value, shown in zip(head, printed, strict=True):
        assert float(f"{value:.4g}") == shown
