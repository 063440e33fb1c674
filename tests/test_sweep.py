"""The one start-up pass over results/ (integrity.sweep, issue 19 item 9): damaged files are
moved to results/stale/ like every other rejected file, a dry run moves and writes nothing, and a
rerun over unchanged files reads none of them again (results/.integrity-cache.json).

Before (e886b4f) the workflow made two passes: jobs.remove_damaged_results deleted damaged files
(also under `snakemake --lint`), and integrity.sweep read every file in full on every start.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emsim.study import integrity
from emsim.study.config import load_study
from emsim.study.fitjob import fit_chunk

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
CONFIG = {
    "seed": 5,
    "replicates": 4,
    "chunk_size": 2,
    "traces": 1,
    "scenarios": [{"n": 30, "mu": [0, 3], "sigma": 1, "pi": 0.5}],
    "models": ["full"],
    "methods": ["em"],
    "starts": [{"name": "fixed", "strategy": "fixed", "values": {"pi": 0.5}}],
    "em": {"stopping": ["abs"]},
}


@pytest.fixture
def results(tmp_path, monkeypatch):
    """A whole study under tmp_path/results: (study, results folder, its fits files)."""
    monkeypatch.chdir(tmp_path)
    study = load_study(CONFIG, SCHEMA)
    cell = study.cells[0].cell_id
    for k in range(study.n_chunks):
        fit_chunk(
            study.fit_task(cell, k),
            f"results/fits/cell={cell}/chunk={k}.parquet",
            f"results/traces/cell={cell}/chunk={k}.parquet",
        )
    return study, Path("results"), sorted(Path("results/fits").glob("*/*.parquet"))


def reads(monkeypatch) -> list[str]:
    """The files `file_problem` reads from now on."""
    seen: list[str] = []
    check = integrity.file_problem

    def counted(path, kind, study):
        seen.append(Path(path).as_posix())
        return check(path, kind, study)

    monkeypatch.setattr(integrity, "file_problem", counted)
    return seen


def test_a_damaged_file_is_moved_to_stale_not_deleted_and_a_dry_run_moves_nothing(results):
    study, root, fits = results
    truncated, emptied = fits
    truncated.write_bytes(truncated.read_bytes()[:-40])
    emptied.write_bytes(b"")
    lines: list[str] = []
    found = integrity.sweep(study, root, say=lines.append, move=False)
    assert sorted(found["rejected"]) == sorted(str(p) for p in fits)
    assert truncated.exists() and emptied.exists()
    assert not (root / integrity.CACHE_FILE).exists()  # a dry run writes nothing
    assert lines == [
        f"emsim: {truncated.as_posix()} is damaged (no Parquet magic bytes at its start and "
        "end: truncated or overwritten): would move to results/stale/, its fit job reruns",
        f"emsim: {emptied.as_posix()} is damaged (0 bytes, too short for Parquet): would move "
        "to results/stale/, its fit job reruns",
    ]
    lines.clear()
    integrity.sweep(study, root, say=lines.append)
    assert [line.split(": moved to ")[1] for line in lines] == [
        "results/stale/, its fit job reruns"
    ] * 2
    assert not truncated.exists() and (root / "stale" / truncated.relative_to(root)).exists()
    assert (root / "stale" / emptied.relative_to(root)).read_bytes() == b""


def test_a_rerun_reads_only_the_files_changed_since_the_last(results, monkeypatch):
    study, root, fits = results
    outputs = [*fits, *sorted(Path("results/traces").glob("*/*.parquet"))]
    seen = reads(monkeypatch)
    assert integrity.sweep(study, root, say=print) == {"stale": [], "rejected": []}
    assert sorted(seen) == sorted(p.as_posix() for p in outputs)
    seen.clear()
    integrity.sweep(study, root, say=print)
    assert seen == []
    # A changed file (its mtime) is read again, and the others are not.
    stamp = fits[0].stat()
    os.utime(fits[0], ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000))
    integrity.sweep(study, root, say=print)
    assert seen == [fits[0].as_posix()]
    # Another fit config reads every file again (they are then its stale files, not read).
    seen.clear()
    other = load_study({**CONFIG, "replicates": 6}, SCHEMA)
    integrity.sweep(other, root, say=print, move=False)
    assert sorted(seen) == sorted(p.as_posix() for p in outputs)


def test_an_edited_file_with_a_new_mtime_is_caught_after_a_cached_sweep(results, monkeypatch):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    study, root, fits = results
    integrity.sweep(study, root, say=print)
    table = pq.read_table(fits[1])
    column = table.column_names.index("est_pi")
    edited = table.set_column(column, "est_pi", pc.add(table["est_pi"], 0.01))
    pq.write_table(edited, fits[1])  # the metadata (and its rows hash) kept
    lines: list[str] = []
    found = integrity.sweep(study, root, say=lines.append)
    assert found["rejected"] == [str(fits[1])]
    assert "rows" in lines[0] and fits[1].as_posix() in lines[0]


def test_the_cells_hashes_check_what_the_sweep_checks_and_the_manifest_job_remembers_it(
    results, monkeypatch
):
    """The cells' hashes job reads every file of its cell anyway: it runs the sweep's own
    foreign check on those rows, and its part says for which study. The manifest job then adds
    the part's unchanged files to the sweep's cache, so that the next start-up reads none of
    them; a file changed since its part was written, or a part of another study, adds nothing."""
    import json
    import shutil

    from emsim.study import manifest, manifest_cells

    study, root, fits = results
    outputs = [*fits, *sorted(Path("results/traces").glob("*/*.parquet"))]
    key = integrity.study_key(study)
    check = integrity.foreign_check(study)
    part = manifest_cells.cell_part(root, outputs, study.fit_hash, check, checked_for=key)
    assert part["checked_for"] == key
    manifest_cells.write_part(root / "hashes" / "a.json", part)
    assert integrity.remember_checked(study, root, [root / "hashes" / "a.json"]) == len(outputs)
    cached = json.loads((root / integrity.CACHE_FILE).read_text())
    assert cached["study"] == key
    assert cached["whole"] == {
        p.relative_to(root).as_posix(): [p.stat().st_size, p.stat().st_mtime_ns] for p in outputs
    }
    seen = reads(monkeypatch)
    assert integrity.sweep(study, root, say=print, move=False) == {"stale": [], "rejected": []}
    assert seen == []

    # A part without the check, or written for another study, is not taken as checked.
    (root / integrity.CACHE_FILE).unlink()
    unchecked = manifest_cells.cell_part(root, outputs, study.fit_hash)
    assert "checked_for" not in unchecked
    manifest_cells.write_part(root / "hashes" / "b.json", unchecked)
    other = dict(part, checked_for=key + " other")
    manifest_cells.write_part(root / "hashes" / "c.json", other)
    parts = [root / "hashes" / name for name in ("b.json", "c.json")]
    assert integrity.remember_checked(study, root, parts) == 0

    # A file touched since its part was written is not remembered; the others are.
    stamp = fits[0].stat()
    os.utime(fits[0], ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000))
    assert integrity.remember_checked(study, root, [root / "hashes" / "a.json"]) == len(outputs) - 1

    # A foreign file (chunk 0's rows filed as chunk 1) fails the cell's hashes with the sweep's
    # own reason.
    shutil.copy2(fits[0], fits[1])
    with pytest.raises(manifest.UnreadableFile, match=r"holds cell .* chunk 0 .*, not .* chunk 1"):
        manifest_cells.cell_part(root, outputs, study.fit_hash, check, checked_for=key)


def test_a_finished_study_leaves_every_result_file_known_whole(tiny_study, monkeypatch):
    """After `snakemake` has run a study, the next start-up's sweep reads no file in full: the
    manifest job remembered every fits and traces file its cells' hashes jobs checked."""
    import json

    from studyrun import TINY

    study = load_study(TINY, SCHEMA)
    root = tiny_study / "results"
    outputs = sorted([*root.glob("fits/*/*.parquet"), *root.glob("traces/*/*.parquet")])
    assert outputs
    cached = json.loads((root / integrity.CACHE_FILE).read_text())
    assert cached["study"] == integrity.study_key(study)
    assert sorted(cached["whole"]) == [p.relative_to(root).as_posix() for p in outputs]
    seen = reads(monkeypatch)
    found = integrity.sweep(study, root, say=print, move=False)
    assert found == {"stale": [], "rejected": []}
    assert seen == []
