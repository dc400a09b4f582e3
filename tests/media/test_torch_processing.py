"""In-memory frames: the exact path equals file decoding, the torch path equals the processor."""

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from vlmrm.media.sampling import FrameSampling
from vlmrm.media.torch_processing import (
    fps_from_timestamps,
    patchify_video,
    resize_float,
    sample_video_float,
    sample_video_frames,
    to_uint8,
    video_frames,
    video_pixel_values,
)
from vlmrm.media.video import load_video, resize_frames, resolve_backend
from vlmrm.testing.synthetic import write_mp4
from vlmrm.testing.tiny import tiny_checkpoint

SAMPLING = FrameSampling(num_frames=4, min_pixels=56 * 56, max_pixels=56 * 56)
FACTOR = 28


def noise_frames(num_frames=16, height=64, width=80, seed=0) -> np.ndarray:
    """Textured (T, H, W, 3) uint8 frames: a resize changes every pixel."""
    return np.random.default_rng(seed).integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_torch_patchify_equals_the_video_processor(family, tiny_cache):
    video_processor = AutoProcessor.from_pretrained(
        tiny_checkpoint(family, cache_dir=tiny_cache)
    ).video_processor
    block = video_processor.patch_size * video_processor.merge_size
    videos = [
        torch.from_numpy(noise_frames(num, 2 * block, 3 * block, seed=num)).permute(0, 3, 1, 2)
        for num in (4, 3)  # 3 frames: padded with the last one, as the processor does
    ]
    expected = video_processor(videos=videos, do_resize=False, do_sample_frames=False, return_tensors="pt")
    pixels, grid = video_pixel_values([v.double() for v in videos], video_processor)
    assert torch.equal(grid, expected["video_grid_thw"])
    torch.testing.assert_close(pixels.float(), expected["pixel_values_videos"], rtol=0, atol=1e-5)


def test_patchify_needs_whole_merged_patches():
    with pytest.raises(ValueError, match="not a multiple of patch x merge = 28"):
        patchify_video(torch.zeros(2, 3, 28, 30), 14, 2, 2)


def test_float_resize_rounds_to_the_uint8_resize():
    frames = torch.from_numpy(noise_frames(2)).permute(0, 3, 1, 2)
    exact = resize_frames(frames, (56, 84))
    smooth = resize_float(frames.float(), (56, 84))  # the float32 that resize_frames rounds
    assert torch.equal(smooth.round().clamp(0, 255).to(torch.uint8), exact)
    assert (smooth.clamp(0, 255) - exact.float()).abs().max() <= 0.5


def test_frames_equal_the_decoded_file(tmp_path):
    path = tmp_path / "noise.mp4"
    write_mp4(path, noise_frames(), 8, "mpeg4")
    backend = resolve_backend("pyav")
    from_file = load_video(path, SAMPLING, backend, FACTOR)
    decoded = backend.read(str(path), list(range(16)))  # every frame, (T, H, W, 3)
    for layout in (decoded, np.moveaxis(decoded, -1, 1), torch.from_numpy(decoded).float() / 255):
        from_frames = sample_video_frames(layout, 8.0, SAMPLING, FACTOR)
        assert from_frames.indices == from_file.indices
        assert torch.equal(from_frames.frames, from_file.frames)
        assert from_frames.metadata() == from_file.metadata()
    resized, stand_in = sample_video_float(torch.from_numpy(decoded).double() / 255, 8.0, SAMPLING, FACTOR)
    assert stand_in.indices == from_file.indices and stand_in.frames.shape == from_file.frames.shape
    assert (resized - from_file.frames.double()).abs().max() <= 0.5 + 1e-9


def test_frame_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="3 colour channels"):
        video_frames(np.zeros((4, 5, 6, 7), np.uint8))
    with pytest.raises(ValueError, match=r"in \[0, 1\], found values in \[0, 2\]"):
        to_uint8(torch.tensor([[0.0, 2.0]]))
    with pytest.raises(ValueError, match="uint8 .* or float"):
        to_uint8(torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="fewer than num_frames = 4"):
        sample_video_frames(np.zeros((3, 56, 56, 3), np.uint8), 8.0, SAMPLING, FACTOR)
    with pytest.raises(ValueError, match="invalid frame rate"):
        sample_video_frames(np.zeros((4, 56, 56, 3), np.uint8), 0.0, SAMPLING, FACTOR)


def test_timestamps_give_the_frame_rate():
    assert fps_from_timestamps([0.0, 0.125, 0.25, 0.375]) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="increase evenly"):
        fps_from_timestamps([0.0, 0.1, 0.3])
