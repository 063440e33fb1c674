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
from collections.abc import Iterable, Iterator, Mapping

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
    "random_start_rngs",
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
    return _data_seedseq(seed, cell_key(cell), replicate)


def _data_seedseq(seed: int, words: tuple[int, ...], replicate: int) -> np.random.SeedSequence:
    """A replicate's data stream from its cell's words of the spawn key (`cell_key`)."""
    return np.random.SeedSequence(entropy=int(seed), spawn_key=(*words, int(replicate)))


def data_rng(seed: int, cell: Mapping[str, float], replicate: int) -> np.random.Generator:
    return _generator(data_seedseq(seed, cell, replicate))


def _generator(seedseq: np.random.SeedSequence) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seedseq))


def _name_word(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def random_start_rng(
    seed: int, cell: Mapping[str, float], replicate: int, strategy: str, j: int
) -> np.random.Generator:
    """Stream of random start j (0-based) of the start strategy named `strategy`."""
    return next(random_start_rngs(seed, cell, [replicate], strategy, j))


def random_start_rngs(
    seed: int, cell: Mapping[str, float], replicates: Iterable[int], strategy: str, j: int
) -> Iterator[np.random.Generator]:
    """`random_start_rng` of each of `replicates`, the cell's and the strategy's words of the
    spawn key hashed once (per stream they were a third of a random start's cost)."""
    words = cell_key(cell)
    name = _name_word(strategy)
    for replicate in replicates:
        key = (*words, int(replicate), STREAM_RANDOM_START, name, int(j))
        yield _generator(np.random.SeedSequence(int(seed), spawn_key=key))


def simulate_replicate(seed: int, cell: Mapping[str, float], replicate: int) -> np.ndarray:
    """The data of one replicate: emsim.simulate with this replicate's own generator."""
    return _simulate(cell, data_rng(seed, cell, replicate))


def _simulate(cell: Mapping[str, float], rng: np.random.Generator) -> np.ndarray:
    return emsim.simulate(
        int(cell["n"]),
        (float(cell["mu1"]), float(cell["mu2"])),
        (float(cell["sigma1"]), float(cell["sigma2"])),
        float(cell["pi"]),
        rng,
        family=family_from_label(str(cell.get(FAMILY, NORMAL.label))),
    )


def simulate_replicates(seed: int, cell: Mapping[str, float], replicates) -> np.ndarray:
    """Data of several replicates as a (len(replicates), n) array, one row per replicate: each
    `simulate_replicate`'s, the cell's words of the spawn key hashed once."""
    reps = list(replicates)
    words = cell_key(cell)
    out = np.empty((len(reps), int(cell["n"])), dtype=np.float64)
    for i, r in enumerate(reps):
        out[i] = _simulate(cell, _generator(_data_seedseq(seed, words, r)))
    return out
