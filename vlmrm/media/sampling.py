"""Which frames of a video the model sees and at what size: qwen-vl-utils' rules, as values.

The constants mirror qwen-vl-utils 0.0.14 (``vision_process.py``) and the Qwen2-VL paper (see
``docs/reward_math.md``, "Video frames" and ``docs/fidelity.md``). qwen-vl-utils states its pixel
limits in tokens x factor^2, so the defaults depend on the family's pixel factor (patch x merge:
28 for Qwen2/2.5-VL, 32 for Qwen3-VL), which comes from the processor at run time
(:func:`vlmrm.media.processor.image_factor`) or the family table (``ModelFamily.image_factor``).
qwen-vl-utils is imported where its functions are called, so this module (and the reward model,
which records a :class:`FrameSampling` in its checkpoints) imports with torch alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

QWEN2_PATCH_SIZE = 14
"""ViT patch edge in pixels for Qwen2-VL / Qwen2.5-VL."""

SPATIAL_MERGE_SIZE = 2
"""The merger fuses 2x2 neighbouring patches into one LLM token."""

QWEN2_IMAGE_FACTOR = QWEN2_PATCH_SIZE * SPATIAL_MERGE_SIZE
"""Frame height and width are rounded to multiples of 28 = patch 14 x merge 2."""

TEMPORAL_PATCH_SIZE = 2
"""Temporal patch size: frames are grouped in pairs, so frame counts are multiples of 2."""

DEFAULT_VIDEO_FPS = 2.0
"""qwen-vl-utils' default sampling rate (frames per second of video)."""

FPS_MIN_FRAMES = 4
"""Fewest frames qwen-vl-utils samples from a video when sampling by fps."""

FPS_MAX_FRAMES = 768
"""Most frames qwen-vl-utils samples from a video when sampling by fps."""

VIDEO_MIN_TOKENS_PER_FRAME = 128
"""qwen-vl-utils' lower bound on visual tokens per frame: min pixels = 128 x factor^2 (100352 at
factor 28, 131072 at Qwen3-VL's 32)."""

VIDEO_MAX_TOKENS_PER_FRAME = 768
"""qwen-vl-utils' cap on visual tokens per frame: at most 768 x factor^2 pixels (602112 at 28)."""

MODEL_SEQ_LEN = 128000
"""qwen-vl-utils' default ``MODEL_SEQ_LEN`` (its environment variable; vlmrm does not read it, the
config decides): the default whole-video budget is ``0.9 x MODEL_SEQ_LEN x factor^2`` pixels."""

TOTAL_PIXELS_FRACTION = 0.9
"""Share of ``MODEL_SEQ_LEN`` qwen-vl-utils gives a video by default."""

MIN_PIXELS_HEADROOM = 1.05
"""qwen-vl-utils never caps a frame below ``int(1.05 x min_pixels)``."""

DEFAULT_MAX_FRAME_PIXELS = 448 * 448
"""VideoAlign's default ``max_frame_pixels`` (200704): 256 visual tokens per pair of frames."""

DEFAULT_MIN_FRAME_PIXELS = VIDEO_MIN_TOKENS_PER_FRAME * QWEN2_IMAGE_FACTOR**2
"""qwen-vl-utils' default ``min_pixels`` for video frames at factor 28 (100352); see
:func:`default_min_frame_pixels` for the other families."""

FrameRounding = Literal["floor", "round"]
ShortVideo = Literal["error", "all_frames"]


def round_by_factor(number: float, factor: int) -> int:
    """Nearest multiple of ``factor`` (Python's round: halves to even), as qwen-vl-utils."""
    return round(number / factor) * factor


def ceil_by_factor(number: float, factor: int) -> int:
    return math.ceil(number / factor) * factor


def floor_by_factor(number: float, factor: int) -> int:
    return math.floor(number / factor) * factor


def default_min_frame_pixels(factor: int) -> int:
    """qwen-vl-utils' ``VIDEO_FRAME_MIN_PIXELS`` for a family's pixel factor (128 tokens)."""
    return VIDEO_MIN_TOKENS_PER_FRAME * factor * factor


def default_max_frame_pixels(factor: int) -> int:
    """qwen-vl-utils' ``VIDEO_FRAME_MAX_PIXELS`` for a family's pixel factor (768 tokens)."""
    return VIDEO_MAX_TOKENS_PER_FRAME * factor * factor


def default_total_pixels(factor: int) -> float:
    """qwen-vl-utils' default whole-video budget: 0.9 x MODEL_SEQ_LEN tokens x factor^2 pixels."""
    return MODEL_SEQ_LEN * factor * factor * TOTAL_PIXELS_FRACTION


@dataclass(frozen=True)
class FrameSampling:
    """How frames are picked and sized; the fields of qwen-vl-utils' video element dict, plus the
    two places vlmrm deliberately differs (``short_video``) or offers VideoAlign's variant
    (``frame_rounding``). ``None`` pixel bounds take qwen-vl-utils' default for the model family's
    pixel factor (``ModelFamily.image_factor``), resolved where the factor is known."""

    fps: float = DEFAULT_VIDEO_FPS
    num_frames: int | None = None
    min_frames: int = FPS_MIN_FRAMES
    max_frames: int = FPS_MAX_FRAMES
    sample_type: Literal["uniform", "random"] = "uniform"
    min_pixels: int | None = None
    max_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS
    total_pixels: int | None = None
    frame_rounding: FrameRounding = "floor"
    short_video: ShortVideo = "error"

    @classmethod
    def from_data_config(cls, data) -> FrameSampling:
        return cls(
            fps=data.fps,
            num_frames=data.num_frames,
            min_frames=data.min_frames,
            max_frames=data.max_frames,
            sample_type=data.sample_type,
            min_pixels=data.min_frame_pixels,
            max_pixels=data.max_frame_pixels,
            total_pixels=data.total_pixels,
            frame_rounding=data.frame_rounding,
            short_video=data.short_video,
        )

    def pixel_bounds(self, nframes: int, factor: int) -> tuple[int, float]:
        """(min_pixels, max_pixels) of one frame of an ``nframes``-frame video, as ``fetch_video``:

        ``max = min(max_pixels, max(min(768 f^2, total_pixels / nframes x 2), int(1.05 min_pixels)))``
        with f = ``factor``, ``min_pixels`` defaulting to 128 f^2 and ``total_pixels`` to
        0.9 x 128000 f^2 (qwen-vl-utils' defaults); an unset ``max_pixels`` leaves the cap alone.
        """
        min_pixels = self.min_pixels if self.min_pixels is not None else default_min_frame_pixels(factor)
        total = self.total_pixels if self.total_pixels is not None else default_total_pixels(factor)
        cap = max(
            min(default_max_frame_pixels(factor), total / nframes * TEMPORAL_PATCH_SIZE),
            int(min_pixels * MIN_PIXELS_HEADROOM),
        )
        max_pixels = cap if self.max_pixels is None else min(self.max_pixels, cap)
        if max_pixels < min_pixels:
            raise ValueError(
                f"max_frame_pixels {self.max_pixels} is below min_frame_pixels {min_pixels} "
                f"(factor {factor}); raise it or set min_frame_pixels"
            )
        return min_pixels, max_pixels


def num_sampled_frames(total_frames: int, video_fps: float, sampling: FrameSampling) -> int:
    """qwen-vl-utils 0.0.14's ``smart_nframes``, with two recorded options.

    By ``num_frames``: n = ``round_by_factor(num_frames, 2)`` (5 -> 4, 7 -> 8). By fps:
    n = total / video_fps x fps clamped to [ceil2(min_frames), floor2(min(max_frames, total))] and
    to total, then floored to even (``frame_rounding: floor``, qwen-vl-utils) or rounded to even
    (``round``, VideoAlign's copy: 31 frames at 8 fps, fps 2 -> 8 frames instead of 6).

    A clip shorter than the rounded ``num_frames`` or ``min_frames`` is an error by default
    (``short_video: error``, it would get fewer frames than configured); ``all_frames`` does what
    qwen-vl-utils does for ``min_frames`` (samples floor2(total) frames) and the same for
    ``num_frames``, where qwen-vl-utils itself raises.
    """
    if total_frames < TEMPORAL_PATCH_SIZE:
        raise ValueError(f"a video needs at least 2 frames to be sampled, it has {total_frames}")
    short_ok = sampling.short_video == "all_frames"
    if sampling.num_frames is not None:
        n = round_by_factor(sampling.num_frames, TEMPORAL_PATCH_SIZE)
        if n > total_frames:
            if not short_ok:
                rounded = f" (rounded to the temporal patch: {n})" if n != sampling.num_frames else ""
                raise ValueError(
                    f"has {total_frames} frames, fewer than num_frames = {sampling.num_frames}{rounded}"
                    "; short_video: all_frames samples them all"
                )
            n = floor_by_factor(total_frames, TEMPORAL_PATCH_SIZE)
    else:
        min_frames = ceil_by_factor(sampling.min_frames, TEMPORAL_PATCH_SIZE)
        if total_frames < min_frames and not short_ok:
            raise ValueError(
                f"has {total_frames} frames, fewer than min_frames = {sampling.min_frames}"
                + (f" (rounded up to {min_frames})" if min_frames != sampling.min_frames else "")
                + "; short_video: all_frames samples them all"
            )
        max_frames = floor_by_factor(min(sampling.max_frames, total_frames), TEMPORAL_PATCH_SIZE)
        wanted = total_frames / video_fps * sampling.fps
        clamped = min(min(max(wanted, min_frames), max_frames), total_frames)
        to_factor = round_by_factor if sampling.frame_rounding == "round" else floor_by_factor
        n = to_factor(clamped, TEMPORAL_PATCH_SIZE)
    if not TEMPORAL_PATCH_SIZE <= n <= total_frames:
        raise ValueError(f"{n} frames sampled from {total_frames}; need between 2 and the clip's length")
    return n


def sample_frame_indices(
    total_frames: int,
    video_fps: float,
    sampling: FrameSampling,
    rng: np.random.Generator | None = None,
) -> list[int]:
    """Indices of the frames fed to the model.

    uniform: ``linspace(0, total - 1, n).round()`` exactly as qwen-vl-utils' readers.
    random: the span [0, total) is cut into n equal segments and one frame is drawn uniformly
    inside each (TSN-style), so the frames stay in order and cover the whole clip.
    """
    n = num_sampled_frames(total_frames, video_fps, sampling)
    if sampling.sample_type == "uniform":
        return torch.linspace(0, total_frames - 1, n).round().long().tolist()
    rng = rng if rng is not None else np.random.default_rng()
    edges = np.linspace(0, total_frames, n + 1)
    starts = np.floor(edges[:-1]).astype(int)
    ends = np.maximum(starts + 1, np.floor(edges[1:]).astype(int))
    return [int(rng.integers(s, e)) for s, e in zip(starts, ends)]


def resized_frame_size(
    height: int, width: int, sampling: FrameSampling, factor: int, nframes: int
) -> tuple[int, int]:
    """``fetch_video``'s frame size: ``smart_resize`` to multiples of ``factor`` (28 for Qwen2/2.5-VL,
    32 for Qwen3-VL) within :meth:`FrameSampling.pixel_bounds` of an ``nframes``-frame video.

    ValueError where training could not use the frames: an absolute aspect ratio over
    qwen-vl-utils' ``MAX_RATIO`` (200), or a side rounded to 0 pixels (``smart_resize`` floors
    ``side / sqrt(h w / max_pixels)`` to the factor: a 1:150 frame under a 105k-pixel cap has
    ``sqrt(105369 / 150) = 26.5`` < 28 pixels on its short side)."""
    from qwen_vl_utils import vision_process

    if min(height, width) < 1:
        raise ValueError(f"frames of {width}x{height} pixels are empty")
    min_pixels, max_pixels = sampling.pixel_bounds(nframes, factor)
    try:
        resized = vision_process.smart_resize(
            height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels
        )
    except ValueError as err:
        raise ValueError(f"frames of {width}x{height}: {err} (qwen-vl-utils refuses them)") from err
    if min(resized) < factor:
        raise ValueError(
            f"frames of {width}x{height} resize to {resized[1]}x{resized[0]} under max_frame_pixels "
            f"{max_pixels:g}: degenerate (aspect ratio too extreme for the pixel budget)"
        )
    return resized
