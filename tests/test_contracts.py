"""The data contracts live in one module (`emsim.study.schema`, docs/design.md section 8): no
other module of the study library spells them, and what uses them agrees with them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pyarrow as pa
import yaml

from emsim.study import schema
from emsim.study.config import load_study
from emsim.study.seeding import canonical_cell

ROOT = Path(__file__).resolve().parents[1]
STUDY_SRC = ROOT / "src" / "emsim" / "study"

# Spellings of a contract that only schema.py may hold.
RESPELLED = {
    "design columns": re.compile(r'"cell_id",\s*"n",|"n",\s*"mu1",\s*"mu2",\s*"sigma1"'),
    "fit id": re.compile(r'"model",\s*"method",\s*"stopping"'),
    # As a key (a tuple or list); a set of columns a plot reads is not one.
    "row key": re.compile(r'[(\[]"cell_id",\s*"replicate",\s*"model"'),
    # As a pattern to format, or to glob the files with.
    "file layout": re.compile(r"cell=[{*]|chunk=[{*]"),
    "footer keys": re.compile(r'"(job_started|job_elapsed_s|em_elapsed_s|em_cpu_s)"'),
    "arrow schema": re.compile(r"pa\.schema\("),
    # The derived start's name (matplotlib's legend location "best" is another word).
    "best start": re.compile(r"""(?<!loc=)["']best["']"""),
}


def test_no_module_but_schema_spells_a_contract():
    found = []
    for path in sorted(STUDY_SRC.glob("*.py")):
        if path.name == "schema.py":
            continue
        text = path.read_text()
        for what, pattern in RESPELLED.items():
            found += [f"{path.name}: {what}: {m.group(0)}" for m in pattern.finditer(text)]
    assert not found, found


def test_contract_spellings_are_found_in_schema():
    """The patterns above do match the contract as schema.py writes it (they can fail)."""
    text = (STUDY_SRC / "schema.py").read_text()
    for what in ("design columns", "file layout", "footer keys", "arrow schema", "best start"):
        assert RESPELLED[what].search(text), what


def test_schemas_start_with_the_design_and_end_keys_agree():
    design = [name for name, _ in schema.DESIGN_FIELDS]
    assert design == [*schema.CELL_KEYS, "replicate"]
    for table in (schema.FITS_SCHEMA, schema.TRACES_SCHEMA):
        assert table.names[: len(design) + len(schema.FIT_ID)] == [*design, *schema.FIT_ID]
        for key in schema.FIT_ID:
            assert table.field(key).type == pa.string()
    assert set(schema.ROW_KEY) <= set(schema.FITS_SCHEMA.names)
    assert set(schema.TRACE_KEY) <= set(schema.TRACES_SCHEMA.names)
    assert schema.TRACE_KEY[: len(schema.ROW_KEY)] == schema.ROW_KEY
    # The seeds of a cell derive from exactly its design values.
    cell = {p: 1.0 for p in schema.CELL_PARAMS} | {"n": 10}
    assert canonical_cell(cell).count("=") == len(schema.CELL_PARAMS)


def _study():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config.update(replicates=5, chunk_size=2)
    return load_study(config)


def test_study_paths_follow_the_layout_and_tasks_cover_every_replicate_once():
    study = _study()
    for kind in schema.RESULT_KINDS:
        paths = study.outputs(kind)
        assert len(paths) == len(study.cells) * study.n_chunks == len(set(paths))
        folder = schema.kind_folder(kind) + "/"
        for path in paths:
            assert path.startswith(folder)
            match = schema.HIVE_FILE.match(path[len(folder) :])
            assert match and study.cell(match["cell"]) is not None
        pattern = study.output_pattern(kind)
        assert pattern.format(cell="c", chunk=0) == schema.result_path(kind, "c", 0)
    cell = study.cells[0]
    covered = []
    for chunk in range(study.n_chunks):
        task = study.fit_task(cell.cell_id, chunk)
        assert task.cell == cell and task.chunk == chunk and task.seed == study.config["seed"]
        assert task.fit_hash == study.fit_hash
        assert task.oracle_starts == ("truth",)
        covered += list(task.replicates)
    assert covered == list(range(study.replicates))


def test_oracle_starts_are_found_by_strategy_not_name():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["starts"] = [
        {"name": "fixed", "strategy": "fixed", "values": {"pi": 0.5}},
        {"name": "oracle", "strategy": "truth"},
    ]
    study = load_study(config)
    assert study.fit_task(study.cells[0].cell_id, 0).oracle_starts == ("oracle",)


def test_respelled_patterns_catch_a_glob_of_the_layout_and_the_best_start():
    assert RESPELLED["file layout"].search('folder.glob("cell=*/chunk=*.parquet")')
    assert RESPELLED["file layout"].search("folder.glob('cell=*/*.parquet')")
    assert RESPELLED["best start"].search('RESERVED = frozenset({"best"})')
    assert not RESPELLED["best start"].search('ax.legend(loc="best")')


def test_hive_files_lists_and_parses_exactly_the_layout(tmp_path):
    folder = tmp_path / schema.kind_folder("fits")
    written = [("c1", 0), ("c1", 12), ("007", 3)]
    for cell, chunk in written:
        path = Path(tmp_path / schema.result_path("fits", cell, chunk, root="results"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    # Not results: a file of another name in a cell folder, a file beside the cell folders.
    (folder / "cell=c1" / "notes.parquet").write_bytes(b"")
    (folder / "chunk=1.parquet").write_bytes(b"")
    found = schema.hive_files(folder)
    assert sorted((cell, chunk) for _, cell, chunk in found) == sorted(written)
    for path, cell, chunk in found:
        assert path == tmp_path / schema.result_path("fits", cell, chunk)
    assert schema.hive_files(tmp_path / "missing") == []


def test_no_function_defaults_the_oracle_starts():
    """Which starts are oracles is the study's to say (by strategy): every function taking
    `oracle_starts` requires it, and schema names no default set."""
    assert not hasattr(schema, "ORACLE_STARTS")
    defaulted = []
    for path in sorted(STUDY_SRC.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            with_default = positional[len(positional) - len(args.defaults) :]
            pairs = zip(args.kwonlyargs, args.kw_defaults, strict=True)
            with_default += [a for a, default in pairs if default is not None]
            if any(a.arg == "oracle_starts" for a in with_default):
                defaulted.append(f"{path.name}:{node.name}")
    assert not defaulted, defaulted
