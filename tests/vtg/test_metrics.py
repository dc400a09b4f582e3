"""IoU / overlap / R@k / mIoU on hand-computed cases, and evaluation from a JSONL's `pred` field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vlmrm.core.problems import DataValidationError
from vlmrm.vtg.metrics import difficulty_bucket, difficulty_edges, segment_overlap, temporal_iou, vtg_metrics
from vlmrm.vtg.score_predictions import METRICS_FILE, PREDICTIONS_FILE, evaluate_predictions

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "pred, gt, expected",
    [
        ([2, 6], [4, 8], 1 / 3),  # inter [4, 6] = 2; union 4 + 4 - 2 = 6
        ([1, 3], [1, 3], 1.0),  # identical
        ([0, 1], [2, 3], 0.0),  # disjoint
        ([0, 2], [2, 4], 0.0),  # touching: inter 0
        ([3, 4], [0, 10], 0.1),  # contained: inter 1; union 10
        ([5, 15], [0, 10], 1 / 3),  # inter [5, 10] = 5; union [0, 15] = 15
        ([5, 5], [0, 10], 0.0),  # zero-length prediction: inter 0, union 10
        ([5, 5], [5, 5], 0.0),  # both zero-length: union 0 -> defined as 0
        (None, [0, 10], 0.0),  # unparseable
    ],
)
def test_temporal_iou_hand_cases(pred, gt, expected):
    assert temporal_iou(pred, gt) == pytest.approx(expected)


@pytest.mark.parametrize(
    "pred, gt, recall, precision, f1",
    [
        # inter [4, 6] = 2; recall 2 / |gt| 6 = 1/3; precision 2 / |pred| 4 = 1/2;
        # f1 = 2 * (1/2)(1/3) / (1/2 + 1/3) = (1/3) / (5/6) = 2/5
        ([2, 6], [4, 10], 1 / 3, 1 / 2, 2 / 5),
        # pred covers gt: recall 2 / 2 = 1; precision 2 / 10 = 0.2; f1 = 2 * 0.2 / 1.2 = 1/3
        ([0, 10], [4, 6], 1.0, 0.2, 1 / 3),
        ([0, 1], [2, 3], 0.0, 0.0, 0.0),  # disjoint: f1's 0/0 is 0
        ([5, 5], [0, 10], 0.0, 0.0, 0.0),  # zero-length prediction: precision's 0/0 is 0
        (None, [0, 10], 0.0, 0.0, 0.0),
    ],
)
def test_segment_overlap_hand_cases(pred, gt, recall, precision, f1):
    assert segment_overlap(pred, gt, "recall") == pytest.approx(recall)
    assert segment_overlap(pred, gt, "precision") == pytest.approx(precision)
    assert segment_overlap(pred, gt, "f1") == pytest.approx(f1)


def test_segment_overlap_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        segment_overlap([0, 1], [0, 1], "iou")


def test_vtg_metrics_hand_case():
    gt = [0, 10]
    preds = [[0, 10], [0, 6], [0, 5], [0, 4], None]  # IoU with [0, 10]: 1.0, 0.6, 0.5, 0.4, 0 (unparsed)
    records = [{"timestamp": gt, "pred": p, "difficulty": d} for p, d in zip(preds, [1, 2, 3, 4, 5])]
    result = vtg_metrics(records)
    assert result["R@0.3"] == pytest.approx(4 / 5)  # 1.0, 0.6, 0.5, 0.4 >= 0.3
    assert result["R@0.5"] == pytest.approx(3 / 5)  # 1.0, 0.6, 0.5: the threshold itself counts
    assert result["R@0.7"] == pytest.approx(1 / 5)
    assert result["mIoU"] == pytest.approx(2.5 / 5)  # (1 + 0.6 + 0.5 + 0.4 + 0) / 5
    assert (result["count"], result["unparsed"]) == (5, 1)
    # terciles of 1..5 (linear): 1 + 4/3 = 2.333 and 1 + 8/3 = 3.667
    assert result["difficulty_edges"] == pytest.approx([7 / 3, 11 / 3])
    buckets = result["by_difficulty"]
    assert buckets["low"]["mIoU"] == pytest.approx(0.8)  # d = 1, 2: (1 + 0.6) / 2
    assert buckets["mid"]["mIoU"] == pytest.approx(0.5)  # d = 3
    assert buckets["high"]["mIoU"] == pytest.approx(0.2)  # d = 4, 5: (0.4 + 0) / 2
    assert (buckets["high"]["count"], buckets["high"]["unparsed"]) == (2, 1)
    assert buckets["high"]["R@0.3"] == pytest.approx(0.5)


def test_vtg_metrics_without_difficulty_and_custom_thresholds():
    records = [
        {"timestamp": [0, 10], "pred": [0, 5]},
        {"timestamp": [0, 10], "pred": [0, 10], "difficulty": None},
    ]
    result = vtg_metrics(records, thresholds=(0.5, 0.9))
    assert (result["R@0.5"], result["R@0.9"], result["mIoU"]) == pytest.approx((1.0, 0.5, 0.75))
    assert result["by_difficulty"] == {} and result["difficulty_edges"] is None
    with pytest.raises(ValueError):
        vtg_metrics([])


def test_difficulty_buckets_keep_ties_together():
    edges = difficulty_edges([1, 1, 1, 2])  # quantiles of [1, 1, 1, 2] at 1/3 and 2/3 are both 1
    assert edges == (1.0, 1.0)
    assert [difficulty_bucket(d, edges) for d in (1, 1, 2)] == ["low", "low", "high"]


# Fixture: IoU of each line worked out by hand.
FIXTURE = [
    # A TimeRFT annotation line. inter [11.3, 15.0] = 3.7; union [0, 15.01] = 15.01;
    # IoU = 3.7 / 15.01 = 0.246502 (its `difficulty` 24.6502 is exactly 100 x this IoU).
    {
        "video": "./data/videos/a.mp4",
        "duration": 24.900000000000034,
        "timestamp": [11.3, 15.0],
        "sentence": "the paper bill has an image of a woman holding up a paper",
        "qid": "q1",
        "video_start": 404.2,
        "video_end": 429.1,
        "difficulty": 24.650233177881407,
        "pred": [0.0, 15.01],
    },
    # inter [4, 6] = 2; union [2, 8] = 6; IoU = 1/3
    {"video": "b.mp4", "duration": 10, "timestamp": [2, 6], "sentence": "s", "qid": "q2", "pred": [4, 8]},
    # reversed pred [5, 0] overlaps nothing: IoU 0 (repaired: [0, 5] = the ground truth, IoU 1)
    {"video": "c.mp4", "duration": 10, "timestamp": [0, 5], "sentence": "s", "qid": "q3", "pred": [5, 0]},
    # pred [5, 30] as written: inter [6, 10] = 4; union [5, 30] = 25; IoU 0.16
    # (repaired: clamps to [5, 10], union [5, 10] = 5, IoU 0.8)
    {"video": "d.mp4", "duration": 10, "timestamp": [6, 10], "sentence": "s", "qid": "q4", "pred": [5, 30]},
    # no prediction: unparsed, IoU 0
    {"video": "e.mp4", "duration": 10, "timestamp": [1, 3], "sentence": "s", "qid": "q5", "pred": None},
    # a string is not [start, end]: unparsed, IoU 0
    {
        "video": "f.mp4",
        "duration": 20,
        "timestamp": [0, 10],
        "sentence": "s",
        "qid": "q6",
        "pred": "from 0 to 10",
    },
]
FIXTURE_IOUS = [3.7 / 15.01, 1 / 3, 0.0, 0.16, 0.0, 0.0]
FIXTURE_IOUS_REPAIRED = [3.7 / 15.01, 1 / 3, 1.0, 0.8, 0.0, 0.0]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_evaluate_predictions_scores_windows_as_written(tmp_path):
    data = write_jsonl(tmp_path / "preds.jsonl", FIXTURE)
    metrics = evaluate_predictions(data, tmp_path / "out")
    # IoUs 0.246502, 1/3, 0, 0.16, 0, 0: R@0.3 = 1/6; R@0.5 = R@0.7 = 0
    assert (metrics["R@0.3"], metrics["R@0.5"], metrics["R@0.7"]) == pytest.approx((1 / 6, 0.0, 0.0))
    # mIoU = (0.246502 + 0.333333 + 0.16) / 6 = 0.739836 / 6 = 0.123306
    assert metrics["mIoU"] == pytest.approx(0.123306, abs=1e-6)
    assert (metrics["count"], metrics["unparsed"]) == (6, 2)
    assert metrics["pred_repair"] is False
    assert (metrics["reversed"], metrics["zero_length"], metrics["out_of_range"]) == (1, 0, 1)
    lines = [json.loads(line) for line in (tmp_path / "out" / PREDICTIONS_FILE).read_text().splitlines()]
    assert [row["iou"] for row in lines] == pytest.approx(FIXTURE_IOUS)
    assert lines[2]["pred"] == [5, 0] and lines[3]["pred"] == [5, 30]


def test_evaluate_predictions_with_repair_reproduces_hand_computed_metrics(tmp_path):
    data = write_jsonl(tmp_path / "preds.jsonl", FIXTURE)
    metrics = evaluate_predictions(data, tmp_path / "out", repair=True)
    assert metrics["pred_repair"] is True and metrics["reversed"] == 1
    # R@0.5: 1.0 and 0.8 of 6 -> 1/3. R@0.3: 1/3, 1.0, 0.8 -> 1/2. R@0.7: 1.0, 0.8 -> 1/3.
    assert metrics["R@0.5"] == pytest.approx(2 / 6)
    assert metrics["R@0.3"] == pytest.approx(3 / 6)
    assert metrics["R@0.7"] == pytest.approx(2 / 6)
    # mIoU = (0.246502 + 0.333333 + 1 + 0.8 + 0 + 0) / 6 = 2.379836 / 6 = 0.396639
    assert metrics["mIoU"] == pytest.approx(0.396639, abs=1e-6)
    assert (metrics["count"], metrics["unparsed"]) == (6, 2)
    assert json.loads((tmp_path / "out" / METRICS_FILE).read_text())["mIoU"] == metrics["mIoU"]
    lines = [json.loads(line) for line in (tmp_path / "out" / PREDICTIONS_FILE).read_text().splitlines()]
    assert [row["qid"] for row in lines] == [f"q{i}" for i in range(1, 7)]
    assert [row["iou"] for row in lines] == pytest.approx(FIXTURE_IOUS_REPAIRED)
    assert lines[2]["pred"] == [0.0, 5.0] and lines[3]["pred"] == [5.0, 10.0] and lines[4]["pred"] is None


@pytest.mark.slow
def test_evaluate_cli(tmp_path):
    data = write_jsonl(tmp_path / "preds.jsonl", FIXTURE)
    command = [
        sys.executable,
        "-m",
        "vlmrm.vtg.score_predictions",
        "--file",
        str(data),
        "--output_dir",
        str(tmp_path / "o"),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["R@0.5"] == pytest.approx(0.0)
    repaired = subprocess.run([*command, "--repair"], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(repaired.stdout)["R@0.5"] == pytest.approx(1 / 3)
    assert json.loads(repaired.stdout)["pred_repair"] is True
    assert (tmp_path / "o" / METRICS_FILE).is_file() and (tmp_path / "o" / PREDICTIONS_FILE).is_file()


def test_evaluate_reports_every_bad_ground_truth_line(tmp_path):
    good = FIXTURE[1]
    rows = [good, {**good, "timestamp": [6, 2]}, {**good, "duration": -1}, {**good, "timestamp": [0, 11]}]
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    with data.open("a") as handle:
        handle.write("{not json\n")
    with pytest.raises(DataValidationError) as raised:
        evaluate_predictions(data, tmp_path / "out")
    assert [(p.line, p.field) for p in raised.value.problems] == [
        (2, "timestamp"),
        (3, "duration"),
        (4, "timestamp"),
        (5, None),
    ]
    assert not (tmp_path / "out").exists()  # nothing written from a partly valid file


def moment_detr_iou(pred, gt):
    """moment_detr's ``compute_temporal_iou_batch_paired`` for one pair, written out here: the
    intersection over the hull max(p1, g1) - min(p0, g0); 0 where the hull is 0."""
    inter = max(0.0, min(pred[1], gt[1]) - max(pred[0], gt[0]))
    hull = max(pred[1], gt[1]) - min(pred[0], gt[0])
    return inter / hull if hull != 0 else 0.0


@pytest.mark.parametrize(
    "pred, gt, expected",
    [
        ([6, 2], [2, 6], 0.0),  # reversed, same endpoints as the ground truth: no overlap as written
        ([9, 1], [3, 4], 0.0),  # reversed around the ground truth
        ([4, 4], [2, 6], 0.0),  # degenerate (zero length) inside the ground truth
        ([-4, 4], [0, 4], 0.5),  # partly before the clip: inter 4, union [-4, 4] = 8
        ([8, 14], [6, 10], 2 / 8),  # partly after the clip (duration 10): inter [8, 10], union [6, 14]
        ([12, 15], [6, 10], 0.0),  # wholly after the clip
        ([-3, -1], [0, 2], 0.0),  # wholly before the clip
    ],
)
def test_raw_windows_score_as_moment_detr(pred, gt, expected):
    assert temporal_iou(pred, gt) == pytest.approx(expected)
    assert temporal_iou(pred, gt) == pytest.approx(moment_detr_iou(pred, gt), abs=1e-12)


def test_iou_equals_moment_detr_on_random_windows():
    rng = np.random.default_rng(5)
    for _ in range(2000):
        gt = sorted(rng.uniform(0, 30, size=2))
        pred = rng.uniform(-10, 40, size=2)  # any order, any range, like raw model output
        assert temporal_iou(pred, gt) == pytest.approx(moment_detr_iou(pred, gt), abs=1e-12)


def test_repair_raises_recall_on_random_predictions(tmp_path):
    """Why repair is opt-in: on random windows it raises R@0.7 (numbers in docs/fidelity.md)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(400):
        start = float(rng.uniform(0, 25))
        gt = [round(start, 2), round(float(rng.uniform(start + 1, 30)), 2)]
        pred = [round(float(v), 2) for v in rng.uniform(-5, 35, size=2)]
        rows.append(
            {"video": "v.mp4", "duration": 30, "timestamp": gt, "sentence": "s", "qid": f"q{i}", "pred": pred}
        )
    data = write_jsonl(tmp_path / "random.jsonl", rows)
    raw = evaluate_predictions(data, tmp_path / "raw")
    repaired = evaluate_predictions(data, tmp_path / "repaired", repair=True)
    assert repaired["R@0.7"] > raw["R@0.7"] and repaired["mIoU"] > raw["mIoU"]
    print({k: (raw[k], repaired[k]) for k in ("R@0.3", "R@0.5", "R@0.7", "mIoU")})


def test_vtg_task_without_model_scores_raw_or_repaired(tmp_path):
    from vlmrm.vtg.evaluate import VTGEvalConfig, run_vtg_evaluation

    data = write_jsonl(tmp_path / "preds.jsonl", FIXTURE)
    raw = run_vtg_evaluation(VTGEvalConfig(annotation_file=str(data), output_dir=str(tmp_path / "a")))
    repaired = run_vtg_evaluation(
        VTGEvalConfig(annotation_file=str(data), output_dir=str(tmp_path / "b"), repair_pred=True)
    )
    assert (raw["pred_repair"], raw["R@0.5"]) == (False, 0.0)
    assert repaired["pred_repair"] is True and repaired["R@0.5"] == pytest.approx(1 / 3)
