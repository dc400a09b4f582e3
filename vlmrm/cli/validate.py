"""Check preference data before training: every problem with its file, line and column.

CLI::

    python -m vlmrm.data.validate --file train.csv --data_dir DIR [--eval_dim VQ MQ TA] [--strict]
        [--decode header|sampled|all]
    python -m vlmrm.data.validate --config training_configs/quickstart_cpu.yaml
    python -m vlmrm.data.validate --file pairs.jsonl [--image_dir DIR]      # JSONL image pairs
    python -m vlmrm.data.validate --task vtg --file data.jsonl [--video_dir DIR]   # VTG annotations
    python -m vlmrm.data.validate --task vtg --config configs/data/video_config.yaml

Errors (exit status 1): CSV not found or unparsable, a line that is not UTF-8, missing column,
unknown label, empty path, missing / empty / unreadable / truncated video, no video stream (audio
only), fewer frames than ``min_frames`` / ``num_frames``, frames larger than ``MAX_VIDEO_PIXELS``,
frames whose resized size is degenerate or whose aspect ratio qwen-vl-utils refuses, frames the
backend fails to decode (``--decode sampled`` / ``all``),
and (``--restrict_paths``) a media path resolving outside the data folder. What a file holds
decides, not its extension.
Warnings (exit 0 unless ``--strict``): duplicate rows, ``fps_*`` / ``num_frames_*`` columns that
disagree with the file (the model would see other frames than the CSV author expects).
JSONL image pairs (:mod:`vlmrm.pairs.image_pairs`): invalid JSON, unknown layout, missing field,
wrong type, bad label, ranking not a permutation, missing or undecodable image (also one over
PIL's decompression-bomb limit), an aspect ratio the processor refuses, a text holding a lone UTF-16
surrogate — all errors.
VTG annotations (:mod:`vlmrm.vtg.annotations`): invalid JSON, missing field, wrong type, bad timestamp
or trim window, missing / unreadable video, window outside the file, declared duration off the
clip's length — errors; a repeated ``qid`` — warning.
The same functions run at the start of training (:func:`validate_run_data`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlmrm.core.problems import ConfigError, ValidationReport
from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import resolve_backend
from vlmrm.pairs.labels import IMAGE_PAIR_SUFFIXES
from vlmrm.pairs.validate import validate_image_pairs, validate_video_pairs
from vlmrm.vtg.validate import validate_vtg

CONFIG_ERROR_STATUS = 2
"""Exit status of a config that cannot be read (argparse's for a bad command line, as train_rm.py)."""


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
        help="preference: video/image pairs; vtg: temporal grounding JSONL (vlmrm.vtg.annotations)",
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
    parser.add_argument(
        "--decode",
        choices=["header", "sampled", "all"],
        help="how much of each video to decode: header (default; probe + truncated index), sampled "
        "(the frames training samples), all (every frame: damage in the middle of a stream); "
        "default with --config: its validate_decode",
    )
    parser.add_argument("--fps", type=float, default=FrameSampling.fps)
    parser.add_argument("--num_frames", type=int)
    parser.add_argument(
        "--restrict_paths", action="store_true", help="media paths must resolve inside data_dir / image_dir"
    )
    parser.add_argument("--strict", action="store_true", help="warnings are errors too")
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit status 1 when a file fails, 2 on a config that cannot be read (one line, no traceback)."""
    args = _parser().parse_args(argv)
    try:
        return check_files(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return CONFIG_ERROR_STATUS


def check_files(args: argparse.Namespace) -> int:
    if args.task == "vtg":
        if not (args.file or args.config):
            _parser().error("give --file JSONL or --config VTG data YAML")
        return main_vtg(args)
    if args.config:
        from vlmrm.reward.config import parse_config

        data = parse_config(args.config).data
        files = [f for f in (data.meta_data, data.meta_data_test) if f]
        eval_dim, data_dir, tied = data.eval_dim, data.data_dir, data.use_tied_data
        restrict = data.restrict_paths or args.restrict_paths
        sampling, backend_name = FrameSampling.from_data_config(data), data.video_backend
        score_columns = data.margin_score_columns
        decode = args.decode or data.validate_decode
    elif args.file:
        files, eval_dim, data_dir, tied = args.file, args.eval_dim, args.data_dir, not args.no_use_tied_data
        restrict = args.restrict_paths
        sampling, backend_name = FrameSampling(fps=args.fps, num_frames=args.num_frames), args.video_backend
        score_columns = None
        decode = args.decode or "header"
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
            report = validate_video_pairs(
                path, eval_dim, data_dir, tied, sampling, backend, restrict, score_columns, decode
            )
        failed |= print_report(report, path, args)
    print("FAILED" if failed else "OK", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
