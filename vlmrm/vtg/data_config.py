"""Typed VTG data config: the nested data YAML, one dataclass per section (docs/vtg.md, "Data YAML").

The YAML has the sections ``dataset``,
``video`` (with a nested ``resolution``), ``temporal``, ``dataloader``, ``validation`` and
``duration_batching``. Each section is a dataclass whose fields carry ``help``; every key is
checked: an unknown key anywhere is a :class:`vlmrm.core.config.ConfigError` naming the file,
the dotted key path (``video.resolution.hieght``), the closest valid key and all valid keys there,
so a typo never silently falls back to a default. Loaded by :func:`vlmrm.core.config.load_config`
(nested layout: the sections are not flat key sets, and ``batch_size`` is in two of them).

Paths: ``dataset.data_root`` follows the loader's path rule (working directory, else this file's
folder); the data files are first joined onto the root as written (:func:`resolve_under`; docs/vtg.md,
"Data YAML"), then follow the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vlmrm.core.config import (
    AT_LEAST_ONE,
    AT_LEAST_TWO,
    NON_NEGATIVE,
    POSITIVE,
    ConfigError,
    Layout,
    load_config,
    option,
    resolve_under,
)

SamplingStrategy = Literal["uniform", "random", "keyframe"]
EmbeddingInit = Literal["sinusoidal", "mean"]
DATA_ROOT = "dataset.data_root"
"""The root folder key of the data YAML: the data files' relative paths are spelled from it."""


@dataclass
class DatasetSection:
    """Where the annotations and videos are."""

    name: str = option("video_temporal_grounding", "Data set name (logged only).")
    data_root: str | None = option(
        None, "Root folder; the other relative paths are resolved against it.", path=True
    )
    annotation_file: str | None = option(
        None, "Training JSONL (video, duration, timestamp, sentence per line).", path=True, under=DATA_ROOT
    )
    video_dir: str | None = option(
        None,
        "Folder the JSONL's relative video paths resolve against (unset: the JSONL's folder).",
        path=True,
        under=DATA_ROOT,
    )


@dataclass
class ResolutionSection:
    """Frame size fed to the model; each side is rounded to a multiple of the image factor (28)."""

    height: int = option(
        384, "Frame height in pixels before rounding to the image factor.", bound=AT_LEAST_ONE
    )
    width: int = option(384, "Frame width in pixels before rounding to the image factor.", bound=AT_LEAST_ONE)


@dataclass
class VideoSection:
    """How frames are picked from a clip (see :func:`vlmrm.vtg.clips.load_vtg_clip`)."""

    max_frames: int = option(
        32,
        "Most frames sampled per clip (floored to even: Qwen's temporal patch is 2).",
        bound=AT_LEAST_TWO,
    )
    sampling_strategy: SamplingStrategy = option(
        "uniform",
        "uniform: evenly spaced; random: one random frame per equal segment; keyframe: the codec's key "
        "frames (uniform, warned once, when the decoder cannot list them or finds fewer than 2).",
    )
    resolution: ResolutionSection = field(
        default_factory=ResolutionSection, metadata={"help": "Frame height and width."}
    )
    fps: float = option(
        0.0,
        "Sample at most this many frames per second of clip; 0 = the file's own rate.",
        bound=NON_NEGATIVE,
    )


@dataclass
class TemporalSection:
    """How segments are written in the model's text (consumed by :mod:`vlmrm.vtg.time_encoding`)."""

    num_bins: int = option(100, "Bins of the relative (0-1) timestamp quantisation.", bound=AT_LEAST_TWO)
    use_relative_timestamps: bool = option(True, "Write times as fractions of the clip, not seconds.")
    use_temporal_tokens: bool = option(False, "Write times as temporal tokens <0>...<N-1>.")
    embedding_init_strategy: EmbeddingInit = option(
        "sinusoidal", "Initial embedding of new temporal tokens: sinusoidal position code or mean row."
    )
    num_temporal_tokens: int = option(1000, "Number of temporal tokens <0>...<N-1>.", bound=AT_LEAST_TWO)


@dataclass
class DataloaderSection:
    """torch DataLoader settings of the training split."""

    batch_size: int = option(
        4, "Clips per device per step (ignored when duration_batching is enabled).", bound=AT_LEAST_ONE
    )
    num_workers: int = option(4, "DataLoader worker processes (they decode the videos).", bound=NON_NEGATIVE)
    prefetch_factor: int = option(
        2, "Batches each worker prepares ahead (unused with num_workers: 0).", bound=AT_LEAST_ONE
    )
    pin_memory: bool = option(True, "Page-locked host memory for faster copies to the GPU.")


@dataclass
class ValidationSection:
    """The held-out split."""

    annotation_file: str | None = option(
        None, "Validation JSONL (same format as the training file).", path=True, under=DATA_ROOT
    )
    batch_size: int = option(8, "Validation clips per device per step.", bound=AT_LEAST_ONE)


@dataclass
class DurationBatchingSection:
    """Batches packed by total clip duration (consumed by :mod:`vlmrm.vtg.duration_sampler`)."""

    enabled: bool = option(False, "Pack batches by duration instead of a fixed batch_size.")
    target_batch_duration: float = option(
        1200.0, "Seconds of video per batch the packing aims for.", bound=POSITIVE
    )
    max_batch_size: int | None = option(None, "Most clips per batch (unset: no cap).", bound=AT_LEAST_ONE)
    min_batch_size: int = option(1, "Fewest clips per batch.", bound=AT_LEAST_ONE)
    drop_last: bool = option(False, "Drop the last, incomplete batch.")

    def __post_init__(self) -> None:
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


def load_vtg_data_config(
    source: str | Path | dict, overrides: list[str] | None = None, values: dict | None = None
) -> VTGDataConfig:
    """Read and check a VTG data YAML (path) or the same mapping (dict, e.g. from a training YAML).

    Raises:
        ConfigError: ``"<file>: <dotted.key>: <reason>"`` for an unknown key, a wrong type, a value
            outside its choices or range.
    """
    (config,) = load_config(Layout((VTGDataConfig,)), source, overrides, values, name="data config")
    return config
