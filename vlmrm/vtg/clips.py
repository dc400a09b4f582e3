"""Decode one VTG clip: the trim window, the frame picks (uniform, random, key frames), the resize.

A VTG sample's timestamps are seconds from the start of its *clip*: the whole file, or the window
[video_start, video_end] of it. Frames are chosen among the file's frames inside that window only,
and ``frame_times`` are given relative to the window start, in the same time base as the label.

Frame counts follow qwen-vl-utils (``smart_nframes`` via :func:`vlmrm.media.sampling.num_sampled_frames`):
n = window frames / file fps * fps, at most ``max_frames``, floored to even (Qwen's temporal patch
is 2 frames), at least 2. ``fps: 0`` means the file's own rate, i.e. every frame up to ``max_frames``.
Decoding goes through the project's backends (:mod:`vlmrm.media.video`), which all receive the same
indices.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from qwen_vl_utils.vision_process import round_by_factor

from vlmrm.media.sampling import (
    QWEN2_IMAGE_FACTOR,
    TEMPORAL_PATCH_SIZE,
    FrameSampling,
    num_sampled_frames,
    sample_frame_indices,
)
from vlmrm.media.video import (
    DecodedVideo,
    VideoBackend,
    VideoDecodeError,
    VideoInfo,
    decoder_threads,
    probe_video,
    resize_frames,
)
from vlmrm.vtg.data_config import ResolutionSection, VideoSection

if TYPE_CHECKING:
    from vlmrm.vtg.annotations import VTGSample

logger = logging.getLogger(__name__)

DURATION_TOLERANCE_S = 0.5
"""Declared vs decoded clip length may differ this much: above the 1-2 frames by which frame count / fps
and a cut's nominal length disagree (0.25 s at 8 fps), below the seconds-long segments VTG labels."""

FRAME_TIME_EPSILON = 1e-6
"""Float noise in ``start * fps`` (2.2 * 25 = 55.00000000000001) must not push a frame out of a window."""


class ClipWindowError(ValueError):
    """The trim window does not fit the file; ``field`` is the JSONL field to blame."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ClipWindow:
    """The clip inside its file: seconds [start, end) and frame indices [first, stop)."""

    start: float
    end: float
    first: int
    stop: int
    precut: bool = False  # video_start/video_end say where the file itself was cut from its source

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def num_frames(self) -> int:
        return self.stop - self.first


def clip_window(sample: VTGSample, info: VideoInfo) -> ClipWindow:
    """Where the sample's clip lies in its file; frame i is shown at i / fps.

    No window: the whole file. A window inside the file (its end may pass the file's end by up to
    ``DURATION_TOLERANCE_S``, then it is clamped) is the clip. A window past the file's end whose
    length equals the file's length is *provenance*: the file is already the cut (TimeRFT-style
    ``"video_start": 404.2, "video_end": 429.1`` for a 24.9 s file), so the clip is the whole file.
    Any other window outside the file raises :class:`ClipWindowError`.
    """
    file_end = info.duration
    start, end, precut = 0.0, file_end, False
    if sample.video_start is not None or sample.video_end is not None:
        start = sample.video_start if sample.video_start is not None else 0.0
        end = sample.video_end if sample.video_end is not None else file_end
        if end > file_end + DURATION_TOLERANCE_S:
            cut_file = (
                sample.video_start is not None and abs((end - start) - file_end) <= DURATION_TOLERANCE_S
            )
            if not cut_file:
                raise ClipWindowError(
                    "video_end",
                    f"trim window [{start:g}, {end:g}] s ends after the file's end ({file_end:g} s)",
                )
            start, end, precut = 0.0, file_end, True
        end = min(end, file_end)
        if start >= end:
            raise ClipWindowError(
                "video_start", f"video_start {start:g} s is at or after the file's end ({file_end:g} s)"
            )
    first = math.ceil(start * info.fps - FRAME_TIME_EPSILON)
    stop = min(info.total_frames, math.ceil(end * info.fps - FRAME_TIME_EPSILON))
    if stop - first < TEMPORAL_PATCH_SIZE:
        field = (
            "video" if sample.video_start is None and sample.video_end is None else "video_start/video_end"
        )
        raise ClipWindowError(
            field, f"the clip [{start:g}, {end:g}] s holds {max(stop - first, 0)} frame(s); sampling needs 2"
        )
    return ClipWindow(start, end, first, stop, precut)


def frame_size(resolution: ResolutionSection, image_factor: int = QWEN2_IMAGE_FACTOR) -> tuple[int, int]:
    """(height, width), each rounded to the nearest multiple of ``image_factor``, at least one factor.

    Qwen-VL cuts frames into factor x factor tiles (28 = 14 px patches merged 2 x 2), so 384 -> 392.
    """
    return tuple(
        max(image_factor, round_by_factor(side, image_factor))
        for side in (resolution.height, resolution.width)
    )


def _decord_key_frames(path: str) -> list[int]:
    import decord

    return [int(i) for i in decord.VideoReader(path, num_threads=decoder_threads()).get_key_indices()]


def _pyav_key_frames(path: str) -> list[int]:
    """Packets come in decode order (B-frames reorder them): rank by pts to get display indices."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        packets = sorted(
            (p.pts, p.is_keyframe) for p in container.demux(stream) if p.size and p.pts is not None
        )
    return [index for index, (_, key) in enumerate(packets) if key]


KEY_FRAME_LISTERS = {"decord": _decord_key_frames, "pyav": _pyav_key_frames}
"""Backends that can list key frames without decoding; torchcodec has no such call."""

_fallback_warned: set[str] = set()


def _warn_fallback_once(reason: str, message: str) -> None:
    """One warning per reason and process (each DataLoader worker warns at most once per reason)."""
    if reason not in _fallback_warned:
        _fallback_warned.add(reason)
        logger.warning(
            "%s; sampling uniformly instead (warned once, later clips fall back silently)", message
        )


def key_frame_indices(path: str, backend: VideoBackend) -> list[int] | None:
    """Display indices of the file's key frames, or None when ``backend`` cannot list them."""
    lister = KEY_FRAME_LISTERS.get(backend.name)
    if lister is None:
        return None
    try:
        return lister(path)
    except Exception as err:  # noqa: BLE001 - a listing failure degrades to uniform sampling
        logger.debug("%s: key frames not listed by %s: %s", path, backend.name, err)
        return None


def _frame_sampling(video: VideoSection, info: VideoInfo, sample_type: str) -> FrameSampling:
    return FrameSampling(
        fps=video.fps or info.fps,
        min_frames=TEMPORAL_PATCH_SIZE,
        max_frames=video.max_frames,
        sample_type=sample_type,
    )


def pick_frames(
    path: str,
    window: ClipWindow,
    info: VideoInfo,
    video: VideoSection,
    backend: VideoBackend,
    rng: np.random.Generator | None = None,
) -> tuple[list[int], str]:
    """(file frame indices, strategy used) for one clip.

    keyframe: the key frames inside the window, K, indexed at ``round(linspace(0, |K| - 1, n))``: an
    even thinning when |K| >= n, each key frame repeated when |K| < n (so every pick stays a key
    frame and the count is still n). Uniform (one warning) when the backend cannot list key frames
    or the window holds fewer than 2.
    """
    strategy = video.sampling_strategy
    if strategy == "keyframe":
        keys = key_frame_indices(path, backend)
        inside = [k for k in keys or [] if window.first <= k < window.stop]
        if keys is None:
            _warn_fallback_once(
                f"unlisted:{backend.name}", f"key frames: backend {backend.name} cannot list them"
            )
            strategy = "uniform"
        elif len(inside) < TEMPORAL_PATCH_SIZE:
            _warn_fallback_once("too_few", f"key frames: {path} has {len(inside)} inside its clip, need 2")
            strategy = "uniform"
        else:
            n = num_sampled_frames(window.num_frames, info.fps, _frame_sampling(video, info, "uniform"))
            positions = np.linspace(0, len(inside) - 1, n).round().astype(int)
            return [inside[p] for p in positions], "keyframe"
    sampling = _frame_sampling(video, info, strategy)
    offsets = sample_frame_indices(window.num_frames, info.fps, sampling, rng)
    return [window.first + offset for offset in offsets], strategy


@dataclass
class VTGClip:
    """The frames of one clip, when each was shown, and how they were picked."""

    decoded: DecodedVideo  # frames (T, 3, H, W) uint8, file frame indices, the file's VideoInfo
    frame_times: list[float]  # seconds from the clip start, one per frame
    window: ClipWindow
    strategy: str  # the strategy that picked the frames ("uniform" after a key-frame fallback)

    @property
    def frames(self) -> torch.Tensor:
        return self.decoded.frames

    @property
    def duration(self) -> float:
        return self.window.duration

    def metadata(self) -> dict:
        """transformers' ``VideoMetadata`` of the clip alone (indices from the window's first frame), so
        Qwen3-VL's frame timestamps are in the label's time base."""
        return {
            "fps": self.decoded.info.fps,
            "frames_indices": [i - self.window.first for i in self.decoded.indices],
            "total_num_frames": self.window.num_frames,
            "duration": self.window.duration,
        }


def load_vtg_clip(
    sample: VTGSample,
    video: VideoSection,
    backend: VideoBackend,
    image_factor: int = QWEN2_IMAGE_FACTOR,
    rng: np.random.Generator | None = None,
) -> VTGClip:
    """Probe, find the window, pick frames inside it, decode only those, resize to ``video.resolution``.

    Raises:
        VideoDecodeError: naming the file, for a missing / unreadable file or a window that does not fit.
    """
    path = str(sample.video)
    info = probe_video(path, backend)
    try:
        window = clip_window(sample, info)
    except ClipWindowError as err:
        raise VideoDecodeError(path, str(err)) from err
    indices, strategy = pick_frames(path, window, info, video, backend, rng)
    try:
        raw = backend.read(path, indices)
    except Exception as err:
        raise VideoDecodeError(path, f"decoding failed with {backend.name}: {err}") from err
    frames = torch.from_numpy(np.ascontiguousarray(raw)).permute(0, 3, 1, 2)  # (T, 3, H, W)
    frames = resize_frames(frames, frame_size(video.resolution, image_factor))
    decoded = DecodedVideo(frames, indices, info, sample_fps=len(indices) / window.duration)
    frame_times = [index / info.fps - window.start for index in indices]
    return VTGClip(decoded, frame_times, window, strategy)
