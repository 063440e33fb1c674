"""Random streams of the study (docs/design.md section 3).

The data of replicate r of a cell come from

    numpy.random.SeedSequence(entropy=seed, spawn_key=(*cell_key, r))

where `cell_key` is four 32-bit words of the SHA-256 of the cell's canonical parameter values
(`canonical_cell`). Nothing about the grid's layout enters: not the cell's position, not the
chunk a replicate lands in, not the order or the process the jobs run in. Hence the same replicate
gets the same data under any chunking, core count or executor, and adding a value to the grid
leaves the data of every existing cell unchanged. All models, methods and starts of a replicate
are fitted to the one array drawn here (common random numbers).

Random starts draw from a stream of their own, so that adding or removing random starts never
changes the data, and each random start j of a named strategy has its own key, so that asking
for more random starts leaves the first ones unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np

import emsim
from emsim.families import NORMAL, family_from_label
from emsim.study.schema import CELL_PARAMS, FAMILY

__all__ = [
    "STREAM_RANDOM_START",
    "canonical_cell",
    "cell_digest",
    "cell_key",
    "data_rng",
    "data_seedseq",
    "random_start_rng",
    "simulate_replicate",
    "simulate_replicates",
]

# Tag of the random-start streams: their spawn keys are one or more words longer than the data's
# (*cell_key, replicate), so they can never coincide with a data stream.
STREAM_RANDOM_START = 1


def _number(x: float) -> str:
    # repr of a float round-trips exactly; + 0.0 turns -0.0 into 0.0 so both give one cell.
    return repr(float(x) + 0.0)


def canonical_cell(cell: Mapping[str, float]) -> str:
    """The canonical text of a cell's data-generating values: n as an integer, the others as
    floats (so that sigma 1 and 1.0 are one cell), then the family's label unless it is normal
    (so a normal cell keeps the text, seeds and id it had before families existed)."""
    n = cell["n"]
    if int(n) != n:
        raise ValueError(f"n must be an integer, got {n!r}")
    parts = [f"n={int(n)}"] + [f"{p}={_number(cell[p])}" for p in CELL_PARAMS[1:]]
    family = str(cell.get(FAMILY, NORMAL.label))
    if family != NORMAL.label:
        parts.append(f"{FAMILY}={family}")
    return ";".join(parts)


def cell_digest(cell: Mapping[str, float]) -> bytes:
    return hashlib.sha256(canonical_cell(cell).encode()).digest()


def cell_key(cell: Mapping[str, float]) -> tuple[int, ...]:
    """Four 32-bit words (128 bits) of the cell's digest: the cell part of every spawn key."""
    digest = cell_digest(cell)
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


def data_seedseq(seed: int, cell: Mapping[str, float], replicate: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(entropy=int(seed), spawn_key=(*cell_key(cell), int(replicate)))


def data_rng(seed: int, cell: Mapping[str, float], replicate: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(data_seedseq(seed, cell, replicate)))


def _name_word(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def random_start_rng(
    seed: int, cell: Mapping[str, float], replicate: int, strategy: str, j: int
) -> np.random.Generator:
    """Stream of random start j (0-based) of the start strategy named `strategy`."""
    key = (*cell_key(cell), int(replicate), STREAM_RANDOM_START, _name_word(strategy), int(j))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=key)))


def simulate_replicate(seed: int, cell: Mapping[str, float], replicate: int) -> np.ndarray:
    """The data of one replicate: emsim.simulate with this replicate's own generator."""
    return emsim.simulate(
        int(cell["n"]),
        (float(cell["mu1"]), float(cell["mu2"])),
        (float(cell["sigma1"]), float(cell["sigma2"])),
        float(cell["pi"]),
        data_rng(seed, cell, replicate),
        family=family_from_label(str(cell.get(FAMILY, NORMAL.label))),
    )


def simulate_replicates(seed: int, cell: Mapping[str, float], replicates) -> np.ndarray:
    """Data of several replicates as a (len(replicates), n) array, one row per replicate."""
    reps = list(replicates)
    out = np.empty((len(reps), int(cell["n"])), dtype=np.float64)
    for i, r in enumerate(reps):
        out[i] = simulate_replicate(seed, cell, r)
    return out
