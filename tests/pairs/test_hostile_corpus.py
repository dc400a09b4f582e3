"""Hostile inputs that passed validation and then broke training, or crashed the validator: each is
now named by validation as file:line [column] (generated here, never committed as binaries)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmrm.cli.validate import main as validate_main
from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import VideoDecodeError, load_video, resolve_backend
from vlmrm.pairs.validate import validate_image_pairs, validate_video_pairs
from vlmrm.testing.synthetic import write_mp4

DIMS = ["VQ", "MQ", "TA"]
TIGHT = FrameSampling(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 8)
"""A small pixel budget (6272 pixels a frame): an elongated frame's short side floors to 0."""


def noise_clip(path: Path, height: int, width: int, frames: int = 16, fps: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    write_mp4(path, rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8), fps, "mpeg4")
    return path


def rows(path_a: str, path_b: str = "videos/ok.mp4", **extra) -> dict:
    return {"path_A": path_a, "path_B": path_b, "prompt": "p", "VQ": "A", "MQ": "B", "TA": "same", **extra}


def messages(report) -> list[str]:
    return [str(p) for p in report.problems]


def test_degenerate_size_after_resize_is_found_at_validation(tmp_path, make_csv):
    noise_clip(tmp_path / "videos/ok.mp4", 64, 64)
    thin = noise_clip(tmp_path / "videos/thin.mp4", 16, 2400)  # 1:150 under a 6272-pixel budget
    csv = make_csv([rows("videos/ok.mp4"), rows("videos/thin.mp4")])
    report = validate_video_pairs(csv, DIMS, sampling=TIGHT, backend=resolve_backend("pyav"))
    found = messages(report)
    assert any(f"{csv}:3 [path_A]" in m and "degenerate" in m for m in found), found
    assert not any(f"{csv}:2 " in m for m in found)
    with pytest.raises(VideoDecodeError, match="degenerate"):  # training's own path says the same
        load_video(thin, TIGHT, resolve_backend("pyav"))


def test_aspect_ratio_beyond_qwen_vl_utils_is_found_at_validation(tmp_path, make_csv):
    noise_clip(tmp_path / "videos/ok.mp4", 64, 64)
    noise_clip(tmp_path / "videos/strip.mp4", 16, 3232)  # 1:202, over MAX_RATIO = 200
    csv = make_csv([rows("videos/ok.mp4", "videos/strip.mp4")])
    report = validate_video_pairs(csv, DIMS, backend=resolve_backend("pyav"))
    assert any(f"{csv}:2 [path_B]" in m and "aspect ratio" in m for m in messages(report)), messages(report)


def test_infinite_and_nan_declared_frame_counts_are_problems(tmp_path, make_csv):
    noise_clip(tmp_path / "videos/ok.mp4", 64, 64)
    csv = make_csv([rows("videos/ok.mp4", num_frames_A="inf"), rows("videos/ok.mp4", num_frames_B="nan")])
    found = messages(validate_video_pairs(csv, DIMS, backend=resolve_backend("pyav")))
    assert any(f"{csv}:2 [num_frames_A]: not a finite number" in m for m in found), found
    assert any(f"{csv}:3 [num_frames_B]: not a finite number" in m for m in found), found


def damaged_in_the_middle(path: Path) -> Path:
    noise_clip(path, 48, 64, frames=40)
    data = bytearray(path.read_bytes())
    start, length = len(data) // 2, len(data) // 8
    data[start : start + length] = b"\xff" * length
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_decode_all_finds_damage_in_the_middle_of_a_stream(tmp_path, make_csv, backend):
    if backend == "decord":
        pytest.importorskip("decord")
    noise_clip(tmp_path / "videos/ok.mp4", 64, 64)
    damaged_in_the_middle(tmp_path / "videos/mid.mp4")
    csv = make_csv([rows("videos/mid.mp4", num_frames_A=40)])
    chosen = resolve_backend(backend)
    assert validate_video_pairs(csv, DIMS, backend=chosen).problems == []  # the header looks fine
    found = messages(validate_video_pairs(csv, DIMS, backend=chosen, decode="all"))
    assert any(f"{csv}:2 [path_A]" in m and f"failed with {backend}" in m for m in found), found


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_hostile_images_and_texts_are_named_by_line(tmp_path, monkeypatch):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "ok.png")
    Image.new("RGB", (250, 1), "red").save(tmp_path / "strip.png")  # 1:250, the processor refuses it
    Image.new("1", (100, 100)).save(tmp_path / "bomb.png")
    long_name = "0123456789" * 8  # 80 base64-looking characters: a path, not inline data
    Image.new("RGB", (8, 8), "blue").save(tmp_path / long_name, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # bomb.png's 10 000 pixels exceed it twice
    path = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"prompt": "fine", "image_A": "ok.png", "image_B": long_name, "label": "A"},  # 1
            {"prompt": "strip", "image_A": "ok.png", "image_B": "strip.png", "label": "A"},  # 2
            {"prompt": "bomb", "image_A": "bomb.png", "image_B": "ok.png", "label": "B"},  # 3
            {
                "prompt": "\ud800 lone surrogate",
                "image_A": "ok.png",
                "image_B": "ok.png",
                "label": "same",
            },  # 4
            {"prompt": "q", "chosen": "good", "rejected": "bad \udfff", "images": ["ok.png"]},  # 5
        ],
    )
    report = validate_image_pairs(path)
    found = messages(report)
    assert not any(f"{path}:1" in m for m in found), found
    assert any(f"{path}:2 [image]" in m and "aspect ratio" in m for m in found), found
    assert any(f"{path}:3 [image]" in m and "decompression-bomb" in m for m in found), found
    assert any(f"{path}:4 [prompt]" in m and "U+D800" in m for m in found), found
    assert any(f"{path}:5 [rejected]" in m and "U+DFFF" in m for m in found), found
    assert report.summary["usable_pairs"] == 1


def test_validator_cli_decode_all_and_no_traceback(tmp_path, make_csv, capsys):
    noise_clip(tmp_path / "videos/ok.mp4", 64, 64)
    damaged_in_the_middle(tmp_path / "videos/mid.mp4")
    csv = make_csv([rows("videos/mid.mp4", num_frames_A="inf"), rows("videos/ok.mp4", "videos/mid.mp4")])
    assert validate_main(["--file", str(csv), "--video_backend", "pyav", "--decode", "all"]) == 1
    stderr = capsys.readouterr().err
    assert f"{csv}:2 [num_frames_A]: not a finite number" in stderr
    assert f"{csv}:3 [path_B]" in stderr and "failed with pyav" in stderr
