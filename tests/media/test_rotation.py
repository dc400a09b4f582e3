"""Rotation metadata (a display matrix) is applied alike by every video backend."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import backend_usable, load_video, probe_video, resolve_backend

WIDTH, HEIGHT, FRAMES, FPS = 64, 32, 8, 8
STRIP = 16


def write_rotated_clip(path, degrees: int) -> None:
    """A landscape clip, white on its left ``STRIP`` columns, stored with a display rotation."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.set_display_rotation(degrees)
        frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        frame[:, :STRIP] = 255
        for _ in range(FRAMES):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@pytest.mark.skipif(not backend_usable("decord"), reason="needs decord")
@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_decord_and_pyav_return_the_same_upright_frames(tmp_path, degrees):
    path = tmp_path / "rotated.mp4"
    write_rotated_clip(path, degrees)
    sampling = FrameSampling(num_frames=4, min_pixels=32 * 32, max_pixels=64 * 64)
    decoded = {
        name: load_video(path, sampling, resolve_backend(name), image_factor=16)
        for name in ("decord", "pyav")
    }
    infos = {name: probe_video(path, resolve_backend(name)) for name in ("decord", "pyav")}
    assert infos["decord"] == infos["pyav"]
    assert torch.equal(decoded["decord"].frames, decoded["pyav"].frames)
    frame = decoded["pyav"].frames[0, 0].float()  # (H, W) red channel
    turned = degrees % 180 != 0
    assert (infos["pyav"].height, infos["pyav"].width) == ((WIDTH, HEIGHT) if turned else (HEIGHT, WIDTH))
    # counter-clockwise 90: the left strip ends at the bottom; -90: at the top; 180: on the right
    edge = {90: frame[-2:], -90: frame[:2], 180: frame[:, -2:]}[degrees]
    assert edge.mean() > 200 and frame.mean() < 128
