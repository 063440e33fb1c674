"""The study's manifest: content hashes of its results, and checks against them.

`results/manifest.json` (written by the workflow's `manifest` rule after the fits) holds

- per file (every `fits/` and `traces/` Parquet file of the design): its path relative to the
  results folder, kind, cell, chunk, row count and content hash;
- per cell and kind: the content hash of all the cell's rows, whatever files hold them;
- `study_hash`: one hash over the cells' hashes and ids;
- provenance: emsim version, git commit, the fit config hash (the same scope as the fits'
  metadata: only what changes a fit, so editing figure options leaves the manifest current),
  the fit-relevant config itself, the seed, and the hashing scheme.

Content hash (`table_hash`): sha256 of a canonical byte form of the table's values, rows sorted
by the table's key (`cell_id, replicate, model, method, start` and, for traces, `iteration`):
per column its name, type, row and null counts, then its values bit for bit (float64 as IEEE-754
little endian, so equal hashes mean equal doubles, as a `%.17g` text form would; 1.5 s for
10^6 fit rows here, where CSV with `%.17g` took 35 s; `SCHEME` spells it out). Columns
that measure wall-clock time (`runtime_s`) and the Parquet key-value metadata (creation time,
git commit, ...) are left out: they differ between two runs that computed the same numbers.

The study hash is defined over the rows of each cell, not over files, so that it does not depend
on `chunk_size` (which changes the file set but not the rows), the core count or the executor:
two studies with the same study hash computed the same numbers.

`verify(results)` recomputes every hash from the files and lists what differs from the manifest;
`compare(a, b)` compares two studies' manifests. `emsim verify` is their command line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shlex
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from emsim.study.schema import HIVE_FILE, RESULT_KINDS, TRACE_KEY

__all__ = [
    "EXCLUDED_COLUMNS",
    "FORMAT",
    "MANIFEST_NAME",
    "FileCheck",
    "ManifestError",
    "Mismatch",
    "UnreadableFile",
    "assemble_manifest",
    "build_manifest",
    "canonical_bytes",
    "canonical_table",
    "column_parts",
    "compare",
    "load_manifest",
    "manifest_path",
    "repair_hint",
    "study_hash",
    "table_hash",
    "verify",
    "write_manifest",
]

FORMAT = "emsim-manifest/1"
MANIFEST_NAME = "manifest.json"
KINDS = RESULT_KINDS
# Wall-clock measurements: equal results computed at different speeds must hash equal.
EXCLUDED_COLUMNS: tuple[str, ...] = ("runtime_s",)
SORT_KEYS: tuple[str, ...] = TRACE_KEY
SCHEME_ID = "emsim-values/2"
SCHEME = {
    "algorithm": "sha256",
    "serialisation": (
        f"{SCHEME_ID}: rows sorted by the key columns; per column in file order: "
        "'name:type:rows:nulls' line, validity bytes if any null, then the values: float64 "
        "IEEE-754 little endian (one NaN pattern), int64 little endian, bool one byte, strings "
        "as their dictionary in order of appearance (8-byte length + UTF-8) and int64 codes"
    ),
    "sort_keys": list(SORT_KEYS),
    "excluded_columns": list(EXCLUDED_COLUMNS),
    "excluded": "Parquet key-value metadata",
    "study_hash": "sha256 of the canonical JSON of [[cell_id, kind, cell hash], ...] sorted",
}


class ManifestError(ValueError):
    """A manifest or result file that cannot be read: bad input (one line, exit 2)."""


class UnreadableFile(ManifestError):
    """A result file that is not readable Parquet; `path` names it."""

    def __init__(self, path: str | os.PathLike[str], message: str):
        super().__init__(message)
        self.path = Path(path)


# What makes a file wrong besides its rows hash and fit config (`build_manifest`'s `check`):
# (kind, cell id, chunk) as its path files it, its rows without metadata, and its metadata; the
# reason, or None.
FileCheck = Callable[[str, str, int, pa.Table, Mapping[bytes, bytes]], str | None]


# --- hashing ------------------------------------------------------------------------------------


def _read_values(path: str | os.PathLike[str]) -> tuple[pa.Table, Mapping[bytes, bytes]]:
    """The file's rows without metadata, and its key-value metadata: one read of the file."""
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a truncated or foreign file
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UnreadableFile(path, f"{path}: cannot read as parquet: {first}") from None
    return table.replace_schema_metadata(None), table.schema.metadata or {}


def canonical_table(table: pa.Table) -> pa.Table:
    """The table as it is hashed: no metadata, no wall-clock columns, rows sorted by the key
    columns it has (by every column if the keys repeat, which no study file does)."""
    return _canonical(table)[0]


def _canonical(table: pa.Table) -> tuple[pa.Table, bool]:
    """`canonical_table`, and whether its rows are sorted by unique keys (not by every
    column)."""
    table = table.replace_schema_metadata(None)
    table = table.select([c for c in table.column_names if c not in EXCLUDED_COLUMNS])
    keys = [k for k in SORT_KEYS if k in table.column_names]
    if not keys:
        return table, False
    if table.num_rows < 2:
        return table, True
    order = _unique_key_order(table, keys)
    if order is not None:
        return table.take(order), True
    table = table.sort_by([(k, "ascending") for k in keys])
    if table.group_by(keys).aggregate([]).num_rows < table.num_rows:
        return table.sort_by([(c, "ascending") for c in table.column_names]), False
    return table, True


def _sort_codes(column: pa.ChunkedArray) -> np.ndarray | None:
    """Integers that sort as the column's values do (strings by their rank in Arrow's own
    order), or None for a column with nulls or of another type."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if array.null_count:
        return None
    if pa.types.is_integer(array.type):
        return array.to_numpy()
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        encoded = array.dictionary_encode()
        by_value = pc.sort_indices(encoded.dictionary).to_numpy()
        rank = np.empty(len(by_value), np.int64)
        rank[by_value] = np.arange(len(by_value))
        return rank[encoded.indices.to_numpy()]
    return None


def _unique_key_order(table: pa.Table, keys: list[str]) -> np.ndarray | None:
    """The row order that sorts `table` by `keys` when no two rows share their keys, or None
    (keys repeat, or hold nulls or values of other types: Arrow's sort decides then).

    A numpy sort of integer codes: about three times faster than Arrow's multi-key sort with
    its group-by check, and the same order, because with unique keys there is only one."""
    codes = [_sort_codes(table[k]) for k in keys]
    if any(c is None for c in codes):
        return None
    order = np.lexsort(codes[::-1])
    differ = np.zeros(len(order) - 1, bool)
    for code in codes:
        ranked = code[order]
        differ |= ranked[1:] != ranked[:-1]
    return order if differ.all() else None


def column_parts(name: str, column: pa.ChunkedArray) -> Iterator[bytes]:
    """The bytes a column contributes to `canonical_bytes` (its name, type, length, nulls and
    values, one NaN pattern): two columns with the same parts hold the same values."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    kind = array.type
    yield f"{name}:{kind}:{len(array)}:{array.null_count}\n".encode()
    if array.null_count:
        yield np.asarray(array.is_valid().to_numpy(zero_copy_only=False), np.uint8).tobytes()
    if pa.types.is_floating(kind):
        values = array.to_numpy(zero_copy_only=False).astype("<f8")
        values[np.isnan(values)] = np.nan  # one NaN bit pattern; nulls are NaN here too
        yield values.tobytes()
    elif pa.types.is_integer(kind):
        yield array.fill_null(0).to_numpy().astype("<i8").tobytes()
    elif pa.types.is_boolean(kind):
        yield np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), "u1").tobytes()
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        # Dictionary in order of first appearance (canonical, as the rows are sorted), then the
        # codes: fast for the study's few distinct labels.
        encoded = array.fill_null("").dictionary_encode()
        for word in encoded.dictionary.to_pylist():
            data = word.encode()
            yield len(data).to_bytes(8, "little") + data
        yield b"\n" + encoded.indices.to_numpy().astype("<i8").tobytes()
    else:  # not in the study's schemas; still exact and canonical
        yield json.dumps(array.to_pylist(), default=repr).encode()


def canonical_bytes(table: pa.Table) -> bytes:
    """The byte stream `table_hash` hashes (module docstring); for tests and inspection."""
    return b"".join(_parts(table))


def _parts(table: pa.Table) -> Iterator[bytes]:
    return _canonical_parts(canonical_table(table))


def _canonical_parts(table: pa.Table) -> Iterator[bytes]:
    """`_parts` of a table that is its own `canonical_table`."""
    yield f"{SCHEME_ID}\n{table.num_rows}\n".encode()
    for name, column in zip(table.column_names, table.columns, strict=True):
        yield from column_parts(name, column)


def table_hash(table: pa.Table) -> str:
    """sha256 (hex) of the canonical byte form of `table`'s values (module docstring)."""
    return _digest(_parts(table))


def _digest(parts: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


# Metadata key of a fits or traces file: sha256 of its rows as the manifest hashes them.
ROWS_HASH_KEY = "rows_sha256"


def rows_hash(table: pa.Table) -> str:
    """The content hash stored under `ROWS_HASH_KEY`: `manifest.table_hash` of the rows."""
    return table_hash(table)


def rows_hash_metadata(table: pa.Table) -> dict[str, str]:
    """The metadata a fit job stores with its rows (`parquet_io.write_parquet_atomic`)."""
    return {ROWS_HASH_KEY: rows_hash(table)}


def rows_hash_problem(metadata: Mapping[bytes, bytes] | None, computed: str) -> str | None:
    """Why rows hashing to `computed` (`rows_hash`) are not those the writer of a file with
    key-value `metadata` hashed, or None: they are."""
    stored = (metadata or {}).get(ROWS_HASH_KEY.encode(), b"").decode()
    if not stored:
        return f"has no {ROWS_HASH_KEY} in its metadata: not written by this version's fit job"
    if computed != stored:
        return (
            f"its rows changed after its fit job wrote them (content hash {computed[:12]}, "
            f"written as {stored[:12]})"
        )
    return None


def study_hash(cells: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """sha256 over the sorted (cell id, kind, cell hash) triples of a manifest's `cells`."""
    triples = sorted(
        [cell_id, kind, entry["hash"]]
        for cell_id, kinds in cells.items()
        for kind, entry in kinds.items()
    )
    text = json.dumps(triples, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise ManifestError(f"{path}: not under the results folder {root}") from None


def _describe(rel: str) -> tuple[str, str, int]:
    kind, _, rest = rel.partition("/")
    match = HIVE_FILE.match(rest)
    if kind not in KINDS or match is None:
        raise ManifestError(f"{rel}: not a <fits|traces>/cell=<id>/chunk=<k>.parquet file")
    return kind, match["cell"], int(match["chunk"])


@dataclass
class _Scan:
    """Per-file and per-cell hashes of a set of result files."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    cells: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    # Files whose rows differ from the hash their fit job stored (ROWS_HASH_KEY).
    edited: dict[str, str] = field(default_factory=dict)


def _rows_hash_problem(metadata: Mapping[bytes, bytes], digest: str, required: bool) -> str | None:
    """Why rows hashing to `digest` are not what the writer of a file with `metadata` stored,
    or None; a file without a stored hash passes unless one is `required`."""
    if not required and ROWS_HASH_KEY.encode() not in metadata:
        return None
    return rows_hash_problem(metadata, digest)


def _in_key_order(tables: list[pa.Table]) -> bool:
    """Whether tables, each its own `canonical_table` sorted by unique keys, are still sorted
    by unique keys when concatenated in their order: each one's last key comes before the next
    one's first. A cell's chunks hold consecutive replicates, so they are; the concatenation
    is then its own canonical table, hashed without sorting again."""
    keys = [k for k in SORT_KEYS if k in tables[0].column_names]
    if not keys or any(t.column_names != tables[0].column_names for t in tables):
        return False
    ends = []
    for table in tables:
        if table.num_rows == 0:
            continue
        first = table.select(keys).slice(0, 1).to_pylist()[0]
        last = table.select(keys).slice(table.num_rows - 1, 1).to_pylist()[0]
        ends.append((tuple(first[k] for k in keys), tuple(last[k] for k in keys)))
    if any(None in first or None in last for first, last in ends):
        return False
    return all(prev[1] < nxt[0] for prev, nxt in itertools.pairwise(ends))


def _scan(
    root: Path,
    rel_paths: Iterable[str],
    expect_config_hash: str | None = None,
    tolerate_unreadable: bool = False,
    require_rows_hash: bool = False,
    check: FileCheck | None = None,
) -> _Scan:
    """Read and hash every file (paths relative to `root`); a cell's hash covers all its files'
    rows. One cell is in memory at a time. A file that does not exist is listed in `missing`
    and left out of the cell hashes; with `tolerate_unreadable`, so is one that is not readable
    Parquet (in `unreadable`, with the reason), which otherwise raises UnreadableFile. A file
    whose rows differ from the hash stored in its metadata at write time is listed in `edited`;
    with `require_rows_hash` it raises UnreadableFile, as does one without a stored hash.
    Each file is read once and sorted once: its sorted rows give its own hash and, in chunk
    order, the cell's. `check` (kind, cell, chunk, rows, metadata) names what else makes a file
    wrong (UnreadableFile), on the rows already read."""
    scan = _Scan()
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for rel in rel_paths:
        kind, cell_id, chunk = _describe(rel)
        groups.setdefault((cell_id, kind), []).append((chunk, rel))
    for (cell_id, kind), members in sorted(groups.items()):
        tables: list[tuple[pa.Table, bool]] = []
        hashed: list[str] = []
        for chunk, rel in sorted(members):
            path = root / rel
            if not path.exists():
                scan.missing.append(rel)
                continue
            try:
                table, metadata = _read_values(path)
            except UnreadableFile as err:
                if not tolerate_unreadable:
                    raise
                scan.unreadable[rel] = str(err).split(": cannot read as parquet: ", 1)[-1]
                continue
            if expect_config_hash is not None:
                _check_config_hash(metadata, rel, expect_config_hash)
            problem = check(kind, cell_id, chunk, table, metadata) if check else None
            if problem is not None:
                raise UnreadableFile(path, f"{rel}: {problem}")
            canonical, by_keys = _canonical(table)
            digest = _digest(_canonical_parts(canonical))
            edited = _rows_hash_problem(metadata, digest, require_rows_hash)
            if edited is not None:
                scan.edited[rel] = edited
                if require_rows_hash:
                    raise UnreadableFile(path, f"{rel}: {edited}")
            scan.files[rel] = {
                "kind": kind,
                "cell_id": cell_id,
                "chunk": chunk,
                "rows": table.num_rows,
                "hash": digest,
            }
            tables.append((canonical, by_keys))
            hashed.append(rel)
        if tables:
            rows, digest = _cell_hash(tables, [scan.files[rel]["hash"] for rel in hashed])
            if digest is None:
                raise ManifestError(
                    f"{kind} files of cell {cell_id} do not share one schema: {', '.join(hashed)}"
                )
            scan.cells.setdefault(cell_id, {})[kind] = {
                "rows": rows,
                "files": len(tables),
                "hash": digest,
            }
    scan.missing.sort()
    return scan


def _cell_hash(tables: list[tuple[pa.Table, bool]], hashes: list[str]) -> tuple[int, str | None]:
    """Rows and hash of a cell's rows, from its files' canonical tables (with whether each is
    sorted by unique keys) and hashes, in chunk order; None for files of different schemas."""
    if len(tables) == 1:  # the same definition: the rows of the cell
        return tables[0][0].num_rows, hashes[0]
    canonical = [table for table, _ in tables]
    try:
        whole = pa.concat_tables(canonical)
    except pa.ArrowInvalid:
        return 0, None
    if all(by_keys for _, by_keys in tables) and _in_key_order(canonical):
        return whole.num_rows, _digest(_canonical_parts(whole))
    return whole.num_rows, table_hash(whole)


def _check_config_hash(metadata: Mapping[bytes, bytes], rel: str, expected: str) -> None:
    found = metadata.get(b"config_hash", b"").decode()
    if found != expected:
        raise ManifestError(
            f"{rel}: stale: written for fit config {found[:12] or '(none)'}, "
            f"the study's is {expected[:12]}"
        )


# --- writing ------------------------------------------------------------------------------------


def build_manifest(
    root: str | os.PathLike[str],
    files: Iterable[str | os.PathLike[str]],
    provenance: Mapping[str, Any] | None = None,
    expect_config_hash: str | None = None,
    require_rows_hash: bool = False,
    check: FileCheck | None = None,
) -> dict[str, Any]:
    """The manifest of `files` (fits and traces files under the results folder `root`).

    With `expect_config_hash`, a file whose metadata names another fit config is refused
    (ManifestError): the manifest never vouches for a stale result. A file whose rows differ
    from the hash stored in its metadata when it was written is refused (UnreadableFile, naming
    it), and with `require_rows_hash` so is one that has none: the manifest never vouches for
    rows changed after their fit job wrote them. A file that `check` finds wrong is refused too.
    """
    root = Path(root)
    rel = sorted(_relative(Path(f), root) for f in files)
    scan = _scan(root, rel, expect_config_hash, require_rows_hash=require_rows_hash, check=check)
    if scan.edited:
        first = next(iter(scan.edited))
        raise UnreadableFile(root / first, f"{first}: {scan.edited[first]}")
    if scan.missing:
        raise ManifestError(f"{scan.missing[0]}: no such file ({len(scan.missing)} missing)")
    return assemble_manifest(scan.cells, [{"path": p, **scan.files[p]} for p in rel], provenance)


def assemble_manifest(
    cells: Mapping[str, Mapping[str, Any]],
    files: list[dict[str, Any]],
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of the cells' and files' entries (as `build_manifest` computes them; files
    in path order): the study hash, totals and the scheme added."""
    totals = {
        kind: {
            "files": sum(1 for f in files if f["kind"] == kind),
            "rows": sum(f["rows"] for f in files if f["kind"] == kind),
        }
        for kind in KINDS
    }
    return {
        "format": FORMAT,
        "study_hash": study_hash(cells),
        **dict(provenance or {}),
        "hashing": SCHEME,
        "totals": totals,
        "cells": dict(sorted(cells.items())),
        "files": files,
    }


def write_manifest(path: str | os.PathLike[str], manifest: Mapping[str, Any]) -> Path:
    """Write `manifest` as JSON to `path`, atomically (temp file, then rename)."""
    from emsim.study.parquet_io import atomic_write

    text = json.dumps(manifest, indent=1, sort_keys=False, allow_nan=False) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    return atomic_write(path, write)


# --- reading and checking -----------------------------------------------------------------------


def manifest_path(where: str | os.PathLike[str]) -> Path:
    """`where` itself if it is a file, else `where/manifest.json`."""
    where = Path(where)
    return where if where.is_file() else where / MANIFEST_NAME


def load_manifest(where: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest in results folder `where` (or the manifest file `where`)."""
    path = manifest_path(where)
    if not path.exists():
        hint = "" if Path(where).exists() else " (no such folder)"
        raise ManifestError(f"{path}: no manifest{hint}; run the study's `manifest` rule first")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(f"{path}: unreadable manifest: {err}") from None
    except RecursionError:  # JSON nested thousands deep: no manifest
        raise ManifestError(f"{path}: unreadable manifest: nested too deeply") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ManifestError(f"{path}: not an {FORMAT} manifest (format {found!r})")
    try:
        ok = isinstance(manifest["study_hash"], str) and all(
            isinstance(entry["hash"], str) and isinstance(entry["rows"], int)
            for kinds in manifest["cells"].values()
            for entry in kinds.values()
        )
        ok = ok and all(
            isinstance(f["path"], str) and isinstance(f["hash"], str) for f in manifest["files"]
        )
    except (KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise ManifestError(f"{path}: malformed manifest (study_hash, cells or files)")
    listed = Counter(f["path"] for f in manifest["files"])
    twice = sorted(p for p, times in listed.items() if times > 1)
    if twice:
        # Counted twice, one file would stand for two in every total and check.
        raise ManifestError(f"{path}: malformed manifest: {twice[0]} is listed twice")
    return manifest


@dataclass(frozen=True)
class Mismatch:
    """One difference: `what` (a file path, a cell, or "study") and a description; for a file,
    `damage` is "missing", "unreadable", "edited" (its rows differ from the hash its fit job
    stored) or "differs" (from the manifest only)."""

    what: str
    problem: str
    damage: str = ""

    def __str__(self) -> str:
        return f"{self.what}: {self.problem}"


def _short(h: str | None) -> str:
    return (h or "none")[:12]


def verify(results: str | os.PathLike[str]) -> tuple[dict[str, Any], list[Mismatch]]:
    """Recompute the hashes of the files a results folder's manifest lists.

    Returns the manifest and the differences (empty: all match). Raises ManifestError for a
    missing or unreadable manifest or an unreadable result file.
    """
    path = manifest_path(results)
    manifest = load_manifest(results)
    root = path.parent
    listed = {f["path"]: f for f in manifest["files"]}
    scan = _scan(root, sorted(listed), tolerate_unreadable=True)
    problems: list[Mismatch] = []
    for rel, entry in sorted(listed.items()):
        shown = (Path(root) / rel).as_posix()
        if rel in scan.missing:
            problems.append(Mismatch(shown, "missing", "missing"))
            continue
        if rel in scan.unreadable:
            problems.append(Mismatch(shown, f"unreadable: {scan.unreadable[rel]}", "unreadable"))
            continue
        now = scan.files[rel]
        if rel in scan.edited:
            problems.append(Mismatch(shown, f"content differs: {scan.edited[rel]}", "edited"))
        elif now["rows"] != entry.get("rows"):
            problems.append(
                Mismatch(
                    shown, f"{now['rows']} rows, the manifest says {entry.get('rows')}", "differs"
                )
            )
        elif now["hash"] != entry.get("hash"):
            problems.append(
                Mismatch(
                    shown,
                    f"content differs (hash {_short(now['hash'])}, manifest "
                    f"{_short(entry.get('hash'))})",
                    "differs",
                )
            )
    if not scan.missing and not scan.unreadable:
        recomputed = study_hash(scan.cells)
        if recomputed != manifest["study_hash"]:
            problems.append(
                Mismatch(
                    "study",
                    f"hash {_short(recomputed)} differs from the manifest's "
                    f"{_short(manifest['study_hash'])}",
                )
            )
    return manifest, problems


def repair_hint(problems: Iterable[Mismatch], results: str | os.PathLike[str]) -> str | None:
    """One line saying how to repair the damaged files among `problems`, or None if there are
    none. A rerun of the study refits missing, unreadable and edited files by itself (the
    workflow moves a damaged or edited one aside); a readable file whose content differs from
    the manifest but not from the hash its fit job stored must be deleted first."""
    damaged = [p for p in problems if p.damage]
    if not damaged:
        return None
    folder = manifest_path(results).parent.parent.as_posix() or "."
    rerun = (
        f"rerun the study in {shlex.quote(folder)} with the command that ran it, e.g. "
        "`snakemake --workflow-profile workflow/profiles/default`"
    )
    differ = [p.what for p in damaged if p.damage == "differs"]
    if differ:
        rm = " ".join(shlex.quote(path) for path in differ)
        return f"repair: rm {rm}; then {rerun}"
    return f"repair: {rerun}; it refits exactly the missing, unreadable and edited files"


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Mismatch]:
    """Differences between two manifests' results: cells present in one only, or whose rows
    differ (by kind). Empty when the study hashes are equal."""
    if a["study_hash"] == b["study_hash"]:
        return []
    problems: list[Mismatch] = []
    cells_a, cells_b = a["cells"], b["cells"]
    for cell_id in sorted(set(cells_a) | set(cells_b)):
        if cell_id not in cells_b:
            problems.append(Mismatch(f"cell {cell_id}", "only in the first study"))
        elif cell_id not in cells_a:
            problems.append(Mismatch(f"cell {cell_id}", "only in the second study"))
        else:
            for kind in sorted(set(cells_a[cell_id]) | set(cells_b[cell_id])):
                ea, eb = cells_a[cell_id].get(kind), cells_b[cell_id].get(kind)
                if ea is None or eb is None:
                    problems.append(Mismatch(f"cell {cell_id}", f"{kind} only in one study"))
                elif ea["hash"] != eb["hash"]:
                    problems.append(
                        Mismatch(
                            f"cell {cell_id}",
                            f"{kind} differ ({ea['rows']} rows {_short(ea['hash'])} vs "
                            f"{eb['rows']} rows {_short(eb['hash'])})",
                        )
                    )
    if not problems:  # the cells agree but the recorded study hashes do not: a hand-edited file
        problems.append(
            Mismatch(
                "study",
                f"hash {_short(a['study_hash'])} vs {_short(b['study_hash'])} "
                "with equal cell hashes",
            )
        )
    return problems
