"""Score a VTG JSONL's `pred` field against its `timestamp`, without a model.

Usage: `python -m vlmrm.vtg.score_predictions --file data.jsonl --output_dir DIR` writes
- DIR/vtg_metrics.json: `vtg_metrics` of the file (R@0.3/0.5/0.7, mIoU, count, unparsed, per difficulty
  bucket) plus the source path;
- DIR/vtg_predictions.jsonl: one line per sample: line, qid, timestamp, pred (as scored, or null), iou.

`pred` is scored as written, as moment_detr / lighthouse and TimeChat / VTG-LLM do: a reversed window
(end < start) or a zero-length one overlaps nothing (IoU 0); one reaching outside [0, duration] is
scored with its outside part (a longer union). `--repair` (``repair=True``) first swaps reversed
windows and clamps to [0, duration] (`time_encoding.normalize_segment`), the rules of vlmrm's answer
parsers; that raises recall on poor predictions, so the metrics file records ``pred_repair`` and
how many windows were reversed / out of range either way. Anything that is not two finite numbers
(missing, null, a string, NaN, wrong length) is unparseable and scores IoU 0. The ground truth must be valid: `duration` > 0 and
0 <= start < end <= duration (seconds of the trimmed clip); otherwise every bad line is reported at once
in a `DataValidationError`, because a metric over silently skipped samples would not be comparable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlmrm.core.problems import DataValidationError, errors
from vlmrm.vtg.annotations import parse_vtg_jsonl
from vlmrm.vtg.metrics import temporal_iou, vtg_metrics
from vlmrm.vtg.time_encoding import normalize_segment

METRICS_FILE = "vtg_metrics.json"
PREDICTIONS_FILE = "vtg_predictions.jsonl"


def window_counts(records: list[dict]) -> dict[str, int]:
    """How many raw windows (``raw_pred``, else ``pred``) are reversed, zero-length or outside
    [0, duration]."""
    counts = {"reversed": 0, "zero_length": 0, "out_of_range": 0}
    for r in records:
        window = r.get("raw_pred", r["pred"])
        if window is None:
            continue
        start, end = window
        counts["reversed"] += end < start
        counts["zero_length"] += end == start
        counts["out_of_range"] += min(start, end) < 0 or max(start, end) > r["duration"]
    return counts


def read_prediction_records(jsonl_path: str | Path, repair: bool = False) -> list[dict]:
    """Per sample: {"line", "qid", "timestamp", "duration", "pred" (as written, repaired with
    ``repair``, or None), "raw_pred", "difficulty"}, read by :func:`vlmrm.vtg.annotations.parse_vtg_jsonl`
    (the training parser: same checks, same messages).

    Raises:
        DataValidationError: with every line whose JSON or ground truth is invalid.
    """
    table = parse_vtg_jsonl(jsonl_path)
    found = errors(table.problems)
    if found:
        raise DataValidationError(found)
    return [
        {
            "line": sample.line,
            "qid": sample.qid,
            "timestamp": list(sample.timestamp),
            "duration": sample.duration,
            "raw_pred": None if sample.pred is None else list(sample.pred),
            "pred": None
            if sample.pred is None
            else (normalize_segment(*sample.pred, sample.duration) if repair else tuple(sample.pred)),
            "difficulty": sample.difficulty,
        }
        for sample in table.samples
    ]


def write_results(records: list[dict], out_dir: str | Path, source: str, extra: dict | None = None) -> dict:
    """`vtg_metrics.json` (+ ``extra``, e.g. the parse rate) and `vtg_predictions.jsonl` (one line per
    record, with its IoU and any extra keys such as the generated text); returns the metrics."""
    metrics = {**vtg_metrics(records), **(extra or {}), "file": source}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    with (out / PREDICTIONS_FILE).open("w") as handle:
        for r in records:
            row = {**r, "pred": None if r["pred"] is None else list(r["pred"])}
            handle.write(json.dumps({**row, "iou": temporal_iou(r["pred"], r["timestamp"])}) + "\n")
    return metrics


def evaluate_predictions(jsonl_path: str | Path, out_dir: str | Path, repair: bool = False) -> dict:
    """Write `vtg_metrics.json` and `vtg_predictions.jsonl` for a JSONL with `pred`; return the metrics
    (with ``pred_repair`` and the counts of :func:`window_counts`)."""
    records = read_prediction_records(jsonl_path, repair)
    extra = {"pred_repair": repair, **window_counts(records)}
    return write_results(records, out_dir, str(jsonl_path), extra)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True, type=Path, help="JSONL with timestamp, duration and pred")
    parser.add_argument("--output_dir", required=True, type=Path, help="where the two result files go")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="swap reversed windows and clamp to [0, duration] before scoring (default: as written, "
        "as moment_detr); recorded as pred_repair in the metrics",
    )
    args = parser.parse_args(argv)
    metrics = evaluate_predictions(args.file, args.output_dir, args.repair)
    shown = {k: v for k, v in metrics.items() if k not in ("by_difficulty", "difficulty_edges", "file")}
    print(json.dumps(shown))


if __name__ == "__main__":
    main()
