"""Short human-readable tables for run summaries (data validation, reward normalisation).

A summary is a JSON-like dict; the full JSON goes to a file in the output dir, the log gets one row
per key: ``key | value`` for a number, ``key | k=v k=v`` for a dict of numbers, and one row per
inner key (``key inner | k=v ...``) for a dict of dicts.
"""

from __future__ import annotations

SIGNIFICANT_DIGITS = 4
"""Floats are shown with this many significant digits: enough to compare, short enough to scan."""


def cell(value) -> str:
    """A number compactly (``1234``, ``0.5123``), anything else as ``str``."""
    if isinstance(value, float):
        return f"{value:.{SIGNIFICANT_DIGITS}g}"
    return str(value)


def inline(mapping: dict) -> str:
    """``k=v k=v`` of a flat dict; ``-`` when it is empty."""
    return " ".join(f"{key}={cell(value)}" for key, value in mapping.items()) or "-"


def summary_table(title: str, summary: dict) -> str:
    """``title`` then the rows of the module docstring, keys left-aligned to the widest."""
    rows: list[tuple[str, str]] = []
    for key, value in summary.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            rows += [(f"{key} {inner}", inline(values)) for inner, values in value.items()]
        elif isinstance(value, dict):
            rows.append((str(key), inline(value)))
        else:
            rows.append((str(key), cell(value)))
    width = max((len(key) for key, _ in rows), default=0)
    return "\n".join([title, *(f"  {key:<{width}}  {text}" for key, text in rows)])
