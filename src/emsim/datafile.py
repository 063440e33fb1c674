"""Reading the data of `emsim fit`: one numeric column of a CSV or Parquet file, checked so that
it can be fitted, or an `InputError` of one line that names the file, and the row or column, at
fault.

What pandas would read silently wrongly is refused: binary data, text that is not UTF-8, rows
with more or fewer fields than the header, booleans, dates and times. A CSV column of plain
decimal numbers (the common case) is read without pandas, which costs 0.3-0.5 s to import, to
the same doubles pandas reads; any other column goes through pandas (or pyarrow, for Parquet).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .bad_input import InputError, echo, one_line

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SNIFF_BYTES",
    "find_column",
    "fittable",
    "numeric_column",
    "plain_numbers",
    "read_data",
    "scan_csv",
]

# Bytes looked at for NUL bytes before a CSV file is parsed: binary data fails at once.
SNIFF_BYTES = 1 << 16
# A CSV cell read without pandas: a plain decimal number, ASCII digits only, no spaces. pandas
# reads exactly these to the same double as float() (checked on 650,000 numbers of up to 25
# digits, issue 10); any other cell (NA, inf, text, spaces, ...) sends the whole column through
# pandas and its checks below.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_PLAIN_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)


def scan_csv(path: Path, column: str) -> tuple[str, int, list[str] | None] | None:
    """The name and position of `column` in a CSV file's header and, when every cell of it is
    a plain number (_PLAIN_NUMBER), its cells, after checking what pandas would read silently
    wrongly: binary data (NUL bytes), text that is not UTF-8, and rows with more or fewer
    fields than the header (pandas would take an extra first field for an index, or fill
    missing ones). None for a file with no lines."""
    with path.open("rb") as raw:
        head = raw.read(SNIFF_BYTES)
    if b"\0" in head:
        raise InputError(f"{path}: holds NUL bytes: binary data, not a CSV text file")
    missing_column = None
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            # Blank lines (or only spaces) are skipped, as pandas skips them, the header's too.
            # A line `""` is not blank: the csv module gives it as one empty field (a blank line
            # as no field), and pandas reads it as a missing value, which is then refused.
            rows = (
                row for row in reader if len(row) > 1 or row == [""] or (row and row[0].strip())
            )
            header = next(rows, None)
            if header is None:
                return None
            try:
                position = find_column(header, column, path)
            except InputError as err:  # reported after the rows are checked, as before
                missing_column, position = err, 0
            # pandas names an empty header "Unnamed: k"; such a column goes through pandas.
            cells: list[str] | None = [] if header[position] else None
            plain = _PLAIN_NUMBER.fullmatch
            for row in rows:
                if len(row) != len(header):
                    raise InputError(
                        f"{path}: line {reader.line_num} has {len(row)} field(s) but the header "
                        f"has {len(header)}"
                    )
                if cells is not None:
                    if plain(row[position]):
                        cells.append(row[position])
                    else:
                        cells = None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({one_line(err.reason, 30)})") from None
    except csv.Error as err:
        raise InputError(f"{path}: line {reader.line_num}: {one_line(str(err), 60)}") from None
    if missing_column is not None:
        raise missing_column
    return header[position], position, cells


def plain_numbers(cells: list[str]) -> np.ndarray:
    """The cells scan_csv kept, as pandas would read them: float() rounds each correctly, as
    pandas does; a column of whole numbers pandas reads as integers, which have no -0."""
    data = np.array([float(cell) for cell in cells], dtype=np.float64)
    if all(_PLAIN_INTEGER.fullmatch(cell) for cell in cells):
        data += 0.0  # -0.0 + 0.0 is +0.0
    return data


def find_column(names: list, column: str, path: Path) -> int:
    """Position of `column` among `names`; else of the one name equal to it up to case."""
    exact = [i for i, name in enumerate(names) if str(name) == column]
    if len(exact) > 1:
        raise InputError(
            f"{path}: column {echo(column)} appears {len(exact)} times in the header; "
            "rename the copies"
        )
    if exact:
        return exact[0]
    folded = [i for i, name in enumerate(names) if str(name).casefold() == column.casefold()]
    if len(folded) == 1:
        return folded[0]
    if folded:
        candidates = ", ".join(echo(str(names[i]), 20) for i in folded)
        raise InputError(
            f"{path}: no column {echo(column)}, and several differ from it only in case "
            f"({one_line(candidates, 50)}); choose one with --column"
        )
    listed = ", ".join(map(str, names)) or "none"
    raise InputError(
        f"{path}: no column {echo(column)} (columns: {one_line(listed, 40)}); "
        "choose one with --column"
    )


def numeric_column(series: pd.Series, path: Path, where: str) -> np.ndarray:
    """A column as float64; booleans, dates, times and text are refused, not turned into
    numbers (pandas would make True 1.0 and a date its nanoseconds)."""
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        series = series.astype(object)
        dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise InputError(f"{path}: {where} holds booleans (true/false), not numbers")
    if (
        pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype)
    ):
        raise InputError(f"{path}: {where} holds dates or times ({dtype}), not numbers")
    if pd.api.types.is_numeric_dtype(dtype):
        values = pd.to_numeric(series)
    else:
        cells = series.to_numpy(dtype=object)
        flags = np.fromiter(
            (isinstance(v, (bool, np.bool_)) for v in cells), dtype=bool, count=cells.size
        )
        if flags.any():
            raise InputError(
                f"{path}: {where}, row {int(np.argmax(flags)) + 1}: {echo(cells[flags][0])} "
                "is a boolean, not a number"
            )
        values = pd.to_numeric(series, errors="coerce")
        text_rows = (values.isna() & series.notna()).to_numpy()
        if text_rows.any():
            row = int(np.argmax(text_rows))
            raise InputError(f"{path}: {where}, row {row + 1}: {echo(cells[row])} is not a number")
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def read_data(path: Path, column: str) -> np.ndarray:
    """Column `column` of the .csv or .parquet file at `path` (or the one column equal to it up
    to case) as float64, checked by `fittable`."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file (a device, pipe or socket)"
        raise InputError(f"{path}: is {kind}; give a data file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise InputError(f"{path}: unsupported format {suffix or '(none)'!r}; use .csv or .parquet")
    if suffix == ".csv":
        scanned = scan_csv(path, column)
        if scanned is None:
            raise InputError(f"{path}: file is empty")
        name, position, cells = scanned
        if cells is not None:  # the common case, without pandas (0.3-0.5 s to import)
            return fittable(plain_numbers(cells), path, f"column {echo(name)}")
    import pandas as pd

    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, usecols=[position], encoding="utf-8-sig")
        else:
            frame = pd.read_parquet(path)
            position = find_column(list(frame.columns), column, path)
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: file is empty") from None
    except MemoryError:
        raise
    except Exception as err:  # pandas and pyarrow raise many types for unreadable files
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise InputError(f"{path}: cannot read as {suffix[1:]}: {one_line(first, 60)}") from None
    series = frame.iloc[:, 0 if suffix == ".csv" else position]
    name = str(frame.columns[0 if suffix == ".csv" else position])
    where = f"column {echo(name)}"
    return fittable(numeric_column(series, path, where), path, where)


def fittable(data: np.ndarray, path: Path, where: str) -> np.ndarray:
    """`data` if it can be fitted: finite, at least 2 points, not all one value."""
    bad = ~np.isfinite(data)
    if bad.any():
        raise InputError(
            f"{path}: {where}, row {int(np.argmax(bad)) + 1}: missing, NaN or infinite value"
        )
    if data.size < 2:
        raise InputError(f"{path}: {where} has {data.size} value(s); a fit needs at least 2")
    if data.min() == data.max():
        raise InputError(f"{path}: {where} is constant ({data[0]:g}); a mixture cannot be fitted")
    return data
