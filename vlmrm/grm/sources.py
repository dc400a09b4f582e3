"""GRM dataset sources: ``source:path`` strings -> :class:`GRMSample` records plus counts.

Several sources are comma-separated: ``"hpdv3:a.json,rapidata-t2v:b.parquet"``. Only the first
``:`` splits source from path. Sources (:data:`SOURCES`):

``hpdv3:FILE.json``
    A JSON array of ``{prompt, path1, path2, model1, model2, choice_dist?, confidence?}``;
    ``path1`` is the preferred image (ground truth 1). Relative paths resolve against
    ``data_root``, else the JSON's folder. With ``confidence_threshold``, a record whose
    ``confidence`` is below it is skipped; a null or absent confidence is kept.
``rapidata-t2v:FILE.parquet``
    Columns ``prompt, file_name1, file_name2`` and ``weighted_results{1,2}_{Alignment,Coherence,
    Preference}``. A video is ``<root>/videos/<file_name>``; the root is ``video_root`` when given
    (its ``videos/`` must exist), else the parquet's parent's parent **if it has a ``videos/``
    folder**, else the parquet's parent if it has one, else an error naming both. Ground truth:
    side k's total = Alignment + Coherence + Preference (a missing column or null value counts
    0); the larger total is better, totals within :data:`TIE_TOLERANCE` are a tie.
``video-pairs:FILE.csv``
    Our VideoAlign CSV (:func:`vlmrm.pairs.video_pairs.parse_video_pair_csv`); ground truth from the
    ``dimension`` column (``A`` -> 1, ``B`` -> 2, ``same`` -> tie); ``Overall`` reads the CSV's
    ``Overall`` column, which must then exist (docs/reward_math.md, "Reward normalisation and Overall").
``image-pairs:FILE.jsonl``
    Our JSONL image pairs in the ``image_preference`` layout
    (:func:`vlmrm.pairs.image_pairs.parse_image_pair_jsonl`); its single label is the ground truth
    whatever ``dimension`` is. Lines comparing text responses (the other layouts) or holding inline
    base64 images are invalid here.

A record is skipped and counted once, checked in this order: invalid (a malformed field: a
problem names file, line/record/row and field) -> below confidence -> missing files (an item not
found on disk; files are not decoded here). Ground-truth ties are kept and counted in ``ties``:
judging skips them (:mod:`vlmrm.grm.parsing`). A file that cannot be read at all raises
:class:`~vlmrm.core.problems.DataValidationError`.

``sample_id`` is ``"<source>:<path as given>#<key>"`` with key the record index (hpdv3), row
index (parquet) or file line (CSV, JSONL), so a re-run over the same data finds the same ids.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from vlmrm.core.problems import DataValidationError, DuplicateJsonKey, Problem, loads_unique, skip_bad_lines
from vlmrm.grm.records import TIE, Choice, Media
from vlmrm.pairs.image_pairs import parse_image_pair_jsonl
from vlmrm.pairs.labels import LABEL_VALUES, OVERALL
from vlmrm.pairs.video_pairs import parse_video_pair_csv

SOURCES = ("hpdv3", "rapidata-t2v", "video-pairs", "image-pairs")
SOURCE_SEPARATOR = ":"
LIST_SEPARATOR = ","
RAPIDATA_DIMENSIONS = ("Alignment", "Coherence", "Preference")
RAPIDATA_COLUMNS = ("prompt", "file_name1", "file_name2")
VIDEOS_FOLDER = "videos"
TIE_TOLERANCE = 1e-9
"""Rapidata totals closer than this are a tie (weighted vote sums are floats: 0.1 + 0.2 != 0.3)."""
LABEL_TO_CHOICE: dict[int, Choice] = {LABEL_VALUES["A"]: 1, LABEL_VALUES["B"]: 2, LABEL_VALUES["same"]: TIE}
IMAGE_PAIR_SCHEMA = "image_preference"


@dataclass(frozen=True)
class GRMSample:
    """One pair to judge: ``items[k - 1]`` is item k; ``ground_truth`` names the better item."""

    sample_id: str
    source: str
    prompt: str
    items: tuple[Path, Path]
    media: Media
    ground_truth: Choice
    extra: dict = field(default_factory=dict)


@dataclass
class SourceCounts:
    """``loaded`` samples returned (``ties`` of them with a tied ground truth) and records skipped."""

    loaded: int = 0
    ties: int = 0
    invalid: int = 0
    below_confidence: int = 0
    missing_files: int = 0

    def __add__(self, other: SourceCounts) -> SourceCounts:
        return SourceCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class SourceLoad:
    """Samples of one or more sources, their counts (summed and per ``source:path`` entry) and the
    problems of the skipped records."""

    samples: list[GRMSample]
    counts: SourceCounts
    problems: list[Problem] = field(default_factory=list)
    per_source: dict[str, SourceCounts] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceOptions:
    confidence_threshold: float | None = None
    """hpdv3: skip records whose confidence is below this (null confidence kept)."""
    video_root: Path | None = None
    """rapidata-t2v: the folder holding ``videos/`` (default: see the module docstring)."""
    data_root: Path | None = None
    """hpdv3, video-pairs, image-pairs: relative media paths resolve here, else the file's folder."""
    dimension: str = OVERALL
    """video-pairs: the label column giving the ground truth (``Overall`` or e.g. ``VQ``)."""


def parse_data_path(spec: str) -> list[tuple[str, Path]]:
    """``"src:path,src:path"`` -> ``[(src, Path)]``; an entry without ``:`` or with an unknown
    source raises ``ValueError`` listing the valid sources."""
    entries = []
    for entry in spec.split(LIST_SEPARATOR):
        entry = entry.strip()
        source, sep, path = entry.partition(SOURCE_SEPARATOR)
        valid = ", ".join(f"{s}:PATH" for s in SOURCES)
        if not sep or not path:
            raise ValueError(f"data path entry {entry!r} is not source:path (valid sources: {valid})")
        if source not in SOURCES:
            raise ValueError(f"unknown data source {source!r} in {entry!r} (valid sources: {valid})")
        entries.append((source, Path(path)))
    duplicates = sorted({str(p) for s, p in entries if entries.count((s, p)) > 1})
    if duplicates:
        raise ValueError(f"data path lists the same file twice: {', '.join(duplicates)}")
    return entries


def load_sources(spec: str, options: SourceOptions = SourceOptions()) -> SourceLoad:
    """Load every ``source:path`` of ``spec`` in order (see the module docstring)."""
    total = SourceLoad([], SourceCounts())
    for source, path in parse_data_path(spec):
        part = LOADERS[source](path, options)
        total.samples += part.samples
        total.counts = total.counts + part.counts
        total.problems += part.problems
        total.per_source[f"{source}:{path}"] = part.counts
    return total


def _fail(file: str, message: str, kind: str, column: str | None = None) -> DataValidationError:
    return DataValidationError([Problem(file, None, column, message, kind=kind)])


def _resolve(value: str, root: Path) -> Path:
    path = Path(value)
    return path if path.is_absolute() else root / path


def _missing_items(items: tuple[Path, Path], file: str, line, where: str, fields_: tuple) -> list[Problem]:
    return [
        Problem(file, line, name, f"{where}file not found: {item}", severity="warning", kind="missing_media")
        for name, item in zip(fields_, items)
        if not item.is_file()
    ]


def _finish(samples: list[GRMSample], counts: SourceCounts, problems: list[Problem]) -> SourceLoad:
    counts.loaded = len(samples)
    counts.ties = sum(s.ground_truth == TIE for s in samples)
    return SourceLoad(samples, counts, problems)


def load_hpdv3_source(path: Path, options: SourceOptions) -> SourceLoad:
    file = str(path)
    if not path.is_file():
        raise _fail(file, "JSON file not found", "missing_file")
    try:
        records = loads_unique(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError, DuplicateJsonKey) as err:
        raise _fail(file, f"invalid JSON: {err}", "bad_json") from err
    if not isinstance(records, list):
        raise _fail(file, f"must be a JSON array of records, got {type(records).__name__}", "bad_json")
    root = options.data_root or path.parent
    samples, counts, problems = [], SourceCounts(), []
    for index, record in enumerate(records):
        where = f"record {index}: "
        if not isinstance(record, dict):
            counts.invalid += 1
            problems.append(Problem(file, None, None, f"{where}must be an object", kind="bad_json"))
            continue
        bad = [
            Problem(
                file,
                None,
                name,
                f"{where}must be a non-empty string, got {record.get(name)!r:.60}",
                kind="bad_field",
            )
            for name in ("prompt", "path1", "path2")
            if not isinstance(record.get(name), str) or not record[name].strip()
        ]
        confidence = record.get("confidence")
        if confidence is not None and (
            isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or math.isnan(confidence)
        ):
            bad.append(
                Problem(file, None, "confidence", f"{where}must be a number or null", kind="bad_field")
            )
        if bad:
            counts.invalid += 1
            problems += bad
            continue
        threshold = options.confidence_threshold
        if threshold is not None and confidence is not None and confidence < threshold:
            counts.below_confidence += 1
            continue
        items = (_resolve(record["path1"], root), _resolve(record["path2"], root))
        missing = _missing_items(items, file, None, f"{where}image ", ("path1", "path2"))
        if missing:
            counts.missing_files += 1
            problems += missing
            continue
        extra = {k: record.get(k) for k in ("model1", "model2", "choice_dist", "confidence") if k in record}
        samples.append(
            GRMSample(f"hpdv3:{path}#{index}", "hpdv3", record["prompt"], items, "image", 1, extra)
        )
    return _finish(samples, counts, problems)


def rapidata_video_root(parquet: Path, video_root: Path | None = None) -> Path:
    """The folder whose ``videos/`` holds the clips (rule: the module docstring)."""
    candidates = [video_root] if video_root is not None else [parquet.parent.parent, parquet.parent]
    for root in candidates:
        if (root / VIDEOS_FOLDER).is_dir():
            return root
    tried = " or ".join(str(root / VIDEOS_FOLDER) for root in candidates)
    raise _fail(str(parquet), f"no videos folder: tried {tried} (set video_root)", "missing_file")


def _score(row: pd.Series, column: str, file: str, index: int, problems: list[Problem]) -> float:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(
            Problem(file, None, column, f"row {index}: not a number: {value!r:.40}", kind="bad_field")
        )
        return 0.0
    return float(value)


def load_rapidata_t2v_source(path: Path, options: SourceOptions) -> SourceLoad:
    file = str(path)
    if not path.is_file():
        raise _fail(file, "parquet file not found", "missing_file")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise _fail(file, f"cannot read parquet: {err}", "bad_parquet") from err
    header = ", ".join(map(str, frame.columns))
    score_columns = [f"weighted_results{k}_{d}" for k in (1, 2) for d in RAPIDATA_DIMENSIONS]
    for column in RAPIDATA_COLUMNS:
        if column not in frame.columns:
            raise _fail(file, f"missing column (columns: {header})", "missing_column", column)
    if not any(c in frame.columns for c in score_columns):
        raise _fail(file, f"no weighted_results columns (columns: {header})", "missing_column")
    videos = rapidata_video_root(path, options.video_root) / VIDEOS_FOLDER
    samples, counts, problems = [], SourceCounts(), []
    for index, row in frame.reset_index(drop=True).iterrows():
        bad = [
            Problem(
                file,
                None,
                c,
                f"row {index}: must be a non-empty string, got {row[c]!r:.60}",
                kind="bad_field",
            )
            for c in RAPIDATA_COLUMNS
            if not isinstance(row[c], str) or not row[c].strip()
        ]
        scores = [
            {d: _score(row, f"weighted_results{k}_{d}", file, index, bad) for d in RAPIDATA_DIMENSIONS}
            for k in (1, 2)
        ]
        if bad:
            counts.invalid += 1
            problems += bad
            continue
        items = (videos / row["file_name1"], videos / row["file_name2"])
        missing = _missing_items(items, file, None, f"row {index}: video ", ("file_name1", "file_name2"))
        if missing:
            counts.missing_files += 1
            problems += missing
            continue
        totals = [sum(s.values()) for s in scores]
        tied = math.isclose(totals[0], totals[1], rel_tol=0.0, abs_tol=TIE_TOLERANCE)
        truth: Choice = TIE if tied else (1 if totals[0] > totals[1] else 2)
        extra = {"human_scores": scores, "human_totals": totals}
        samples.append(
            GRMSample(
                f"rapidata-t2v:{path}#{index}", "rapidata-t2v", row["prompt"], items, "video", truth, extra
            )
        )
    return _finish(samples, counts, problems)


def load_video_pair_source(path: Path, options: SourceOptions) -> SourceLoad:
    table = parse_video_pair_csv(path, [options.dimension], options.data_root)
    pairs = skip_bad_lines(table.pairs, table.problems, "skip")  # raises for an unreadable file
    counts = SourceCounts(invalid=len({p.line for p in table.problems if p.severity == "error"}))
    samples, problems = [], list(table.problems)
    for pair in pairs:
        items = (pair.path_a, pair.path_b)
        missing = _missing_items(items, str(path), pair.line, "video ", ("path_A", "path_B"))
        if missing:
            counts.missing_files += 1
            problems += missing
            continue
        truth = LABEL_TO_CHOICE[pair.labels[0]]
        extra = {"line": pair.line, "dimension": options.dimension}
        samples.append(
            GRMSample(
                f"video-pairs:{path}#{pair.line}", "video-pairs", pair.prompt, items, "video", truth, extra
            )
        )
    return _finish(samples, counts, problems)


def load_image_pair_source(path: Path, options: SourceOptions) -> SourceLoad:
    file = str(path)
    table = parse_image_pair_jsonl(path, options.data_root)
    problems = list(table.problems)
    for pair in table.pairs:
        if pair.schema != IMAGE_PAIR_SCHEMA:
            message = f"layout {pair.schema!r} compares text responses; GRM needs {IMAGE_PAIR_SCHEMA!r}"
            problems.append(Problem(file, pair.line, None, message, kind="unknown_schema"))
        elif any(ref.path is None for ref in (*pair.side_a.images, *pair.side_b.images)):
            message = "inline base64 image: GRM records media paths, write it to a file"
            problems.append(Problem(file, pair.line, "images", message, kind="bad_image"))
    pairs = skip_bad_lines(table.pairs, problems, "skip")  # raises for an unreadable file
    counts = SourceCounts(invalid=len({p.line for p in problems if p.severity == "error"}))
    samples = []
    for pair in pairs:
        items = (pair.side_a.images[0].path, pair.side_b.images[0].path)
        missing = _missing_items(items, file, pair.line, "image ", ("image_A", "image_B"))
        if missing:
            counts.missing_files += 1
            problems += missing
            continue
        truth = LABEL_TO_CHOICE[pair.label]
        sample_id = f"image-pairs:{path}#{pair.line}"
        extra = {"line": pair.line}
        if pair.sample_id is not None:
            extra["id"] = pair.sample_id
        samples.append(GRMSample(sample_id, "image-pairs", pair.prompt, items, "image", truth, extra))
    return _finish(samples, counts, problems)


LOADERS: dict[str, Callable[[Path, SourceOptions], SourceLoad]] = {
    "hpdv3": load_hpdv3_source,
    "rapidata-t2v": load_rapidata_t2v_source,
    "video-pairs": load_video_pair_source,
    "image-pairs": load_image_pair_source,
}
"""The one dispatch from a source name to its loader (keys = :data:`SOURCES`)."""
