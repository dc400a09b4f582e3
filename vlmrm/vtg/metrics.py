"""Temporal grounding metrics (pure functions): the same code scores training-time evaluation, `pred` files
and RL rewards.

For a predicted segment p = [p0, p1] and ground truth g = [g0, g1] (seconds):
    |p ∩ g| = max(0, min(p1, g1) - max(p0, g0)),   |p ∪ g| = |p| + |g| - |p ∩ g|
    IoU = |p ∩ g| / |p ∪ g|,   recall = |p ∩ g| / |g|,   precision = |p ∩ g| / |p|,
    f1 = 2 * precision * recall / (precision + recall)
Each is 0 when its denominator is 0 (a zero-length segment matches nothing) and for a missing
(unparseable) prediction. Windows are scored as given: a reversed one (p1 < p0) has no intersection
(IoU 0), one outside the clip keeps its outside part. This equals moment_detr's
``compute_temporal_iou_batch_paired`` (which divides by the hull max(p1, g1) - min(p0, g0): the
union whenever the windows overlap, and the numerator is 0 otherwise) up to float rounding. R@t = fraction of samples with IoU >= t; mIoU = mean IoU (both in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np

Segment = Sequence[float]
OverlapMode = Literal["recall", "precision", "f1"]
DEFAULT_THRESHOLDS = (
    0.3,
    0.5,
    0.7,
)  # the IoU thresholds every VTG benchmark (Charades-STA, ActivityNet) reports
# Difficulty buckets: terciles of the evaluated set's `difficulty` values, because the field has no fixed
# scale or direction (a TimeRFT annotation's 24.65 is 100 x the IoU of its `pred`, i.e. higher = easier
# there, while the synthetic data uses 1 - segment / duration, higher = harder), so only ranks within a
# set are meaningful; buckets are named by value.
DIFFICULTY_BUCKETS = ("low", "mid", "high")


def _intersection(pred: Segment, gt: Segment) -> float:
    return max(0.0, min(pred[1], gt[1]) - max(pred[0], gt[0]))


def temporal_iou(pred: Segment | None, gt: Segment) -> float:
    """|p ∩ g| / |p ∪ g| for segments [start, end]; 0 for a missing prediction or an empty union."""
    if pred is None:
        return 0.0
    inter = _intersection(pred, gt)
    union = (pred[1] - pred[0]) + (gt[1] - gt[0]) - inter
    return inter / union if union > 0 else 0.0


def segment_overlap(pred: Segment | None, gt: Segment, mode: OverlapMode = "recall") -> float:
    """recall = |p ∩ g| / |g|, precision = |p ∩ g| / |p|, f1 = their harmonic mean; 0 when undefined."""
    if pred is None:
        return 0.0
    inter = _intersection(pred, gt)
    pred_len, gt_len = pred[1] - pred[0], gt[1] - gt[0]
    recall = inter / gt_len if gt_len > 0 else 0.0
    precision = inter / pred_len if pred_len > 0 else 0.0
    if mode == "recall":
        return recall
    if mode == "precision":
        return precision
    if mode == "f1":
        return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    raise ValueError(f"mode must be 'recall', 'precision' or 'f1', got {mode!r}")


def _summary(ious: np.ndarray, unparsed: int, thresholds: Sequence[float]) -> dict[str, float]:
    """R@t for each t, mIoU, count and unparsed of one group of per-sample IoUs."""
    out: dict[str, float] = {f"R@{t:g}": float((ious >= t).mean()) for t in thresholds}
    out["mIoU"] = float(ious.mean())
    out["count"] = int(ious.size)
    out["unparsed"] = int(unparsed)
    return out


def difficulty_edges(difficulties: Sequence[float]) -> tuple[float, float]:
    """The 1/3 and 2/3 quantiles (numpy's linear interpolation) of the difficulties."""
    q1, q2 = np.quantile(np.asarray(difficulties, dtype=float), [1 / 3, 2 / 3])
    return float(q1), float(q2)


def difficulty_bucket(difficulty: float, edges: tuple[float, float]) -> str:
    """low: d <= q1, mid: q1 < d <= q2, high: d > q2 (ties with an edge fall into the lower bucket)."""
    return DIFFICULTY_BUCKETS[int(difficulty > edges[0]) + int(difficulty > edges[1])]


def vtg_metrics(records: Iterable[Mapping], thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict:
    """Overall and per-difficulty-bucket R@t / mIoU.

    Args:
        records: mappings with "timestamp" ([start, end] ground truth), "pred" ([start, end] or None when
            the answer was unparseable: IoU 0, counted in "unparsed") and optionally "difficulty" (None or
            absent: in the overall numbers only).
        thresholds: IoU thresholds of the R@t keys.

    Returns:
        {"R@0.3", "R@0.5", "R@0.7", "mIoU", "count", "unparsed", "by_difficulty": {bucket: same keys},
        "difficulty_edges": [q1, q2] or None}. Buckets without samples are left out.
    """
    records = list(records)
    if not records:
        raise ValueError("vtg_metrics needs at least one record")
    ious = np.array([temporal_iou(r["pred"], r["timestamp"]) for r in records])
    unparsed = np.array([r["pred"] is None for r in records])
    result: dict = _summary(ious, int(unparsed.sum()), thresholds)
    rated = [i for i, r in enumerate(records) if r.get("difficulty") is not None]
    result["by_difficulty"], result["difficulty_edges"] = {}, None
    if rated:
        edges = difficulty_edges([records[i]["difficulty"] for i in rated])
        result["difficulty_edges"] = list(edges)
        buckets = np.array([difficulty_bucket(records[i]["difficulty"], edges) for i in rated])
        for name in DIFFICULTY_BUCKETS:
            members = np.array(rated)[buckets == name]
            if members.size:
                result["by_difficulty"][name] = _summary(
                    ious[members], int(unparsed[members].sum()), thresholds
                )
    return result
