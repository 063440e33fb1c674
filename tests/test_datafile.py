"""Reading the data of `emsim fit` (`emsim.datafile`): one numeric column of a CSV or Parquet
file, or one line naming what is wrong.

Every bad file is tried twice: against `read_data` (the message names the file's fault) and
through `emsim fit` (exit status 2, exactly one line on stderr, no trace file written; the
contract of tests/test_cli.py). The good files are compared with what pandas reads, bit for bit.
Issue 10 (a CSV read without pandas) and issue 13 (data read wrongly without a word) are the
origin of most cases.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_cli import assert_one_line_error, run

from emsim import datafile
from emsim.bad_input import InputError
from emsim.datafile import (
    find_column,
    fittable,
    numeric_column,
    plain_numbers,
    read_data,
    scan_csv,
)

Writer = Callable[[Path], None]


def text(content: str | bytes) -> Writer:
    def write(path: Path) -> None:
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

    return write


def parquet(frame: pd.DataFrame | list) -> Writer:
    frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame({"Y": frame})
    return lambda path: frame.to_parquet(path)


LONG = "x" * 100_000

# (file name, how to write it (None: leave it missing), the column asked for, words the message
# names)
BAD_FILES = [
    pytest.param("nope.csv", None, "Y", ["nope.csv", "no such file"], id="missing-file"),
    pytest.param("a.csv", text("x\n1\n2\n"), "Y", ["no column 'Y'", "x"], id="unknown-column"),
    pytest.param("a.csv", text("Y\n1\n2\n"), "Z", ["no column 'Z'"], id="unknown-column-opt"),
    pytest.param("a.csv", text("Y\n1\nabc\n3\n"), "Y", ["row 2", "'abc'"], id="non-numeric"),
    pytest.param("a.csv", text("Y\n1\n2\nNaN\n"), "Y", ["row 3", "NaN"], id="nan"),
    pytest.param("a.csv", text("x,Y\n1,1\n2,2\n3,\n"), "Y", ["row 3", "missing"], id="empty-field"),
    pytest.param("a.csv", text("Y\n1\ninf\n3\n"), "Y", ["row 2", "infinite"], id="inf"),
    pytest.param("a.csv", text("Y\n-inf\n1\n3\n"), "Y", ["row 1", "infinite"], id="minus-inf"),
    pytest.param("a.csv", text("Y\n1\n1e999\n"), "Y", ["row 2", "infinite"], id="overflow"),
    pytest.param("a.csv", text(""), "Y", ["empty"], id="empty-file"),
    pytest.param("a.csv", text("\n  \n\n"), "Y", ["empty"], id="blank-lines-only"),
    pytest.param("a.csv", text("Y\n"), "Y", ["0 value", "at least 2"], id="header-only"),
    pytest.param("a.csv", text("Y\n1.5\n"), "Y", ["1 value", "at least 2"], id="one-point"),
    pytest.param("a.csv", text("Y\n2\n2\n2\n"), "Y", ["constant"], id="constant"),
    pytest.param("a.txt", text("Y\n1\n2\n"), "Y", ["unsupported format", "'.txt'"], id="txt"),
    pytest.param("a", text("Y\n1\n2\n"), "Y", ["unsupported format", "(none)"], id="no-suffix"),
    pytest.param("a.parquet", text("not parquet"), "Y", ["cannot read"], id="corrupt-parquet"),
    pytest.param("a.parquet", parquet([1.0, np.nan, 2.0]), "Y", ["row 2"], id="parquet-nan"),
    pytest.param("a.parquet", parquet(["1", "x"]), "Y", ["'x'"], id="parquet-text"),
    # Read silently wrongly by pandas (issue 13).
    pytest.param("a.csv", text("Y\n1\n2,3\n4\n5\n"), "Y", ["line 3", "2 field"], id="too-many"),
    pytest.param(
        "a.csv", text("x,Y\n1,1\n2\n3,3\n4,5\n"), "Y", ["line 3", "1 field"], id="too-few"
    ),
    pytest.param(
        "a.csv", text("Y\n1,10\n2,20\n3,30\n"), "Y", ["line 2", "2 field"], id="all-extra"
    ),
    pytest.param("a.csv", text("Y\ntrue\nfalse\ntrue\n"), "Y", ["'Y'", "boolean"], id="bool"),
    pytest.param(
        "a.parquet", parquet([True, False, True]), "Y", ["'Y'", "boolean"], id="parquet-bool"
    ),
    pytest.param(
        "a.parquet",
        parquet(pd.DataFrame({"Y": [True, None, False]}, dtype=object)),
        "Y",
        ["'Y'", "row 1", "boolean"],
        id="parquet-bool-null",
    ),
    pytest.param(
        "a.parquet",
        parquet(pd.DataFrame({"Y": pd.date_range("2020-01-01", periods=4)})),
        "Y",
        ["'Y'", "dates or times"],
        id="parquet-datetime",
    ),
    pytest.param(
        "a.parquet",
        parquet(pd.DataFrame({"Y": pd.to_timedelta([1, 2, 3], unit="s")})),
        "Y",
        ["'Y'", "dates or times"],
        id="parquet-timedelta",
    ),
    pytest.param(
        "a.parquet",
        parquet(["1", "2", LONG]),
        "Y",
        ["'Y'", "row 3", "'xxxxx", "not a number"],
        id="parquet-long-text",
    ),
    pytest.param(
        "a.csv", text(f"Y\n1\n2\n{LONG}\n"), "Y", ["'Y'", "row 3", "not a number"], id="long"
    ),
    pytest.param(
        "a.csv", text(f"{LONG}\n1\n2\n"), "Y", ["no column 'Y'", "choose one"], id="long-name"
    ),
    pytest.param("a.csv", text("Y,Y\n1,5\n2,6\n3,7\n"), "Y", ["'Y'", "2 times"], id="dup-Y"),
    pytest.param(
        "a.csv",
        text("VALUE,Value\n1,5\n2,6\n3,7\n"),
        "value",
        ["no column 'value'", "'VALUE'", "'Value'"],
        id="ambiguous-case",
    ),
    pytest.param("a.csv", text(b"Y\n1\n\xff\xfe\n"), "Y", ["not UTF-8"], id="not-utf8"),
    pytest.param("a.csv", text(b"\0" * 5_000_000), "Y", ["NUL bytes"], id="nul-bytes"),
    pytest.param(
        "a.csv", text(b"Y\n1\n2\n" + b"\0" * 5_000_000), "Y", ["NUL bytes"], id="nul-tail"
    ),
]


def bad_file(tmp_path: Path, name: str, write: Writer | None) -> Path:
    path = tmp_path / name
    if write is not None:
        write(path)
    return path


@pytest.mark.parametrize(("name", "write", "column", "needles"), BAD_FILES)
def test_bad_file_is_refused_naming_its_fault(tmp_path, name, write, column, needles) -> None:
    path = bad_file(tmp_path, name, write)
    began = time.perf_counter()
    with pytest.raises(InputError) as info:
        read_data(path, column)
    assert time.perf_counter() - began < 10
    message = str(info.value)
    assert message.startswith(str(path)), message
    # The cap is on what the message says besides the path, which is as long as pytest's
    # temporary folder (longer under pytest-xdist's per-worker folders).
    assert "\n" not in message and len(message) - len(str(path)) < 120, message[:300]
    for needle in needles:
        assert needle in message, f"{needle!r} not named in {message!r}"


@pytest.mark.parametrize(("name", "write", "column", "needles"), BAD_FILES)
def test_emsim_fit_of_a_bad_file_is_one_line_and_writes_nothing(
    capsys, tmp_path, name, write, column, needles
) -> None:
    path = bad_file(tmp_path, name, write)
    trace = tmp_path / "trace.csv"
    code, out, err = run(capsys, "fit", path, "--trace", trace, "--column", column)
    assert_one_line_error(code, out, err, *needles)
    assert not trace.exists()


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_data_path_that_is_not_a_file_is_named_so(capsys, tmp_path, kind) -> None:
    path = tmp_path / "data.csv"
    if kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)  # reading it would wait for a writer forever
    with pytest.raises(InputError, match="directory" if kind == "directory" else "pipe"):
        read_data(path, "Y")
    code, out, err = run(capsys, "fit", path)
    assert_one_line_error(code, out, err, str(path))


# --- good files: the numbers pandas reads ---------------------------------------------------


def pandas_reads(path: Path, column: str) -> np.ndarray:
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    return frame[column].to_numpy(dtype=np.float64)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    same_type = a.dtype == b.dtype == np.float64
    return same_type and a.view(np.int64).tolist() == b.view(np.int64).tolist()


@pytest.mark.parametrize(
    "cells",
    [
        [f"{v:.17g}" for v in np.random.default_rng(3).normal(size=2000) * 1e3],
        ["1", "-0", "007", "+4", "12345678901234567890123"],  # whole numbers: pandas reads ints
        ["1.", ".5", "-0", "1E+05", "2.4703282292062328e-324", "-1.5e-7", "+.25"],
        [f"{v:.25e}" for v in np.random.default_rng(4).uniform(-1, 1, size=500)],
    ],
)
def test_csv_read_without_pandas_equals_pandas(tmp_path, cells) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,Y\n" + "".join(f"x,{c}\n" for c in cells))
    assert scan_csv(path, "Y")[2] == cells  # read without pandas
    assert same_bits(read_data(path, "Y"), pandas_reads(path, "Y"))


def test_csv_cells_that_are_not_plain_numbers_go_through_pandas(tmp_path) -> None:
    for name, cell in [("spaces", " 1.5"), ("na", "NA"), ("inf", "inf"), ("digits", "١٢")]:
        path = tmp_path / f"{name}.csv"
        path.write_text(f"Y\n1.0\n{cell}\n2.0\n")
        assert scan_csv(path, "Y")[2] is None, name  # no cells kept: pandas reads the column
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("x,Y\na, 1.5\nb,-2.25 \nc,  3e2\n")
    assert scan_csv(spaced, "Y") == ("Y", 1, None)
    assert same_bits(read_data(spaced, "Y"), pandas_reads(spaced, "Y"))
    assert read_data(spaced, "Y").tolist() == [1.5, -2.25, 300.0]


def test_parquet_column_is_read_by_name_up_to_case(tmp_path) -> None:
    path = tmp_path / "d.parquet"
    values = np.random.default_rng(5).normal(size=50)
    pd.DataFrame({"other": np.arange(50.0), "y": values}).to_parquet(path)
    assert same_bits(read_data(path, "Y"), values)


def test_blank_lines_are_skipped_as_pandas_skips_them(tmp_path) -> None:
    y = np.random.default_rng(6).normal(size=300)
    plain, spaced = tmp_path / "plain.csv", tmp_path / "spaced.csv"
    pd.DataFrame({"Y": y}).to_csv(plain, index=False, float_format="%.17g")
    body = "\n".join(f"{v:.17g},{i}" for i, v in enumerate(y))
    spaced.write_text(f"\n\nY,i\n   \n{body}\n\n")
    assert same_bits(read_data(spaced, "Y"), read_data(plain, "Y"))
    assert same_bits(read_data(spaced, "Y"), pandas_reads(spaced, "Y"))


def test_column_found_up_to_case(tmp_path) -> None:
    y = np.random.default_rng(7).normal(size=300)
    upper, lower = tmp_path / "upper.csv", tmp_path / "lower.csv"
    pd.DataFrame({"Y": y}).to_csv(upper, index=False, float_format="%.17g")
    pd.DataFrame({"y": y}).to_csv(lower, index=False, float_format="%.17g")
    assert same_bits(read_data(lower, "Y"), read_data(upper, "Y"))
    assert read_data(upper, "Y").tolist() == y.tolist()


# --- the module's functions one by one ------------------------------------------------------


def test_scan_csv_finds_the_column_and_keeps_plain_cells(tmp_path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,Y\nx,1,1.0\ny,2,2.5\n")
    assert scan_csv(path, "Y") == ("Y", 2, ["1.0", "2.5"])
    assert scan_csv(path, "y") == ("Y", 2, ["1.0", "2.5"])  # the header's own name
    assert scan_csv(path, "b") == ("b", 1, ["1", "2"])
    assert scan_csv(path, "a")[2] is None  # text: pandas reads (and refuses) it
    unnamed = tmp_path / "unnamed.csv"
    unnamed.write_text("a,\n1,2\n3,4\n")
    assert scan_csv(unnamed, "") == ("", 1, None)  # pandas calls it "Unnamed: 1"
    empty = tmp_path / "empty.csv"
    empty.write_text("\n \n")
    assert scan_csv(empty, "Y") is None


def test_scan_csv_checks_every_row_before_naming_a_missing_column(tmp_path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n3\n")
    with pytest.raises(InputError, match="line 3 has 1 field"):
        scan_csv(path, "Y")


def test_a_binary_file_is_refused_from_its_first_bytes(tmp_path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"Y\n1\n" + b"\0" + b"2\n" * (2 * datafile.SNIFF_BYTES))
    with pytest.raises(InputError, match="NUL bytes"):
        scan_csv(path, "Y")
    # A NUL past the sniffed bytes makes its cell text: pandas reads the column, which refuses it.
    late = tmp_path / "late.csv"
    late.write_bytes(b"Y\n" + b"1\n" * datafile.SNIFF_BYTES + b"\0\n")
    with pytest.raises(InputError, match=rf"row {datafile.SNIFF_BYTES + 1}: '\\x00' is not a"):
        read_data(late, "Y")


def test_plain_numbers_read_whole_numbers_as_pandas_integers() -> None:
    whole = plain_numbers(["-0", "3", "+4"])
    assert whole.tolist() == [0.0, 3.0, 4.0] and not np.signbit(whole).any()
    mixed = plain_numbers(["-0", "1.5"])  # a float column keeps -0.0, as pandas does
    assert np.signbit(mixed).tolist() == [True, False]
    assert plain_numbers(["0.1", "1e-3"]).tolist() == [float("0.1"), float("1e-3")]


def test_find_column(tmp_path) -> None:
    path = tmp_path / "d.csv"
    assert find_column(["a", "Y", "y"], "Y", path) == 1  # exact beats case
    assert find_column(["a", "VALUE"], "value", path) == 1
    with pytest.raises(InputError, match="'Y' appears 2 times"):
        find_column(["Y", "a", "Y"], "Y", path)
    with pytest.raises(InputError, match=r"only in case \('VALUE', 'Value'\)"):
        find_column(["VALUE", "Value"], "value", path)
    with pytest.raises(InputError, match=r"no column 'Z' \(columns: a, b\)"):
        find_column(["a", "b"], "Z", path)


def test_numeric_column(tmp_path) -> None:
    path = tmp_path / "d.csv"
    series = pd.Series([1, 2, None], dtype="Int64")
    assert np.isnan(numeric_column(series, path, "w")).tolist() == [False, False, True]
    category = pd.Series([1.5, 2.5, 1.5], dtype="category")
    assert numeric_column(category, path, "w").tolist() == [1.5, 2.5, 1.5]
    text_cells = pd.Series(["1", "2.5", None, "x"], dtype=object)
    with pytest.raises(InputError, match=r"w, row 4: 'x' is not a number"):
        numeric_column(text_cells, path, "w")
    assert np.isnan(numeric_column(text_cells[:3], path, "w")[2])
    with pytest.raises(InputError, match="booleans"):
        numeric_column(pd.Series([True, False]), path, "w")
    with pytest.raises(InputError, match=r"row 2: True is a boolean"):
        numeric_column(pd.Series([1.0, True], dtype=object), path, "w")
    with pytest.raises(InputError, match="dates or times"):
        numeric_column(pd.Series(pd.period_range("2020", periods=3, freq="Y")), path, "w")


def test_fittable_names_the_first_bad_row(tmp_path) -> None:
    path = tmp_path / "d.csv"
    data = np.array([1.0, 2.0, 3.0])
    assert fittable(data, path, "w") is data
    for bad in (np.nan, np.inf, -np.inf):
        values = np.array([1.0, 2.0, bad, 4.0, bad])
        first = int(np.flatnonzero(~np.isfinite(values))[0]) + 1
        with pytest.raises(InputError, match=f"w, row {first}: missing, NaN or infinite"):
            fittable(values, path, "w")
    with pytest.raises(InputError, match="has 1 value"):
        fittable(np.array([1.0]), path, "w")
    with pytest.raises(InputError, match=r"is constant \(2\.5\)"):
        fittable(np.full(3, 2.5), path, "w")
