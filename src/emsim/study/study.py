"""The parsed study: its cells, replicate plan, starts, precision targets and hashes, and what
the workflow derives from them (paths, the task of each fit job, Snakemake resources).

`config.load_study` builds the one `Study` of a config: it validates the dict and parses it
into the typed members here, so a rule, a job or the report asks the `Study` (``study.plan``,
``study.precision``, ``study.starts``, ...) and never re-reads the dict. ``study.config`` (the
validated dict) is kept only for hashing, provenance and the report's copy of the config.

A cell's id is readable and ends in a hash of its values (`n500_mu0-2_s1-1_pi0.8_1a2b3c4d`; a
minus sign is written `m`), so it is stable whatever else is in the design, and uses only
characters that are safe in a hive folder name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emsim.families import Family, parse_family
from emsim.study.rounds import ReplicatePlan
from emsim.study.schema import (
    CELL_KEYS,
    cell_summary_path,
    gate_path,
    hive_files,
    kind_folder,
    result_path,
)
from emsim.study.seeding import cell_digest
from emsim.study.starts import StartSpec, oracle_start_names

if TYPE_CHECKING:
    from emsim.study.precision import Precision

__all__ = ["Cell", "FitTask", "Study", "fit_job_mem_mb"]


def _num_label(x: float) -> str:
    text = format(float(x) + 0.0, "g").replace("+", "")
    return text.replace("-", "m")  # '-' separates the pair's values in the id


@dataclass(frozen=True)
class Cell:
    """One data-generating mechanism (docs/design.md section 5's design columns)."""

    n: int
    mu1: float
    mu2: float
    sigma1: float
    sigma2: float
    pi: float
    # The components' family label (`emsim.families`); a normal cell's id and seeds are those
    # it had before families existed (docs/design.md section 3).
    family: str = "normal"
    cell_id: str = field(default="", compare=False)

    @classmethod
    def make(cls, n, mu, sigma, pi, family: Family | str | dict | None = None) -> Cell:
        fam = parse_family(family)
        s1, s2 = (sigma, sigma) if not isinstance(sigma, list | tuple) else sigma
        values = {
            "n": int(n),
            "mu1": float(mu[0]) + 0.0,
            "mu2": float(mu[1]) + 0.0,
            "sigma1": float(s1),
            "sigma2": float(s2),
            "pi": float(pi),
            "family": fam.label,
        }
        label = (
            f"n{values['n']}_mu{_num_label(values['mu1'])}-{_num_label(values['mu2'])}"
            f"_s{_num_label(values['sigma1'])}-{_num_label(values['sigma2'])}"
            f"_pi{_num_label(values['pi'])}"
        )
        if not fam.is_normal:
            label += f"_{fam.id_label}"
        return cls(**values, cell_id=f"{label}_{cell_digest(values).hex()[:8]}")

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in CELL_KEYS}


def fit_job_mem_mb(n: int, chunk: int) -> int:
    """Memory (MB) of a fit job of `chunk` replicates of n points: the chunk's data plus the EM
    work arrays (responsibilities, densities, information terms): a few tens of float64 copies
    of the (replicates x n) array, and Python/pandas."""
    return int(400 + math.ceil(n * chunk * 8 * 40 / 2**20))


@dataclass(frozen=True)
class FitTask:
    """Everything one fit job needs (one cell x one chunk of replicates), derived once by
    `Study.fit_task`: the job re-derives nothing from the config (docs/design.md section 4)."""

    cell: Cell
    chunk: int
    replicates: range
    seed: int
    # The validated config's fit-relevant part (config.FIT_KEYS): what the files' footers record
    # and the job reads `em` and `traces` from.
    fit_config: dict
    fit_hash: str
    tolerances: dict[str, float]
    # Starts that know the truth (strategy `truth`, whatever their names): never `best`.
    oracle_starts: tuple[str, ...]
    models: tuple[str, ...]
    methods: tuple[str, ...]
    starts: tuple[StartSpec, ...]


@dataclass
class Study:
    """A validated config parsed into what the workflow uses (built by `config.load_study`)."""

    config: dict
    cells: list[Cell]
    config_hash: str
    fit_hash: str
    # The config's fit-relevant part (config.fit_relevant) that `fit_hash` hashes.
    fit_config: dict
    # Rounds and chunks of replicates (docs/design.md section 10).
    plan: ReplicatePlan
    # The precision targets; None without a `precision` block.
    precision: Precision | None
    # One per fitted start (random k -> random1 .. randomk), in config order.
    starts: tuple[StartSpec, ...]
    models: tuple[str, ...]
    methods: tuple[str, ...]
    # em.stopping in config order, and each rule's tolerance.
    stopping: tuple[str, ...]
    tolerances: dict[str, float]
    # The precision targets and the replicate plan as written, canonical JSON: what a cell's
    # decision after a round depends on besides its fits.
    precision_key: str
    # The config's `replicates` as written (a count or {min, max, step}): provenance only.
    replicates_given: int | dict
    _by_id: dict[str, Cell] = field(init=False, repr=False)
    # What raises an adaptive study's round 0 above every later round (`fit_priority`); 0 in a
    # fixed study. Derived once: the priority of each of the DAG's fit jobs adds it.
    _first_round_offset: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {c.cell_id: c for c in self.cells}
        costliest = max((self._fit_cost(c) for c in self.cells), default=0)
        self._first_round_offset = 2 * costliest + 2 if self.plan.adaptive else 0

    @property
    def replicates(self) -> int:
        """The most replicates a cell runs (all of them in a fixed study)."""
        return self.plan.maximum

    @property
    def adaptive(self) -> bool:
        return self.plan.adaptive

    @property
    def chunk_size(self) -> int:
        return self.plan.chunk_size

    @property
    def n_chunks(self) -> int:
        """Chunks of a cell that runs every round."""
        return self.plan.n_chunks

    @property
    def start_names(self) -> list[str]:
        return [spec.name for spec in self.starts]

    @property
    def oracle_starts(self) -> tuple[str, ...]:
        """The starts whose strategy is `truth` (`starts.oracle_start_names`)."""
        return oracle_start_names(self.starts)

    @property
    def fits_per_replicate(self) -> int:
        return len(self.models) * len(self.methods) * len(self.starts) * len(self.stopping)

    @property
    def cell_ids(self) -> list[str]:
        return [c.cell_id for c in self.cells]

    def cell(self, cell_id: str) -> Cell:
        try:
            return self._by_id[cell_id]
        except KeyError:
            raise KeyError(f"cell {cell_id!r} is not in the study's design") from None

    def chunk_replicates(self, chunk: int | str) -> range:
        """Global replicate indices of chunk k (in a fixed study [k * chunk_size, min((k+1) *
        chunk_size, R)); in an adaptive one each round is cut alike: `ReplicatePlan`)."""
        return self.plan.chunk_replicates(chunk)

    def fit_task(self, cell_id: str, chunk: int | str) -> FitTask:
        """The task of the fit job of `cell_id` and `chunk`."""
        return FitTask(
            cell=self.cell(cell_id),
            chunk=int(chunk),
            replicates=self.chunk_replicates(chunk),
            seed=int(self.config["seed"]),
            fit_config=self.fit_config,
            fit_hash=self.fit_hash,
            tolerances=dict(self.tolerances),
            oracle_starts=self.oracle_starts,
            models=self.models,
            methods=self.methods,
            starts=self.starts,
        )

    def chunk_label(self, chunk: int | str) -> str:
        reps = self.chunk_replicates(chunk)
        return f"{reps.start}-{reps.stop - 1}"

    def outputs(
        self, kind: str, final_rounds: Mapping[str, int] | None = None, root: str = "results"
    ) -> list[str]:
        """Paths of the `kind` ("fits" or "traces") files of the study: of each cell's chunks
        through its final round (`rounds.final_rounds`), or, without those, of every chunk any
        cell may run (all of a fixed study)."""
        return [
            result_path(kind, c.cell_id, k, root)
            for c in self.cells
            for k in self.cell_chunks(c.cell_id, final_rounds)
        ]

    def kept_trace_outputs(self, root: str = "results") -> list[str]:
        """The traces files that hold the kept traces (replicates below `traces`): of the
        chunks where they fall, in round 0, so that the traces figure needs only those fit
        jobs, not the study's last."""
        chunks = [k for k in range(self.plan.n_chunks) if self.keeps_traces(k)]
        return [result_path("traces", c.cell_id, k, root) for c in self.cells for k in chunks]

    def keeps_traces(self, chunk: int | str) -> bool:
        """Whether chunk k holds kept traces (a replicate below `traces`)."""
        return self.chunk_replicates(chunk).start < int(self.config["traces"])

    def existing_outputs(self, kind: str, root: str = "results") -> list[str]:
        """The `kind` files on disk that are outputs of this study (of any round): found by
        listing the folder, so an adaptive study of many rounds is not a list of every chunk
        it might run."""
        return [
            str(path)
            for path, cell, chunk in hive_files(Path(kind_folder(kind, root)))
            if cell in self._by_id and chunk < self.n_chunks
        ]

    def cell_chunks(self, cell_id: str, final_rounds: Mapping[str, int] | None = None) -> range:
        if final_rounds is None:
            return range(self.plan.n_chunks)
        return self.plan.chunks_through(final_rounds[cell_id])

    def cell_round_inputs(self, kind: str, cell_id: str, round_: int | str) -> list[str]:
        """The `kind` files of one cell's rounds 0 .. `round_` (what its summary after that
        round reads)."""
        return [result_path(kind, cell_id, k) for k in self.plan.chunks_through(round_)]

    @staticmethod
    def cell_summary_pattern(table: str) -> str:
        """A cell's summary `table` after a round, as a pattern ({cell}, {round})."""
        return cell_summary_path(table)

    @staticmethod
    def cell_summary_path(table: str, cell_id: str, round_: int | str) -> str:
        return cell_summary_path(table, cell_id, int(round_))

    @staticmethod
    def gate_pattern() -> str:
        """A cell's gate after a round, as a pattern ({cell}, {round})."""
        return gate_path()

    @staticmethod
    def output_pattern(kind: str) -> str:
        """The `kind` file of one cell and chunk as a Snakemake pattern ({cell}, {chunk})."""
        return result_path(kind)

    def fit_mem_mb(self, cell_id: str, attempt: int = 1) -> int:
        # A chunk holds at most its round's replicates, whatever chunk_size says. Each retry
        # (`--retries`) asks for one more such amount: a job a cluster ended for exceeding its
        # memory would otherwise be ended again.
        return fit_job_mem_mb(self.cell(cell_id).n, self.plan.largest_chunk()) * attempt

    def fit_runtime_min(self, cell_id: str, attempt: int = 1) -> int:
        # Measured on one core: about 2 microseconds per data point per fit in the slowest
        # (overlapping, n = 5000) cells, whose fits often run to the iteration cap. Five times
        # that, plus start-up, so that a slower node does not hit a scheduler's time limit.
        work = self.cell(cell_id).n * self.chunk_size * self.fits_per_replicate
        # Each retry (`--retries`) gets one more such limit: a job killed at its time limit
        # would otherwise be killed again.
        return int(5 + math.ceil(work * 1e-5 / 60)) * attempt

    def fit_priority(self, cell_id: str, chunk: int | str | None = None) -> int:
        """Snakemake's priority of the cell's fit jobs: their expected cost, so that the costliest
        start first and no core idles through a long last job. A chunk's fits cost in
        proportion to its data points and to the iterations EM needs, which grow as the
        components overlap: in the default study a chunk at separation 1 cost 2x one at
        separation 2 and 6x one at 4, at the same n (`benchmarks/fit_phases.py`). Among a
        cell's chunks, one that keeps traces goes first: the traces figure waits only for those
        (`kept_trace_outputs`), and is then drawn while other chunks fit.

        In an adaptive study every cell's round 0 goes before any later round (docs/design.md
        section 10): each cell's rounds are a chain (fits, summary, gate, fits), and the cheap
        cells, last by cost, otherwise ran their chains one link at a time after the costly
        cells' fits, with a core idle between links. Round 0 is raised by just more than the
        costliest cell's priority, not by a large constant: Snakemake's default scheduler
        solves an integer program whose tolerance cannot tell priorities of 2^45 from 2^45 + 1
        (with such an offset a cell's chunk with traces ran after its other chunk)."""
        cell = self.cell(cell_id)
        priority = 2 * self._fit_cost(cell) + int(chunk is not None and self.keeps_traces(chunk))
        if chunk is not None and int(chunk) in self.plan.round_chunks(0):
            priority += self._first_round_offset
        return priority

    def _fit_cost(self, cell: Cell) -> int:
        """A chunk's expected cost in `cell` (`fit_priority`)."""
        separation = abs(cell.mu2 - cell.mu1) / max(cell.sigma1, cell.sigma2)
        return round(cell.n * self.chunk_size / max(separation, 0.25))

    def summary_line(self) -> str:
        cells, per = len(self.cells), self.fits_per_replicate
        if self.adaptive:
            p = self.plan
            return (
                f"study {self.config['study']!r}: {cells} cells x {p.minimum} to {p.maximum} "
                f"replicates (while a precision target is missed, on to the count its MCSE "
                f"projects, in steps of {p.step}; at most "
                f"{p.rounds} rounds) x {per} fits = {cells * p.minimum * per} to "
                f"{cells * p.maximum * per} fits in {cells * len(p.round_chunks(0))} to "
                f"{cells * p.n_chunks} jobs (config {self.config_hash[:12]})"
            )
        return (
            f"study {self.config['study']!r}: {cells} cells x {self.replicates} "
            f"replicates x {per} fits = {cells * self.replicates * per} fits in "
            f"{cells * self.n_chunks} jobs (config {self.config_hash[:12]})"
        )
