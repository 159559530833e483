"""Lab result files: header, per-row checks with line numbers, repeats."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from engine.barcodes import make_tube_code
from engine.results_csv import (
    ResultValue,
    parse_results,
    parse_results_file,
    parse_tested_at,
)

NOW_MS = int(dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC).timestamp() * 1000)
TUBE_A = make_tube_code("120101-001", 1)
TUBE_B = make_tube_code("120101-001", 2)


def _parse(text: str):  # type: ignore[no-untyped-def]
    return parse_results(text.splitlines(keepends=True), now_ms=NOW_MS)


def test_good_rows_are_kept_in_order_with_normalised_codes() -> None:
    """Codes are trimmed and upper-cased; results are case-insensitive."""
    parsed = _parse(
        "tube_barcode,result,tested_at\n"
        f" {TUBE_A.lower()} ,negative,2026-05-01T09:30:00+08:00\n"
        f"{TUBE_B},POSITIVE,{NOW_MS - 1000}\n"
    )
    assert [] == parsed.errors
    assert [TUBE_A, TUBE_B] == [row.tube for row in parsed.rows]
    assert [ResultValue.NEGATIVE, ResultValue.POSITIVE] == [
        row.result for row in parsed.rows
    ]
    assert NOW_MS - 10.5 * 3600 * 1000 == parsed.rows[0].tested_at_ms
    assert [2, 3] == [row.line for row in parsed.rows]


@pytest.mark.parametrize(
    ("row", "words"),
    [
        (f"{TUBE_A},NEGATIVE", "3 columns"),
        ("T1201010010000001X,NEGATIVE,1777600000000", "tube_barcode"),
        (f"{TUBE_A},MAYBE,1777600000000", "not one of"),
        (f"{TUBE_A},NEGATIVE,yesterday", "neither ISO"),
        (f"{TUBE_A},NEGATIVE,2026-05-01T09:30:00", "time zone"),
        (f"{TUBE_A},NEGATIVE,", "empty"),
        (f"{TUBE_A},NEGATIVE,1000", "before 2020"),
        (f"{TUBE_A},NEGATIVE,{NOW_MS + 3600_000}", "future"),
    ],
)
def test_a_bad_row_is_refused_with_its_line_and_reason(row: str, words: str) -> None:
    """The bad row is named by line; the good row after it still goes."""
    parsed = _parse(
        f"tube_barcode,result,tested_at\n{row}\n{TUBE_B},INVALID,{NOW_MS}\n"
    )
    assert 1 == len(parsed.errors)
    assert 2 == parsed.errors[0].line
    assert words in parsed.errors[0].reason
    assert [TUBE_B] == [r.tube for r in parsed.rows]


def test_a_repeated_row_is_sent_once_and_a_conflicting_one_is_refused() -> None:
    """Same tube and result twice: once; a different result later: refused."""
    parsed = _parse(
        "tube_barcode,result,tested_at\n"
        f"{TUBE_A},NEGATIVE,{NOW_MS}\n"
        f"{TUBE_A},negative,{NOW_MS}\n"
        f"{TUBE_A},POSITIVE,{NOW_MS}\n"
    )
    assert 1 == len(parsed.rows)
    assert 1 == parsed.num_repeated
    assert 4 == parsed.errors[0].line
    assert "line 2" in parsed.errors[0].reason


def test_blank_lines_are_skipped_and_line_numbers_stay_true() -> None:
    """A blank line is not a row, and later rows keep their file line."""
    parsed = _parse(f"tube_barcode,result,tested_at\n\n{TUBE_A},NEGATIVE,x\n")
    assert 3 == parsed.errors[0].line


@pytest.mark.parametrize("text", ["", "tube,result,when\n"])
def test_a_wrong_or_missing_header_is_refused(text: str) -> None:
    """Without the expected header nothing is read."""
    with pytest.raises(ValueError, match="tube_barcode,result,tested_at"):
        _parse(text)


def test_a_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Spreadsheet exports often start with a BOM."""
    path = tmp_path / "results.csv"
    path.write_text(
        f"\ufefftube_barcode,result,tested_at\r\n{TUBE_A},POSITIVE,{NOW_MS}\r\n",
        encoding="utf-8",
    )
    parsed = parse_results_file(path, now_ms=NOW_MS)
    assert [TUBE_A] == [row.tube for row in parsed.rows]


def test_tested_at_accepts_utc_z() -> None:
    """``Z`` is UTC."""
    assert NOW_MS == parse_tested_at("2026-05-01T12:00:00Z")
