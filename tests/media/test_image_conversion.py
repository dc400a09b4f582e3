"""Images open as qwen-vl-utils converts them, identically in training, evaluation and scoring."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vlmrm.media.image import ImageLoadError, open_image, processor_size_problem
from vlmrm.pairs.image_pairs import ImageRef
from vlmrm.reward.inference import _image as scoring_image

EXIF_ORIENTATION_TAG = 0x0112
ROTATE_90_CW = 6
"""EXIF orientation 6: the stored pixels must be turned 90 degrees clockwise to display."""


def test_rgba_is_composited_on_white(tmp_path):
    pixels = np.zeros((4, 4, 4), np.uint8)  # fully transparent black...
    pixels[:2, :, :] = (255, 0, 0, 255)  # ...except an opaque red top half
    path = tmp_path / "a.png"
    Image.fromarray(pixels, "RGBA").save(path)
    rgb = np.asarray(open_image(path))
    assert (rgb[:2] == (255, 0, 0)).all()
    assert (rgb[2:] == 255).all()  # white, as qwen-vl-utils' to_rgb; convert("RGB") gave black


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    ramp = np.array([[0, 16384, 32768, 65535]], np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    grey = np.asarray(open_image(path))[0, :, 0]
    assert grey.tolist() == [0, 64, 128, 255]  # round(v * 255 / 65535); clipping gave [0, 255, 255, 255]


def test_float_image_is_scaled_from_unit_range(tmp_path):
    path = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 0.25, 0.5, 1.0]], np.float32), "F").save(path)
    assert np.asarray(open_image(path))[0, :, 0].tolist() == [0, 64, 128, 255]  # clipping gave all ~0


def exif_rotated(tmp_path) -> tuple:
    stored = np.zeros((2, 3, 3), np.uint8)
    stored[0, 0] = 255  # white top-left pixel of a 3-wide, 2-high image
    image = Image.fromarray(stored)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = ROTATE_90_CW
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=100, subsampling=0)
    return path, stored


def test_exif_orientation_is_applied_alike_in_training_and_scoring(tmp_path):
    path, _ = exif_rotated(tmp_path)
    trained = np.asarray(ImageRef(path=path).open())
    assert trained.shape[:2] == (3, 2)  # displayed upright: 2 wide, 3 high
    assert trained[0, -1].mean() > 200  # top-left turned clockwise lands top-right
    assert np.array_equal(np.asarray(scoring_image(str(path))), trained)
    assert np.array_equal(np.asarray(scoring_image(Image.open(path))), trained)
    assert np.array_equal(np.asarray(ImageRef(data=path.read_bytes()).open()), trained)


def test_decompression_bomb_is_an_error_not_a_crash(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("1", (100, 100)).save(path)  # tiny on disk; 10 000 pixels > 2 x the limit below
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageLoadError, match="decompression-bomb limit"):
        open_image(path)


def test_processor_size_problem_matches_the_processor_limit():
    assert processor_size_problem(1, 250) is not None and "aspect ratio" in processor_size_problem(1, 250)
    assert processor_size_problem(1, 200) is None
    assert processor_size_problem(480, 640) is None
