"""The synthetic data set: CSV video-pair format, real decodable mp4s, and labels that follow the rules
when measured on DECODED frames (i.e. the rules survive compression)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import decord
import numpy as np
import pytest

from vlmrm.media.video import BACKENDS, probe_video
from vlmrm.testing import synthetic as syn
from vlmrm.testing.synthetic import SyntheticVideoConfig

REPO = Path(__file__).resolve().parents[2]
HEADER = ["path_A", "path_B", "prompt", "VQ", "MQ", "TA", "fps_A", "num_frames_A", "fps_B", "num_frames_B"]
EXPECTED_NOISY = syn.NOISE_RESIDUAL_PER_SIGMA * syn.NOISE_SIGMA  # ~24 grey levels, from the formula
SMOOTH_MAX_JITTER = 1.5  # px: integer rounding of a linear path moves the centre by <= 1 px per frame


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module", params=["mpeg4", "h264"])
def dataset(request, tmp_path_factory) -> SyntheticVideoConfig:
    config = SyntheticVideoConfig(
        out_dir=tmp_path_factory.mktemp(request.param), num_train=12, num_test=6, codec=request.param
    )
    syn.generate_video_pairs(config)
    return config


def all_rows(config: SyntheticVideoConfig) -> list[dict[str, str]]:
    return read_rows(config.out_dir / "train.csv") + read_rows(config.out_dir / "test.csv")


def test_csv_has_the_video_pair_columns(dataset):
    for name, count in (("train.csv", dataset.num_train), ("test.csv", dataset.num_test)):
        with (dataset.out_dir / name).open(newline="") as handle:
            lines = list(csv.reader(handle))
        assert lines[0] == HEADER
        assert len(lines) == count + 1
    for row in all_rows(dataset):
        assert {row[d] for d in ("VQ", "MQ", "TA")} <= {"A", "B", "same"}
        for side in "AB":
            assert row[f"path_{side}"].startswith("videos/") and row[f"path_{side}"].endswith(f"_{side}.mp4")
            assert (dataset.out_dir / row[f"path_{side}"]).is_file()
        assert syn.named_colour(row["prompt"]) in syn.PALETTE


def test_fps_and_frame_counts_match_decoders(dataset):
    for row in all_rows(dataset):
        for side in "AB":
            path = dataset.out_dir / row[f"path_{side}"]
            fps, num_frames = float(row[f"fps_{side}"]), int(row[f"num_frames_{side}"])
            assert (fps, num_frames) == (dataset.fps, round(dataset.fps * dataset.duration))
            reader = decord.VideoReader(str(path))
            assert (reader.get_avg_fps(), len(reader)) == (fps, num_frames)
            frames = syn.read_frames(path)
            assert frames.shape == (num_frames, dataset.size, dataset.size, 3)
            info = probe_video(path, BACKENDS["pyav"])
            assert (info.fps, info.total_frames) == (fps, num_frames)


def preferred_other(label: str, value_a: float, value_b: float) -> tuple[float, float]:
    return (value_a, value_b) if label == "A" else (value_b, value_a)


def test_rules_hold_on_decoded_frames(dataset):
    for row in all_rows(dataset):
        frames = {side: syn.read_frames(dataset.out_dir / row[f"path_{side}"]) for side in "AB"}
        noise = {side: syn.measure_noise(f) for side, f in frames.items()}
        jitter = {side: syn.measure_jitter(f) for side, f in frames.items()}
        colour = {side: syn.dominant_object_colour(f) for side, f in frames.items()}
        # Every clip is clearly clean (< 10% of the noisy residual: only object edges) or clearly noisy
        # (compression keeps >= 80% of the residual the formula predicts; clipping can only lower it).
        for value in noise.values():
            assert value < 0.1 * EXPECTED_NOISY or 0.8 * EXPECTED_NOISY < value < 1.05 * EXPECTED_NOISY
        if row["VQ"] == "same":
            assert abs(noise["A"] - noise["B"]) < 0.1 * EXPECTED_NOISY
        else:
            better, worse = preferred_other(row["VQ"], noise["A"], noise["B"])
            assert better < syn.NOISY_THRESHOLD < worse
        for value in jitter.values():
            assert value < SMOOTH_MAX_JITTER or value > syn.JITTERY_THRESHOLD
        if row["MQ"] == "same":
            assert (jitter["A"] > syn.JITTERY_THRESHOLD) == (jitter["B"] > syn.JITTERY_THRESHOLD)
        else:
            better, worse = preferred_other(row["MQ"], jitter["A"], jitter["B"])
            assert better < SMOOTH_MAX_JITTER and worse > syn.JITTERY_THRESHOLD
        named = syn.named_colour(row["prompt"])
        matches = {side: colour[side] == named for side in "AB"}
        assert matches == {"A": row["TA"] != "B", "B": row["TA"] != "A"}


def test_rules_json_describes_parameters_and_clips(dataset):
    rules = json.loads((dataset.out_dir / "rules.json").read_text())
    assert rules["config"]["seed"] == dataset.seed and rules["config"]["codec"] == dataset.codec
    assert set(rules["rules"]) >= {"VQ", "MQ", "TA"}
    rows = read_rows(dataset.out_dir / "train.csv")
    for row, pair in zip(rows, rules["train_pairs"], strict=True):
        assert row["prompt"] == pair["prompt"]
        assert {d: row[d] for d in ("VQ", "MQ", "TA")} == pair["labels"]


def test_same_seed_gives_identical_data(tmp_path):
    def make(name: str, seed: int) -> SyntheticVideoConfig:
        config = SyntheticVideoConfig(out_dir=tmp_path / name, num_train=4, num_test=2, seed=seed)
        syn.generate_video_pairs(config)
        return config

    first, second, other = make("a", 0), make("b", 0), make("c", 1)
    for name in ("train.csv", "test.csv"):
        assert (first.out_dir / name).read_bytes() == (second.out_dir / name).read_bytes()
    assert (first.out_dir / "train.csv").read_bytes() != (other.out_dir / "train.csv").read_bytes()
    for row in read_rows(first.out_dir / "train.csv"):
        a, b = (syn.read_frames(c.out_dir / row["path_A"]) for c in (first, second))
        np.testing.assert_array_equal(a, b)


def test_test_split_does_not_depend_on_train_size(tmp_path):
    small = syn.plan_split(SyntheticVideoConfig(out_dir=tmp_path, num_train=3, num_test=5), "test")
    large = syn.plan_split(SyntheticVideoConfig(out_dir=tmp_path, num_train=50, num_test=5), "test")
    assert small == large


@pytest.mark.parametrize("tie_fraction", [0.0, 0.15, 0.5, 1.0])
def test_label_frequencies_follow_tie_fraction(tmp_path, tie_fraction):
    num_pairs = 4000
    config = SyntheticVideoConfig(out_dir=tmp_path, num_train=num_pairs, tie_fraction=tie_fraction)
    plans = syn.plan_split(config, "train")
    for dim in syn.DIMENSIONS:
        counts = Counter(p.labels[dim] for p in plans)
        for label, p in (
            ("same", tie_fraction),
            ("A", (1 - tie_fraction) / 2),
            ("B", (1 - tie_fraction) / 2),
        ):
            sigma = math.sqrt(p * (1 - p) / num_pairs)  # binomial std of a frequency
            assert abs(counts[label] / num_pairs - p) <= 4 * sigma
    if 0 < tie_fraction < 1:  # dimensions drawn independently: P(VQ=same and MQ=same) = t^2
        both = sum(p.labels["VQ"] == "same" and p.labels["MQ"] == "same" for p in plans) / num_pairs
        p = tie_fraction**2
        assert abs(both - p) <= 4 * math.sqrt(p * (1 - p) / num_pairs)


def bad_property(label: str, tied_value: bool) -> tuple[bool, bool]:
    """(A has the bad property, B has it) implied by a label: only the loser has it; a tie shares it."""
    return {"A": (False, True), "B": (True, False)}.get(label, (tied_value, tied_value))


def test_clip_properties_follow_labels(tmp_path):
    plans = syn.plan_split(SyntheticVideoConfig(out_dir=tmp_path, num_train=500, tie_fraction=0.3), "train")
    for plan in plans:
        a, b = plan.clip_a, plan.clip_b
        assert (a.noisy, b.noisy) == bad_property(plan.labels["VQ"], a.noisy)
        assert (a.jittery, b.jittery) == bad_property(plan.labels["MQ"], a.jittery)
        named = syn.named_colour(plan.prompt)
        assert (a.colour != named, b.colour != named) == bad_property(plan.labels["TA"], False)
    ties = [p for p in plans if p.labels["VQ"] == "same"]
    assert {p.clip_a.noisy for p in ties} == {
        True,
        False,
    }  # VQ ties: sometimes both clean, sometimes both noisy


def test_measures_match_their_formulas(tmp_path):
    rng = np.random.default_rng(0)
    flat = np.full((16, 64, 64, 3), 128.0) + rng.normal(0, syn.NOISE_SIGMA, (16, 64, 64, 1))
    assert syn.measure_noise(flat.astype(np.uint8)) == pytest.approx(EXPECTED_NOISY, rel=0.02)
    config = SyntheticVideoConfig(out_dir=tmp_path, num_train=40)
    for plan in syn.plan_split(config, "train"):
        for spec in (plan.clip_a, plan.clip_b):
            frames = syn.render_clip(plan, spec, config, rng)
            assert syn.dominant_object_colour(frames) == spec.colour
            jitter = syn.measure_jitter(frames)
            assert jitter > syn.JITTERY_THRESHOLD if spec.jittery else jitter < SMOOTH_MAX_JITTER


NEAR_LOSSLESS_ERROR = 3.0  # grey levels (~1% of the range) of mean |decoded - rendered| we call near-lossless
# BT.601 luma weights: yuv420p keeps luma at full resolution, chroma at a quarter, so the encoder's
# quality setting shows in luma; chroma also loses detail at the object's edges by design of the format.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("codec", ["mpeg4", "h264"])
def test_encoding_is_near_lossless(tmp_path, codec):
    """Guards the encoder settings themselves: a quality option that silently stops applying shows here."""
    config = SyntheticVideoConfig(out_dir=tmp_path, num_train=1, codec=codec)
    plan = syn.plan_split(config, "train")[0]
    frames = syn.render_clip(
        plan, syn.ClipSpec("red", noisy=True, jittery=False), config, np.random.default_rng(0)
    )
    syn.write_mp4(tmp_path / "clip.mp4", frames, config.fps, codec)
    decoded = syn.read_frames(tmp_path / "clip.mp4")
    luma_error = np.abs((decoded.astype(float) - frames) @ LUMA_WEIGHTS).mean()
    assert luma_error < NEAR_LOSSLESS_ERROR


def test_palette_is_separable_by_the_object_mask():
    colours = {name: np.array(rgb, float) for name, rgb in syn.PALETTE.items()}
    background = np.array(syn.BACKGROUND_RGB, float)
    for name, rgb in colours.items():  # an object edge half-mixed with background still passes the mask
        assert np.linalg.norm(rgb - background) >= 2 * syn.OBJECT_MASK_DISTANCE
        for other, rgb2 in colours.items():
            assert other == name or np.linalg.norm(rgb - rgb2) >= 2 * syn.OBJECT_MASK_DISTANCE


@pytest.mark.parametrize(
    "kwargs", [{"size": 63}, {"size": 16}, {"tie_fraction": 1.5}, {"codec": "vp9"}, {"fps": 1}]
)
def test_config_rejects_invalid_values(tmp_path, kwargs):
    with pytest.raises(ValueError):
        SyntheticVideoConfig(out_dir=tmp_path, **kwargs)


@pytest.mark.slow
def test_example_script_writes_data_set(tmp_path):
    out = tmp_path / "data"
    args = ["--out", str(out), "--num_train", "2", "--num_test", "1", "--size", "48", "--seed", "3"]
    script = REPO / "examples" / "make_synthetic_video_pairs.py"
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True)
    rows = read_rows(out / "train.csv")
    assert len(rows) == 2 and len(read_rows(out / "test.csv")) == 1
    assert syn.read_frames(out / rows[0]["path_A"]).shape == (16, 48, 48, 3)
    assert json.loads((out / "rules.json").read_text())["config"]["seed"] == 3


@pytest.mark.slow
def test_default_size_data_set_is_fast(tmp_path):
    summary = syn.generate_video_pairs(SyntheticVideoConfig(out_dir=tmp_path, num_train=200, num_test=0))
    assert summary.num_videos == 400
    assert (
        summary.seconds < 60
    )  # the budget: 200 pairs of 2 s 64x64 clips at 8 fps within a minute on 2 cores


@pytest.mark.parametrize(
    "style, pattern",
    [
        ("colour", r"^(red|green|blue|yellow)$"),
        ("full", r"^a (red|green|blue|yellow) (square|circle) moving "),
    ],
)
def test_prompt_styles(tmp_path, style, pattern):
    import re

    config = SyntheticVideoConfig(out_dir=tmp_path, num_train=20, num_test=0, prompt_style=style)
    plans = syn.plan_split(config, "train")
    assert all(re.match(pattern, plan.prompt) for plan in plans)
    assert all(
        syn.named_colour(plan.prompt) == plan.clip_a.colour or plan.labels["TA"] == "B" for plan in plans
    )
