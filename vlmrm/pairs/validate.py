"""Check preference-pair files (CSV video pairs, JSONL image pairs): every problem with its file,
line and column, plus summary counts. The same functions run at the start of training
(:func:`vlmrm.reward.validate.validate_run_data`) and in ``python -m vlmrm.data.validate``.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from vlmrm.core.problems import FILE_KINDS, Problem, ValidationReport, count_by_kind, errors
from vlmrm.core.progress import progress
from vlmrm.media.sampling import QWEN2_IMAGE_FACTOR, FrameSampling, resized_frame_size, sample_frame_indices
from vlmrm.media.video import (
    DecodeCheck,
    VideoBackend,
    VideoDecodeError,
    VideoInfo,
    decode_problem,
    probe_video,
    resolve_backend,
    video_truncation,
)
from vlmrm.pairs.labels import LABEL_VALUES
from vlmrm.pairs.video_pairs import DeclaredVideo, VideoPairTable, parse_video_pair_csv

logger = logging.getLogger(__name__)

FPS_RELATIVE_TOLERANCE = 0.01
"""Declared and decoded fps may differ by 1% (23.976 written as 23.98) before it is a mismatch."""


def _declared_mismatch(declared: DeclaredVideo, info: VideoInfo) -> list[str]:
    found = []
    if declared.fps is not None and not math.isclose(declared.fps, info.fps, rel_tol=FPS_RELATIVE_TOLERANCE):
        found.append(f"declared fps {declared.fps:g} but the file has {info.fps:g}")
    if declared.num_frames is not None and declared.num_frames != info.total_frames:
        found.append(f"declared {declared.num_frames} frames but the file has {info.total_frames}")
    return found


def usable_pairs(pairs: list, problems: list[Problem]) -> int:
    """Pairs left for training once every line with an error is skipped (``on_bad_sample: skip``)."""
    bad = {p.line for p in errors(problems)}
    return sum(pair.line not in bad for pair in pairs)


def _duplicate_problems(table: VideoPairTable) -> list[Problem]:
    first_line: dict[tuple, int] = {}
    problems = []
    for pair in table.pairs:
        key = (pair.path_a, pair.path_b, pair.prompt)
        if key in first_line:
            problems.append(
                Problem(
                    str(table.source),
                    pair.line,
                    None,
                    f"duplicate of line {first_line[key]} (same path_A, path_B, prompt)",
                    severity="warning",
                    kind="duplicate_row",
                )
            )
        else:
            first_line[key] = pair.line
    return problems


def check_videos(
    table: VideoPairTable,
    sampling: FrameSampling,
    backend: VideoBackend,
    decode: DecodeCheck = "header",
    image_factor: int = QWEN2_IMAGE_FACTOR,
) -> tuple[list[Problem], dict]:
    """Probe every distinct video once; report per row and column that references it.

    Each video goes through training's own steps short of the model: probe, frame sampling
    (``sample_frame_indices``), the resized frame size (``resized_frame_size``: aspect ratio and
    degenerate sizes), the truncation check, and with ``decode`` ``sampled`` / ``all`` the decoding
    of those frames / of every frame with the chosen backend (:func:`decode_problem`)."""
    file = str(table.source)
    uses: dict[Path, list[tuple[int, str, DeclaredVideo]]] = defaultdict(list)
    for pair in table.pairs:
        uses[pair.path_a].append((pair.line, "path_A", pair.declared_a))
        uses[pair.path_b].append((pair.line, "path_B", pair.declared_b))
    problems: list[Problem] = []
    durations, sampled, rates = [], [], []
    for path, references in progress(uses.items(), f"validate videos of {file}", unit="videos"):
        try:
            info = probe_video(path, backend)
            indices = sample_frame_indices(
                info.total_frames, info.fps, replace(sampling, sample_type="uniform")
            )
            frames = len(indices)
            resized_frame_size(info.height, info.width, sampling, image_factor, frames)
            truncated = video_truncation(path) or decode_problem(path, info, backend, decode, indices)
            if truncated:
                raise VideoDecodeError(path, truncated)
        except (VideoDecodeError, ValueError) as err:
            reason = f"{err.reason}: {err.path}" if isinstance(err, VideoDecodeError) else f"{path}: {err}"
            for line, column, _ in references:
                problems.append(Problem(file, line, column, reason, kind="bad_video"))
            continue
        sampled.append(frames)
        durations.append(info.duration)
        rates.append(info.fps)
        for line, column, declared in references:
            for message in _declared_mismatch(declared, info):
                side = column[-1]
                problems.append(
                    Problem(
                        file,
                        line,
                        f"fps_{side}/num_frames_{side}",
                        f"{path}: {message}",
                        severity="warning",
                        kind="declared_mismatch",
                    )
                )
    summary = {"videos": len(uses), "readable_videos": len(durations)}
    if durations:
        summary["duration_s"] = {
            "min": min(durations),
            "mean": sum(durations) / len(durations),
            "max": max(durations),
        }
        summary["frames_sampled"] = {"min": min(sampled), "max": max(sampled)}
        summary["fps"] = {"min": min(rates), "max": max(rates)}
    return problems, summary


def validate_video_pairs(
    csv_path: str | Path,
    eval_dim: list[str],
    data_dir: str | Path | None = None,
    use_tied_data: bool = True,
    sampling: FrameSampling | None = None,
    backend: VideoBackend | None = None,
    restrict_paths: bool = False,
    score_columns: str | None = None,
    decode: DecodeCheck = "header",
    image_factor: int = QWEN2_IMAGE_FACTOR,
) -> ValidationReport:
    """Everything a training run would trip over, found in one pass, plus summary counts (labels per
    dimension, ``masked_labels``: the pairs whose label is missing in that dimension).
    ``decode``/``image_factor``: see :func:`check_videos`."""
    table = parse_video_pair_csv(csv_path, eval_dim, data_dir, use_tied_data, restrict_paths, score_columns)
    report = ValidationReport(str(csv_path), list(table.problems))
    if any(p.kind in FILE_KINDS for p in table.problems):
        return report
    report.problems += _duplicate_problems(table)
    video_problems, video_summary = check_videos(
        table, sampling or FrameSampling(), backend or resolve_backend(), decode, image_factor
    )
    report.problems += video_problems
    counts = table.label_counts()
    report.summary = {
        "rows": table.total_rows,
        "pairs": len(table.pairs),
        "dropped_all_tie_rows": table.dropped_all_tie_rows,
        "labels": counts,
        "ties": {dim: c["same"] for dim, c in counts.items()},
        "masked_labels": {dim: c["missing"] for dim, c in counts.items()},
        **video_summary,
        "bad_lines": len({p.line for p in errors(report.problems)}),
        "usable_pairs": usable_pairs(table.pairs, report.problems),
        "problems": count_by_kind(report.problems),
    }
    return report


def validate_image_pairs(
    path: str | Path, image_dir=None, data_format: str = "auto", restrict_paths: bool = False
) -> ValidationReport:
    """Every bad line of a JSONL image-pair file (JSON, fields, ranking, images), plus label counts."""
    from vlmrm.pairs.image_pairs import image_pair_problems, parse_image_pair_jsonl

    table = parse_image_pair_jsonl(path, image_dir, data_format, restrict_paths)
    report = ValidationReport(str(path), image_pair_problems(table))
    bad = {p.line for p in report.problems}
    names = {value: name for name, value in LABEL_VALUES.items()}
    labels = {name: 0 for name in LABEL_VALUES}
    schemas: dict[str, int] = {}
    for pair in table.pairs:
        labels[names[pair.label]] += 1
        schemas[pair.schema] = schemas.get(pair.schema, 0) + 1
    report.summary = {
        "lines": table.total_lines,
        "pairs": len(table.pairs),
        "bad_lines": len(bad),
        "usable_pairs": usable_pairs(table.pairs, report.problems),
        "schemas": schemas,
        "margins": sum(pair.margin is not None for pair in table.pairs),
        "labels": labels,
        "problems": count_by_kind(report.problems),
    }
    return report
