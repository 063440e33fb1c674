"""The code files a rule's outputs are made from, listed as its inputs so that editing one of
them reruns the rule (Snakemake reruns a job whose input is newer than its output).

In its own module rather than beside `jobs.module_path`: jobs.py is at the 700-line limit.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["report_code"]


def report_code() -> list[str]:
    """The report's modules (report*.py, and captions.py with the caption files it reads,
    figure_captions/*.rst, which the report prints under its figures) and its Jinja templates,
    styles and script (templates/), as the installed emsim holds them."""
    spec = importlib.util.find_spec("emsim.study.report")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("emsim.study.report")
    folder = Path(spec.origin).parent
    files = [
        *folder.glob("report*.py"),
        folder / "captions.py",
        *folder.glob("figure_captions/*.rst"),
        *folder.glob("templates/**/*"),
    ]
    return sorted(str(path) for path in files if path.is_file())
