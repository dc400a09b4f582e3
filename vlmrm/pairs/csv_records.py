"""A CSV file as records that keep the file's own line numbers.

pandas numbers data rows, not lines: after a quoted field that spans lines, or a blank line, the
row index + 2 names the wrong line; it renames a repeated column to ``x.1`` without a word; and it
can only read text, so a byte that is not UTF-8 has to become U+FFFD first. Here each record is
read with :mod:`csv` from the physical lines, so:

- ``line`` is the 1-based line the record starts on (the header is the first non-blank line; a
  leading BOM is dropped; blank lines are skipped and counted in the numbering);
- a record any of whose lines is not UTF-8 — a quoted multi-line field included — carries that
  error (the line and byte), and its text is never used;
- a header naming a column twice, a record with more or fewer fields than the header, and a quote
  never closed are reported with their line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field

from vlmrm.core.problems import encoding_message

UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class CsvRecord:
    """One data record: its first line, its cells by column, and the encoding error of any of its
    lines (then ``cells`` are not to be used)."""

    line: int
    cells: dict[str, str]
    encoding_error: str | None = None
    field_count: int = 0


@dataclass
class CsvFile:
    """The header, the records and the file-level problem (``(line, column, message)``), if any."""

    columns: list[str] = field(default_factory=list)
    header_line: int | None = None
    records: list[CsvRecord] = field(default_factory=list)
    fatal: tuple[int | None, str | None, str] | None = None


def _lines(raw: bytes) -> tuple[list[str], dict[int, str]]:
    """Physical lines (ends kept) decoded as UTF-8, and the message of each line (from 1) that is not."""
    raw = raw.removeprefix(UTF8_BOM)
    texts, bad = [], {}
    for number, line in enumerate(raw.splitlines(keepends=True), start=1):
        try:
            texts.append(line.decode("utf-8"))
        except UnicodeDecodeError as err:
            bad[number] = encoding_message(err)
            texts.append(line.decode("utf-8", errors="replace"))
    return texts, bad


class _Unreadable(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


def _records(lines: list[str]) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, fields) of every non-blank record."""
    reader = csv.reader(iter(lines), skipinitialspace=True)
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise _Unreadable(start, f"cannot parse CSV: {err}") from None
        if fields:
            yield start, reader.line_num, fields


def read_csv_records(raw: bytes) -> CsvFile:
    """Parse ``raw`` (the file's bytes); never raises on bad content."""
    lines, bad = _lines(raw)
    result = CsvFile()
    try:
        for start, end, fields in _records(lines):
            errors = [
                bad[n] if n == start else f"line {n}: {bad[n]}" for n in range(start, end + 1) if n in bad
            ]
            if result.header_line is not None:
                cells = dict(zip(result.columns, fields))
                result.records.append(CsvRecord(start, cells, errors[0] if errors else None, len(fields)))
                continue
            result.header_line, result.columns = start, fields
            repeated = _repeated(fields)
            if errors:
                result.fatal = (start, None, f"header {errors[0]}")
            elif repeated:
                result.fatal = (start, *repeated)
            if result.fatal:
                return result
    except _Unreadable as err:
        result.fatal = (err.line, None, str(err))
    return result


def _repeated(columns: list[str]) -> tuple[str, str] | None:
    """The first column named twice, and the message naming both positions (counted from 1)."""
    first: dict[str, int] = {}
    for position, name in enumerate(columns, start=1):
        if name in first:
            return name, f"column '{name}' is given twice (columns {first[name]} and {position})"
        first[name] = position
    return None
