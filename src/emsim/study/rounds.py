"""Which replicates a cell runs, in which rounds and chunks (docs/design.md section 10).

A fixed study (``replicates: R``) has one round of R replicates. An adaptive one
(``replicates: {min, max, step}``) lays its replicates on a *grid*: block 0 = replicates
[0, min), block j = the next `step` (the last cut at `max`), each cut into chunks of at most
`chunk_size` replicates, numbered on from the previous block's. `ReplicatePlan` speaks of that
grid (its "round" j is block j: the round of a cell that steps one block at a time). Every cell
runs block 0 in round 0; after a round a cell that still misses a target jumps to the grid
point its MCSE projects (`precision.projected_replicates`), so its round k ends at block
j_k >= k. Since a jump runs whole blocks of the same grid, a chunk's replicates never depend on
how many rounds a cell runs or how far it jumps: replicate r is in the same file, with the same
data and fits (its seeds are keyed by r alone, section 3), whatever the targets decided.

After each of its rounds a cell has a *gate* of its own (a Snakemake checkpoint per cell and
round): the replicates it runs through in its next round, or that it stops. A cell's rounds wait
for its own gates only, never for another cell's: a cell that needs few replicates finishes
while costlier cells still fit. Its last round is the one after which its gate stops it
(`final_rounds`), and `grid_round` maps a cell's round to its block.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ReplicatePlan",
    "final_grid_rounds",
    "final_rounds",
    "grid_round",
    "read_gate",
    "write_gate",
]


@dataclass(frozen=True)
class ReplicatePlan:
    """Rounds and chunks of replicates, the same for every cell of a study (parsed from the
    config's `replicates` and `chunk_size` by `config.load_study`: ``study.plan``)."""

    minimum: int
    maximum: int
    step: int
    chunk_size: int

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum or self.step < 1 or self.chunk_size < 1:
            raise ValueError(f"invalid replicate plan {self}")

    # Computed, not listed: a plan of 10^9 replicates must cost nothing before the config's
    # limits refuse it.
    @property
    def rounds(self) -> int:
        return 1 + -(-(self.maximum - self.minimum) // self.step)

    @property
    def adaptive(self) -> bool:
        """More than one round: which rounds run is decided by the precision targets."""
        return self.rounds > 1

    def _round_block(self, round_: int) -> range:
        if round_ == 0:
            return range(0, self.minimum)
        start = self.minimum + (round_ - 1) * self.step
        return range(start, min(start + self.step, self.maximum))

    def _chunks_in(self, round_: int) -> int:
        return -(-len(self._round_block(round_)) // self.chunk_size)

    def _first_chunk(self, round_: int) -> int:
        if round_ == 0:
            return 0
        return self._chunks_in(0) + (round_ - 1) * -(-self.step // self.chunk_size)

    @property
    def n_chunks(self) -> int:
        """Chunks of a cell that runs every round (to `maximum`)."""
        last = self.rounds - 1
        return self._first_chunk(last) + self._chunks_in(last)

    def chunk_replicates(self, chunk: int | str) -> range:
        k = int(chunk)
        if not 0 <= k < self.n_chunks:
            raise ValueError(f"chunk {k} is outside 0..{self.n_chunks - 1}")
        first = self._chunks_in(0)
        if k < first:
            round_, index = 0, k
        else:
            per_round = -(-self.step // self.chunk_size)
            round_, index = 1 + (k - first) // per_round, (k - first) % per_round
        block = self._round_block(round_)
        start = block.start + index * self.chunk_size
        return range(start, min(start + self.chunk_size, block.stop))

    def round_chunks(self, round_: int | str) -> range:
        """Chunk numbers of round `round_` alone."""
        k = self._check_round(round_)
        return range(self._first_chunk(k), self._first_chunk(k) + self._chunks_in(k))

    def chunks_through(self, round_: int | str) -> range:
        """Chunk numbers of rounds 0 .. `round_`: the whole of a cell that stops after it."""
        return range(0, self.round_chunks(round_).stop)

    def replicates_through(self, round_: int | str) -> int:
        return self._round_block(self._check_round(round_)).stop

    def grid_round(self, replicates: int) -> int:
        """The block j whose end is `replicates` (a grid point: min, min + step, ..., max)."""
        r = int(replicates)
        j = -(-(r - self.minimum) // self.step)
        if r < self.minimum or j >= self.rounds or self._round_block(j).stop != r:
            raise ValueError(f"{r} replicates is not a point of the plan's grid {self}")
        return j

    def next_stop(self, replicates: int, wanted: float) -> int:
        """The grid point a cell at `replicates` runs through next when it wants `wanted`: the
        first one at or above it, at least one block on, at most `max`. With `step` dividing
        `min` (as by default) the grid points are the multiples of `step`."""
        j = self.grid_round(replicates) + 1
        if np.isfinite(wanted) and wanted > self.minimum:
            j = max(j, math.ceil((wanted - self.minimum) / self.step))
        return self._round_block(min(j, self.rounds - 1)).stop

    def largest_chunk(self) -> int:
        # Round 1 is the longest after round 0 (every later one is as long or cut at `max`).
        blocks = [len(self._round_block(k)) for k in range(min(self.rounds, 2))]
        return min(self.chunk_size, max(blocks))

    def _check_round(self, round_: int | str) -> int:
        k = int(round_)
        if not 0 <= k < self.rounds:
            raise ValueError(f"round {k} is outside 0..{self.rounds - 1}")
        return k


def write_gate(path: str | os.PathLike[str], cell: str, round_: int, through: int | None) -> None:
    """Cell `cell`'s gate after its round `round_`: the replicates it runs through in round
    `round_` + 1 (a grid point), or None when it stops there; atomically written."""
    from emsim.study.parquet_io import atomic_write

    body = {
        "cell": cell,
        "round": int(round_),
        "through": None if through is None else int(through),
    }
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(body, indent=1) + "\n"))


def read_gate(path: str | os.PathLike[str]) -> int | None:
    """The replicates the gate's cell runs through in its next round; None if it stops."""
    with open(path) as f:
        through = json.load(f)["through"]
    return None if through is None else int(through)


def grid_round(
    cell: str, round_: int | str, plan: ReplicatePlan, gate_path: Callable[[str, int], Any]
) -> int:
    """The block that cell `cell`'s round `round_` ends at: 0 after round 0, else the grid
    point its previous gate chose."""
    k = int(round_)
    if k == 0:
        return 0
    through = read_gate(gate_path(cell, k - 1))
    if through is None:
        raise ValueError(f"cell {cell} stopped after round {k - 1}: it has no round {k}")
    return plan.grid_round(through)


def final_grid_rounds(
    cells: Iterable[str], plan: ReplicatePlan, gate_path: Callable[[str, int], Any]
) -> dict[str, int]:
    """Each cell's last block (`grid_round` of its last round): its chunks are
    ``plan.chunks_through`` of it."""
    last = final_rounds(cells, plan, gate_path)
    return {cell: grid_round(cell, k, plan, gate_path) for cell, k in last.items()}


def final_rounds(
    cells: Iterable[str], plan: ReplicatePlan, gate_path: Callable[[str, int], Any]
) -> dict[str, int]:
    """Each cell's last round, walking its own gates from round 0. `gate_path(cell, k)` gives
    the path of the cell's gate after its round k; in the workflow it is Snakemake's checkpoint
    lookup, which raises until that gate exists, so a rule that needs a cell's last round waits
    for that cell's gates only. A fixed study has one round and no gates."""
    return {cell: _final_round(cell, plan, gate_path) for cell in cells}


def _final_round(cell: str, plan: ReplicatePlan, gate_path: Callable[[str, int], Any]) -> int:
    if not plan.adaptive:
        return 0
    # Every round ends in a gate, the one after a round that reached `max` too: walking to it
    # is what asks for that round's summary as soon as the cell's fits exist (a rule asks for
    # a cell's last round only through the walk: docs/design.md section 10).
    for k in range(plan.rounds):
        if read_gate(gate_path(cell, k)) is None:
            return k
    raise ValueError(f"cell {cell}'s gate after the plan's last round does not stop it")
