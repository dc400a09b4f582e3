"""Data problems as values: each names the file, the line and the field.

Readers collect *every* problem of a file before raising (a user fixes a CSV once, not once per
error). Errors stop training before it starts; warnings (e.g. an ``fps_A`` column that disagrees
with the file) are reported and counted, and ``--strict`` validation turns them into errors.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

Severity = Literal["error", "warning"]
FILE_KINDS = frozenset({"missing_file", "bad_csv", "missing_column"})
"""Problems that leave no row of a file usable: ``on_bad_sample: skip`` never skips them."""
PairT = TypeVar("PairT")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    field: str | None
    message: str
    severity: Severity = "error"
    kind: str = "other"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        column = f" [{self.field}]" if self.field else ""
        return f"{self.severity}: {where}{column}: {self.message}"


class DataValidationError(ValueError):
    """Raised with every error-level problem found in one pass over the data."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        shown = "\n  ".join(str(p) for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{len(self.problems)} data problem(s):\n  {shown}{more}")


def errors(problems: list[Problem], strict: bool = False) -> list[Problem]:
    """Problems that must stop a run (warnings too when ``strict``)."""
    return [p for p in problems if strict or p.severity == "error"]


def count_by_kind(problems: list[Problem]) -> dict[str, int]:
    return dict(Counter(f"{p.severity}:{p.kind}" for p in problems))


def enforce_bad_sample_policy(found: list[Problem], on_bad_sample: str) -> None:
    """``found``: the problems that must not reach training (see :func:`errors`). A file-level one
    always stops the run; line ones stop it under ``on_bad_sample: error`` and are left to be
    skipped (and counted) under ``skip``."""
    if any(p.line is None or p.kind in FILE_KINDS for p in found) or (found and on_bad_sample == "error"):
        raise DataValidationError(found)


def skip_bad_lines(pairs: Sequence[PairT], problems: list[Problem], on_bad_sample: str) -> list[PairT]:
    """Apply ``on_bad_sample`` to parsed pairs (anything with a ``line``): raise, or drop every pair
    whose line has an error (warnings keep their pair)."""
    found = errors(problems)
    enforce_bad_sample_policy(found, on_bad_sample)
    bad_lines = {p.line for p in found}
    return [pair for pair in pairs if pair.line not in bad_lines]


def path_escape(file: str, line: int, field: str, path: Path, root: Path) -> Problem | None:
    """``restrict_paths``: a media path that resolves (after ``..`` and symlinks) outside ``root``."""
    resolved, inside = path.resolve(), root.resolve()
    if resolved.is_relative_to(inside):
        return None
    return Problem(file, line, field, f"{path} resolves to {resolved}, outside {inside}", kind="path_escape")


def encoding_message(err: UnicodeDecodeError) -> str:
    """The bad byte of a line that is not UTF-8, counted from 1 within the line."""
    return f"not valid UTF-8 (byte 0x{err.object[err.start]:02x} at byte {err.start + 1} of the line); save the file as UTF-8"


class DuplicateJsonKey(ValueError):
    """A JSON object naming one key twice; ``key`` is that key."""

    def __init__(self, key: str):
        super().__init__(f"key '{key}' is given twice in one object")
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` of :func:`json.loads`: raise :class:`DuplicateJsonKey` where json would
    keep the last value of a repeated key without a word."""
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise DuplicateJsonKey(key)
        record[key] = value
    return record


def loads_unique(text: str) -> Any:
    """:func:`json.loads` refusing repeated keys (:class:`DuplicateJsonKey`)."""
    return json.loads(text, object_pairs_hook=unique_keys)


def json_line(file: str, line: int, raw: bytes) -> tuple[Any, Problem | None]:
    """The JSON value of one JSONL line (bytes; a BOM allowed on line 1), or ``(None, problem)``
    naming why it has none: not UTF-8, invalid JSON (with its column), a key given twice, nested
    too deeply for the parser."""
    try:
        text = raw.decode("utf-8-sig" if line == 1 else "utf-8").rstrip()  # columns as the user sees them
    except UnicodeDecodeError as err:
        return None, Problem(file, line, None, encoding_message(err), kind="bad_encoding")
    try:
        return loads_unique(text), None
    except DuplicateJsonKey as err:
        return None, Problem(file, line, err.key, str(err), kind="bad_json")
    except json.JSONDecodeError as err:
        return None, Problem(
            file, line, None, f"invalid JSON: {err.msg} (column {err.colno})", kind="bad_json"
        )
    except RecursionError:
        return None, Problem(file, line, None, "JSON nested too deeply", kind="bad_json")


@dataclass
class ValidationReport:
    file: str
    problems: list[Problem] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def failed(self, strict: bool = False) -> bool:
        return bool(errors(self.problems, strict))


class ConfigError(ValueError):
    """A configuration problem found before any model or data is loaded.

    ``key`` is the dotted key the problem is about, when there is one: the loader uses it to say
    whether the key came from the command line or from which file.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class EvaluationFailed(RuntimeError):
    """Some checkpoints could not be evaluated: the run must end non-zero even when it went on.

    ``failures``: one line per failure (model dir or checkpoint, and why); ``lines``: the summary of
    what was evaluated before (or, with ``keep_going``, despite) them, printed ahead of the failures.
    """

    def __init__(self, failures: list[str], lines: list[str] | None = None) -> None:
        self.failures = list(failures)
        self.lines = list(lines or [])
        super().__init__(f"{len(self.failures)} evaluation failure(s): " + "; ".join(self.failures))
