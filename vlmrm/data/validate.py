"""Check preference data before training: every problem with its file, line and column.

CLI::

    python -m vlmrm.data.validate --file train.csv --data_dir DIR [--eval_dim VQ MQ TA] [--strict]
    python -m vlmrm.data.validate --config training_configs/quickstart_cpu.yaml
    python -m vlmrm.data.validate --file pairs.jsonl [--image_dir DIR]      # JSONL image pairs
    python -m vlmrm.data.validate --task vtg --file data.jsonl [--video_dir DIR]   # VTG annotations
    python -m vlmrm.data.validate --task vtg --config configs/data/video_config.yaml

Errors (exit status 1): CSV not found or unparsable, a line that is not UTF-8, missing column,
unknown label, empty path, missing / empty / unreadable / truncated video, no video stream (audio
only), fewer frames than ``min_frames`` / ``num_frames``, frames larger than ``MAX_VIDEO_PIXELS``,
and (``--restrict_paths``) a media path resolving outside the data folder. What a file holds
decides, not its extension.
Warnings (exit 0 unless ``--strict``): duplicate rows, ``fps_*`` / ``num_frames_*`` columns that
disagree with the file (the model would see other frames than the CSV author expects).
JSONL image pairs (:mod:`vlmrm.data.image_pairs`): invalid JSON, unknown layout, missing field,
wrong type, bad label, ranking not a permutation, missing or undecodable image — all errors.
VTG annotations (:mod:`vlmrm.vtg.data`): invalid JSON, missing field, wrong type, bad timestamp
or trim window, missing / unreadable video, window outside the file, declared duration off the
clip's length — errors; a repeated ``qid`` — warning.
The same functions run at the start of training (:func:`validate_run_data`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from vlmrm.constants import IMAGE_PAIR_SUFFIXES, LABEL_VALUES
from vlmrm.data.problems import FILE_KINDS, Problem, count_by_kind, enforce_bad_sample_policy, errors
from vlmrm.data.video import (
    FrameSampling,
    VideoBackend,
    VideoDecodeError,
    VideoInfo,
    num_sampled_frames,
    probe_video,
    resolve_backend,
    video_truncation,
)
from vlmrm.data.video_pairs import DeclaredVideo, VideoPairTable, parse_video_pair_csv
from vlmrm.vtg.data import parse_vtg_jsonl, vtg_media_problems

logger = logging.getLogger(__name__)

FPS_RELATIVE_TOLERANCE = 0.01
"""Declared and decoded fps may differ by 1% (23.976 written as 23.98) before it is a mismatch."""


@dataclass
class ValidationReport:
    file: str
    problems: list[Problem] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def failed(self, strict: bool = False) -> bool:
        return bool(errors(self.problems, strict))


def _declared_mismatch(declared: DeclaredVideo, info: VideoInfo) -> list[str]:
    found = []
    if declared.fps is not None and not math.isclose(declared.fps, info.fps, rel_tol=FPS_RELATIVE_TOLERANCE):
        found.append(f"declared fps {declared.fps:g} but the file has {info.fps:g}")
    if declared.num_frames is not None and declared.num_frames != info.total_frames:
        found.append(f"declared {declared.num_frames} frames but the file has {info.total_frames}")
    return found


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
    table: VideoPairTable, sampling: FrameSampling, backend: VideoBackend
) -> tuple[list[Problem], dict]:
    """Probe every distinct video once; report per row and column that references it."""
    file = str(table.source)
    uses: dict[Path, list[tuple[int, str, DeclaredVideo]]] = defaultdict(list)
    for pair in table.pairs:
        uses[pair.path_a].append((pair.line, "path_A", pair.declared_a))
        uses[pair.path_b].append((pair.line, "path_B", pair.declared_b))
    problems: list[Problem] = []
    durations, sampled, rates = [], [], []
    for path, references in uses.items():
        try:
            info = probe_video(path, backend)
            frames = num_sampled_frames(info.total_frames, info.fps, sampling)
            truncated = video_truncation(path)
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
) -> ValidationReport:
    """Everything a training run would trip over, found in one pass, plus summary counts."""
    table = parse_video_pair_csv(csv_path, eval_dim, data_dir, use_tied_data, restrict_paths)
    report = ValidationReport(str(csv_path), list(table.problems))
    if any(p.kind in FILE_KINDS for p in table.problems):
        return report
    report.problems += _duplicate_problems(table)
    video_problems, video_summary = check_videos(
        table, sampling or FrameSampling(), backend or resolve_backend()
    )
    report.problems += video_problems
    counts = table.label_counts()
    report.summary = {
        "rows": table.total_rows,
        "pairs": len(table.pairs),
        "dropped_all_tie_rows": table.dropped_all_tie_rows,
        "labels": counts,
        "ties": {dim: c["same"] for dim, c in counts.items()},
        **video_summary,
        "bad_lines": len({p.line for p in errors(report.problems)}),
        "problems": count_by_kind(report.problems),
    }
    return report


def validate_run_data(run_config, strict: bool = False) -> list[ValidationReport]:
    """Validate ``meta_data`` and ``meta_data_test`` of a run before any model is loaded: every problem
    is logged, then the run stops (``on_bad_sample: error``, or a file-level problem) or the bad
    lines are left to be skipped and counted (``skip``; see ``summary["bad_lines"]``)."""
    data = run_config.data
    paths = [path for path in (data.meta_data, data.meta_data_test) if path]
    if data.is_image_data():
        reports = [
            validate_image_pairs(path, data.image_dir, data.data_format, data.restrict_paths)
            for path in paths
        ]
    else:
        sampling, backend = FrameSampling.from_data_config(data), resolve_backend(data.video_backend)
        reports = [
            validate_video_pairs(
                path, data.eval_dim, data.data_dir, data.use_tied_data, sampling, backend, data.restrict_paths
            )
            for path in paths
        ]
    for report in reports:
        for problem in report.problems:
            stops = problem.severity == "error" and data.on_bad_sample == "error"
            (logger.error if stops else logger.warning)("%s", problem)
        logger.info("%s: %s", report.file, json.dumps(report.summary))
    enforce_bad_sample_policy([p for r in reports for p in errors(r.problems, strict)], data.on_bad_sample)
    for report in reports:
        if report.summary.get("bad_lines"):
            logger.warning(
                "%s: skipping %d bad line(s) (on_bad_sample: skip)", report.file, report.summary["bad_lines"]
            )
    return reports


def validate_image_pairs(
    path: str | Path, image_dir=None, data_format: str = "auto", restrict_paths: bool = False
) -> ValidationReport:
    """Every bad line of a JSONL image-pair file (JSON, fields, ranking, images), plus label counts."""
    from vlmrm.data.image_pairs import image_pair_problems, parse_image_pair_jsonl

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
        "schemas": schemas,
        "labels": labels,
        "problems": count_by_kind(report.problems),
    }
    return report


def _stats(values: list[float]) -> dict:
    return {"min": min(values), "mean": sum(values) / len(values), "max": max(values)} if values else {}


def validate_vtg(
    path: str | Path, video_dir: str | Path | None = None, backend: VideoBackend | None = None
) -> ValidationReport:
    """Every bad line of a VTG JSONL, then every video problem of the lines that parsed, by line."""
    table = parse_vtg_jsonl(path, video_dir)
    report = ValidationReport(str(path), list(table.problems))
    if table.samples:
        report.problems += vtg_media_problems(table, backend or resolve_backend())
        report.problems.sort(key=lambda p: p.line or 0)
    bad = {p.line for p in errors(report.problems) if p.line is not None}
    samples = table.samples
    report.summary = {
        "lines": table.total_lines,
        "samples": len(samples),
        "bad_lines": len(bad),
        "videos": len({s.video for s in samples}),
        "trimmed": sum(s.video_start is not None or s.video_end is not None for s in samples),
        "duration_s": _stats([s.duration for s in samples]),
        "segment_fraction": _stats([(s.timestamp[1] - s.timestamp[0]) / s.duration for s in samples]),
        "problems": count_by_kind(report.problems),
    }
    return report


def _vtg_files(args) -> list[tuple[str, str | None]]:
    """(JSONL, video_dir) pairs to check: the --file list, or both annotation files of a VTG data YAML."""
    if not args.config:
        return [(path, args.video_dir) for path in args.file]
    from vlmrm.vtg.data_config import load_vtg_data_config

    config = load_vtg_data_config(args.config)
    video_dir = args.video_dir or config.dataset.video_dir
    files = (config.dataset.annotation_file, config.validation.annotation_file)
    return [(path, video_dir) for path in files if path]


def main_vtg(args) -> int:
    """``--task vtg``: print each problem as file:line [field]: message, a summary line per file."""
    backend = resolve_backend(args.video_backend)
    failed = False
    for path, video_dir in _vtg_files(args):
        failed |= print_report(validate_vtg(path, video_dir, backend), path, args)
    print("FAILED" if failed else "OK", file=sys.stderr)
    return 1 if failed else 0


def print_report(report: ValidationReport, path: str, args) -> bool:
    """Problems to stderr, the summary JSON to stdout; whether the file fails (``--strict``: warnings too)."""
    for problem in report.problems:
        print(problem, file=sys.stderr)
    print(json.dumps({"file": path, **report.summary}, indent=None if not args.json else 2))
    return report.failed(args.strict)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vlmrm.data.validate", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--file", action="append", help="CSV (video pairs) or JSONL (image pairs) to check; repeatable"
    )
    parser.add_argument(
        "--task",
        default="preference",
        choices=["preference", "vtg"],
        help="preference: video/image pairs; vtg: temporal grounding JSONL (vlmrm.vtg.data)",
    )
    parser.add_argument(
        "--config",
        help="training YAML: checks its meta_data and meta_data_test; with --task vtg a VTG data YAML: "
        "checks dataset.annotation_file and validation.annotation_file",
    )
    parser.add_argument("--data_dir")
    parser.add_argument("--image_dir", help="JSONL image pairs: folder relative image paths resolve against")
    parser.add_argument("--video_dir", help="--task vtg: folder relative video paths resolve against")
    parser.add_argument("--eval_dim", nargs="+", default=["VQ", "MQ", "TA"])
    parser.add_argument("--no_use_tied_data", action="store_true", help="drop all-tie rows (counted)")
    parser.add_argument("--video_backend", default="auto", choices=["auto", "decord", "pyav", "torchcodec"])
    parser.add_argument("--fps", type=float, default=FrameSampling.fps)
    parser.add_argument("--num_frames", type=int)
    parser.add_argument(
        "--restrict_paths", action="store_true", help="media paths must resolve inside data_dir / image_dir"
    )
    parser.add_argument("--strict", action="store_true", help="warnings are errors too")
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.task == "vtg":
        if not (args.file or args.config):
            _parser().error("give --file JSONL or --config VTG data YAML")
        return main_vtg(args)
    if args.config:
        from vlmrm.config import parse_config

        data = parse_config(args.config).data
        files = [f for f in (data.meta_data, data.meta_data_test) if f]
        eval_dim, data_dir, tied = data.eval_dim, data.data_dir, data.use_tied_data
        restrict = data.restrict_paths or args.restrict_paths
        sampling, backend_name = FrameSampling.from_data_config(data), data.video_backend
    elif args.file:
        files, eval_dim, data_dir, tied = args.file, args.eval_dim, args.data_dir, not args.no_use_tied_data
        restrict = args.restrict_paths
        sampling, backend_name = FrameSampling(fps=args.fps, num_frames=args.num_frames), args.video_backend
    else:
        _parser().error("give --file CSV or --config YAML")
    backend = None
    failed = False
    for path in files:
        if Path(path).suffix.lower() in IMAGE_PAIR_SUFFIXES:
            image_dir = args.image_dir or (data.image_dir if args.config else None)
            report = validate_image_pairs(path, image_dir, restrict_paths=restrict)
        else:
            backend = backend or resolve_backend(backend_name)
            report = validate_video_pairs(path, eval_dim, data_dir, tied, sampling, backend, restrict)
        failed |= print_report(report, path, args)
    print("FAILED" if failed else "OK", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
