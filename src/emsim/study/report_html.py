"""The report's HTML building blocks: the Jinja2 templates (templates/, package data) that hold
its markup and prose, the formatting of numbers, and tables.

Every estimate with a Monte Carlo SE is shown as "estimate (MCSE)", both rounded to the MCSE's
precision (`format_estimate`); the report's modules format their tables with these helpers and
render them with templates/table.html.j2, so a change of style is made once. Python computes
and formats the values; the words and the markup around them live in the templates, so that a
section can be reworded without reading Python.
"""

from __future__ import annotations

import base64
import functools
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

MISSING = "–"


def finite(x: object) -> bool:
    try:
        return math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def format_number(value: object, digits: int = 4) -> str:
    """`value` with `digits` significant digits; a dash for missing or non-finite values."""
    if not finite(value):
        return MISSING
    return f"{float(value):.{digits}g}"  # type: ignore[arg-type]


def format_estimate(estimate: object, mcse: object, digits: int = 4) -> str:
    """ "estimate (MCSE)", both rounded to the MCSE's precision (two significant digits of it).

    Digits beyond the Monte Carlo error are noise, so they are not shown. Without a usable MCSE
    the estimate alone is shown with `digits` significant digits.
    """
    if not finite(estimate):
        return MISSING
    est = float(estimate)  # type: ignore[arg-type]
    if not finite(mcse) or float(mcse) <= 0:  # type: ignore[arg-type]
        return format_number(est, digits)
    err = float(mcse)  # type: ignore[arg-type]
    decimals = min(10, max(0, 1 - math.floor(math.log10(err))))
    return f"{est:.{decimals}f} ({err:.{decimals}f})"


def with_mcse(frame: pd.DataFrame, column: str, scale: float = 1.0, digits: int = 4) -> list[str]:
    """Column `column` of `frame` formatted as "estimate (MCSE)" from `column` and its _mcse
    (the estimate alone, to `digits` significant digits, where the table has no MCSE column:
    one summarised before the column existed)."""
    estimates = frame[column].astype(float) * scale
    if f"{column}_mcse" not in frame:
        return [format_number(e, digits) for e in estimates]
    mcse = frame[f"{column}_mcse"].astype(float) * scale
    return [format_estimate(e, m, digits) for e, m in zip(estimates, mcse, strict=True)]


def percent(value: object) -> str:
    return f"{100 * float(value):.1f}%" if finite(value) else MISSING  # type: ignore[arg-type]


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


@functools.cache
def _environment() -> jinja2.Environment:
    # Autoescaping escapes every value a section passes, so that Python never builds markup by
    # hand; StrictUndefined turns a misspelt name in a template into an error, not a blank.
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("emsim.study", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    environment.filters["png_size"] = png_size
    return environment


def render(template: str, **context: object) -> Markup:
    """Template `template` (a path under templates/) rendered with `context`, as markup that
    other templates insert unescaped."""
    return Markup(_environment().get_template(template).render(**context))


def template_text(name: str) -> Markup:
    """A template file as it is (the style sheet, the script), to inline in the page."""
    source, _, _ = _environment().loader.get_source(_environment(), name)  # type: ignore[union-attr]
    return Markup(source)


def html_table(
    frame: pd.DataFrame,
    css_class: str = "",
    links: Mapping[str, Sequence[str | None]] | None = None,
) -> Markup:
    """An HTML table of already formatted (string) cells, escaped, in a scrolling wrapper;
    `links` maps a column to each row's link target (None for none)."""
    if frame.empty:
        return render("table.html.j2", columns=[], rows=[], css_class=css_class)
    links = links or {}
    columns = [str(c) for c in frame.columns]
    targets = [links.get(c) for c in frame.columns]
    rows = [
        [
            (value, None if target is None else target[i])
            for value, target in zip(row, targets, strict=True)
        ]
        # Python objects column by column: iterating Arrow-backed text cell by cell was most
        # of the report's time.
        for i, row in enumerate(frame.to_numpy(dtype=object).tolist())
    ]
    return render("table.html.j2", columns=columns, rows=rows, css_class=css_class)


def kv_table(pairs: Mapping[str, object]) -> Markup:
    frame = pd.DataFrame({"": list(pairs), "value": [str(v) for v in pairs.values()]})
    return html_table(frame, "kv")


def png_size(src: str) -> tuple[int, int] | None:
    """(width, height) of the PNG in a data URI (`embed_png`'s), from its header; None for
    anything else. The page gives each image its size, so that an image not yet decoded (they
    load lazily) holds its place and a link below it lands where it points."""
    prefix = "data:image/png;base64,"
    if not src.startswith(prefix):
        return None
    try:
        # The 8-byte signature, then the IHDR chunk: length, type, width, height (big-endian).
        header = base64.b64decode(src[len(prefix) : len(prefix) + 32])
    except ValueError:
        return None
    if len(header) < 24 or header[12:16] != b"IHDR":
        return None
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def embed_png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def cell_anchor(cell_id: object) -> str:
    """The id of a cell's drill-down section (report section 13)."""
    return f"cell-{cell_id}"
