"""Video decoding with qwen-vl-utils' sampling rules and an explicit, selectable backend.

Why not call ``qwen_vl_utils.fetch_video``: its fallback on any decoder error is torchvision's
video reader, which decodes the *whole file* and is gone from current torchvision, and it picks
the backend from an environment variable. Here the frame *math* is qwen-vl-utils' (``smart_nframes``
restated in :mod:`vlmrm.media.sampling` and tested equal, its ``smart_resize`` with ``fetch_video``'s
pixel caps, ``linspace(...).round()``), and the backend is chosen once,
logged once, and never silently swapped. Every backend receives the same indices, so the *frames*
a model sees (which ones, how many, at what size) do not depend on which decoder is installed.

Their *pixels* agree exactly only for 4:2:0 video of even height: every codec-level frame is the
same, but for an odd height PyAV (``to_ndarray("rgb24")``, swscale) and decord upsample the
chroma planes differently, and no PyAV interpolation or frame-size choice reproduces decord's
result. Measured on mpeg4 yuv420p clips of 24-89 pixels a side (tests/media/test_fidelity.py):
even heights bit-identical (odd widths too); odd heights a mean |difference| of 1-2.4 levels, up
to 59-68 / 255 on random noise and up to 104 / 255 at sharp colour edges (chroma bleeds over by one pixel). Train
and score with one backend (``video_backend``; the frame cache keys on it) when that matters.
decord 0.6 also fails on some odd sizes (a 75x48 clip decodes 100 rows high: a copy-size error).

Rotation metadata (the display matrix a phone writes for a portrait clip) is applied by every
backend, so frames are upright as a player shows them whichever decoder reads them: decord applies
it itself, PyAV's frames carry it (``VideoFrame.rotation``, counter-clockwise degrees) and are
turned here with ``np.rot90(frame, rotation / 90)``; :class:`VideoInfo` reports the displayed size.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from vlmrm.media.sampling import QWEN2_IMAGE_FACTOR, FrameSampling, resized_frame_size, sample_frame_indices

logger = logging.getLogger(__name__)

BackendName = Literal["decord", "pyav", "torchcodec"]
AUTO_BACKEND_ORDER: tuple[BackendName, ...] = ("torchcodec", "decord", "pyav")
"""``auto`` prefers torchcodec (PyTorch's own decoder), then decord (fast seeks), then PyAV."""


MAX_VIDEO_PIXELS = 7680 * 4320
"""Largest frame accepted (8K UHD, 33.2e6 pixels): no camera records more, and one decoded RGB frame
takes 3 bytes a pixel (100 MB here) before it is resized, so a larger header is refused undecoded."""


class VideoDecodeError(RuntimeError):
    """A video file is missing, unreadable or has too few frames."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    """What the decoder reports about a file; sampling is computed from these numbers."""

    total_frames: int
    fps: float
    height: int
    width: int

    @property
    def duration(self) -> float:
        return self.total_frames / self.fps if self.fps > 0 else 0.0


@dataclass
class DecodedVideo:
    """Sampled, resized frames of one video plus what the processor needs to know about them."""

    frames: torch.Tensor  # (T, 3, H, W) uint8
    indices: list[int]
    info: VideoInfo
    sample_fps: float

    def metadata(self) -> dict:
        """transformers' ``VideoMetadata`` fields (Qwen3-VL turns them into frame timestamps)."""
        return {
            "fps": self.info.fps,
            "frames_indices": list(self.indices),
            "total_num_frames": self.info.total_frames,
            "duration": self.info.duration,
        }


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic, antialiased resize as qwen-vl-utils' ``fetch_video``, back to uint8 (T, 3, H, W)."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    resized = TF.resize(frames.float(), list(size), interpolation=InterpolationMode.BICUBIC, antialias=True)
    return resized.round().clamp(0, 255).to(torch.uint8)


# --- backends: each returns VideoInfo and (T, H, W, 3) uint8 frames at given indices -----------

AUTO_THREADS = 0
"""decord's and FFmpeg's (PyAV's) value for "as many decoder threads as cores"."""


def decoder_threads() -> int:
    """1 inside a DataLoader worker, else auto: N workers each starting a thread per core would
    oversubscribe the cores (PyTorch likewise sets 1 intra-op thread in each worker)."""
    return 1 if torch.utils.data.get_worker_info() is not None else AUTO_THREADS


def _decord_info(path: str) -> VideoInfo:
    import decord

    reader = decord.VideoReader(path, num_threads=decoder_threads())
    height, width = reader[0].shape[:2]
    return VideoInfo(len(reader), float(reader.get_avg_fps()), int(height), int(width))


def _decord_read(path: str, indices: list[int]) -> np.ndarray:
    import decord

    reader = decord.VideoReader(path, num_threads=decoder_threads())
    return reader.get_batch(indices).asnumpy()


RIGHT_ANGLE = 90
"""Display rotations are multiples of 90 degrees; ``np.rot90`` turns by one quarter per step."""


def _quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns of a display rotation in degrees (-90 -> 3)."""
    return round(rotation / RIGHT_ANGLE) % 4


def _displayed(frame) -> np.ndarray:
    """A PyAV frame as RGB, turned upright by its display rotation (as decord and players do)."""
    pixels = frame.to_ndarray(format="rgb24")
    turns = _quarter_turns(frame.rotation)
    return np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels


def _pyav_rotation(path: str) -> int:
    """Quarter turns of the first video frame (the display matrix applies to the whole stream)."""
    import av

    with av.open(path) as container:
        for frame in container.decode(container.streams.video[0]):
            return _quarter_turns(frame.rotation)
    return 0


def _pyav_info(path: str) -> VideoInfo:
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        total = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
        height, width = int(stream.height), int(stream.width)
    if _pyav_rotation(path) % 2:
        height, width = width, height
    return VideoInfo(int(total), fps, height, width)


def _pyav_read(path: str, indices: list[int]) -> np.ndarray:
    """Decode in order up to the last wanted index; keeps only the wanted frames in memory."""
    import av

    wanted = sorted(set(indices))
    by_index: dict[int, np.ndarray] = {}
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = decoder_threads()
        position = 0
        for frame in container.decode(stream):
            if position in wanted:
                by_index[position] = _displayed(frame)
            position += 1
            if position > wanted[-1]:
                break
    missing = [i for i in wanted if i not in by_index]
    if missing:
        raise ValueError(f"decoded {position} frames, frames {missing[:5]} not reached")
    return np.stack([by_index[i] for i in indices])


def _torchcodec_info(path: str) -> VideoInfo:
    from torchcodec.decoders import VideoDecoder

    meta = VideoDecoder(path).metadata
    return VideoInfo(int(meta.num_frames), float(meta.average_fps), int(meta.height), int(meta.width))


def _torchcodec_read(path: str, indices: list[int]) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    batch = VideoDecoder(path).get_frames_at(indices=indices)
    return batch.data.permute(0, 2, 3, 1).numpy()


@dataclass(frozen=True)
class VideoBackend:
    name: BackendName
    info: Callable[[str], VideoInfo]
    read: Callable[[str, list[int]], np.ndarray]
    module: str


BACKENDS: dict[str, VideoBackend] = {
    "decord": VideoBackend("decord", _decord_info, _decord_read, "decord"),
    "pyav": VideoBackend("pyav", _pyav_info, _pyav_read, "av"),
    "torchcodec": VideoBackend("torchcodec", _torchcodec_info, _torchcodec_read, "torchcodec"),
}


def backend_usable(name: str) -> bool:
    """Installed *and* importable (torchcodec installs without the FFmpeg libraries it needs)."""
    module = BACKENDS[name].module
    if importlib.util.find_spec(module) is None:
        return False
    try:
        __import__(module if name != "torchcodec" else "torchcodec.decoders")
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return False
    return True


@cache
def resolve_backend(name: str = "auto") -> VideoBackend:
    """Pick the decoder once; log the choice once; an explicit name that can't load is an error."""
    if name == "auto":
        for candidate in AUTO_BACKEND_ORDER:
            if backend_usable(candidate):
                logger.info("video backend: %s (auto; order %s)", candidate, ", ".join(AUTO_BACKEND_ORDER))
                return BACKENDS[candidate]
        raise RuntimeError("no video decoder is usable: install decord or av (PyAV)")
    if name not in BACKENDS:
        raise ValueError(f"video_backend: unknown {name!r}; choose auto, {', '.join(BACKENDS)}")
    if not backend_usable(name):
        raise RuntimeError(f"video_backend: {name!r} is not installed or cannot load on this machine")
    logger.info("video backend: %s", name)
    return BACKENDS[name]


def _header_frame_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of the first video stream from the container header, no frame decoded; None
    when PyAV cannot open the file (the backend then reports it in its own words)."""
    import av

    try:
        container = av.open(str(path))
    except Exception:  # noqa: BLE001 - unreadable here; the chosen backend gives the verdict
        return None
    with container:
        if not container.streams.video:
            found = ", ".join(f"{s.type} {s.codec_context.name}" for s in container.streams) or "none"
            raise VideoDecodeError(path, f"no video stream (streams: {found})")
        stream = container.streams.video[0]
        return int(stream.width), int(stream.height)


def probe_video(path: str | Path, backend: VideoBackend, max_pixels: int = MAX_VIDEO_PIXELS) -> VideoInfo:
    """Frame count, fps and size as the decoder sees them; errors name the file.

    What the file holds decides, never its extension (an mp4 named .txt is a video, a PNG named .mp4
    is one still frame). The frame size is read from the header and checked against ``max_pixels``
    before the backend decodes anything.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "file not found")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")
    size = _header_frame_size(path)
    if size is not None and size[0] * size[1] > max_pixels:
        raise VideoDecodeError(
            path,
            f"frames of {size[0]}x{size[1]} = {size[0] * size[1]} pixels exceed the maximum {max_pixels}"
            " (MAX_VIDEO_PIXELS)",
        )
    try:
        info = backend.info(str(path))
    except Exception as err:
        raise VideoDecodeError(path, f"unreadable by {backend.name}: {err}") from err
    if info.total_frames <= 0:
        raise VideoDecodeError(path, "no video frames")
    if not math.isfinite(info.fps) or info.fps <= 0:
        raise VideoDecodeError(path, f"invalid frame rate {info.fps}")
    return info


def video_truncation(path: str | Path) -> str | None:
    """Why a file's frame data ends before its index says, or None (also when it cannot tell).

    An mp4 written with its index first ("faststart") and cut short still probes with every frame
    counted; decoding then fails at the missing frames, mid-epoch. The check seeks to the last keyframe
    and reads (never decodes) the packets from there: the last one must end where the stream's
    declared duration ends, within half a frame (rounding of time stamps).
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is None:
            return None
        start = stream.start_time or 0
        end = start + stream.duration
        try:
            container.seek(end, stream=stream, backward=True, any_frame=False)
        except av.FFmpegError:  # a container that cannot seek: no verdict
            return None
        reached, frame = None, 0
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                reached = max(reached or 0, packet.pts + (packet.duration or 0))
                frame = packet.duration or frame
        if reached is None or reached < end - frame / 2:
            declared = float((end - start) * stream.time_base)
            return f"truncated: its last frames are missing (the index declares {declared:.2f} s)"
    return None


DecodeCheck = Literal["header", "sampled", "all"]
"""How much of each video validation decodes: ``header`` probes (frame count, rate, size, truncated
index), ``sampled`` also decodes the frames training samples (uniform sampling), ``all`` decodes
every frame, for damage in the middle of a stream that a probe cannot see."""

DECODE_CHUNK_FRAMES = 64
"""``decode: all`` reads this many frames per backend call, so memory stays one chunk of frames."""


def decode_problem(
    path: str | Path, info: VideoInfo, backend: VideoBackend, decode: DecodeCheck, indices: list[int]
) -> str | None:
    """Why ``backend`` fails to decode the frames ``decode`` asks for, or None. ``indices``: the
    frames training samples (``sampled``); ``all`` reads ``range(total_frames)`` in chunks."""
    if decode == "header":
        return None
    wanted = indices if decode == "sampled" else list(range(info.total_frames))
    for start in range(0, len(wanted), DECODE_CHUNK_FRAMES):
        chunk = wanted[start : start + DECODE_CHUNK_FRAMES]
        try:
            frames = backend.read(str(path), chunk)
        except Exception as err:  # noqa: BLE001 - any decoder failure is this file's problem
            return f"decoding frames {chunk[0]}-{chunk[-1]} failed with {backend.name}: {err}"
        if frames.shape[0] != len(chunk) or frames.shape[1:3] != (info.height, info.width):
            return (
                f"{backend.name} returned {frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[1]} "
                f"for frames {chunk[0]}-{chunk[-1]}; expected {len(chunk)} of {info.width}x{info.height}"
            )
    return None


def load_video(
    path: str | Path,
    sampling: FrameSampling,
    backend: VideoBackend,
    image_factor: int = QWEN2_IMAGE_FACTOR,
    rng: np.random.Generator | None = None,
) -> DecodedVideo:
    """Probe, sample indices, decode only those frames, resize to multiples of ``image_factor``."""
    info = probe_video(path, backend)
    try:
        indices = sample_frame_indices(info.total_frames, info.fps, sampling, rng)
    except ValueError as err:
        raise VideoDecodeError(path, str(err)) from err
    try:
        raw = backend.read(str(path), indices)
    except Exception as err:
        raise VideoDecodeError(path, f"decoding failed with {backend.name}: {err}") from err
    frames = torch.from_numpy(np.ascontiguousarray(raw)).permute(0, 3, 1, 2)  # (T, 3, H, W)
    size = _frame_size(path, frames.shape[-2], frames.shape[-1], sampling, image_factor, len(indices))
    return DecodedVideo(resize_frames(frames, size), indices, info, _sample_fps(indices, info))


def _frame_size(path, height: int, width: int, sampling: FrameSampling, factor: int, nframes: int):
    try:
        return resized_frame_size(height, width, sampling, factor, nframes)
    except ValueError as err:
        raise VideoDecodeError(path, str(err)) from err


def _sample_fps(indices: list[int], info: VideoInfo) -> float:
    """Frames per second of the sampled frames: n / total x fps."""
    return len(indices) / max(info.total_frames, 1) * info.fps


def placeholder_video(
    path: str | Path, sampling: FrameSampling, backend: VideoBackend, image_factor: int = QWEN2_IMAGE_FACTOR
) -> DecodedVideo:
    """What :func:`load_video` returns with uniform sampling, black pixels, nothing decoded: the
    same frame count, size and metadata, so the processor gives the same tokens (sequence lengths
    at validation)."""
    info = probe_video(path, backend)
    try:
        indices = sample_frame_indices(info.total_frames, info.fps, replace(sampling, sample_type="uniform"))
    except ValueError as err:
        raise VideoDecodeError(path, str(err)) from err
    height, width = _frame_size(path, info.height, info.width, sampling, image_factor, len(indices))
    frames = torch.zeros((len(indices), 3, height, width), dtype=torch.uint8)
    return DecodedVideo(frames, indices, info, _sample_fps(indices, info))
