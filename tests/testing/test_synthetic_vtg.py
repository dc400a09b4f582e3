"""Synthetic VTG data: the annotation JSONL fields (docs/vtg.md), real mp4s whose decoded frames show the event's colour exactly
on the labelled frames (and nowhere else in the file), and the constant-segment baseline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vlmrm.media.video import BACKENDS, probe_video
from vlmrm.testing.synthetic import read_frames, shape_stamp
from vlmrm.testing.synthetic_vtg import (
    OBJECT_FRACTION,
    SyntheticVTGConfig,
    best_constant_segment,
    colour_pixel_counts,
    constant_baseline_miou,
    generate_vtg_dataset,
    plan_clip,
)

REPO = Path(__file__).resolve().parents[2]
VISIBLE = 0.5  # >= half the shape's pixels match its colour after decoding (measured: >= 0.85)
ABSENT = 0.05  # <= 5% of a shape's area matches elsewhere (measured: 0 pixels)
REQUIRED = {"video", "duration", "timestamp", "sentence"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    config = SyntheticVTGConfig(
        out_dir=tmp_path_factory.mktemp("vtg"), num_train=8, num_test=4, trim_fraction=0.5, seed=0
    )
    generate_vtg_dataset(config)
    rows = [
        json.loads(line) for split in ("train", "test") for line in (config.out_dir / f"{split}.jsonl").open()
    ]
    return config, rows


def test_jsonl_follows_the_reference_format(dataset):
    config, rows = dataset
    assert len(rows) == 12 and len({r["qid"] for r in rows}) == 12
    for r in rows:
        assert REQUIRED <= set(r)
        start, end = r["timestamp"]
        assert 0 <= start < end <= r["duration"]
        assert config.min_duration <= r["duration"] <= config.max_duration
        assert r["difficulty"] == pytest.approx(1 - (end - start) / r["duration"])
        assert r["sentence"] == f"the {r['event_colour']} {r['event_shape']} appears"
        frames = np.array([start, end, r["duration"]]) * r["fps"]
        assert np.allclose(frames, np.round(frames))  # segment ends fall on frame boundaries
        if "video_start" in r:
            assert 0 < r["video_start"] < r["video_end"]
            assert r["video_end"] - r["video_start"] == pytest.approx(r["duration"])
    assert any("video_start" in r for r in rows) and any("video_start" not in r for r in rows)
    assert any(r["distractor"] for r in rows) and any(not r["distractor"] for r in rows)


def test_decoded_event_colour_is_visible_exactly_on_labelled_frames(dataset):
    config, rows = dataset
    side = round(OBJECT_FRACTION * config.size)
    for r in rows:
        path = config.out_dir / r["video"]
        info = probe_video(path, BACKENDS["pyav"])
        assert (info.fps, info.total_frames) == (config.fps, r["file_frames"])
        frames = read_frames(path)  # PyAV, every frame of the file
        assert len(frames) == r["file_frames"]
        offset = round(r.get("video_start", 0.0) * r["fps"])  # clip frame 0 = file frame `offset`
        first, stop = (offset + round(t * r["fps"]) for t in r["timestamp"])
        labelled = np.zeros(len(frames), bool)
        labelled[first:stop] = (
            True  # frame i covers [i/fps, (i+1)/fps): inside [start, end] iff first <= i < stop
        )
        share = colour_pixel_counts(frames, r["event_colour"]) / shape_stamp(r["event_shape"], side).sum()
        assert (share[labelled] >= VISIBLE).all(), r["qid"]
        assert (share[~labelled] <= ABSENT).all(), r["qid"]  # also outside the trim window
        if r["distractor"]:
            d = r["distractor"]
            shown = np.zeros(len(frames), bool)
            shown[d["first"] : d["stop"]] = True
            d_share = colour_pixel_counts(frames, d["colour"]) / shape_stamp(d["shape"], side).sum()
            assert (d_share[shown] >= VISIBLE).all() and (d_share[~shown] <= ABSENT).all()


def test_plans_are_deterministic_per_seed_and_index():
    config = SyntheticVTGConfig(out_dir=Path("."), seed=5)
    assert plan_clip(config, "train", 3) == plan_clip(config, "train", 3)
    assert plan_clip(config, "train", 3) != plan_clip(config, "train", 4)
    assert plan_clip(config, "train", 3) != plan_clip(config, "test", 3)


def test_constant_baseline_hand_case():
    # Train: every ground truth is the relative segment [0.2, 0.6] (durations 10, 20, 5), so the best
    # constant segment is exactly [0.2, 0.6] with train mIoU 1.
    train = [
        {"timestamp": [2.0, 6.0], "duration": 10.0},
        {"timestamp": [4.0, 12.0], "duration": 20.0},
        SimpleNamespace(timestamp=(1.0, 3.0), duration=5.0),  # sample objects work too
    ]
    segment, train_miou = best_constant_segment(train)
    assert segment == pytest.approx((0.2, 0.6)) and train_miou == pytest.approx(1.0)
    # Test, relative: [0.2, 0.6] -> IoU 1; [0.4, 0.8] -> inter [0.4, 0.6] = 0.2, union [0.2, 0.8] = 0.6,
    # IoU 1/3; [0.6, 1.0] -> touching, IoU 0. mIoU = (1 + 1/3 + 0) / 3 = 4/9.
    test = [
        {"timestamp": [20.0, 60.0], "duration": 100.0},
        {"timestamp": [4.0, 8.0], "duration": 10.0},
        {"timestamp": [6.0, 10.0], "duration": 10.0},
    ]
    assert constant_baseline_miou(train, test) == pytest.approx(4 / 9)


def test_constant_baseline_weighs_every_training_sample():
    # Relative truths [0, 0.4], [0, 0.4], [0, 1]. For [0, b] with b >= 0.4 the mIoU is
    # (0.4/b + 0.4/b + b) / 3: 0.8 at b = 0.4, 0.6 at b = 1; for b < 0.4 it is (2b/0.4 + b) / 3 < 0.8.
    # Segments not starting at 0 only lose overlap, so [0, 0.4] with mIoU 0.8 is best.
    train = [{"timestamp": [0.0, 4.0], "duration": 10.0}] * 2 + [{"timestamp": [0.0, 10.0], "duration": 10.0}]
    segment, miou = best_constant_segment(train)
    assert segment == pytest.approx((0.0, 0.4)) and miou == pytest.approx(0.8)


@pytest.mark.slow
def test_cli_writes_data_and_baseline(tmp_path):
    command = [sys.executable, "-m", "vlmrm.testing.synthetic_vtg", "--out", str(tmp_path)]
    command += ["--num_train", "3", "--num_test", "2", "--seed", "1", "--max_duration", "5"]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"] == {"train": 3, "test": 2}
    assert 0.0 <= summary["constant_baseline"]["test_mIoU"] <= 1.0
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").open()]
    assert all(4.0 <= r["duration"] <= 5.0 and (tmp_path / r["video"]).is_file() for r in rows)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="size"):
        SyntheticVTGConfig(out_dir=Path("."), size=63)
    with pytest.raises(ValueError, match="trim_fraction"):
        SyntheticVTGConfig(out_dir=Path("."), trim_fraction=1.5)
