"""Preference labels of pair data and the file kinds that carry them."""

LABEL_VALUES = {"A": 1, "B": -1, "same": 0}
"""Preference label in the CSV -> y: +1 A better, -1 B better, 0 tie (docs/reward_math.md, "Labels")."""

MISSING_LABELS = ("", "invalid")
"""Cells that mean "no label in this dimension" (compared lower-case): an empty cell, or VideoAlign's
``invalid``. The dimension is masked for that pair (no loss term, not in accuracy); the others train."""

IMAGE_PAIR_SUFFIXES = (".jsonl", ".json")
"""Data files with these suffixes hold JSONL image pairs; anything else is a CSV of video pairs."""

OVERALL = "Overall"
"""Name of the summed, normalised reward over every dimension (VideoAlign's ``Overall``)."""
