"""Score a VTG JSONL's `pred` field against its `timestamp`, without a model.

Usage: `python -m vlmrm.vtg.evaluate --file data.jsonl --output_dir DIR` writes
- DIR/vtg_metrics.json: `vtg_metrics` of the file (R@0.3/0.5/0.7, mIoU, count, unparsed, per difficulty
  bucket) plus the source path;
- DIR/vtg_predictions.jsonl: one line per sample: line, qid, timestamp, pred (as scored, or null), iou.

`pred` goes through the same rules as a parsed model answer (`temporal.normalize_segment`): two finite
numbers, swapped when reversed, clamped to [0, duration]; anything else (missing, null, a string, NaN,
wrong length) is unparseable and scores IoU 0. The ground truth must be valid: `duration` > 0 and
0 <= start < end <= duration (seconds of the trimmed clip); otherwise every bad line is reported at once
in a `DataValidationError`, because a metric over silently skipped samples would not be comparable.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from vlmrm.data.problems import DataValidationError, Problem
from vlmrm.vtg.metrics import temporal_iou, vtg_metrics
from vlmrm.vtg.temporal import normalize_segment

METRICS_FILE = "vtg_metrics.json"
PREDICTIONS_FILE = "vtg_predictions.jsonl"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pair(value) -> tuple[float, float] | None:
    """(a, b) if `value` is a list of exactly two numbers, else None."""
    if isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value):
        return float(value[0]), float(value[1])
    return None


def _ground_truth(row, file: str, line: int) -> tuple[float, tuple[float, float]] | Problem:
    """(duration, timestamp) of one parsed JSON line, or the Problem that makes it unusable."""
    if not isinstance(row, dict):
        return Problem(file, line, None, "line is not a JSON object", kind="json")
    duration = row.get("duration")
    if not _is_number(duration) or not math.isfinite(duration) or duration <= 0:
        return Problem(
            file, line, "duration", f"must be a positive number, got {duration!r}", kind="duration"
        )
    timestamp = _pair(row.get("timestamp"))
    if timestamp is None or not all(math.isfinite(t) for t in timestamp):
        return Problem(
            file, line, "timestamp", f"must be [start, end], got {row.get('timestamp')!r}", kind="type"
        )
    if not 0 <= timestamp[0] < timestamp[1] <= duration:
        message = f"needs 0 <= start < end <= duration ({duration:g}), got {list(timestamp)}"
        return Problem(file, line, "timestamp", message, kind="timestamp")
    return float(duration), timestamp


def read_prediction_records(jsonl_path: str | Path) -> list[dict]:
    """Per sample: {"line", "qid", "timestamp", "pred" (normalised or None), "difficulty"}.

    Raises:
        DataValidationError: with every line whose JSON or ground truth is invalid.
    """
    path = Path(jsonl_path)
    records, problems = [], []
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as error:
            problems.append(Problem(str(path), line, None, f"invalid JSON: {error.msg}", kind="json"))
            continue
        truth = _ground_truth(row, str(path), line)
        if isinstance(truth, Problem):
            problems.append(truth)
            continue
        duration, timestamp = truth
        raw = _pair(row.get("pred"))
        difficulty = row.get("difficulty")
        records.append(
            {
                "line": line,
                "qid": row.get("qid"),
                "timestamp": list(timestamp),
                "pred": None if raw is None else normalize_segment(*raw, duration),
                "difficulty": float(difficulty)
                if _is_number(difficulty) and math.isfinite(difficulty)
                else None,
            }
        )
    if problems:
        raise DataValidationError(problems)
    return records


def evaluate_predictions(jsonl_path: str | Path, out_dir: str | Path) -> dict:
    """Write `vtg_metrics.json` and `vtg_predictions.jsonl` for a JSONL with `pred`; return the metrics."""
    records = read_prediction_records(jsonl_path)
    metrics = {**vtg_metrics(records), "file": str(jsonl_path)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    with (out / PREDICTIONS_FILE).open("w") as handle:
        for r in records:
            pred = None if r["pred"] is None else list(r["pred"])
            row = {"line": r["line"], "qid": r["qid"], "timestamp": r["timestamp"], "pred": pred}
            handle.write(json.dumps({**row, "iou": temporal_iou(r["pred"], r["timestamp"])}) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True, type=Path, help="JSONL with timestamp, duration and pred")
    parser.add_argument("--output_dir", required=True, type=Path, help="where the two result files go")
    args = parser.parse_args(argv)
    metrics = evaluate_predictions(args.file, args.output_dir)
    shown = {k: v for k, v in metrics.items() if k not in ("by_difficulty", "difficulty_edges", "file")}
    print(json.dumps(shown))


if __name__ == "__main__":
    main()
