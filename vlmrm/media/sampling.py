"""Which frames of a video the model sees and at what size: qwen-vl-utils' rules, as values.

The constants mirror qwen-vl-utils (``vision_process.py``) and the Qwen2-VL paper (see
``docs/reward_math.md``, "Video frames"); per-family values that differ (Qwen3-VL's 16-pixel
patches) come from the processor at run time (:func:`vlmrm.media.processor.image_factor`).
qwen-vl-utils is imported where its functions are called, so this module (and the reward model,
which records a :class:`FrameSampling` in its checkpoints) imports with torch alone.
"""

from __future__ import annotations

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
"""qwen-vl-utils' lower bound on visual tokens per frame (min pixels = 128 x 28 x 28)."""

DEFAULT_MAX_FRAME_PIXELS = 448 * 448
"""VideoAlign's default ``max_frame_pixels`` (200704): 256 visual tokens per pair of frames."""

DEFAULT_MIN_FRAME_PIXELS = VIDEO_MIN_TOKENS_PER_FRAME * QWEN2_IMAGE_FACTOR**2
"""qwen-vl-utils' default ``min_pixels`` for video frames (100352)."""


@dataclass(frozen=True)
class FrameSampling:
    """How frames are picked and sized; the same fields as qwen-vl-utils' video element dict."""

    fps: float = DEFAULT_VIDEO_FPS
    num_frames: int | None = None
    min_frames: int = FPS_MIN_FRAMES
    max_frames: int = FPS_MAX_FRAMES
    sample_type: Literal["uniform", "random"] = "uniform"
    min_pixels: int = DEFAULT_MIN_FRAME_PIXELS
    max_pixels: int = DEFAULT_MAX_FRAME_PIXELS

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
        )

    def qwen_element(self, total_frames: int) -> dict:
        """The ``ele`` dict qwen-vl-utils' ``smart_nframes`` reads."""
        if self.num_frames is not None:
            return {"nframes": self.num_frames}
        return {
            "fps": self.fps,
            "min_frames": self.min_frames,
            "max_frames": min(self.max_frames, total_frames),
        }


def num_sampled_frames(total_frames: int, video_fps: float, sampling: FrameSampling) -> int:
    """n = total / video_fps * fps clamped to [min_frames, min(max_frames, total)], floored to even.

    Delegates to ``qwen_vl_utils.smart_nframes`` so the count is the one Qwen-VL models trained with.
    A video with fewer frames than ``min_frames`` (or ``num_frames``) is an error here: qwen-vl-utils
    would give it fewer frames than the configuration promises.
    """
    from qwen_vl_utils import vision_process

    if total_frames < 2:
        raise ValueError(f"a video needs at least 2 frames to be sampled, it has {total_frames}")
    floor, name = (
        (sampling.num_frames, "num_frames")
        if sampling.num_frames is not None
        else (sampling.min_frames, "min_frames")
    )
    if total_frames < floor:  # smart_nframes would quietly sample fewer frames (or fail unclearly)
        raise ValueError(f"has {total_frames} frames, fewer than {name} = {floor}")
    return vision_process.smart_nframes(
        sampling.qwen_element(total_frames), total_frames=total_frames, video_fps=video_fps
    )


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


def resized_frame_size(height: int, width: int, sampling: FrameSampling, factor: int) -> tuple[int, int]:
    """``smart_resize``: both sides multiples of ``factor`` (28 for Qwen2-VL), area in bounds."""
    from qwen_vl_utils import vision_process

    return vision_process.smart_resize(
        height, width, factor=factor, min_pixels=sampling.min_pixels, max_pixels=sampling.max_pixels
    )
