"""vlmrm's frames against qwen-vl-utils' own ``fetch_video`` (installed, 0.0.14) on the same inputs.

Real mp4s: the frame count, indices, frame size and pixels of :func:`load_video` equal those of
``fetch_video`` read with decord (resized the same way, then rounded to uint8) for random clips of
odd sizes and 5-60 fps, at each family's patch size. Long clips: ``fetch_video``'s size rule is run
on a stand-in reader (no decoding) so whole-video budgets (``total_pixels``) are checked at real
lengths and resolutions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qwen_vl_utils import vision_process

from vlmrm.media.sampling import FrameSampling, num_sampled_frames, resized_frame_size
from vlmrm.media.video import load_video, resolve_backend
from vlmrm.modeling.families import FAMILIES
from vlmrm.testing.synthetic import write_mp4

PATCH_SIZES = sorted({family.patch_size for family in FAMILIES.values()})  # 14 (Qwen2/2.5-VL), 16 (Qwen3-VL)


@pytest.fixture
def qwen_decord(monkeypatch):
    """qwen-vl-utils reading with decord (what it picks here without torchcodec), never torchvision."""
    monkeypatch.setattr(vision_process, "FORCE_QWENVL_VIDEO_READER", "decord")
    vision_process.get_video_reader_backend.cache_clear()
    yield
    vision_process.get_video_reader_backend.cache_clear()


def random_clip_cases(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        height, width = (int(v) for v in rng.integers(24, 90, size=2))
        video_fps = int(rng.integers(5, 61))
        total = int(rng.integers(6, 40))
        fps = float(rng.choice([0.5, 1.0, 2.0, 4.0]))
        yield height, width, video_fps, total, fps


CASES = list(random_clip_cases(seed=16, count=4))


def _smooth_clip(height: int, width: int, total: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 3 + yy, yy * 4, (xx + yy) * 2], axis=-1)[None]
    shift = rng.integers(0, 64, size=(total, 1, 1, 1))
    return ((base + shift * np.arange(1, 4)) % 256).astype(np.uint8)


@pytest.mark.parametrize("patch_size", PATCH_SIZES)
@pytest.mark.parametrize("height, width, video_fps, total, fps", CASES)
def test_load_video_equals_fetch_video(
    tmp_path, qwen_decord, patch_size, height, width, video_fps, total, fps
):
    path = tmp_path / f"clip_{height}x{width}_{video_fps}.mp4"
    write_mp4(path, _smooth_clip(height, width, total, seed=total), video_fps, "mpeg4")
    factor = patch_size * 2
    # defaults of both: min_pixels 128 tokens, no max_pixels of ours (qwen-vl-utils' caps alone)
    theirs, meta = vision_process.fetch_video(
        {"video": str(path), "fps": fps}, image_patch_size=patch_size, return_video_metadata=True
    )
    ours = load_video(
        path, FrameSampling(fps=fps, max_pixels=None), resolve_backend("decord"), image_factor=factor
    )
    assert ours.indices == list(meta["frames_indices"])
    assert tuple(ours.frames.shape) == tuple(theirs.shape)
    assert torch.equal(ours.frames, theirs.round().clamp(0, 255).to(torch.uint8))


@pytest.mark.parametrize("patch_size", PATCH_SIZES)
def test_defaults_give_qwen_vl_utils_shape_for_each_family(tmp_path, qwen_decord, patch_size):
    """A 64x64 clip: 128 tokens of the family's factor is the floor (336x336 at 28, 384x384 at 32)."""
    path = tmp_path / "small.mp4"
    write_mp4(path, _smooth_clip(64, 64, 16, seed=0), 8, "mpeg4")
    theirs = vision_process.fetch_video({"video": str(path)}, image_patch_size=patch_size)
    ours = load_video(path, FrameSampling(), resolve_backend("decord"), image_factor=patch_size * 2)
    assert tuple(ours.frames.shape) == tuple(theirs.shape)
    assert ours.frames.shape[-1] == {14: 336, 16: 384}[patch_size]


def _fetch_video_shape(
    monkeypatch, ele: dict, total: int, video_fps: float, height: int, width: int, patch_size: int
):
    """``fetch_video``'s (frames, height, width) for a clip it never decodes (a stand-in reader)."""

    def fake_reader(element):
        n = vision_process.smart_nframes(element, total_frames=total, video_fps=video_fps)
        video = torch.zeros(1, 3, height, width, dtype=torch.uint8).expand(n, -1, -1, -1)
        return video, {"frames_indices": list(range(n))}, n / total * video_fps

    monkeypatch.setitem(vision_process.VIDEO_READER_BACKENDS, "decord", fake_reader)
    monkeypatch.setattr(
        vision_process.transforms.functional,
        "resize",
        lambda video, size, **_: torch.zeros(1, 1, 1, 1).expand(video.shape[0], 3, *size),
    )
    out = vision_process.fetch_video({"video": "stand-in.mp4", **ele}, image_patch_size=patch_size)
    return tuple(out.shape[:1]) + tuple(out.shape[-2:])


def _our_shape(ele: dict, total: int, video_fps: float, height: int, width: int, patch_size: int):
    sampling = FrameSampling(
        fps=ele.get("fps", 2.0),
        num_frames=ele.get("nframes"),
        min_pixels=ele.get("min_pixels"),
        max_pixels=ele.get("max_pixels"),
        total_pixels=ele.get("total_pixels"),
    )
    n = num_sampled_frames(total, video_fps, sampling)
    return (n, *resized_frame_size(height, width, sampling, patch_size * 2, n))


LONG_CASES = [
    # (ele, total frames, video fps, height, width)
    ({"fps": 2.0}, 300, 30.0, 720, 1280),  # the issue's clip: 560x1008 from the 768-token cap
    ({"fps": 2.0}, 54000, 30.0, 720, 1280),  # 30 min: 768 frames, total budget binds
    ({"fps": 2.0, "total_pixels": 20480 * 28 * 28}, 3600, 30.0, 1080, 1920),
    ({"fps": 1.0, "total_pixels": 4096 * 28 * 28, "min_pixels": 16 * 28 * 28}, 9000, 25.0, 481, 853),
    ({"fps": 4.0, "max_pixels": 448 * 448}, 1200, 59.94, 1080, 1920),
    ({"nframes": 64, "total_pixels": 8192 * 28 * 28}, 2000, 24.0, 360, 640),
]


@pytest.mark.parametrize("patch_size", PATCH_SIZES)
@pytest.mark.parametrize("ele, total, video_fps, height, width", LONG_CASES)
def test_long_clip_budget_equals_fetch_video(monkeypatch, patch_size, ele, total, video_fps, height, width):
    theirs = _fetch_video_shape(monkeypatch, ele, total, video_fps, height, width, patch_size)
    assert _our_shape(ele, total, video_fps, height, width, patch_size) == theirs


def test_issue_example_1280x720_at_fps_2():
    sampling = FrameSampling(max_pixels=None)  # qwen-vl-utils' caps alone
    n = num_sampled_frames(300, 30.0, sampling)
    assert resized_frame_size(720, 1280, sampling, 28, n) == (560, 1008)
    # the VideoAlign default 448*448 still applies below the caps
    assert resized_frame_size(720, 1280, FrameSampling(), 28, n) == (336, 588)


def test_pixel_defaults_come_from_the_family_table():
    assert FAMILIES["qwen2_vl"].video_pixel_defaults["min_pixels"] == 128 * 28 * 28
    assert FAMILIES["qwen3_vl"].video_pixel_defaults["min_pixels"] == 128 * 32 * 32
    assert FAMILIES["qwen3_vl"].video_pixel_defaults["max_pixels"] == 768 * 32 * 32
    assert FAMILIES["qwen2_5_vl"].video_pixel_defaults["total_pixels"] == 128000 * 28 * 28 * 0.9


def test_frame_counts_equal_smart_nframes_on_random_inputs():
    rng = np.random.default_rng(9)
    for _ in range(300):
        total = int(rng.integers(2, 3000))
        video_fps = float(rng.uniform(5, 60))
        fps = float(rng.choice([0.25, 0.5, 1.0, 2.0, 3.0, 8.0]))
        min_frames, max_frames = int(rng.integers(1, 9)), int(rng.integers(9, 800))
        sampling = FrameSampling(
            fps=fps, min_frames=min_frames, max_frames=max_frames, short_video="all_frames"
        )
        ele = {"fps": fps, "min_frames": min_frames, "max_frames": min(max_frames, total)}
        assert num_sampled_frames(total, video_fps, sampling) == vision_process.smart_nframes(
            ele, total_frames=total, video_fps=video_fps
        ), (total, video_fps, fps, min_frames, max_frames)
        if total >= 2 * ((min_frames + 1) // 2):  # long enough: the default (error) agrees too
            assert num_sampled_frames(
                total, video_fps, FrameSampling(fps=fps, min_frames=min_frames, max_frames=max_frames)
            ) == (num_sampled_frames(total, video_fps, sampling))


def test_short_clip_refused_by_default_all_frames_as_qwen_vl_utils():
    # 3 frames, min_frames 4: qwen-vl-utils samples floor2(3) = 2 frames
    with pytest.raises(ValueError, match="fewer than min_frames = 4; short_video: all_frames"):
        num_sampled_frames(3, 8.0, FrameSampling())
    expected = vision_process.smart_nframes({"fps": 2.0, "min_frames": 4, "max_frames": 3}, 3, 8.0)
    assert num_sampled_frames(3, 8.0, FrameSampling(short_video="all_frames")) == expected == 2
    # min_frames 5 is rounded up to 6 before comparing with the clip: a 5-frame clip is short
    with pytest.raises(ValueError, match=r"min_frames = 5 \(rounded up to 6\)"):
        num_sampled_frames(5, 8.0, FrameSampling(min_frames=5))


def test_num_frames_rounded_to_the_temporal_patch_before_the_length_check():
    # num_frames 5 -> round(2.5) * 2 = 4 frames, which a 4-frame clip has (qwen-vl-utils agrees)
    assert num_sampled_frames(4, 8.0, FrameSampling(num_frames=5)) == 4
    assert vision_process.smart_nframes({"nframes": 5}, 4, 8.0) == 4
    # num_frames 7 -> 8 > 7 frames: refused by default (qwen-vl-utils raises); all_frames takes 6
    with pytest.raises(ValueError, match=r"num_frames = 7 \(rounded to the temporal patch: 8\)"):
        num_sampled_frames(7, 8.0, FrameSampling(num_frames=7))
    with pytest.raises(ValueError):
        vision_process.smart_nframes({"nframes": 7}, 7, 8.0)
    assert num_sampled_frames(7, 8.0, FrameSampling(num_frames=7, short_video="all_frames")) == 6


def test_videoalign_rounding_option():
    # 31 frames at 8 fps, fps 2: 7.75 frames -> floor2 = 6 (qwen-vl-utils 0.0.14), round2 = 8 (VideoAlign)
    assert num_sampled_frames(31, 8.0, FrameSampling()) == 6
    assert num_sampled_frames(31, 8.0, FrameSampling(frame_rounding="round")) == 8
    # rounding never exceeds the clip or max_frames (both clamps come first and are even)
    assert num_sampled_frames(9, 8.0, FrameSampling(fps=8.0, frame_rounding="round")) == 8
    assert num_sampled_frames(100, 8.0, FrameSampling(fps=8.0, max_frames=11, frame_rounding="round")) == 10


def test_short_clip_through_load_video(make_video):
    path = make_video("short.mp4", num_frames=3, fps=8)
    small = {"min_pixels": 56 * 56, "max_pixels": 56 * 56}
    from vlmrm.media.video import VideoDecodeError

    with pytest.raises(VideoDecodeError, match="fewer than min_frames"):
        load_video(path, FrameSampling(**small), resolve_backend("pyav"))
    video = load_video(path, FrameSampling(short_video="all_frames", **small), resolve_backend("pyav"))
    assert video.indices == [0, 2]


def _read_both(path, indices):
    a = resolve_backend("decord").read(str(path), indices).astype(int)
    b = resolve_backend("pyav").read(str(path), indices).astype(int)
    return np.abs(a - b)


def test_decoders_agree_exactly_on_even_height_clips(tmp_path):
    rng = np.random.default_rng(21)
    for k in range(3):
        height, width = (2 * int(v) for v in rng.integers(12, 45, size=2))
        path = tmp_path / f"even_{k}.mp4"
        write_mp4(path, rng.integers(0, 256, (4, height, width, 3), dtype=np.uint8), 10, "mpeg4")
        assert _read_both(path, [0, 1, 2, 3]).max() == 0


ODD_NOISE_MAX = 80
"""Largest decord vs PyAV difference (levels of 255) stated for odd-sized random-noise frames
(measured 45-68; docs/fidelity.md)."""
ODD_EDGE_MAX = 128
"""... and for odd-sized frames with sharp colour edges (measured up to 104)."""
ODD_MEAN_MAX = 3.0
"""Mean absolute difference stated for odd-sized frames (measured 1.0-2.4 on smooth frames with edges)."""


ODD_SIZES = [(47, 65), (63, 64), (52, 59)]
"""Odd height and width, odd height, odd width only (which agrees exactly). (decord 0.6 cannot read every odd size: a 75x48 clip
comes back 100 rows high and fails; docs/fidelity.md.)"""


def test_decoders_differ_within_the_stated_bound_on_odd_sized_clips(tmp_path):
    rng = np.random.default_rng(22)
    for k, (height, width) in enumerate(ODD_SIZES):
        noise = tmp_path / f"noise_{k}.mp4"
        write_mp4(noise, rng.integers(0, 256, (3, height, width, 3), dtype=np.uint8), 10, "mpeg4")
        worst = _read_both(noise, [0, 1, 2]).max()
        assert (0 < worst <= ODD_NOISE_MAX) if height % 2 else worst == 0
        smooth = tmp_path / f"smooth_{k}.mp4"
        write_mp4(smooth, _smooth_clip(height, width, 3, seed=k), 10, "mpeg4")
        diff = _read_both(smooth, [0, 1, 2])
        assert diff.max() <= ODD_EDGE_MAX and diff.mean() <= ODD_MEAN_MAX
