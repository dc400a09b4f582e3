"""Clip decoding on real mp4: trim window, frame counts, uniform / random / key-frame picks, resize.

Videos are the ``ramp_frames`` of conftest (frame i is flat grey 8 * i), so the level of a decoded
frame tells which file frame it is: index = round(level / 8).
"""

import logging

import av
import numpy as np
import pytest
import torch

from tests.conftest import ramp_frames
from vlmrm.media.video import BACKENDS, VideoBackend, VideoInfo
from vlmrm.vtg import clips as vtg_clip
from vlmrm.vtg.annotations import VTGSample
from vlmrm.vtg.clips import clip_window, frame_size, key_frame_indices, load_vtg_clip
from vlmrm.vtg.data_config import ResolutionSection, VideoSection

BACKEND_NAMES = ["pyav", "decord"]
SMALL = ResolutionSection(height=56, width=56)


def sample(path, duration, video_start=None, video_end=None) -> VTGSample:
    return VTGSample(path, duration, (0.0, min(duration, 1.0)), "q", video_start, video_end)


def frame_numbers(frames: torch.Tensor) -> list[int]:
    """File frame index of each decoded ramp frame: its mean grey level / 8."""
    return (frames.float().mean(dim=(1, 2, 3)) / 8).round().long().tolist()


def write_gop_video(path, num_frames: int, fps: int, gop: int):
    """H.264 with a key frame exactly every ``gop`` frames: keyint_min = gop and no scene-cut key
    frames (sc_threshold 0), since every ramp frame would otherwise look like a scene change."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx264",
            rate=fps,
            options={"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "crf": "10"},
        )
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for frame in ramp_frames(num_frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def decoded_key_frames(path) -> list[int]:
    """Key frames as the decoder flags the decoded frames (independent of the packet listing)."""
    with av.open(str(path)) as container:
        return [i for i, frame in enumerate(container.decode(video=0)) if frame.key_frame]


@pytest.fixture
def fallback_state(monkeypatch):
    """A fresh 'already warned' set, so each test sees the first fallback warning."""
    monkeypatch.setattr(vtg_clip, "_fallback_warned", set())


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_uniform_whole_file(make_video, backend):
    path = make_video("a.mp4", num_frames=24, fps=8)
    clip = load_vtg_clip(sample(path, 3.0), VideoSection(max_frames=4, resolution=SMALL), BACKENDS[backend])
    # linspace(0, 23, 4) = [0, 7.67, 15.33, 23] -> rounded
    assert clip.decoded.indices == [0, 8, 15, 23]
    assert frame_numbers(clip.frames) == [0, 8, 15, 23]
    assert clip.frame_times == [0.0, 1.0, 15 / 8, 23 / 8]
    assert clip.strategy == "uniform" and clip.duration == 3.0


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_trim_window_decodes_only_inside_and_times_are_relative(make_video, backend):
    path = make_video("a.mp4", num_frames=30, fps=10)
    # window [0.5, 2.0] s at 10 fps: frames ceil(5) = 5 .. ceil(20) - 1 = 19 (15 frames)
    video = VideoSection(max_frames=32, resolution=SMALL)
    clip = load_vtg_clip(sample(path, 1.5, 0.5, 2.0), video, BACKENDS[backend])
    assert (clip.window.first, clip.window.stop) == (5, 20)
    # n = 15 frames at the file's rate, floored to even = 14; offsets round(linspace(0, 14, 14))
    expected = [5 + round(x) for x in np.linspace(0, 14, 14)]
    assert clip.decoded.indices == expected
    assert frame_numbers(clip.frames) == expected  # the pixels really are those frames
    assert all(5 <= i <= 19 for i in frame_numbers(clip.frames))
    assert clip.frame_times == pytest.approx([i / 10 - 0.5 for i in expected])
    assert clip.frame_times[0] == 0.0 and max(clip.frame_times) < 1.5
    assert clip.metadata() == {
        "fps": 10.0,
        "frames_indices": [i - 5 for i in expected],
        "total_num_frames": 15,
        "duration": 1.5,
    }


def test_random_picks_one_frame_per_segment_inside_the_window(make_video):
    path = make_video("a.mp4", num_frames=30, fps=10)
    video = VideoSection(max_frames=4, sampling_strategy="random", resolution=SMALL)
    s = sample(path, 1.5, 0.5, 2.0)
    clip = load_vtg_clip(s, video, BACKENDS["pyav"], rng=np.random.default_rng(0))
    # 15 window frames cut into 4 segments: edges linspace(0, 15, 5) = [0, 3.75, 7.5, 11.25, 15]
    segments = [(0, 3), (3, 7), (7, 11), (11, 15)]
    offsets = [i - 5 for i in clip.decoded.indices]
    assert all(lo <= o < hi for o, (lo, hi) in zip(offsets, segments))
    assert frame_numbers(clip.frames) == clip.decoded.indices
    again = load_vtg_clip(s, video, BACKENDS["pyav"], rng=np.random.default_rng(0))
    assert again.decoded.indices == clip.decoded.indices


def test_fps_zero_uses_the_files_rate():
    video = VideoSection(max_frames=32, fps=0)
    for fps in (8.0, 4.0):
        info = VideoInfo(total_frames=24, fps=fps, height=64, width=64)
        window = clip_window(sample("unused.mp4", 24 / fps), info)
        indices, _ = vtg_clip.pick_frames("unused.mp4", window, info, video, BACKENDS["pyav"])
        assert indices == list(range(24))  # n = 24 / fps * fps = every frame, whatever the rate
    info = VideoInfo(total_frames=24, fps=8.0, height=64, width=64)
    window = clip_window(sample("unused.mp4", 3.0), info)
    capped, _ = vtg_clip.pick_frames("unused.mp4", window, info, VideoSection(fps=2.0), BACKENDS["pyav"])
    assert len(capped) == 6  # fps 2 * 3 s


@pytest.mark.parametrize(
    "max_frames, window_frames, expected",
    [(7, 24, 6), (32, 5, 4), (32, 3, 2), (2, 24, 2)],  # min(max_frames, frames in window) floored to even
)
def test_frame_count_is_even(max_frames, window_frames, expected):
    info = VideoInfo(total_frames=window_frames, fps=8.0, height=64, width=64)
    window = clip_window(sample("unused.mp4", window_frames / 8), info)
    indices, _ = vtg_clip.pick_frames(
        "unused.mp4", window, info, VideoSection(max_frames=max_frames), BACKENDS["pyav"]
    )
    assert len(indices) == expected


def test_window_edges_are_float_safe():
    info = VideoInfo(total_frames=100, fps=25.0, height=64, width=64)
    # 2.2 * 25 = 55.00000000000001: frame 55 (shown at 2.2 s) is inside [2.2, 3.0)
    window = clip_window(sample("unused.mp4", 0.8, 2.2, 3.0), info)
    assert (window.first, window.stop, window.num_frames) == (55, 75, 20)


def test_window_end_clamped_and_precut_file():
    info = VideoInfo(total_frames=24, fps=8.0, height=64, width=64)  # 3 s
    clamped = clip_window(sample("unused.mp4", 1.2, 2.0, 3.2), info)  # ends 0.2 s past the file
    assert (clamped.start, clamped.end, clamped.stop, clamped.precut) == (2.0, 3.0, 24, False)
    precut = clip_window(sample("unused.mp4", 3.0, 404.2, 407.2), info)
    assert (precut.start, precut.end, precut.first, precut.stop, precut.precut) == (0.0, 3.0, 0, 24, True)


@pytest.mark.parametrize(
    "height, width, factor, expected",
    [
        (100, 60, 28, (112, 56)),  # 100 / 28 = 3.57 -> 4 * 28; 60 / 28 = 2.14 -> 2 * 28
        (384, 384, 28, (392, 392)),  # 13.71 -> 14 * 28
        (10, 41, 28, (28, 28)),  # 0.36 -> 0, raised to one factor; 1.46 -> 1 * 28
        (384, 200, 32, (384, 192)),  # Qwen3-VL factor 32: 12 * 32; 6.25 -> 6 * 32
    ],
)
def test_frame_size_rounds_to_the_image_factor(height, width, factor, expected):
    assert frame_size(ResolutionSection(height=height, width=width), factor) == expected


def test_decoded_frames_have_the_rounded_size(make_video):
    path = make_video("a.mp4", num_frames=16, fps=8)
    video = VideoSection(max_frames=4, resolution=ResolutionSection(height=100, width=60))
    clip = load_vtg_clip(sample(path, 2.0), video, BACKENDS["pyav"])
    assert clip.frames.shape == (4, 3, 112, 56) and clip.frames.dtype == torch.uint8


@pytest.fixture
def gop_video(tmp_path):
    """30 frames at 10 fps, a key frame every 5 frames (B-frames in between reorder the packets)."""
    return write_gop_video(tmp_path / "gop5.mp4", num_frames=30, fps=10, gop=5)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_key_frame_listing_matches_the_decoder(gop_video, backend):
    assert decoded_key_frames(gop_video) == [0, 5, 10, 15, 20, 25]
    assert key_frame_indices(str(gop_video), BACKENDS[backend]) == [0, 5, 10, 15, 20, 25]


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_keyframe_sampling_thins_to_key_frames(gop_video, backend, fallback_state, caplog):
    keys = decoded_key_frames(gop_video)
    video = VideoSection(max_frames=4, sampling_strategy="keyframe", resolution=SMALL)
    clip = load_vtg_clip(sample(gop_video, 3.0), video, BACKENDS[backend])
    # K = 6 key frames, n = 4: K[round(linspace(0, 5, 4))] = K[[0, 2, 3, 5]]
    assert clip.decoded.indices == [0, 10, 15, 25]
    assert set(clip.decoded.indices) <= set(keys)
    assert frame_numbers(clip.frames) == [0, 10, 15, 25]
    assert clip.strategy == "keyframe"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_keyframe_sampling_inside_a_window_repeats_key_frames(gop_video, backend, fallback_state):
    keys = decoded_key_frames(gop_video)
    video = VideoSection(max_frames=4, sampling_strategy="keyframe", resolution=SMALL)
    # window [1.2, 2.8] s: frames 12..27, key frames 15, 20, 25; n = 4 > 3 -> K[round(linspace(0, 2, 4))]
    clip = load_vtg_clip(sample(gop_video, 1.6, 1.2, 2.8), video, BACKENDS[backend])
    assert clip.decoded.indices == [15, 20, 20, 25]
    assert set(clip.decoded.indices) <= set(keys)
    assert clip.frame_times == pytest.approx([0.3, 0.8, 0.8, 1.3])


def test_keyframe_fallback_to_uniform_warns_once(tmp_path, fallback_state, caplog):
    path = write_gop_video(tmp_path / "one_key.mp4", num_frames=30, fps=10, gop=300)
    assert decoded_key_frames(path) == [0]
    video = VideoSection(max_frames=4, sampling_strategy="keyframe", resolution=SMALL)
    windows = [(1.0, 2.5), (0.5, 2.0), (1.5, 3.0)]
    with caplog.at_level(logging.WARNING, logger="vlmrm.vtg.clips"):
        clips = [
            load_vtg_clip(sample(path, end - start, start, end), video, BACKENDS["pyav"])
            for start, end in windows
        ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "has 0 inside its clip" in warnings[0]
    # uniform over window (1.0, 2.5): frames 10..24, offsets round(linspace(0, 14, 4)) = [0, 5, 9, 14]
    assert clips[0].decoded.indices == [10, 15, 19, 24]
    assert all(c.strategy == "uniform" for c in clips)


def test_backend_without_key_frame_listing_falls_back_once(make_video, fallback_state, caplog):
    path = make_video("a.mp4", num_frames=16, fps=8)
    pyav = BACKENDS["pyav"]
    unlisted = VideoBackend("torchcodec", pyav.info, pyav.read, "av")  # decodes like pyav, lists nothing
    video = VideoSection(max_frames=4, sampling_strategy="keyframe", resolution=SMALL)
    with caplog.at_level(logging.WARNING, logger="vlmrm.vtg.clips"):
        for _ in range(3):
            clip = load_vtg_clip(sample(path, 2.0), video, unlisted)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "backend torchcodec cannot list them" in warnings[0]
    assert clip.decoded.indices == [0, 5, 10, 15]  # round(linspace(0, 15, 4))
