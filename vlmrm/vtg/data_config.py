"""Typed VTG data config: the reference's nested data YAML, one dataclass per section.

The YAML (``configs/data/video_config.yaml`` in the reference) has the sections ``dataset``,
``video`` (with a nested ``resolution``), ``temporal``, ``dataloader``, ``validation`` and
``duration_batching``. Each section is a dataclass whose fields carry ``help``; every key is
checked: an unknown key anywhere is a :class:`vlmrm.config.ConfigError` naming the file, the
dotted key path (``video.resolution.hieght``), the closest valid key and all valid keys there, so
a typo never silently falls back to a default.

Why not ``HfArgumentParser`` (as :mod:`vlmrm.config`): it reads flat key sets; this YAML is nested
and its section names (``batch_size`` in two sections) overlap.
"""

from __future__ import annotations

import difflib
import math
import types
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from vlmrm.config import ConfigError, _opt, read_yaml

SamplingStrategy = Literal["uniform", "random", "keyframe"]
EmbeddingInit = Literal["sinusoidal", "mean"]


def resolve_under(path: str, root: str | Path | None) -> str:
    """``path`` joined onto ``root``, unless absolute or already spelled from ``root``.

    The reference writes ``data_root: ./data`` next to ``annotation_file:
    ./data/annotations/train.jsonl`` (and video paths ``./data/videos/...`` next to ``video_dir:
    ./data/videos``): such a path already starts with the root's components and is kept as is;
    ``annotations/train.jsonl`` becomes ``data/annotations/train.jsonl``. Idempotent.
    """
    candidate = Path(path)
    if root is None or candidate.is_absolute():
        return str(candidate)
    base = Path(root)
    if candidate.parts[: len(base.parts)] == base.parts:
        return str(candidate)
    return str(base / candidate)


def _positive(value: float, name: str, minimum: float = 1) -> None:
    if value < minimum:
        raise ConfigError(f"{name}: must be >= {minimum:g}, got {value}")


@dataclass
class DatasetSection:
    """Where the annotations and videos are."""

    name: str = _opt("video_temporal_grounding", "Data set name (logged only).")
    data_root: str | None = _opt(None, "Root folder; the other relative paths are resolved against it.")
    annotation_file: str | None = _opt(
        None, "Training JSONL (video, duration, timestamp, sentence per line)."
    )
    video_dir: str | None = _opt(
        None, "Folder the JSONL's relative video paths resolve against (unset: the JSONL's folder)."
    )


@dataclass
class ResolutionSection:
    """Frame size fed to the model; each side is rounded to a multiple of the image factor (28)."""

    height: int = _opt(384, "Frame height in pixels before rounding to the image factor.")
    width: int = _opt(384, "Frame width in pixels before rounding to the image factor.")

    def __post_init__(self) -> None:
        _positive(self.height, "height")
        _positive(self.width, "width")


@dataclass
class VideoSection:
    """How frames are picked from a clip (see :func:`vlmrm.vtg.clip.load_vtg_clip`)."""

    max_frames: int = _opt(32, "Most frames sampled per clip (floored to even: Qwen's temporal patch is 2).")
    sampling_strategy: SamplingStrategy = _opt(
        "uniform",
        "uniform: evenly spaced; random: one random frame per equal segment; keyframe: the codec's key "
        "frames (uniform, warned once, when the decoder cannot list them or finds fewer than 2).",
    )
    resolution: ResolutionSection = field(
        default_factory=ResolutionSection, metadata={"help": "Frame height and width."}
    )
    fps: float = _opt(0.0, "Sample at most this many frames per second of clip; 0 = the file's own rate.")

    def __post_init__(self) -> None:
        _positive(self.max_frames, "max_frames", 2)
        if not math.isfinite(self.fps) or self.fps < 0:
            raise ConfigError(f"fps: must be >= 0 (0 = the file's rate), got {self.fps}")


@dataclass
class TemporalSection:
    """How segments are written in the model's text (consumed by :mod:`vlmrm.vtg.temporal`)."""

    num_bins: int = _opt(100, "Bins of the relative (0-1) timestamp quantisation.")
    use_relative_timestamps: bool = _opt(True, "Write times as fractions of the clip, not seconds.")
    use_temporal_tokens: bool = _opt(False, "Write times as temporal tokens <0>...<N-1>.")
    embedding_init_strategy: EmbeddingInit = _opt(
        "sinusoidal", "Initial embedding of new temporal tokens: sinusoidal position code or mean row."
    )
    num_temporal_tokens: int = _opt(1000, "Number of temporal tokens <0>...<N-1>.")

    def __post_init__(self) -> None:
        _positive(self.num_bins, "num_bins", 2)
        _positive(self.num_temporal_tokens, "num_temporal_tokens", 2)


@dataclass
class DataloaderSection:
    """torch DataLoader settings of the training split."""

    batch_size: int = _opt(4, "Clips per device per step (ignored when duration_batching is enabled).")
    num_workers: int = _opt(4, "DataLoader worker processes (they decode the videos).")
    prefetch_factor: int = _opt(2, "Batches each worker prepares ahead (unused with num_workers: 0).")
    pin_memory: bool = _opt(True, "Page-locked host memory for faster copies to the GPU.")

    def __post_init__(self) -> None:
        _positive(self.batch_size, "batch_size")
        _positive(self.num_workers, "num_workers", 0)
        _positive(self.prefetch_factor, "prefetch_factor")


@dataclass
class ValidationSection:
    """The held-out split."""

    annotation_file: str | None = _opt(None, "Validation JSONL (same format as the training file).")
    batch_size: int = _opt(8, "Validation clips per device per step.")

    def __post_init__(self) -> None:
        _positive(self.batch_size, "batch_size")


@dataclass
class DurationBatchingSection:
    """Batches packed by total clip duration (consumed by :mod:`vlmrm.vtg.sampler`)."""

    enabled: bool = _opt(False, "Pack batches by duration instead of a fixed batch_size.")
    target_batch_duration: float = _opt(1200.0, "Seconds of video per batch the packing aims for.")
    max_batch_size: int | None = _opt(None, "Most clips per batch (unset: no cap).")
    min_batch_size: int = _opt(1, "Fewest clips per batch.")
    drop_last: bool = _opt(False, "Drop the last, incomplete batch.")

    def __post_init__(self) -> None:
        if not math.isfinite(self.target_batch_duration) or self.target_batch_duration <= 0:
            raise ConfigError(f"target_batch_duration: must be > 0 seconds, got {self.target_batch_duration}")
        _positive(self.min_batch_size, "min_batch_size")
        if self.max_batch_size is not None and self.max_batch_size < self.min_batch_size:
            raise ConfigError(
                f"max_batch_size ({self.max_batch_size}) < min_batch_size ({self.min_batch_size})"
            )


@dataclass
class VTGDataConfig:
    """The whole data YAML. Relative paths are resolved against ``dataset.data_root`` on creation."""

    dataset: DatasetSection = field(
        default_factory=DatasetSection, metadata={"help": "Annotation and video locations."}
    )
    video: VideoSection = field(default_factory=VideoSection, metadata={"help": "Frame sampling."})
    temporal: TemporalSection = field(
        default_factory=TemporalSection, metadata={"help": "Timestamp encoding."}
    )
    dataloader: DataloaderSection = field(
        default_factory=DataloaderSection, metadata={"help": "Training DataLoader."}
    )
    validation: ValidationSection = field(
        default_factory=ValidationSection, metadata={"help": "Held-out split."}
    )
    duration_batching: DurationBatchingSection = field(
        default_factory=DurationBatchingSection, metadata={"help": "Duration packing."}
    )

    def __post_init__(self) -> None:
        root = self.dataset.data_root
        for section, name in (
            (self.dataset, "annotation_file"),
            (self.dataset, "video_dir"),
            (self.validation, "annotation_file"),
        ):
            value = getattr(section, name)
            if value is not None:
                setattr(section, name, resolve_under(value, root))


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the field's annotation; int -> float is the only silent conversion.

    PyYAML reads ``1e3`` (no dot) as a string: for float fields a numeric string is converted, as
    the style guide asks ("convert or reject, never pass a string on").
    """
    if hint is Any:
        return value
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return value
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [arg for arg in get_args(hint) if arg is not type(None)]
        return _coerce(value, inner, key)
    if origin is list:
        (item,) = get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        if is_dataclass(item):
            return [build_section(item, entry, f"{key}[{i}]") for i, entry in enumerate(value)]
        return [_coerce(entry, item, f"{key}[{i}]") for i, entry in enumerate(value)]
    if origin is Literal:
        if value not in get_args(hint):
            choices = ", ".join(repr(c) for c in get_args(hint))
            raise ConfigError(f"{key}: must be one of {choices}, got {value!r}")
        return value
    if hint is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (bool, str) and isinstance(value, hint):
        return value
    raise ConfigError(f"{key}: expected {_type_name(hint)}, got {type(value).__name__} {value!r}")


def build_section(cls: type, values: Any, prefix: str = "") -> Any:
    """One section from its mapping, recursing into nested sections; errors carry the dotted path."""
    where = prefix or "the top level"
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of key: value, got {type(values).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown key '{dotted}'{hint} (valid keys in {where}: {', '.join(names)})")
        if is_dataclass(hints[key]):
            kwargs[key] = build_section(hints[key], value, dotted)
        else:
            kwargs[key] = _coerce(value, hints[key], dotted)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{prefix}.{err}" if prefix else str(err)) from None


def load_vtg_data_config(source: str | Path | dict) -> VTGDataConfig:
    """Read and check a VTG data YAML (path) or the same mapping (dict, e.g. from a training YAML).

    Raises:
        ConfigError: ``"<file>: <dotted.key>: <reason>"`` for an unknown key, a wrong type, a value
            outside its choices or range.
    """
    if isinstance(source, dict):
        values, name = source, "data config"
    else:
        values, name = read_yaml(source), str(source)
    try:
        return build_section(VTGDataConfig, values, "")
    except ConfigError as err:
        raise ConfigError(f"{name}: {err}") from None
