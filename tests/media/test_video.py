"""Frame sampling must match qwen-vl-utils exactly, whatever decoder reads the file."""

import numpy as np
import pytest
import torch
from qwen_vl_utils.vision_process import _read_video_decord

from vlmrm.media.sampling import FrameSampling, sample_frame_indices
from vlmrm.media.video import VideoDecodeError, load_video, probe_video, resolve_backend

SMALL = {"min_pixels": 56 * 56, "max_pixels": 56 * 56}

# (total_frames, video_fps, sampling fps): short clips hit the 4-frame floor, long ones the fps rule.
CASES = [(16, 8, 2.0), (30, 10, 2.0), (50, 25, 4.0), (48, 24, 1.0), (9, 3, 2.0), (40, 8, 8.0)]


@pytest.mark.parametrize("total, video_fps, fps", CASES)
def test_indices_match_qwen_vl_utils_on_real_files(make_video, total, video_fps, fps):
    path = make_video(f"v_{total}_{video_fps}.mp4", num_frames=total, fps=video_fps)
    _, metadata, _ = _read_video_decord({"video": str(path), "fps": fps})
    ours = sample_frame_indices(total, video_fps, FrameSampling(fps=fps))
    assert ours == list(metadata["frames_indices"])


def test_indices_hand_computed():
    # 30 frames at 10 fps = 3 s; 2 fps -> 6 frames: linspace(0, 29, 6) = 0, 5.8, 11.6, 17.4, 23.2, 29
    assert sample_frame_indices(30, 10, FrameSampling(fps=2.0)) == [0, 6, 12, 17, 23, 29]
    # num_frames wins over fps and is rounded to the temporal patch: round(5 / 2) * 2 = 4 (half to even);
    # linspace(0, 29, 4) = 0, 9.67, 19.33, 29
    assert sample_frame_indices(30, 10, FrameSampling(num_frames=5)) == [0, 10, 19, 29]


def test_num_frames_rounds_to_even_and_spans_clip():
    idx = sample_frame_indices(30, 10, FrameSampling(num_frames=8))
    assert idx == torch.linspace(0, 29, 8).round().long().tolist()


def test_random_sampling_one_frame_per_segment():
    rng = np.random.default_rng(0)
    idx = sample_frame_indices(30, 10, FrameSampling(fps=2.0, sample_type="random"), rng)
    assert len(idx) == 6
    for k, i in enumerate(idx):  # segment k covers [5k, 5k + 5)
        assert 5 * k <= i < 5 * k + 5
    again = sample_frame_indices(
        30, 10, FrameSampling(fps=2.0, sample_type="random"), np.random.default_rng(0)
    )
    assert again == idx


def test_backends_read_identical_frames(make_video):
    path = make_video("v.mp4", num_frames=30, fps=10)
    decoded = {
        name: load_video(path, FrameSampling(**SMALL), resolve_backend(name)) for name in ("decord", "pyav")
    }
    a, b = decoded["decord"], decoded["pyav"]
    assert a.indices == b.indices == [0, 6, 12, 17, 23, 29]
    assert a.info == b.info
    assert torch.equal(a.frames, b.frames)
    assert a.frames.shape == (6, 3, 56, 56) and a.frames.dtype == torch.uint8
    # frame i of the ramp video is grey level 8*i: the decoded frames are the sampled ones
    levels = a.frames.float().mean(dim=(1, 2, 3))
    assert torch.allclose(levels, torch.tensor([8.0 * i for i in a.indices]), atol=3)


def test_resize_uses_family_factor(make_video):
    path = make_video("v.mp4")
    qwen3 = load_video(
        path, FrameSampling(min_pixels=64 * 64, max_pixels=64 * 64), resolve_backend("pyav"), image_factor=32
    )
    assert qwen3.frames.shape[-2:] == (64, 64)


@pytest.mark.parametrize("name", ["decord", "pyav"])
def test_unreadable_files_name_the_path(tmp_path, name):
    backend = resolve_backend(name)
    with pytest.raises(VideoDecodeError, match="file not found"):
        probe_video(tmp_path / "missing.mp4", backend)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty"):
        probe_video(empty, backend)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoDecodeError, match=str(junk)):
        probe_video(junk, backend)


def test_unknown_or_missing_backend_is_an_error():
    with pytest.raises(ValueError, match="unknown 'ffmpeg'"):
        resolve_backend("ffmpeg")
