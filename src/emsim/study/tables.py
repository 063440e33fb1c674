"""`emsim table`: one performance measure as a design x method table with its Monte Carlo SE in
parentheses, the layout a paper prints (rsimsum's `kable`), from the study's performance table
(docs/design.md section 6).

Rows are in the design's order (sample size, separation |mu2 - mu1| / sigma1, sigma ratio when
the study varies it, pi, the component family when it has several: normal first), then model
(`MODELS` order), stopping rule and start (the order the study's config gives them, `best`
last); columns are the methods. A cell of the table is
"value (MCSE)" rounded to `digits` decimals, `NA` where the measure is not defined (too few
usable fits, or a parameter with no true value); CSV keeps both numbers, unrounded, in two
columns per method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from emsim.models import MODELS

# pandas and the measures are imported by the functions that use them, so that building the
# command line's parser (which reads MEASURES) stays instant.
if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MEASURES", "TABLE_FORMATS", "MeasureTable", "measure_table", "render"]

# The measures of the performance table that have an MCSE column (docs/design.md section 6).
MEASURES: tuple[str, ...] = (
    "bias",
    "empse",
    "mse",
    "rmse",
    "coverage",
    "modse",
    "relerr_modse",
    "coverage_sandwich",
    "modse_sandwich",
    "relerr_modse_sandwich",
)
TABLE_FORMATS: tuple[str, ...] = ("markdown", "latex", "csv")
_ROW_KEYS = ("model", "stopping", "start")
# Design columns printed as numbers (right-aligned); the family and the row keys are words.
_NUMERIC = ("n", "separation", "sigma_ratio", "pi")


@dataclass(frozen=True)
class MeasureTable:
    """`rows`: the design and group columns of each row; `values` and `mcse`: one column per
    method, aligned with `rows`."""

    measure: str
    parameter: str
    set: str
    rows: pd.DataFrame
    values: pd.DataFrame
    mcse: pd.DataFrame


def _rank(values: pd.Series, order: Sequence[str]) -> pd.Series:
    """Position in `order`, then alphabetical for names `order` does not hold."""
    known = {name: i for i, name in enumerate(order)}
    extra = sorted(set(values) - set(known))
    known.update({name: len(order) + i for i, name in enumerate(extra)})
    return values.map(known)


def _ordered(names: pd.Series, order: Sequence[str]) -> list[str]:
    import pandas as pd

    unique = pd.Series(sorted(set(names)))
    return unique.iloc[_rank(unique, order).argsort(kind="stable")].tolist()


def _picked(perf: pd.DataFrame, column: str, wanted: Sequence[str] | None, option: str):
    if not wanted:
        return perf
    present = list(dict.fromkeys(perf[column]))
    unknown = [w for w in wanted if w not in present]
    if unknown:
        raise ValueError(
            f"{option} {unknown[0]!r} is not in the table; choose from: {', '.join(present)}"
        )
    return perf[perf[column].isin(list(wanted))]


def measure_table(
    perf: pd.DataFrame,
    measure: str,
    parameter: str,
    *,
    models: Sequence[str] | None = None,
    stopping: Sequence[str] | None = None,
    starts: Sequence[str] | None = None,
    set_: str = "own",
    order: dict[str, Sequence[str]] | None = None,
) -> MeasureTable:
    """The table of `measure` for `parameter` from the performance table `perf`, the rows of
    the given models, rules and starts (all when None) and the set `set_`. `order` gives the
    order of each of stopping, start and method (the study's config order; others after them).
    Raises ValueError naming the option whose value the table does not hold."""
    from emsim.families import NORMAL
    from emsim.study.captions import add_design_factors
    from emsim.study.measures import BEST, FAMILY

    if measure not in MEASURES:
        raise ValueError(f"--measure {measure!r}: choose one of {', '.join(MEASURES)}")
    if perf.empty:
        raise ValueError("the performance table has no rows")
    perf = _picked(perf, "parameter", [parameter], "--parameter")
    perf = _picked(perf, "set", [set_], "--set")
    perf = _picked(perf, "model", models, "--model")
    perf = _picked(perf, "stopping", stopping, "--stopping")
    perf = _picked(perf, "start", starts, "--start")
    order = order or {}
    ranked = add_design_factors(perf).assign(
        _model=lambda f: _rank(f["model"], MODELS),
        _stopping=lambda f: _rank(f["stopping"], order.get("stopping", ())),
        _start=lambda f: _rank(f["start"], [*order.get("start", ()), BEST]),
    )
    design = ["n", "separation", *(["sigma_ratio"] if ranked["sigma_ratio"].nunique() > 1 else [])]
    design.append("pi")
    # A study with component families has cells of one design and several families (the
    # default study's t(4) and contaminated cells beside a normal one): the family is a row
    # label then, normal first.
    families = ["family"] if FAMILY in ranked and ranked[FAMILY].nunique() > 1 else []
    if families:
        ranked["_family"] = ranked[FAMILY].ne(NORMAL.label)
    # The cell id too: two cells may share the shown design values (another mu1, or sigma1).
    sort_family = ["_family", FAMILY] if families else []
    by = [*design, *sort_family, "cell_id", "_model", "_stopping", "_start"]
    wide = (
        ranked.sort_values([*by, *_ROW_KEYS], kind="stable")
        .set_index([*by, *_ROW_KEYS, "method"])[[measure, f"{measure}_mcse"]]
        .unstack("method", sort=False)
    )
    methods = _ordered(perf["method"], order.get("method", ()))
    rows = wide.index.to_frame(index=False)[[*design, *families, *_ROW_KEYS]]
    values = wide[measure].reindex(columns=methods).reset_index(drop=True)
    mcse = wide[f"{measure}_mcse"].reindex(columns=methods).reset_index(drop=True)
    return MeasureTable(measure, parameter, set_, rows, values, mcse)


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if np.isfinite(value) else "NA"


def _entries(table: MeasureTable, digits: int) -> pd.DataFrame:
    """'value (MCSE)' per method, NA for a value that is not defined."""
    import pandas as pd

    out = {}
    for method in table.values.columns:
        values, mcses = table.values[method], table.mcse[method]
        out[method] = [
            _number(v, digits) if not np.isfinite(s) else f"{_number(v, digits)} ({s:.{digits}f})"
            for v, s in zip(values.astype(float), mcses.astype(float), strict=True)
        ]
    return pd.DataFrame(out)


_HEADERS = {
    "n": ("n", "$n$"),
    "separation": ("Δ/σ₁", r"$|\mu_2-\mu_1|/\sigma_1$"),
    "sigma_ratio": ("σ₂/σ₁", r"$\sigma_2/\sigma_1$"),
    "pi": ("π", r"$\pi$"),
    "family": ("family", "family"),
    "model": ("model", "model"),
    "stopping": ("rule", "rule"),
    "start": ("start", "start"),
}


def _labels(rows: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {c: [f"{v:g}" if isinstance(v, float) else str(v) for v in rows[c]] for c in rows}
    )


def _latex_text(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("&", r"\&")


def render(table: MeasureTable, fmt: str, digits: int = 3) -> str:
    """The table as Markdown, LaTeX (booktabs) or CSV text."""
    if fmt == "csv":
        frame = table.rows.copy()
        for method in table.values.columns:
            frame[method] = table.values[method].to_numpy()
            frame[f"{method}_mcse"] = table.mcse[method].to_numpy()
        # pandas writes a float as its shortest repr, which reads back exactly.
        return frame.to_csv(index=False)
    labels, entries = _labels(table.rows), _entries(table, digits)
    what = f"{table.measure} of {table.parameter} (MCSE in parentheses), set {table.set}"
    if fmt == "markdown":
        header = [_HEADERS[c][0] for c in labels] + list(entries.columns)
        align = "".join("---:|" if c in _NUMERIC else ":---|" for c in labels)
        align += ":---:|" * entries.shape[1]
        lines = [f"| {' | '.join(header)} |", "|" + align]
        for (_, row), (_, cells) in zip(labels.iterrows(), entries.iterrows(), strict=True):
            lines.append(f"| {' | '.join([*row, *cells])} |")
        return f"{what}\n\n" + "\n".join(lines) + "\n"
    if fmt == "latex":
        header = [_HEADERS[c][1] for c in labels] + [_latex_text(m) for m in entries.columns]
        spec = "".join("r" if c in _NUMERIC else "l" for c in labels) + "c" * entries.shape[1]
        body = [
            " & ".join([_latex_text(v) for v in [*row, *cells]]) + r" \\"
            for (_, row), (_, cells) in zip(labels.iterrows(), entries.iterrows(), strict=True)
        ]
        return "\n".join(
            [
                f"% {_latex_text(what)}",
                rf"\begin{{tabular}}{{{spec}}}",
                r"\toprule",
                " & ".join(header) + r" \\",
                r"\midrule",
                *body,
                r"\bottomrule",
                r"\end{tabular}",
                "",
            ]
        )
    raise ValueError(f"--format {fmt!r}: choose one of {', '.join(TABLE_FORMATS)}")
