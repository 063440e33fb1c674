"""Parquet files of the study: atomic writes, provenance metadata and the fit jobs' footers read
back (`fit_provenance`) (docs/design.md section 4).

Every Parquet file the study writes carries the same key-value metadata (`provenance_metadata`)
and is written under a temporary name in its own folder and then renamed, so a reader (or a
killed job) never sees half a file under the final name. The temporary name starts with a dot,
which pyarrow datasets skip, so a leftover from a crash does not join the fits dataset.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import subprocess
import uuid
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from emsim.study.schema import (
    FOOTER_EM_CPU_S,
    FOOTER_EM_ELAPSED_S,
    FOOTER_JOB_ELAPSED_S,
    FOOTER_JOB_STARTED,
)

__all__ = [
    "atomic_write",
    "emsim_version",
    "fit_provenance",
    "git_commit",
    "provenance_metadata",
    "read_metadata",
    "write_parquet_atomic",
]


def emsim_version() -> str:
    try:
        return _metadata.version("emsim")
    except _metadata.PackageNotFoundError:  # running from a source tree without install
        return "unknown"


@functools.cache
def git_commit() -> str:
    """Commit of the emsim source tree, or "" when it is not a git checkout (e.g. a wheel)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def provenance_metadata(
    config_hash: str, seed: int | None, extra: Mapping[str, object] | None = None
) -> dict[str, str]:
    """The key-value metadata of docs/design.md section 4 (all values as strings).

    Keys: ``emsim_version``, ``git_commit``, ``config_hash``, ``seed``, ``numpy_version``,
    ``created`` (UTC, ISO 8601), plus any ``extra`` keys (which may override none of these).
    """
    meta = {
        "emsim_version": emsim_version(),
        "git_commit": git_commit(),
        "config_hash": str(config_hash),
        "seed": "" if seed is None else str(seed),
        "numpy_version": np.__version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    for key, value in (extra or {}).items():
        if key in meta:
            raise ValueError(f"metadata key {key!r} is reserved")
        meta[str(key)] = str(value)
    return meta


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Write through `write(tmp_name)` to a temp file next to `path`, then rename over it.

    Same folder as the target, so `os.replace` is a rename on one file system: atomic. The temp
    name starts with a dot (pyarrow datasets and globbing skip it) and is created by `write`
    itself, so the file gets the usual umask permissions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_parquet_atomic(
    df: pd.DataFrame | pa.Table,
    path: str | os.PathLike[str],
    metadata: Mapping[str, object] | None = None,
    schema: pa.Schema | None = None,
    derived_metadata: Callable[[pa.Table], Mapping[str, str]] | None = None,
) -> Path:
    """Write `df` to `path` as Parquet with `metadata` (str -> str) merged into the schema's
    key-value metadata; atomically (temporary file in the same folder, then `os.replace`).

    `schema`, when given, fixes the column types, so that an empty frame still gets the right
    dtypes and every chunk of a dataset has the same schema. `derived_metadata` adds entries
    computed from the table as written (the fit jobs' `manifest.rows_hash_metadata`: the
    content hash of the rows, so that a reader can tell rows changed after they were written,
    docs/design.md section 4).
    """
    if isinstance(df, pa.Table):
        table = df.cast(schema) if schema is not None else df
    else:
        table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    kv = dict(table.schema.metadata or {})
    for key, value in (metadata or {}).items():
        kv[str(key).encode()] = str(value).encode()
    if derived_metadata is not None:
        for key, value in derived_metadata(table).items():
            kv[str(key).encode()] = str(value).encode()
    table = table.replace_schema_metadata(kv)
    # Dictionary encoding for text columns only: pyarrow tries it on every column by default,
    # and on floats, which seldom repeat, the attempt costs more than the rest of the write (a
    # fit job's 27,000 rows: 37 -> 15 ms) and leaves the file larger (2.54 -> 2.27 MB).
    text = [f.name for f in table.schema if _is_text(f.type)]
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp, use_dictionary=text))


def _is_text(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind)
    )


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The key-value metadata of a Parquet file, without pandas' own entry."""
    raw = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if k != b"pandas"}


def fit_provenance(fit_files: Iterable[str | os.PathLike[str]]) -> dict[str, Any]:
    """Counts and times of the fit jobs, from the footers of their Parquet files: total fits,
    the first job's start and the wall-clock span from it to the last job's end, the summed job
    and EM times, fits per second of that span and the share of job time spent inside EM."""
    total = 0
    n_files = 0
    job_s = em_s = em_cpu_s = 0.0
    first: _dt.datetime | None = None
    last: _dt.datetime | None = None
    for f in fit_files:
        md = pq.read_metadata(f)
        kv = {k.decode(): v.decode() for k, v in (md.metadata or {}).items()}
        total += md.num_rows
        n_files += 1
        if FOOTER_JOB_STARTED not in kv:
            continue
        start = _dt.datetime.fromisoformat(kv[FOOTER_JOB_STARTED])
        elapsed = float(kv.get(FOOTER_JOB_ELAPSED_S, "nan"))
        end = start + _dt.timedelta(seconds=elapsed)
        first = start if first is None or start < first else first
        last = end if last is None or end > last else last
        job_s += elapsed
        em_s += float(kv.get(FOOTER_EM_ELAPSED_S, "nan"))
        em_cpu_s += float(kv.get(FOOTER_EM_CPU_S, "nan"))
    span = (last - first).total_seconds() if first is not None and last is not None else None
    out: dict[str, Any] = {"total_fits": total, "fit_jobs": n_files}
    if span:
        out.update(
            {
                "first_fit_job_started": first.isoformat(timespec="milliseconds"),
                "wall_time_s": round(span, 1),
                "fit_job_time_s": round(job_s, 1),
                "em_time_s": round(em_s, 1),
                "em_cpu_time_s": round(em_cpu_s, 1),
                "fits_per_second": round(total / span, 1),
                "em_share_of_job_time": round(em_s / job_s, 3) if job_s else None,
            }
        )
    return out
