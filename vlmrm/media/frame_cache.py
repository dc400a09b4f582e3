"""Decoded, resized frames of each video on local disk, so later epochs and runs skip decoding.

Why: decoding + resizing is the CPU-side cost of a video reward-model step (public Qwen-VL training
reports show GPUs waiting on it); a hit is one ``np.load`` of uint8 frames.

Key: SHA-256 of the file's resolved path, size and mtime (ns) and *every* input of
:func:`vlmrm.media.video.load_video`'s result: all :class:`FrameSampling` fields, the backend's
name, the resize factor and :data:`CACHE_FORMAT_VERSION`. A changed file or parameter is a new key,
so a stale entry is never served, only left for eviction.

Writes are atomic: each writer (DataLoader worker, rank) saves to its own temporary name in the
entry's folder and ``os.replace``-s it onto the key, so readers see a whole entry or none, and
two writers of one key both leave a valid file. An entry is a JSON header plus raw uint8 frames
(:func:`encode_entry`), read in one call without pickle or zip: a cache directory cannot make us
run code, and a hit costs about a file read.

Size limit: least-recently-used entries (mtime, touched on every hit) are deleted once the folder
exceeds ``max_bytes``. Each process rescans the folder after writing :data:`RESCAN_FRACTION` of the
limit, so the folder can overshoot by about that fraction per writing process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import uuid
from pathlib import Path

import numpy as np
import torch

from vlmrm.media.sampling import QWEN2_IMAGE_FACTOR, FrameSampling
from vlmrm.media.video import DecodedVideo, VideoBackend, VideoInfo, load_video

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 3
"""Bump when the stored layout or the frame pipeline changes: old entries stop matching (3: PyAV
applies rotation metadata, so rotated clips cached by PyAV under 2 were stored sideways)."""
ENTRY_SUFFIX = ".frames"
ENTRY_MAGIC = b"VLMRMFC2"
HEADER_LENGTH_BYTES = 4
RESCAN_FRACTION = 0.05
"""A process re-measures the folder after writing this fraction of the limit (bounds the overshoot
without a stat of every entry on every write)."""
BYTES_PER_GB = 1024**3


def encode_entry(video: DecodedVideo) -> bytes:
    """:data:`ENTRY_MAGIC`, the JSON header's length (4 bytes, little-endian), the JSON header (frame
    shape, indices, probe info, sample fps), then the raw uint8 frames: one read, no zip, no pickle."""
    info = video.info
    header = json.dumps(
        {
            "shape": list(video.frames.shape),
            "indices": list(video.indices),
            "info": [info.total_frames, info.fps, info.height, info.width],
            "sample_fps": video.sample_fps,
        }
    ).encode()
    frames = video.frames.contiguous().numpy().tobytes()
    return ENTRY_MAGIC + len(header).to_bytes(HEADER_LENGTH_BYTES, "little") + header + frames


def decode_entry(data: bytes) -> DecodedVideo:
    """Inverse of :func:`encode_entry`; ``ValueError`` for anything else (a foreign or cut file)."""
    start = len(ENTRY_MAGIC) + HEADER_LENGTH_BYTES
    if not data.startswith(ENTRY_MAGIC) or len(data) < start:
        raise ValueError("not a frame-cache entry")
    length = int.from_bytes(data[len(ENTRY_MAGIC) : start], "little")
    header = json.loads(data[start : start + length])
    shape = tuple(header["shape"])
    pixels = np.frombuffer(data, dtype=np.uint8, offset=start + length)
    if pixels.size != math.prod(shape):
        raise ValueError(f"{pixels.size} frame bytes for shape {shape}")
    total, fps, height, width = header["info"]
    return DecodedVideo(
        torch.from_numpy(pixels.reshape(shape).copy()),
        list(header["indices"]),
        VideoInfo(int(total), float(fps), int(height), int(width)),
        float(header["sample_fps"]),
    )


class FrameCache:
    """``load(path, sampling, backend, factor)`` = ``load_video(...)``, from disk when cached."""

    def __init__(self, root: str | Path, max_gb: float | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = None if max_gb is None else int(max_gb * BYTES_PER_GB)
        self._written_since_scan = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(path: str | Path, sampling: FrameSampling, backend: VideoBackend, image_factor: int) -> str:
        path = Path(path).resolve()
        stat = path.stat()
        fields = {
            "version": CACHE_FORMAT_VERSION,
            "path": str(path),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sampling": dataclasses.asdict(sampling),
            "backend": backend.name,
            "image_factor": image_factor,
        }
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def entry_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}{ENTRY_SUFFIX}"

    def holds(
        self, path: str | Path, sampling: FrameSampling, backend: VideoBackend, image_factor: int
    ) -> bool:
        """Whether :meth:`load` finds an entry for this video (read, not decoded, unless damaged)."""
        return (
            Path(path).is_file()
            and self.entry_path(self.key(path, sampling, backend, image_factor)).is_file()
        )

    def load(
        self,
        path: str | Path,
        sampling: FrameSampling,
        backend: VideoBackend,
        image_factor: int = QWEN2_IMAGE_FACTOR,
    ) -> DecodedVideo:
        if sampling.sample_type != "uniform":
            raise ValueError("the frame cache needs sample_type: uniform (random frames differ per epoch)")
        if not Path(path).is_file():  # the decoder's own error message names the file
            return load_video(path, sampling, backend, image_factor)
        entry = self.entry_path(self.key(path, sampling, backend, image_factor))
        video = self._read(entry)
        if video is not None:
            self.hits += 1
            return video
        self.misses += 1
        video = load_video(path, sampling, backend, image_factor)
        self._write(entry, video)
        return video

    def _read(self, entry: Path) -> DecodedVideo | None:
        try:
            data = entry.read_bytes()
        except FileNotFoundError:
            return None
        try:
            video = decode_entry(data)
        except (ValueError, KeyError, TypeError) as err:
            logger.warning("frame cache: dropping unreadable entry %s (%s)", entry, err)
            entry.unlink(missing_ok=True)
            return None
        try:
            os.utime(entry)  # least-recently-used order for eviction
        except FileNotFoundError:
            pass  # evicted by another process after we read it
        return video

    def _write(self, entry: Path, video: DecodedVideo) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        temporary = entry.with_name(f".{entry.stem}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            temporary.write_bytes(encode_entry(video))
            size = temporary.stat().st_size  # the entry itself may be evicted or replaced at once
            os.replace(temporary, entry)
        except OSError as err:  # a full or read-only cache disk slows training down, never stops it
            logger.warning("frame cache: could not write %s (%s)", entry, err)
            temporary.unlink(missing_ok=True)
            return
        self._written_since_scan += size
        if self.max_bytes is not None and self._written_since_scan >= RESCAN_FRACTION * self.max_bytes:
            self.evict()

    def entries(self) -> list[tuple[float, int, Path]]:
        """(mtime, bytes, path) of every complete entry (temporary files are not entries)."""
        found = []
        for entry in self.root.glob(f"*/*{ENTRY_SUFFIX}"):
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            found.append((stat.st_mtime, stat.st_size, entry))
        return found

    def evict(self) -> int:
        """Delete least-recently-used entries until the folder fits ``max_bytes``; returns how many."""
        self._written_since_scan = 0
        if self.max_bytes is None:
            return 0
        found = sorted(self.entries())
        total = sum(size for _, size, _ in found)
        removed = 0
        for _, size, entry in found:
            if total <= self.max_bytes:
                break
            entry.unlink(missing_ok=True)
            total -= size
            removed += 1
        if removed:
            logger.info("frame cache: evicted %d entries to stay under %d bytes", removed, self.max_bytes)
        return removed


def frame_cache_from_config(data) -> FrameCache | None:
    """The cache a :class:`vlmrm.reward.config.DataConfig` asks for (``frame_cache_dir`` unset = none)."""
    if not data.frame_cache_dir:
        return None
    return FrameCache(data.frame_cache_dir, data.frame_cache_max_gb)
