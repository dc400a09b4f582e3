"""CSV video-preference pairs (VideoAlign format) -> labelled pairs -> decoded frames.

CSV columns: ``path_A, path_B, prompt`` plus one label column per evaluated dimension (any names
the user lists in ``eval_dim``, VideoAlign's are VQ/MQ/TA) holding ``A``, ``B`` or ``same``, and
optionally ``fps_A, num_frames_A, fps_B, num_frames_B``. Labels map to y = +1 (A better),
-1 (B better), 0 (tie) — docs/reward_math.md, "Labels". An empty cell or ``invalid`` (VideoAlign) is a
missing label: that dimension of the pair is masked (y = NaN in the dataset's tensor: no loss term,
not in accuracy) and the pair's other dimensions train; a row with no label at all is an error.
With ``score_columns`` (e.g. ``MOS_{side}_{dim}``, VideoAlign's names) each pair also carries the
score difference s_A - s_B per dimension, for the margin loss's per-pair margin. Line numbers in messages are the file's own:
the line a record starts on, after quoted multi-line fields and blank lines (:mod:`vlmrm.pairs.csv_records`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vlmrm.core.problems import Problem, path_escape, skip_bad_lines
from vlmrm.media.frame_cache import FrameCache
from vlmrm.media.sampling import QWEN2_IMAGE_FACTOR, FrameSampling
from vlmrm.media.video import VideoBackend, load_video
from vlmrm.pairs.csv_records import read_csv_records
from vlmrm.pairs.labels import LABEL_VALUES, MISSING_LABELS
from vlmrm.pairs.samples import BadSampleGuard, load_column

logger = logging.getLogger(__name__)

PATH_COLUMNS = ("path_A", "path_B")
REQUIRED_COLUMNS = (*PATH_COLUMNS, "prompt")
DECLARED_COLUMNS = {"A": ("fps_A", "num_frames_A"), "B": ("fps_B", "num_frames_B")}
REPLACEMENT_CHAR = "\ufffd"
"""What an undecodable byte reads as in a record's cells: it names the column of the bad byte."""


@dataclass(frozen=True)
class DeclaredVideo:
    """fps / frame count a CSV row declares for one side (None where the column is absent/empty)."""

    fps: float | None = None
    num_frames: int | None = None


@dataclass(frozen=True)
class VideoPair:
    row: int
    line: int
    path_a: Path
    path_b: Path
    prompt: str
    labels: tuple[int | None, ...]  # None: missing in that dimension (masked)
    declared_a: DeclaredVideo = DeclaredVideo()
    declared_b: DeclaredVideo = DeclaredVideo()
    score_diffs: tuple[float | None, ...] | None = None  # s_A - s_B per dimension (score_columns)


@dataclass
class VideoPairTable:
    """Parsed CSV: the pairs kept and what was dropped (and why), for the end-of-load summary."""

    source: Path
    data_dir: Path
    eval_dim: list[str]
    pairs: list[VideoPair]
    total_rows: int
    dropped_all_tie_rows: int = 0
    problems: list[Problem] = field(default_factory=list)

    def label_counts(self) -> dict[str, dict[str, int]]:
        """Per dimension: how many pairs say A, B and same, and how many have it ``missing`` (masked)."""
        names = {value: name for name, value in LABEL_VALUES.items()}
        names[None] = "missing"
        counts = {dim: {name: 0 for name in (*LABEL_VALUES, "missing")} for dim in self.eval_dim}
        for pair in self.pairs:
            for dim, y in zip(self.eval_dim, pair.labels):
                counts[dim][names[y]] += 1
        return counts


def resolve_data_dir(csv_path: Path, data_dir: str | Path | None) -> Path:
    """Relative video paths resolve against ``data_dir``, else against the CSV's own folder."""
    return Path(data_dir) if data_dir else csv_path.parent


def resolve_video_path(value: str, data_dir: Path) -> Path:
    path = Path(value)
    return path if path.is_absolute() else data_dir / path


def _declared(row: dict[str, str], side: str, file: str, line: int, problems: list[Problem]) -> DeclaredVideo:
    """The side's declared fps (a finite number > 0) and frame count (a whole number > 0: ``2.0``
    is 2, ``2.7`` is an error, never truncated)."""
    fps_col, frames_col = DECLARED_COLUMNS[side]
    values: dict[str, float | int | None] = {}
    for column, whole in ((fps_col, False), (frames_col, True)):
        text = row.get(column, "").strip()
        values[column] = None
        if not text:
            continue
        try:
            number = float(text)
        except ValueError:
            problems.append(Problem(file, line, column, f"not a number: {text!r}", kind="bad_number"))
            continue
        if not math.isfinite(number) or number <= 0:
            problems.append(
                Problem(file, line, column, f"not a finite number > 0: {text!r}", kind="bad_number")
            )
        elif whole and not number.is_integer():
            problems.append(
                Problem(
                    file, line, column, f"must be a whole number of frames, got {text!r}", kind="bad_number"
                )
            )
        else:
            values[column] = int(number) if whole else number
    return DeclaredVideo(values[fps_col], values[frames_col])


def _score_diffs(
    row: dict[str, str],
    eval_dim: list[str],
    labels: list[int | None],
    score_of: dict[tuple[str, str], str],
    file: str,
    line: int,
    problems: list[Problem],
) -> tuple[float | None, ...]:
    """s_A - s_B per dimension (signed: the margin loss turns it into preferred minus other with the
    label); None where the label is missing (the scores are then not read)."""
    diffs: list[float | None] = []
    for dim, y in zip(eval_dim, labels):
        if y is None:
            diffs.append(None)
            continue
        scores = []
        for side in ("A", "B"):
            column = score_of[(side, dim)]
            text = str(row[column]).strip()
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not np.isfinite(value):
                problems.append(
                    Problem(file, line, column, f"not a finite score: {text!r}", kind="bad_number")
                )
                value = 0.0
            scores.append(value)
        diffs.append(scores[0] - scores[1])
    return tuple(diffs)


def parse_video_pair_csv(
    csv_path: str | Path,
    eval_dim: list[str],
    data_dir: str | Path | None = None,
    use_tied_data: bool = True,
    restrict_paths: bool = False,
    score_columns: str | None = None,
) -> VideoPairTable:
    """Parse a video-pair CSV, collecting every problem in ``table.problems`` (never raises).

    ``score_columns``: a pattern with ``{side}`` (A, B) and ``{dim}``, e.g. ``MOS_{side}_{dim}``; each
    labelled dimension then needs two numeric scores, and the pair stores s_A - s_B per dimension.

    With ``use_tied_data=False`` a row whose every selected dimension is ``same`` is dropped and
    counted in ``dropped_all_tie_rows`` (docs/reward_math.md, "Labels"): nothing is dropped silently. A row that is
    not UTF-8, or (``restrict_paths``) whose video path resolves outside the data folder, is a
    problem of its line and no pair (its text is unknown; the outside file is never opened).
    """
    csv_path = Path(csv_path)
    file = str(csv_path)
    root = resolve_data_dir(csv_path, data_dir)

    def unusable(problems: list[Problem]) -> VideoPairTable:
        return VideoPairTable(csv_path, root, list(eval_dim), [], 0, 0, problems)

    if not csv_path.is_file():
        return unusable([Problem(file, None, None, "CSV file not found", kind="missing_file")])
    parsed = read_csv_records(csv_path.read_bytes())
    if parsed.fatal is not None:
        return unusable([Problem(file, *parsed.fatal, kind="bad_csv")])
    if parsed.header_line is None:
        return unusable([Problem(file, None, None, "cannot parse CSV: the file is empty", kind="bad_csv")])
    columns = parsed.columns
    score_of = {
        (side, dim): score_columns.format(side=side, dim=dim)
        for side in ("A", "B")
        for dim in (eval_dim if score_columns else [])
    }
    missing = [c for c in (*REQUIRED_COLUMNS, *eval_dim, *score_of.values()) if c not in columns]
    if missing:
        header = ", ".join(columns)
        return unusable(
            [
                Problem(
                    file,
                    parsed.header_line,
                    column,
                    f"missing column (header has: {header})",
                    kind="missing_column",
                )
                for column in missing
            ]
        )

    problems: list[Problem] = []
    pairs: list[VideoPair] = []
    dropped = 0
    for row_index, record in enumerate(parsed.records):
        line, row = record.line, record.cells
        if record.encoding_error is not None:
            column = next((c for c in columns if REPLACEMENT_CHAR in row.get(c, "")), None)
            problems.append(Problem(file, line, column, record.encoding_error, kind="bad_encoding"))
            continue
        if record.field_count != len(columns):
            message = f"{record.field_count} fields, the header has {len(columns)} (a stray comma or quote?)"
            problems.append(Problem(file, line, None, message, kind="bad_row"))
            continue
        labels: list[int | None] = []
        for dim in eval_dim:
            value = str(row[dim]).strip()
            if value.lower() in MISSING_LABELS:
                labels.append(None)
                continue
            if value not in LABEL_VALUES:
                valid = ", ".join(LABEL_VALUES)
                problems.append(
                    Problem(
                        file,
                        line,
                        dim,
                        f"unknown label {value!r} (valid: {valid}; empty or 'invalid' = missing)",
                        kind="unknown_label",
                    )
                )
            labels.append(LABEL_VALUES.get(value, 0))
        if all(y is None for y in labels):
            problems.append(
                Problem(file, line, None, f"no label in any of {list(eval_dim)}", kind="unknown_label")
            )
        score_diffs = (
            _score_diffs(row, eval_dim, labels, score_of, file, line, problems) if score_of else None
        )
        for column in PATH_COLUMNS:
            if not str(row[column]).strip():
                problems.append(Problem(file, line, column, "empty video path", kind="missing_video"))
        declared_a = _declared(row, "A", file, line, problems)
        declared_b = _declared(row, "B", file, line, problems)
        paths = {column: resolve_video_path(str(row[column]).strip(), root) for column in PATH_COLUMNS}
        escaped = [path_escape(file, line, c, paths[c], root) for c in PATH_COLUMNS] if restrict_paths else []
        if any(escaped):
            problems += [problem for problem in escaped if problem is not None]
            continue
        if not use_tied_data and all(y == 0 for y in labels if y is not None):
            dropped += 1
            continue
        pairs.append(
            VideoPair(
                row=int(row_index),
                line=line,
                path_a=paths["path_A"],
                path_b=paths["path_B"],
                prompt=str(row["prompt"]),
                labels=tuple(labels),
                declared_a=declared_a,
                declared_b=declared_b,
                score_diffs=score_diffs,
            )
        )
    if dropped:
        logger.info(
            "%s: dropped %d of %d rows whose every dimension in %s is a tie (use_tied_data=false)",
            file,
            dropped,
            len(parsed.records),
            eval_dim,
        )
    return VideoPairTable(csv_path, root, list(eval_dim), pairs, len(parsed.records), dropped, problems)


def load_video_pairs(
    csv_path: str | Path,
    eval_dim: list[str],
    data_dir: str | Path | None = None,
    use_tied_data: bool = True,
    on_bad_sample: str = "error",
    problems: list[Problem] | None = None,
    restrict_paths: bool = False,
    score_columns: str | None = None,
) -> VideoPairTable:
    """Parse and apply ``on_bad_sample``: ``error`` raises :class:`DataValidationError` listing every
    error; ``skip`` drops the rows with one (counted by the caller from the same problems).

    ``problems``: what validation found in this file (parsing and videos); default: parsing's own.
    """
    table = parse_video_pair_csv(csv_path, eval_dim, data_dir, use_tied_data, restrict_paths, score_columns)
    table.pairs = skip_bad_lines(table.pairs, table.problems if problems is None else problems, on_bad_sample)
    return table


def labels_tensor(labels: tuple[int | None, ...]) -> torch.Tensor:
    """(D,) float32 labels, NaN where a dimension's label is missing (the losses mask it)."""
    return torch.tensor([float("nan") if y is None else float(y) for y in labels], dtype=torch.float32)


class VideoPairDataset(Dataset):
    """Decodes both videos of a pair in ``__getitem__``, so DataLoader workers do the decoding.

    Item: ``{"video_A": DecodedVideo, "video_B": DecodedVideo, "prompt": str,
    "labels": float tensor (D,), "pair_id": int (the CSV line), "source": str (the CSV),
    "skipped_samples": [...]}`` where D = len(eval_dim); a missing label is NaN. With score columns
    also ``"margin_scores": float tensor (D,)`` = s_A - s_B (0 where missing). A video that fails to
    load here is handled by ``on_bad_sample`` (:class:`vlmrm.pairs.samples.BadSampleGuard`).
    """

    def __init__(
        self,
        table: VideoPairTable,
        sampling: FrameSampling,
        backend: VideoBackend,
        image_factor: int = QWEN2_IMAGE_FACTOR,
        seed: int = 0,
        cache_in_memory: bool = False,
        frame_cache: FrameCache | None = None,
        on_bad_sample: str = "error",
    ):
        for option, on in (("cache_videos_in_memory", cache_in_memory), ("frame_cache_dir", frame_cache)):
            if on and sampling.sample_type != "uniform":
                raise ValueError(f"{option} needs sample_type: uniform (random sampling differs per epoch)")
        self.table = table
        self.sampling = sampling
        self.backend = backend
        self.image_factor = image_factor
        self.seed = seed
        self.epoch = 0
        self._memory: dict[Path, object] | None = {} if cache_in_memory else None
        self.frame_cache = frame_cache
        self.guard = BadSampleGuard(str(table.source), [pair.line for pair in table.pairs], on_bad_sample)

    def __len__(self) -> int:
        return len(self.table.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Random frame sampling draws new frames each epoch, reproducibly for a seed."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        return self.guard.item(index, self._item)

    def _item(self, index: int) -> dict:
        pair = self.table.pairs[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        videos = {
            f"video_{side}": load_column(column, lambda path=path: self._load(path, rng))
            for side, column, path in (("A", "path_A", pair.path_a), ("B", "path_B", pair.path_b))
        }
        item = {
            **videos,
            "prompt": pair.prompt,
            "labels": labels_tensor(pair.labels),
            "pair_id": pair.line,
            "source": str(self.table.source),
        }
        if pair.score_diffs is not None:
            item["margin_scores"] = torch.tensor(
                [0.0 if d is None else d for d in pair.score_diffs], dtype=torch.float32
            )
        return item

    def frames_cached(self) -> bool:
        """Every video of the table has an entry in the frame cache: each item is file reads, no decoding."""
        cache = self.frame_cache
        return cache is not None and all(
            cache.holds(path, self.sampling, self.backend, self.image_factor)
            for pair in self.table.pairs
            for path in (pair.path_a, pair.path_b)
        )

    def _decode(self, path: Path, rng: np.random.Generator):
        if self.frame_cache is not None:
            return self.frame_cache.load(path, self.sampling, self.backend, self.image_factor)
        return load_video(path, self.sampling, self.backend, self.image_factor, rng)

    def _load(self, path: Path, rng: np.random.Generator):
        if self._memory is None:
            return self._decode(path, rng)
        if path not in self._memory:
            self._memory[path] = self._decode(path, rng)
        return self._memory[path]
