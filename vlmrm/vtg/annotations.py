"""VTG annotations (JSONL): parse every line, name every problem, decode clips in the Dataset.

One JSON object per line (docs/vtg.md, "Annotations")::

    {"video": "videos/a.mp4", "duration": 24.9, "timestamp": [11.3, 15.0], "sentence": "...",
     "qid": "...", "video_start": 404.2, "video_end": 429.1, "difficulty": 24.65, "pred": [0.0, 15.01]}

Required: ``video`` (path relative to ``video_dir``, else to the JSONL's folder, or absolute),
``duration`` (seconds of the clip), ``timestamp`` ([start, end] seconds from the clip start),
``sentence``. Optional: ``video_start`` / ``video_end`` (trim window in the file, see
:func:`vlmrm.vtg.clips.clip_window`), ``qid``, ``difficulty``, ``pred``; a ``null`` optional field
counts as absent. Every other key is kept in ``metadata``.

Parsing never raises on a bad line: each problem becomes a :class:`Problem` (file:line [field]:
message), so a user fixes the file in one pass. File checks (:func:`vtg_media_problems`) probe each
video once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vlmrm.core.config import resolve_under
from vlmrm.core.problems import DataValidationError, Problem, errors, json_line
from vlmrm.media.sampling import QWEN2_IMAGE_FACTOR
from vlmrm.media.video import VideoBackend, VideoDecodeError, VideoInfo, probe_video
from vlmrm.vtg.clips import DURATION_TOLERANCE_S, ClipWindowError, VTGClip, clip_window, load_vtg_clip
from vlmrm.vtg.data_config import VideoSection

__all__ = [
    "DURATION_TOLERANCE_S",
    "TIMESTAMP_SLACK_S",
    "VTGClip",
    "VTGDataset",
    "VTGSample",
    "VTGTable",
    "load_vtg_clip",
    "load_vtg_jsonl",
    "parse_vtg_jsonl",
    "vtg_media_problems",
]

REQUIRED_FIELDS = ("video", "duration", "timestamp", "sentence")
OPTIONAL_FIELDS = ("video_start", "video_end", "qid", "difficulty", "pred")

TIMESTAMP_SLACK_S = 0.01
"""A timestamp may pass the clip's [0, duration] by 10 ms: annotations are written to centiseconds
(404.2, [11.3, 15.0]) while durations carry float noise (24.900000000000034)."""


@dataclass(frozen=True)
class VTGSample:
    """One annotated query: which clip, how long it is, where the sentence happens in it."""

    video: Path
    duration: float
    timestamp: tuple[float, float]
    sentence: str
    video_start: float | None = None
    video_end: float | None = None
    qid: str | None = None
    difficulty: float | None = None
    pred: tuple[float, float] | None = None
    metadata: dict = field(default_factory=dict)
    line: int = 0  # 1-based JSONL line


@dataclass
class VTGTable:
    """The samples of the lines that parsed, and a problem for every line that did not."""

    path: Path
    samples: list[VTGSample]
    problems: list[Problem] = field(default_factory=list)
    total_lines: int = 0


def _describe(value) -> str:
    """A JSON value as a user sees it in the file: its JSON type name and a short repr."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    kind = names.get(type(value), "number")
    return kind if value is None else f"{kind} {json.dumps(value)[:40]}"


def _number(record: dict, name: str, problems: list, required: bool = False) -> float | None:
    if record.get(name) is None:
        if name not in record and required:
            problems.append((name, "missing required field", "missing_field"))
        elif required:
            problems.append((name, "must be a number, got null", "bad_type"))
        return None
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problems.append((name, f"must be a finite number, got {_describe(value)}", "bad_type"))
        return None
    return float(value)


def _segment(record: dict, name: str, problems: list, required: bool = False) -> tuple[float, float] | None:
    if record.get(name) is None:
        if required:
            message = "missing required field" if name not in record else "must be [start, end], got null"
            problems.append((name, message, "missing_field" if name not in record else "bad_type"))
        return None
    value = record[name]
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
        )
    ):
        problems.append((name, f"must be [start, end] (2 numbers), got {_describe(value)}", "bad_type"))
        return None
    return float(value[0]), float(value[1])


def _text(record: dict, name: str, problems: list) -> str | None:
    if name not in record:
        problems.append((name, "missing required field", "missing_field"))
        return None
    value = record[name]
    if not isinstance(value, str):
        problems.append((name, f"must be a string, got {_describe(value)}", "bad_type"))
        return None
    if not value.strip():
        problems.append((name, "must not be empty", "bad_type"))
        return None
    return value


def _parse_record(record: dict, root: Path, line: int) -> tuple[VTGSample | None, list]:
    """The sample of one JSON object, or None and every (field, message, kind) wrong with it."""
    problems: list = []
    video = _text(record, "video", problems)
    sentence = _text(record, "sentence", problems)
    duration = _number(record, "duration", problems, required=True)
    timestamp = _segment(record, "timestamp", problems, required=True)
    video_start = _number(record, "video_start", problems)
    video_end = _number(record, "video_end", problems)
    difficulty = _number(record, "difficulty", problems)
    pred_problems: list = []
    pred = _segment(record, "pred", pred_problems)
    qid = record.get("qid")
    if qid is not None and (isinstance(qid, bool) or not isinstance(qid, (str, int))):
        problems.append(("qid", f"must be a string, got {_describe(qid)}", "bad_type"))
    if duration is not None and duration <= 0:
        problems.append(("duration", f"must be > 0 seconds, got {duration:g}", "bad_duration"))
        duration = None
    if timestamp is not None:
        start, end = timestamp
        if start >= end:
            problems.append(("timestamp", f"start {start:g} >= end {end:g}", "bad_timestamp"))
        if duration is not None and (start < -TIMESTAMP_SLACK_S or end > duration + TIMESTAMP_SLACK_S):
            problems.append(
                (
                    "timestamp",
                    f"[{start:g}, {end:g}] outside the clip [0, {duration:g}] s",
                    "timestamp_out_of_range",
                )
            )
    for name, value in (("video_start", video_start), ("video_end", video_end)):
        if value is not None and value < 0:
            problems.append((name, f"must be >= 0 seconds, got {value:g}", "bad_trim"))
    if video_start is not None and video_end is not None and video_start >= video_end:
        problems.append(
            ("video_start/video_end", f"video_start {video_start:g} >= video_end {video_end:g}", "bad_trim")
        )
    if problems:
        return None, problems + pred_problems
    known = set(REQUIRED_FIELDS + OPTIONAL_FIELDS)
    sample = VTGSample(
        video=Path(resolve_under(video, root)),
        duration=duration,
        timestamp=timestamp,
        sentence=sentence,
        video_start=video_start,
        video_end=video_end,
        qid=None if qid is None else str(qid),
        difficulty=difficulty,
        pred=pred,
        metadata={k: v for k, v in record.items() if k not in known},
        line=line,
    )
    return sample, [(*problem, "warning") for problem in pred_problems]


def parse_vtg_jsonl(path: str | Path, video_dir: str | Path | None = None) -> VTGTable:
    """Parse every line; collect each problem with file:line and field (never raises).

    Lines are split at ``\n`` only and read as UTF-8 (a BOM on the first allowed), so line numbers
    are an editor's. Errors: file not found, no lines, a line that is not UTF-8, invalid JSON, a key
    given twice in one object, not an object, missing field, wrong type, empty
    string, duration <= 0, timestamp start >= end or outside [0, duration], negative or reversed
    trim window. Warnings: a ``qid`` repeated from an earlier line; a ``pred`` that is not two finite
    numbers (a model output to score, not an input: the sample is kept with ``pred`` None, which
    evaluation counts as unparseable).
    """
    path = Path(path)
    file = str(path)
    if not path.is_file():
        return VTGTable(path, [], [Problem(file, None, None, "JSONL file not found", kind="missing_file")])
    root = Path(video_dir) if video_dir is not None else path.parent
    samples, problems, total = [], [], 0
    first_qid: dict[str, int] = {}
    with path.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            total += 1
            record, problem = json_line(file, line, raw)
            if problem is not None:
                problems.append(problem)
                continue
            if not isinstance(record, dict):
                message = f"a line must be a JSON object, got {_describe(record)}"
                problems.append(Problem(file, line, None, message, kind="bad_json"))
                continue
            sample, found = _parse_record(record, root, line)
            problems += [
                Problem(file, line, name, message, *severity, kind=kind)
                for name, message, kind, *severity in found
            ]
            if sample is None:
                continue
            if sample.qid is not None and sample.qid in first_qid:
                message = f"duplicate qid {sample.qid!r} (first on line {first_qid[sample.qid]})"
                problems.append(Problem(file, line, "qid", message, severity="warning", kind="duplicate_qid"))
            first_qid.setdefault(sample.qid, line)
            samples.append(sample)
    if total == 0:
        problems.append(Problem(file, None, None, "no samples: the file has no lines", kind="empty_file"))
    return VTGTable(path, samples, problems, total)


def vtg_media_problems(table: VTGTable, backend: VideoBackend) -> list[Problem]:
    """Probe every distinct video once; report per line: missing / empty / unreadable file, a trim
    window that does not fit the file, a declared ``duration`` off the clip's decoded length by more
    than ``DURATION_TOLERANCE_S`` (timestamps would be read on the wrong scale)."""
    file = str(table.path)
    probed: dict[Path, VideoInfo | VideoDecodeError] = {}
    problems = []
    for sample in table.samples:
        if sample.video not in probed:
            try:
                probed[sample.video] = probe_video(sample.video, backend)
            except VideoDecodeError as err:
                probed[sample.video] = err
        info = probed[sample.video]
        if isinstance(info, VideoDecodeError):
            problems.append(
                Problem(file, sample.line, "video", f"{info.reason}: {info.path}", kind="bad_video")
            )
            continue
        try:
            window = clip_window(sample, info)
        except ClipWindowError as err:
            problems.append(Problem(file, sample.line, err.field, f"{err}: {sample.video}", kind="bad_trim"))
            continue
        if abs(sample.duration - window.duration) > DURATION_TOLERANCE_S:
            message = (
                f"declared {sample.duration:g} s but the clip lasts {window.duration:g} s "
                f"([{window.start:g}, {window.end:g}] s of {sample.video}; tolerance {DURATION_TOLERANCE_S:g} s)"
            )
            problems.append(Problem(file, sample.line, "duration", message, kind="duration_mismatch"))
    return problems


def load_vtg_jsonl(
    path: str | Path, video_dir: str | Path | None = None, strict: bool = False
) -> list[VTGSample]:
    """:func:`parse_vtg_jsonl`, raising :class:`DataValidationError` listing every error (and warning
    when ``strict``)."""
    table = parse_vtg_jsonl(path, video_dir)
    found = errors(table.problems, strict)
    if found:
        raise DataValidationError(found)
    return table.samples


class VTGDataset(torch.utils.data.Dataset):
    """Decodes each clip in ``__getitem__``, so DataLoader workers do the decoding.

    Item: ``{"clip": VTGClip, "sentence": str, "timestamp": (start, end) s from the clip start,
    "duration": the declared clip duration (the time base of ``timestamp``), "qid", "difficulty",
    "line"}``. ``random`` sampling draws from ``numpy.random.default_rng([seed, epoch, index])``:
    the same frames for a seed on any number of workers, new ones each epoch.
    """

    def __init__(
        self,
        samples: list[VTGSample],
        video: VideoSection,
        backend: VideoBackend,
        image_factor: int = QWEN2_IMAGE_FACTOR,
        seed: int = 0,
    ):
        self.samples = list(samples)
        self.video = video
        self.backend = backend
        self.image_factor = image_factor
        self.seed = seed
        self.epoch = 0

    @property
    def durations(self) -> list[float]:
        """Clip durations (declared, checked by :func:`vtg_media_problems`) for duration batching."""
        return [sample.duration for sample in self.samples]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        clip = load_vtg_clip(sample, self.video, self.backend, self.image_factor, rng)
        return {
            "clip": clip,
            "sentence": sample.sentence,
            "timestamp": sample.timestamp,
            "duration": sample.duration,
            "qid": sample.qid,
            "difficulty": sample.difficulty,
            "line": sample.line,
        }
