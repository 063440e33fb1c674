"""The report's HTML building blocks: its style sheet, the formatting of numbers and escaped
tables in a scrolling wrapper.

Every estimate with a Monte Carlo SE is shown as "estimate (MCSE)", both rounded to the MCSE's
precision (`format_estimate`); the report's modules build their tables from these helpers only,
so a change of style is made once, here.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

MISSING = "–"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d1d1f; background: #fff; line-height: 1.45; }
main { max-width: 1200px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.8rem; margin-bottom: .2rem; }
h2 { border-bottom: 2px solid #d0d7de; padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { margin-top: 1.4rem; }
.subtitle { color: #57606a; margin-top: 0; }
nav ol { columns: 2; font-size: .95rem; }
nav a, a { color: #0969da; text-decoration: none; }
.table-wrap { overflow-x: auto; max-height: 38rem; overflow-y: auto; margin: .6rem 0 1rem;
              border: 1px solid #d0d7de; border-radius: 6px; }
table { border-collapse: collapse; font-size: .82rem; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .55rem; border-bottom: 1px solid #eaeef2; text-align: right;
         white-space: nowrap; }
th { background: #f6f8fa; position: sticky; top: 0; z-index: 1; }
td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
table.kv td:first-child { font-weight: 600; }
table.kv td { text-align: left; white-space: normal; }
details { margin: .5rem 0; }
summary { cursor: pointer; font-weight: 600; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #d0d7de; border-radius: 6px; }
figcaption { color: #3d444d; font-size: .92rem; margin-top: .4rem; }
pre { background: #f6f8fa; padding: .8rem; border-radius: 6px; overflow-x: auto;
      font-size: .8rem; }
.note { color: #57606a; font-size: .9rem; }
code { background: #f6f8fa; padding: 0 .2rem; border-radius: 3px; }
"""


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


def html_table(frame: pd.DataFrame, css_class: str = "") -> str:
    """An HTML table of already formatted (string) cells, escaped, in a scrolling wrapper."""
    if frame.empty:
        return '<p class="note">No rows.</p>'
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False, name=None)
    )
    cls = f' class="{esc(css_class)}"' if css_class else ""
    return (
        f'<div class="table-wrap"><table{cls}><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{rows}\n</tbody></table></div>"
    )


def kv_table(pairs: Mapping[str, object]) -> str:
    frame = pd.DataFrame({"": list(pairs), "value": [str(v) for v in pairs.values()]})
    return html_table(frame, "kv")


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>\n{body}\n</section>'


def embed_png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"
