"""The filtered-sample record: what rejection sampling writes per kept sample, what conversion reads.

One JSON object per line of ``filtered.jsonl`` (:meth:`FilteredSample.to_json` /
:meth:`FilteredSample.from_json`). Fields:

``sample_id`` (str)
    :attr:`vlmrm.grm.sources.GRMSample.sample_id`; a re-run skips ids already in the output.
``source`` (str)
    the source name (``hpdv3``, ``rapidata-t2v``, ``video-pairs``, ``image-pairs``).
``media`` (``"image"`` | ``"video"``)
``prompt`` (str)
    the generation prompt (text-to-image / text-to-video), not the instruction.
``instruction`` (str)
    the exact human turn the model was given (instruction with the prompt filled in).
``items_shown`` ([str, str])
    the two media paths **in the order shown**: ``items_shown[0]`` was "Image/Video 1".
``shown_order`` ([int, int])
    original item number shown first and second: ``[1, 2]`` as loaded, ``[2, 1]`` swapped.
``ground_truth`` (1 | 2 | ``"tie"``)
    the better item in the **original** order (the source's item 1 / item 2).
``generated_text`` (str)
    the whole generation.
``predicted`` (1 | 2 | ``"tie"``)
    the parsed verdict mapped back to the **original** order.
``reasoning`` (str | null)
    the text inside ``<think>…</think>``.
``score_totals`` ([float, float] | null)
    total scores parsed from the generation, **in the order shown** (T2V; T2I when present).
``video_fps`` (float | null)
    the fps videos were sampled at during inference (video only).
``extra`` (object)
    source annotations passed through (models, confidence, per-dimension human scores).

Orders: "shown" numbers are what the generated text talks about; "original" numbers are the
source's. :func:`to_shown` / :func:`to_original` translate between the two.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Media = Literal["image", "video"]
Choice = Literal[1, 2, "tie"]
"""A verdict or ground truth: item 1 better, item 2 better, or a tie."""
ShownOrder = tuple[int, int]
SHOWN_ORDERS: tuple[ShownOrder, ShownOrder] = ((1, 2), (2, 1))
"""The two ways to show a pair: as loaded, or swapped."""
CHOICES: tuple[Choice, ...] = (1, 2, "tie")
MEDIA: tuple[Media, ...] = ("image", "video")
TIE: Literal["tie"] = "tie"
TEXT_FIELDS = ("sample_id", "source", "prompt", "instruction", "generated_text")
REQUIRED_FIELDS = (*TEXT_FIELDS, "media", "items_shown", "shown_order", "ground_truth", "predicted")


class RecordError(ValueError):
    """A filtered-sample record with a missing or malformed field (the message names it)."""


def check_shown_order(shown_order) -> ShownOrder:
    order = tuple(shown_order) if isinstance(shown_order, (list, tuple)) else shown_order
    if order not in SHOWN_ORDERS:
        raise ValueError(f"shown_order must be one of {[list(o) for o in SHOWN_ORDERS]}, got {shown_order!r}")
    return order


def to_shown(choice: Choice, shown_order: ShownOrder) -> Choice:
    """The position (1 or 2) at which original item ``choice`` was shown; a tie stays a tie."""
    if choice == TIE:
        return TIE
    return check_shown_order(shown_order).index(choice) + 1


def to_original(choice_shown: Choice, shown_order: ShownOrder) -> Choice:
    """The original item shown at position ``choice_shown``; a tie stays a tie."""
    if choice_shown == TIE:
        return TIE
    return check_shown_order(shown_order)[choice_shown - 1]


def _check(value, allowed: tuple, name: str):
    # bool is an int: True would pass `in (1, 2)` as 1
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(f"field {name!r} must be one of {list(allowed)}, got {value!r}")
    return value


@dataclass(frozen=True)
class FilteredSample:
    """One kept sample of rejection sampling (field meanings: the module docstring)."""

    sample_id: str
    source: str
    media: Media
    prompt: str
    instruction: str
    items_shown: tuple[str, str]
    shown_order: ShownOrder
    ground_truth: Choice
    generated_text: str
    predicted: Choice
    reasoning: str | None = None
    score_totals: tuple[float, float] | None = None
    video_fps: float | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        _check(self.media, MEDIA, "media")
        _check(self.ground_truth, CHOICES, "ground_truth")
        _check(self.predicted, CHOICES, "predicted")
        check_shown_order(self.shown_order)
        if len(self.items_shown) != 2:
            raise ValueError(f"field 'items_shown' must hold 2 paths, got {len(self.items_shown)}")

    @property
    def ground_truth_shown(self) -> Choice:
        """The better item as numbered in the generated text and in :attr:`items_shown`."""
        return to_shown(self.ground_truth, self.shown_order)

    @property
    def predicted_shown(self) -> Choice:
        return to_shown(self.predicted, self.shown_order)

    def to_json(self) -> dict:
        record = asdict(self)
        record["items_shown"] = [str(p) for p in self.items_shown]
        record["shown_order"] = list(self.shown_order)
        record["score_totals"] = None if self.score_totals is None else list(self.score_totals)
        return record

    @classmethod
    def from_json(cls, record: dict) -> FilteredSample:
        """Inverse of :meth:`to_json`; a missing or invalid field raises ``ValueError`` naming it."""
        if not isinstance(record, dict):
            raise RecordError(f"a record must be a JSON object, got {type(record).__name__}")
        names = [f.name for f in cls.__dataclass_fields__.values()]
        unknown = sorted(set(record) - set(names))
        if unknown:
            raise ValueError(f"unknown field(s) {unknown} (known: {', '.join(names)})")
        missing = [n for n in REQUIRED_FIELDS if n not in record]
        if missing:
            raise ValueError(f"missing field(s) {missing}")
        for name in TEXT_FIELDS:
            if not isinstance(record[name], str):
                raise RecordError(f"field {name!r} must be a string, got {type(record[name]).__name__}")
        items = record["items_shown"]
        if not isinstance(items, list) or len(items) != 2 or not all(isinstance(p, str) for p in items):
            raise ValueError(f"field 'items_shown' must be a list of 2 paths, got {items!r}")
        totals = record.get("score_totals")
        if totals is not None and (
            not isinstance(totals, list)
            or len(totals) != 2
            or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in totals)
        ):
            raise ValueError(f"field 'score_totals' must be null or 2 numbers, got {totals!r}")
        if not isinstance(record.get("extra", {}), dict):
            raise RecordError(f"field 'extra' must be an object, got {record['extra']!r}")
        return cls(
            **{
                **record,
                "items_shown": tuple(items),
                "shown_order": check_shown_order(record["shown_order"]),
                "score_totals": None if totals is None else (float(totals[0]), float(totals[1])),
            }
        )


def read_filtered_jsonl(path: str | Path, with_lines: bool = False) -> list:
    """Every record of a ``filtered.jsonl`` (as ``(line, record)`` with ``with_lines``); a bad line
    raises ``ValueError`` naming file:line."""
    path = Path(path)
    samples = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                sample = FilteredSample.from_json(json.loads(line))
            except (json.JSONDecodeError, ValueError, TypeError) as err:
                raise ValueError(f"{path}:{line_number}: {err}") from err
            samples.append((line_number, sample) if with_lines else sample)
    return samples


def append_filtered_jsonl(path: str | Path, samples: list[FilteredSample]) -> None:
    """Append records (one JSON object per line), so an interrupted run keeps what it wrote."""
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(s.to_json(), ensure_ascii=False) + "\n" for s in samples)
