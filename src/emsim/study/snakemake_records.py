"""Snakemake's own files about the runs in a checkout's `.snakemake` folder, read: its record of
each output made (`metadata/`: the output's rule, job, start and end) and its markers of the
outputs being made (`incomplete/`, dated at the job's start). `emsim status` reads both
(docs/design.md section 7); the benchmarks and tests read the records for which job ran when.

Snakemake names both kinds of file by the output's path in URL-safe base64, cut into folders
("@" + part) where the name is longer than a file name may be: a reader that looks at one folder
level alone misses the outputs with long paths.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator
from pathlib import Path

__all__ = ["incomplete_markers", "jobs", "records"]


def _named_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(output path, file) for each file under `folder` whose name decodes to a path."""
    for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
        name = "".join(part.removeprefix("@") for part in path.relative_to(folder).parts)
        try:
            if not path.is_file():
                continue
            output = base64.urlsafe_b64decode(name).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError, OSError):
            continue
        yield output, path


def records(checkout: Path) -> dict[str, dict]:
    """{output path: Snakemake's record of the job that made it}; records that cannot be read
    (one being written, a foreign file) are left out."""
    found = {}
    for output, path in _named_files(Path(checkout) / ".snakemake" / "metadata"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            found[output] = record
    return found


def jobs(checkout: Path) -> list[dict]:
    """Every recorded job, earliest first: its rule, outputs, `start` (when Snakemake marked the
    outputs incomplete, just before running the job) and `end` (its last output's)."""
    by_job: dict[object, dict] = {}
    for output, record in records(checkout).items():
        try:
            key, rule = record["job_hash"], record["rule"]
            start, end = float(record["starttime"]), float(record["endtime"])
        except (KeyError, TypeError, ValueError):
            continue
        job = by_job.setdefault(
            key, {"rule": rule, "outputs": [], "start": math.inf, "end": -math.inf}
        )
        job["outputs"].append(output)
        job["start"] = min(job["start"], start)
        job["end"] = max(job["end"], end)
    return sorted(by_job.values(), key=lambda job: job["start"])


def incomplete_markers(checkout: Path) -> dict[str, float]:
    """{output path: the time its job started (the marker's modification time)} of the outputs
    Snakemake is making now, or was when it was killed."""
    found = {}
    for output, path in _named_files(Path(checkout) / ".snakemake" / "incomplete"):
        try:
            found[output] = path.stat().st_mtime
        except OSError:
            continue
    return found
