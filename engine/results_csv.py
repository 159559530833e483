"""Lab result files: the CSV a lab exports, checked row by row before upload.

A file has the header ``tube_barcode,result,tested_at``. ``result`` is
``NEGATIVE``, ``POSITIVE`` or ``INVALID`` (any case); ``tested_at`` is ISO 8601
with a time zone (``2026-05-01T09:30:00+08:00``, ``...Z``) or epoch
milliseconds. A bad row is reported with its line number and reason and left
out; the good rows are kept in file order. A tube listed twice with the same
result is sent once; listed twice with different results, the later row is
refused, since which one the lab meant cannot be told from the file.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine.barcodes import BarcodeError, parse_tube_code

__all__ = [
    "HEADER",
    "ParsedResults",
    "ResultRow",
    "ResultValue",
    "RowError",
    "parse_results",
    "parse_results_file",
    "parse_tested_at",
]

HEADER = ("tube_barcode", "result", "tested_at")
EARLIEST_TESTED_AT_MS = 1_577_836_800_000
"""2020-01-01T00:00:00Z: anything older is a typo, not a result."""
FUTURE_SLACK_MS = 10 * 60 * 1000
"""How far past now a lab clock may run before its times are refused."""


class ResultValue(enum.IntEnum):
    """A test result; values match ``sieve.v1.TubeResult``."""

    NEGATIVE = 1
    POSITIVE = 2
    INVALID = 3


@dataclass(frozen=True, slots=True)
class ResultRow:
    """A checked row: the normalised tube code, its result and test time."""

    line: int
    tube: str
    result: ResultValue
    tested_at_ms: int


@dataclass(frozen=True, slots=True)
class RowError:
    """A row left out of the upload: where, and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ParsedResults:
    """Rows to send, rows refused, and rows that repeat an earlier one."""

    rows: list[ResultRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    num_repeated: int = 0


def parse_results_file(path: Path, *, now_ms: int) -> ParsedResults:
    """Read and check a result file (UTF-8, a byte-order mark is allowed).

    Raises:
        ValueError: the header is not ``tube_barcode,result,tested_at``.
        OSError: the file cannot be read.
    """
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return parse_results(handle, now_ms=now_ms)


def parse_results(lines: Iterable[str], *, now_ms: int) -> ParsedResults:
    """Check every row of a result CSV.

    Args:
        lines: the file's lines, header first.
        now_ms: the current time; later test times (past a small slack) are
            refused.

    Raises:
        ValueError: the header is missing or not ``tube_barcode,result,tested_at``.
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise ValueError("result file is empty; expected header " + ",".join(HEADER))
    names = tuple(cell.strip().lower().lstrip("\ufeff") for cell in header)
    if names != HEADER:
        raise ValueError(
            f"result file header is {','.join(header)!r}; expected " + ",".join(HEADER)
        )

    parsed = ParsedResults()
    first_line: dict[str, ResultRow] = {}
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        row = _check_row(cells, line, now_ms)
        if isinstance(row, RowError):
            parsed.errors.append(row)
            continue
        earlier = first_line.get(row.tube)
        if earlier is None:
            first_line[row.tube] = row
            parsed.rows.append(row)
        elif earlier.result == row.result:
            parsed.num_repeated += 1
        else:
            # TODO: a file cannot carry a correction of its own rows; the
            # later result is refused and must be uploaded in a file alone.
            parsed.errors.append(
                RowError(
                    line,
                    f"tube {row.tube} is {row.result.name} here but"
                    f" {earlier.result.name} on line {earlier.line}",
                )
            )
    return parsed


def _check_row(cells: list[str], line: int, now_ms: int) -> ResultRow | RowError:
    if len(cells) != len(HEADER):
        return RowError(line, f"expected 3 columns, got {len(cells)}")
    barcode, result_text, tested_text = (cell.strip() for cell in cells)

    try:
        tube = parse_tube_code(barcode).code
    except BarcodeError as exc:
        return RowError(line, f"tube_barcode {barcode!r}: {exc}")
    try:
        result = ResultValue[result_text.upper()]
    except KeyError:
        return RowError(
            line,
            f"result {result_text!r} is not one of NEGATIVE, POSITIVE, INVALID",
        )
    try:
        tested_at_ms = parse_tested_at(tested_text)
    except ValueError as exc:
        return RowError(line, f"tested_at {tested_text!r}: {exc}")

    if tested_at_ms < EARLIEST_TESTED_AT_MS:
        return RowError(line, f"tested_at {tested_text!r} is before 2020")
    if tested_at_ms > now_ms + FUTURE_SLACK_MS:
        return RowError(line, f"tested_at {tested_text!r} is in the future")
    return ResultRow(line, tube, result, tested_at_ms)


def parse_tested_at(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 time with a zone, or of epoch ms.

    Raises:
        ValueError: neither form, or an ISO time without a time zone.
    """
    if not text:
        raise ValueError("is empty")
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("is neither ISO 8601 nor epoch milliseconds") from None
    if moment.tzinfo is None:
        raise ValueError("has no time zone (add +08:00 or Z)")
    return int(moment.timestamp() * 1000)
