"""`emsim verify --recompute` refits a chunk from the design its rows record
(`recompute._task_for`): the family is part of that design, so a cell of non-normal components
must be refitted as itself, not as the normal cell of the same means, sigmas and pi (which has
another id and other data)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from emsim.study.config import default_schema_path, load_study
from emsim.study.fitjob import fit_chunk
from emsim.study.recompute import _task_for, differing_columns, refit
from emsim.study.schema import result_path

CONFIG = {
    "study": "recompute of a family cell",
    "seed": 5,
    "replicates": 4,
    "chunk_size": 4,
    "traces": 1,
    "grid": {"n": [40], "mu": [[0, 3]], "sigma": [1], "pi": [0.7]},
    "scenarios": [
        {"n": 40, "mu": [0, 3], "sigma": 1, "pi": 0.7, "family": {"name": "t", "df": 4}},
    ],
    "models": ["full"],
    "methods": ["em"],
    "starts": [{"name": "truth", "strategy": "truth"}],
    "em": {"stopping": ["abs"]},
}


def test_a_family_cells_chunk_is_refitted_as_that_cell(tmp_path: Path) -> None:
    study = load_study(CONFIG, default_schema_path())
    family_cells = [c for c in study.cells if c.family != "normal"]
    assert len(family_cells) == 1 and len(study.cells) == 2
    cell = family_cells[0]
    task = study.fit_task(cell.cell_id, 0)
    fits = Path(result_path("fits", cell.cell_id, 0, str(tmp_path)))
    fits.parent.mkdir(parents=True)
    fit_chunk(task, fits, tmp_path / "traces.parquet")
    manifest = {"fit_config": task.fit_config, "seed": task.seed, "config_hash": task.fit_hash}
    again = _task_for(manifest, tmp_path, cell.cell_id, 0, list(task.replicates))
    assert again.cell == cell
    refitted = refit(again, tmp_path / "refit")
    # Every column but the wall clock's runtime_s, bit for bit.
    assert differing_columns(pq.read_table(fits), refitted["fits"]) == ()
