"""Synthetic video temporal grounding data: real mp4s in which the event a sentence names happens only inside
a known segment, so a model that grounds it can score far above any constant guess.

Each clip is a grey background (`vlmrm.testing.synthetic` palette, shapes and mp4 writer) where a coloured shape
is visible exactly on the frames of [start, end) ("the red square appears"); about half the clips also show
a distractor of another colour during its own random segment. Times are whole frames: frame i covers
[i / fps, (i + 1) / fps), so the labelled segment [a / fps, b / fps] holds exactly frames a..b-1. Some
samples are trim windows (video_start / video_end) inside a longer file whose extra frames never show the
event. JSONL lines follow docs/vtg.md, "Annotations", plus metadata keys (event_colour, event_shape,
distractor, fps, file_frames); difficulty = 1 - segment length / clip duration.

Usage: `python -m vlmrm.testing.synthetic_vtg --out DIR --num_train N --num_test M --seed S` writes
DIR/videos/*.mp4, DIR/train.jsonl, DIR/test.jsonl (video paths relative to DIR, i.e. video_dir = DIR) and
DIR/summary.json with the best constant-segment baseline (`constant_baseline_miou`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vlmrm.testing.synthetic import (
    BACKGROUND_RGB,
    CODEC_SETTINGS,
    PALETTE,
    SHAPES,
    check_clip_settings,
    shape_stamp,
    write_mp4,
)

# Object side / frame side: two objects fit side by side (event and distractor use opposite halves).
OBJECT_FRACTION = 0.4
MIN_EVENT_SECONDS = 1.0  # shortest event: 8 frames at 8 fps, long enough to see in a 32-frame sample
MAX_EVENT_FRACTION = (
    0.4  # longest event / clip: >= 60% of every clip lacks it, so a constant guess scores low
)
TRIM_PAD_SECONDS = (1.0, 3.0)  # range of the extra file content before and after a trim window
# A pixel shows a palette colour when closer than this (RGB Euclidean); half the smallest gap between a
# palette colour and the background or another palette colour (green-grey, 123).
COLOUR_MATCH_DISTANCE = 60.0
CONSTANT_GRID_BINS = 100  # constant-baseline search grid: segment ends on multiples of 1/100 of the clip
CANDIDATE_CHUNK = 512  # candidate segments scored at once: bounds memory at 512 * samples floats


@dataclass(frozen=True)
class SyntheticVTGConfig:
    """What to generate; every field is also a CLI flag of `python -m vlmrm.testing.synthetic_vtg`."""

    out_dir: Path
    num_train: int = 200
    num_test: int = 50
    seed: int = 0
    size: int = 64
    fps: int = 8
    min_duration: float = 4.0
    max_duration: float = 12.0
    trim_fraction: float = 0.25
    distractor_fraction: float = 0.5
    codec: Literal["mpeg4", "h264"] = "mpeg4"

    def __post_init__(self) -> None:
        check_clip_settings(self)
        if (
            not MIN_EVENT_SECONDS
            <= MAX_EVENT_FRACTION * self.min_duration
            <= MAX_EVENT_FRACTION * self.max_duration
        ):
            raise ValueError(
                f"need {MIN_EVENT_SECONDS} <= {MAX_EVENT_FRACTION} * min_duration <= ... * max_duration"
            )
        for name in ("trim_fraction", "distractor_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.codec not in CODEC_SETTINGS:
            raise ValueError(f"codec must be one of {sorted(CODEC_SETTINGS)}, got {self.codec!r}")


@dataclass(frozen=True)
class Appearance:
    """One object: colour, shape, top-left corner (x, y), visible on file frames [first, stop)."""

    colour: str
    shape: str
    x: int
    y: int
    first: int
    stop: int


@dataclass(frozen=True)
class ClipPlan:
    """Everything about one sample except the pixels; frame numbers are of the file."""

    split: str
    index: int
    pre_frames: int  # file frames before the trim window (0: not trimmed)
    clip_frames: int
    post_frames: int
    trimmed: bool
    event: Appearance
    distractor: Appearance | None

    @property
    def video(self) -> str:
        return f"videos/{self.split}_{self.index:04d}.mp4"

    @property
    def file_frames(self) -> int:
        return self.pre_frames + self.clip_frames + self.post_frames


def plan_clip(config: SyntheticVTGConfig, split: str, index: int) -> ClipPlan:
    """Draw one sample's layout and timing from its own stream (seed, split, index); no pixels."""
    rng = np.random.default_rng([config.seed, ("train", "test").index(split), index])
    fps = config.fps
    n = int(rng.integers(round(config.min_duration * fps), round(config.max_duration * fps) + 1))
    length = int(rng.integers(round(MIN_EVENT_SECONDS * fps), int(MAX_EVENT_FRACTION * n) + 1))
    start = int(rng.integers(0, n - length + 1))
    trimmed = bool(rng.random() < config.trim_fraction)
    pad_lo, pad_hi = (round(s * fps) for s in TRIM_PAD_SECONDS)
    pre, post = (int(rng.integers(pad_lo, pad_hi + 1)) if trimmed else 0 for _ in range(2))
    side = round(OBJECT_FRACTION * config.size)
    half = config.size // 2
    event_half = int(rng.integers(2))

    def corner(which_half: int) -> tuple[int, int]:
        x = which_half * half + int(rng.integers(0, half - side + 1))
        return x, int(rng.integers(0, config.size - side + 1))

    colour, shape = str(rng.choice(list(PALETTE))), str(rng.choice(SHAPES))
    event = Appearance(colour, shape, *corner(event_half), pre + start, pre + start + length)
    distractor = None
    if rng.random() < config.distractor_fraction:
        other = str(rng.choice([c for c in PALETTE if c != colour]))
        total = pre + n + post
        d_first = int(rng.integers(0, total))
        d_stop = int(rng.integers(d_first + 1, total + 1))
        distractor = Appearance(other, str(rng.choice(SHAPES)), *corner(1 - event_half), d_first, d_stop)
    return ClipPlan(split, index, pre, n, post, trimmed, event, distractor)


def render(plan: ClipPlan, config: SyntheticVTGConfig) -> np.ndarray:
    """RGB frames (file_frames, H, W, 3) uint8 of the whole file."""
    frames = np.empty((plan.file_frames, config.size, config.size, 3), np.uint8)
    frames[:] = BACKGROUND_RGB
    side = round(OBJECT_FRACTION * config.size)
    for item in (plan.event, plan.distractor):
        if item is not None:
            window = frames[
                item.first : item.stop, item.y : item.y + side, item.x : item.x + side
            ]  # (t, s, s, 3)
            window[:, shape_stamp(item.shape, side)] = PALETTE[item.colour]
    return frames


def annotation(plan: ClipPlan, fps: int) -> dict:
    """The JSONL line of a sample: the annotation fields (docs/vtg.md), then metadata keys. Times are in seconds of the clip."""
    first, stop = plan.event.first - plan.pre_frames, plan.event.stop - plan.pre_frames
    row: dict = {
        "video": plan.video,
        "duration": plan.clip_frames / fps,
        "timestamp": [first / fps, stop / fps],
        "sentence": f"the {plan.event.colour} {plan.event.shape} appears",
        "qid": f"synthetic|{plan.split}|{plan.index:04d}",
        "difficulty": 1.0 - (stop - first) / plan.clip_frames,
    }
    if plan.trimmed:
        row["video_start"] = plan.pre_frames / fps
        row["video_end"] = (plan.pre_frames + plan.clip_frames) / fps
    distractor = asdict(plan.distractor) if plan.distractor else None  # frames of the file
    row.update(event_colour=plan.event.colour, event_shape=plan.event.shape, distractor=distractor)
    row.update(fps=fps, file_frames=plan.file_frames)
    return row


def colour_pixel_counts(frames: np.ndarray, colour: str) -> np.ndarray:
    """(T,) number of pixels per frame within `COLOUR_MATCH_DISTANCE` of the palette colour."""
    distance = np.linalg.norm(frames.astype(np.float32) - np.array(PALETTE[colour], np.float32), axis=-1)
    return (distance < COLOUR_MATCH_DISTANCE).sum(axis=(1, 2))


def _relative_segment(sample) -> tuple[float, float]:
    """timestamp / duration of a JSONL row (mapping) or a sample object with those attributes."""
    if isinstance(sample, Mapping):
        (start, end), duration = sample["timestamp"], sample["duration"]
    else:
        (start, end), duration = sample.timestamp, sample.duration
    return start / duration, end / duration


def _mean_ious(candidates: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(C,) mean over samples of IoU(candidate c, truth n) for (C, 2) candidates and (N, 2) truths."""
    means = []
    for chunk in np.array_split(candidates, max(1, -(-len(candidates) // CANDIDATE_CHUNK))):
        a, b = chunk[:, :1], chunk[:, 1:]  # (c, 1)
        g0, g1 = truth[None, :, 0], truth[None, :, 1]  # (1, N)
        inter = np.clip(np.minimum(b, g1) - np.maximum(a, g0), 0.0, None)  # (c, N)
        union = (b - a) + (g1 - g0) - inter
        means.append(np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0).mean(axis=1))
    return np.concatenate(means)


def best_constant_segment(
    samples: Sequence, grid_bins: int = CONSTANT_GRID_BINS
) -> tuple[tuple[float, float], float]:
    """The relative segment [i/B, j/B] (0 <= i < j <= B) with the highest mIoU on `samples`, and that mIoU.

    Exhaustive over the grid (B (B + 1) / 2 candidates); ties go to the first in (i, j) order.
    """
    truth = np.array([_relative_segment(s) for s in samples], dtype=float)  # (N, 2)
    i, j = np.triu_indices(grid_bins + 1, k=1)
    candidates = np.stack([i, j], axis=1) / grid_bins  # (C, 2)
    scores = _mean_ious(candidates, truth)
    best = int(np.argmax(scores))
    return (float(candidates[best, 0]), float(candidates[best, 1])), float(scores[best])


def constant_baseline_miou(
    train_samples: Sequence, test_samples: Sequence, grid_bins: int = CONSTANT_GRID_BINS
) -> float:
    """mIoU on `test_samples` of the single relative segment that maximises mIoU on `train_samples`.

    Every test sample gets the same prediction [a * duration, b * duration]: what a model that ignores
    the video and the sentence can reach at best. A grounding model must beat it to show it grounds.
    """
    segment, _ = best_constant_segment(train_samples, grid_bins)
    truth = np.array([_relative_segment(s) for s in test_samples], dtype=float)
    return float(_mean_ious(np.array([segment]), truth)[0])


def generate_vtg_dataset(config: SyntheticVTGConfig) -> dict:
    """Write videos, train.jsonl, test.jsonl and summary.json; returns the summary."""
    start = time.perf_counter()
    (config.out_dir / "videos").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {}
    for split, count in (("train", config.num_train), ("test", config.num_test)):
        rows[split] = []
        for index in range(count):
            plan = plan_clip(config, split, index)
            write_mp4(config.out_dir / plan.video, render(plan, config), config.fps, config.codec)
            rows[split].append(annotation(plan, config.fps))
        lines = "".join(json.dumps(row) + "\n" for row in rows[split])
        (config.out_dir / f"{split}.jsonl").write_text(lines)
    summary: dict = {"config": {**asdict(config), "out_dir": str(config.out_dir)}, "counts": {}}
    summary["counts"] = {split: len(r) for split, r in rows.items()}
    if rows["train"] and rows["test"]:
        segment, train_miou = best_constant_segment(rows["train"])
        summary["constant_baseline"] = {
            "relative_segment": list(segment),
            "train_mIoU": train_miou,
            "test_mIoU": constant_baseline_miou(rows["train"], rows["test"]),
        }
    summary["seconds"] = time.perf_counter() - start
    (config.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def parse_args(argv: list[str] | None = None) -> SyntheticVTGConfig:
    """CLI flags -> config; defaults come from the dataclass so they are defined once."""
    defaults = SyntheticVTGConfig(out_dir=Path("."))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--num_train", type=int, default=defaults.num_train, help="training samples")
    parser.add_argument("--num_test", type=int, default=defaults.num_test, help="test samples")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument("--size", type=int, default=defaults.size, help="frame width = height, even")
    parser.add_argument("--fps", type=int, default=defaults.fps, help="frames per second")
    parser.add_argument("--min_duration", type=float, default=defaults.min_duration, help="shortest clip, s")
    parser.add_argument("--max_duration", type=float, default=defaults.max_duration, help="longest clip, s")
    parser.add_argument("--trim_fraction", type=float, default=defaults.trim_fraction, help="P(trim window)")
    parser.add_argument(
        "--distractor_fraction", type=float, default=defaults.distractor_fraction, help="P(distractor)"
    )
    parser.add_argument("--codec", choices=sorted(CODEC_SETTINGS), default=defaults.codec, help="video codec")
    args = vars(parser.parse_args(argv))
    return SyntheticVTGConfig(out_dir=args.pop("out"), **args)


def main(argv: list[str] | None = None) -> None:
    summary = generate_vtg_dataset(parse_args(argv))
    baseline = summary.get("constant_baseline", {}).get("test_mIoU")
    print(
        f"wrote {summary['counts']} samples in {summary['seconds']:.1f} s; constant-baseline test mIoU {baseline}"
    )


if __name__ == "__main__":
    main()
