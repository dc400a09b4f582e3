"""In-memory frames (tensors, arrays) through the same sampling, resize and Qwen-VL patchification as files.

Two paths, for the two ways a generator's output reaches a reward model:

* **exact** (:func:`sample_video_frames`): frames at the given fps are sampled with the very indices
  :func:`vlmrm.media.sampling.sample_frame_indices` gives a file of that fps and frame count, then
  resized by :func:`vlmrm.media.video.resize_frames` to :func:`resized_frame_size` — so a decoded
  mp4 and its frames as a tensor reach the processor as identical uint8 frames. Float input in
  [0, 1] is quantised first: ``round(255 x)``, as an encoder writing the video would.
* **differentiable** (:func:`sample_video_float`, :func:`normalize_frames`, :func:`patchify_video`):
  the same indices, then ``F.interpolate(bicubic, antialias=True, align_corners=False)`` — the call
  torchvision's ``resize`` makes for the exact path, minus its final ``round().clamp(0, 255)`` — the
  processor's fused rescale-and-normalise ``(x / 255 - mean) / std`` and its patch layout, all in
  torch, so gradients flow from the input pixels to the model's ``pixel_values_videos``. The two
  paths differ only by that rounding: at most 0.5 / 255 per resized pixel (plus the clamp of
  bicubic overshoot beyond [0, 255]); without a resize they are equal.

Patch layout (``Qwen2VLVideoProcessor.patchify``, shared by Qwen2/2.5/3-VL): a (T, C, H, W) video
with T a multiple of the temporal patch t, H and W multiples of patch p x merge m becomes
(T/t * H/p * W/p, C * t * p * p) rows ordered (grid_t, h-block, w-block, h-in-merge, w-in-merge)
with each row laid out (C, t, p, p); ``video_grid_thw`` = (T/t, H/p, W/p).

Layouts: a video is (T, C, H, W) or (T, H, W, C) with C = 3 (channels first wins when both dims
are 3); an image is (C, H, W) or (H, W, C).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vlmrm.media.sampling import TEMPORAL_PATCH_SIZE, FrameSampling, resized_frame_size, sample_frame_indices
from vlmrm.media.video import DecodedVideo, VideoInfo, resize_frames

RGB_CHANNELS = 3
MAX_LEVEL = 255
"""uint8 frames hold 0..255; float frames hold [0, 1] and are scaled by this to the processor's range."""
TIMESTAMP_SPACING_RTOL = 1e-3
"""Frame times must be evenly spaced to this relative tolerance to define one frame rate."""


def as_tensor(frames) -> torch.Tensor:
    """A numpy array or tensor as a tensor (no copy where possible); anything else is an error."""
    if isinstance(frames, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(frames))
    if torch.is_tensor(frames):
        return frames
    raise TypeError(f"expected a torch tensor or numpy array of frames, got {type(frames).__name__}")


def channels_first(frames: torch.Tensor, what: str = "video") -> torch.Tensor:
    """(..., 3, H, W) from (..., 3, H, W) or (..., H, W, 3): the last three dims of a frame."""
    if frames.shape[-3] == RGB_CHANNELS:
        return frames
    if frames.shape[-1] == RGB_CHANNELS:
        return frames.movedim(-1, -3)
    raise ValueError(
        f"{what} of shape {tuple(frames.shape)}: frames need 3 colour channels, as (..., 3, H, W) or (..., H, W, 3)"
    )


def video_frames(frames, what: str = "video") -> torch.Tensor:
    """(T, 3, H, W) frames of one video from an array/tensor in either layout, dtype kept."""
    frames = as_tensor(frames)
    if frames.ndim != 4:
        raise ValueError(f"{what} of shape {tuple(frames.shape)}: expected (T, C, H, W) or (T, H, W, C)")
    return channels_first(frames, what)


def to_uint8(frames: torch.Tensor, what: str = "video") -> torch.Tensor:
    """uint8 unchanged; float in [0, 1] -> round(255 x). Other dtypes or ranges are errors."""
    if frames.dtype == torch.uint8:
        return frames
    if not frames.is_floating_point():
        raise ValueError(f"{what}: frames must be uint8 (0..255) or float in [0, 1], got {frames.dtype}")
    check_unit_range(frames, what)
    return (frames.detach().float() * MAX_LEVEL).round().to(torch.uint8)


def check_unit_range(frames: torch.Tensor, what: str) -> None:
    low, high = float(frames.min()), float(frames.max())
    if low < 0 or high > 1:
        raise ValueError(f"{what}: float frames must lie in [0, 1], found values in [{low:.4g}, {high:.4g}]")


def fps_from_timestamps(timestamps, what: str = "video") -> float:
    """Frame rate of evenly spaced frame times (seconds): (n - 1) / (t_last - t_first)."""
    times = np.asarray(timestamps, dtype=float)
    if times.ndim != 1 or len(times) < TEMPORAL_PATCH_SIZE:
        raise ValueError(f"{what}: timestamps must be a 1-D list of at least 2 frame times")
    steps = np.diff(times)
    if steps.min() <= 0 or not np.allclose(steps, steps.mean(), rtol=TIMESTAMP_SPACING_RTOL, atol=0):
        raise ValueError(
            f"{what}: timestamps must increase evenly (one frame rate), steps {steps[:5].tolist()}"
        )
    return float((len(times) - 1) / (times[-1] - times[0]))


def sampled_layout(
    num_frames: int,
    height: int,
    width: int,
    fps: float,
    sampling: FrameSampling,
    factor: int,
    what: str = "video",
) -> tuple[list[int], tuple[int, int], VideoInfo]:
    """(frame indices, resized (H, W), probe info) for frames in memory, as a file of that fps and
    frame count would get them (uniform sampling; ``random`` draws like the file loader)."""
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"{what}: invalid frame rate {fps}")
    try:
        indices = sample_frame_indices(num_frames, fps, sampling)
        size = resized_frame_size(height, width, sampling, factor, len(indices))
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from err
    return indices, size, VideoInfo(num_frames, float(fps), height, width)


def sample_video_frames(
    frames, fps: float, sampling: FrameSampling, factor: int, what: str = "video"
) -> DecodedVideo:
    """The exact path: a ``DecodedVideo`` equal to ``load_video`` of a file holding these frames.
    Errors start with ``what`` (the caller's name of the item)."""
    frames = video_frames(frames, what)
    indices, size, info = sampled_layout(frames.shape[0], *frames.shape[-2:], fps, sampling, factor, what)
    picked = to_uint8(frames[indices].cpu(), what)
    return DecodedVideo(resize_frames(picked, size), indices, info, len(indices) / info.total_frames * fps)


def resize_float(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic antialiased resize of float (N, 3, H, W), differentiable; what ``resize_frames`` does
    before rounding to uint8."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=list(size), mode="bicubic", align_corners=False, antialias=True)


def sample_video_float(
    frames: torch.Tensor, fps: float, sampling: FrameSampling, factor: int, what: str = "video"
) -> tuple[torch.Tensor, DecodedVideo]:
    """The differentiable path: (resized float frames on 0..255, (T', 3, h, w); the ``DecodedVideo``
    the exact path would give, with uint8 frames, for the processor's text and metadata).

    ``frames`` is float in [0, 1] (or uint8) in either layout; the graph runs through the index
    selection and the resize."""
    frames = video_frames(frames, what)
    if frames.dtype == torch.uint8:
        frames = frames.float() / MAX_LEVEL
    elif not frames.is_floating_point():
        raise ValueError(f"{what}: frames must be float in [0, 1] or uint8, got {frames.dtype}")
    indices, size, info = sampled_layout(frames.shape[0], *frames.shape[-2:], fps, sampling, factor, what)
    resized = resize_float(frames[indices] * MAX_LEVEL, size)  # (T', 3, h, w) on 0..255
    stand_in = resized.detach().round().clamp(0, MAX_LEVEL).to(torch.uint8).cpu()
    return resized, DecodedVideo(stand_in, indices, info, len(indices) / info.total_frames * fps)


def normalize_frames(frames: torch.Tensor, mean, std, rescale_factor: float = 1 / MAX_LEVEL) -> torch.Tensor:
    """The processor's fused rescale + normalise of 0..255 frames, per channel:
    (x - mean / s) / (std / s) with s the rescale factor (1/255), i.e. (x s - mean) / std."""
    mean = torch.as_tensor(mean, dtype=frames.dtype, device=frames.device).view(-1, 1, 1) / rescale_factor
    std = torch.as_tensor(std, dtype=frames.dtype, device=frames.device).view(-1, 1, 1) / rescale_factor
    return (frames - mean) / std


def patchify_video(
    frames: torch.Tensor, patch_size: int, merge_size: int, temporal_patch_size: int
) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """(T, C, H, W) -> (patch rows, (grid_t, grid_h, grid_w)) in the processor's order (module doc).
    A frame count not divisible by the temporal patch is padded with the last frame, as the processor."""
    if pad := -frames.shape[0] % temporal_patch_size:
        frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
    num_frames, channels, height, width = frames.shape
    block = patch_size * merge_size
    if height % block or width % block:
        raise ValueError(f"frame size {height}x{width} is not a multiple of patch x merge = {block}")
    grid_t, grid_h, grid_w = num_frames // temporal_patch_size, height // patch_size, width // patch_size
    patches = frames.reshape(
        grid_t,
        temporal_patch_size,
        channels,
        grid_h // merge_size,
        merge_size,
        patch_size,
        grid_w // merge_size,
        merge_size,
        patch_size,
    )
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    rows = patches.reshape(grid_t * grid_h * grid_w, channels * temporal_patch_size * patch_size * patch_size)
    return rows, (grid_t, grid_h, grid_w)


def video_pixel_values(frames: list[torch.Tensor], video_processor) -> tuple[torch.Tensor, torch.Tensor]:
    """``pixel_values_videos`` (sum of patches, C t p p) and ``video_grid_thw`` (N, 3) of resized
    0..255 float videos, with the video processor's own mean, std and patch sizes."""
    rows, grids = [], []
    for video in frames:
        normalized = normalize_frames(
            video, video_processor.image_mean, video_processor.image_std, video_processor.rescale_factor
        )
        patches, grid = patchify_video(
            normalized,
            video_processor.patch_size,
            video_processor.merge_size,
            video_processor.temporal_patch_size,
        )
        rows.append(patches)
        grids.append(grid)
    return torch.cat(rows), torch.tensor(grids, dtype=torch.long)
