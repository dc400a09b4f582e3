"""Data problems as values: each names the file, the line and the field.

Readers collect *every* problem of a file before raising (a user fixes a CSV once, not once per
error). Errors stop training before it starts; warnings (e.g. an ``fps_A`` column that disagrees
with the file) are reported and counted, and ``--strict`` validation turns them into errors.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


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
