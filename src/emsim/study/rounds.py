"""Which replicates a cell runs, in which rounds and chunks (docs/design.md section 10).

A fixed study (``replicates: R``) has one round of R replicates. An adaptive one
(``replicates: {min, max, step}``) runs round 0 = replicates [0, min) in every cell, then round
k = the next `step` replicates (at most up to `max`) in the cells whose precision targets are
still missed after round k - 1. Each round is cut into chunks of at most `chunk_size`
replicates, numbered on from the previous round's, so a chunk's replicates never depend on how
many rounds a cell runs: replicate r is in the same file, with the same data and fits (its
seeds are keyed by r alone, section 3), whatever the targets decided.

Between rounds a *gate* (one per round, for the whole study) lists the cells that go on; a cell's
last round is the one after which its gate no longer lists it (`final_rounds`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ReplicatePlan", "active_cells", "final_rounds", "read_gate", "write_gate"]


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

    def largest_chunk(self) -> int:
        # Round 1 is the longest after round 0 (every later one is as long or cut at `max`).
        blocks = [len(self._round_block(k)) for k in range(min(self.rounds, 2))]
        return min(self.chunk_size, max(blocks))

    def _check_round(self, round_: int | str) -> int:
        k = int(round_)
        if not 0 <= k < self.rounds:
            raise ValueError(f"round {k} is outside 0..{self.rounds - 1}")
        return k


def write_gate(path: str | os.PathLike[str], round_: int, going_on: Iterable[str]) -> None:
    """The gate after `round_`: the cells that run round `round_` + 1 (atomically written)."""
    from emsim.study.parquet_io import atomic_write

    body = json.dumps({"round": int(round_), "going_on": sorted(going_on)}, indent=1) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(body))


def read_gate(path: str | os.PathLike[str]) -> list[str]:
    with open(path) as f:
        return list(json.load(f)["going_on"])


def final_rounds(
    cells: Iterable[str], plan: ReplicatePlan, gate_path: Callable[[int], Any]
) -> dict[str, int]:
    """Each cell's last round, walking the gates from round 0. `gate_path(k)` gives the path of
    the gate after round k; in the workflow it is Snakemake's checkpoint lookup, which raises
    until that gate exists, so the rules that need every cell's last round wait for it. A fixed
    study has one round and no gates."""
    cells = list(cells)
    if not plan.adaptive:
        return dict.fromkeys(cells, 0)
    final: dict[str, int] = {}
    active = set(cells)
    # No gate is needed after the last round: every cell stops there (at `max`).
    for k in range(plan.rounds - 1):
        going_on = set(read_gate(gate_path(k))) & active
        for cell in active - going_on:
            final[cell] = k
        active = going_on
        if not active:
            break
    for cell in active:
        final[cell] = plan.rounds - 1
    return {cell: final[cell] for cell in cells}


def active_cells(
    cells: Iterable[str], plan: ReplicatePlan, round_: int, gate_path: Callable[[int], Any]
) -> list[str]:
    """The cells that run round `round_`: all in round 0, then those its previous gate lists."""
    cells = list(cells)
    if int(round_) == 0:
        return cells
    going_on = set(read_gate(gate_path(int(round_) - 1)))
    return [c for c in cells if c in going_on]
