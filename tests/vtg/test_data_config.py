"""The VTG data YAML (docs/vtg.md, "Data YAML"): the documented example loads, every bad key or value names its dotted path."""

from dataclasses import fields, is_dataclass

import pytest

from vlmrm.core.config import ConfigError, resolve_under
from vlmrm.vtg.data_config import VTGDataConfig, load_vtg_data_config

EXAMPLE_YAML = """\
dataset:
  name: "video_temporal_grounding"
  data_root: "./data"                              # Root directory for data
  annotation_file: "./data/annotations/train.jsonl" # Path to training annotations
  video_dir: "./data/videos"                       # Base directory for video files

video:
  max_frames: 32                    # Maximum frames to sample per video
  sampling_strategy: "uniform"      # Frame sampling: uniform, random, keyframe
  resolution:
    height: 384                     # Input resolution height
    width: 384                      # Input resolution width
  fps: 0                            # Frame rate (0 = use original)

temporal:
  num_bins: 100                     # Number of temporal bins for discretization
  use_relative_timestamps: true     # Use normalized timestamps (0-1)
  use_temporal_tokens: false        # Use temporal tokens (<0>~<999>)

dataloader:
  batch_size: 4                     # Batch size per GPU
  num_workers: 4                    # Data loading workers
  prefetch_factor: 2                # Prefetch batches
  pin_memory: true                  # Pin memory for faster GPU transfer

validation:
  annotation_file: "./data/annotations/val.jsonl"  # Validation annotations
  batch_size: 8                     # Validation batch size

duration_batching:
  enabled: true                        # Enable duration-based batching
  target_batch_duration: 1200.0        # Target total duration (seconds) per batch
  max_batch_size: null                 # Optional: Maximum videos per batch
  min_batch_size: 1                    # Minimum videos per batch
  drop_last: false                     # Whether to drop incomplete batches
"""
"""A data YAML with every section of docs/vtg.md, "Data YAML", duration_batching included."""


def write_yaml(tmp_path, text: str):
    path = tmp_path / "video_config.yaml"
    path.write_text(text)
    return path


def test_reference_yaml_loads_with_its_values(tmp_path):
    config = load_vtg_data_config(write_yaml(tmp_path, EXAMPLE_YAML))
    assert config.video.max_frames == 32 and config.video.sampling_strategy == "uniform"
    assert (config.video.resolution.height, config.video.resolution.width) == (384, 384)
    assert config.video.fps == 0.0 and isinstance(config.video.fps, float)
    assert config.temporal.num_bins == 100 and config.temporal.use_relative_timestamps is True
    assert config.temporal.use_temporal_tokens is False
    assert config.temporal.embedding_init_strategy == "sinusoidal"  # not in the YAML: the default
    assert (config.dataloader.batch_size, config.dataloader.num_workers) == (4, 4)
    assert config.validation.batch_size == 8
    assert config.duration_batching.enabled is True
    assert config.duration_batching.target_batch_duration == 1200.0
    assert config.duration_batching.max_batch_size is None
    # paths already spelled from data_root stay as they are (not data/data/...)
    assert config.dataset.annotation_file == "data/annotations/train.jsonl"
    assert config.dataset.video_dir == "data/videos"
    assert config.validation.annotation_file == "data/annotations/val.jsonl"


def test_defaults_equal_an_empty_file(tmp_path):
    assert load_vtg_data_config(write_yaml(tmp_path, "")) == VTGDataConfig()


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "vidoe: {}",
            "unknown key 'vidoe'; did you mean 'video'? (valid keys in the top level: dataset, video,",
        ),
        (
            "video:\n  resolution:\n    hieght: 256",
            (
                "unknown key 'video.resolution.hieght'; did you mean 'height'? "
                "(valid keys in video.resolution: height, width)"
            ),
        ),
        (
            "duration_batching:\n  target_duration: 60",
            "unknown key 'duration_batching.target_duration'; did you mean 'target_batch_duration'?",
        ),
        (
            "dataloader:\n  shuffle: true",
            "unknown key 'dataloader.shuffle' (valid keys in dataloader: batch_size,",
        ),
    ],
)
def test_unknown_key_names_file_and_dotted_path(tmp_path, text, message):
    path = write_yaml(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_vtg_data_config(path)
    assert str(err.value).startswith(f"{path}: {message}")


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"video": {"sampling_strategy": "keyframes"}},
            "video.sampling_strategy: must be one of 'uniform', 'random', 'keyframe', got 'keyframes'",
        ),
        ({"video": {"max_frames": "32"}}, "video.max_frames: expected int, got str '32'"),
        ({"video": {"max_frames": 8.5}}, "video.max_frames: expected int, got float 8.5"),
        ({"dataloader": {"pin_memory": "yes"}}, "dataloader.pin_memory: expected bool, got str 'yes'"),
        ({"dataloader": {"batch_size": True}}, "dataloader.batch_size: expected int, got bool True"),
        ({"video": {"resolution": 384}}, "video.resolution: expected a mapping of key: value, got int"),
        ({"video": {"fps": "fast"}}, "video.fps: expected a number, got 'fast'"),
        ({"video": {"max_frames": 1}}, "video.max_frames: must be >= 2, got 1"),
        ({"video": {"fps": -1}}, "video.fps: must be >= 0, got -1"),
        ({"video": {"resolution": {"width": 0}}}, "video.resolution.width: must be >= 1, got 0"),
        (
            {"temporal": {"embedding_init_strategy": "zeros"}},
            "temporal.embedding_init_strategy: must be one of 'sinusoidal', 'mean', got 'zeros'",
        ),
        ({"dataloader": {"num_workers": -1}}, "dataloader.num_workers: must be >= 0, got -1"),
        ({"validation": {"batch_size": 0}}, "validation.batch_size: must be >= 1, got 0"),
        (
            {"duration_batching": {"min_batch_size": 4, "max_batch_size": 2}},
            "duration_batching.max_batch_size (2) < min_batch_size (4)",
        ),
        (
            {"duration_batching": {"target_batch_duration": 0}},
            "duration_batching.target_batch_duration: must be > 0, got 0",
        ),
        ({"dataset": {"name": None}}, "dataset.name: expected str, got NoneType None"),
    ],
)
def test_bad_values_name_their_dotted_path(values, message):
    with pytest.raises(ConfigError) as err:
        load_vtg_data_config(values)
    assert str(err.value) == f"data config: {message}"


def test_yaml_number_strings_become_floats(tmp_path):
    # PyYAML 1.1 reads 1e3 (no dot) as a string; float fields convert it, int fields reject it
    config = load_vtg_data_config(write_yaml(tmp_path, "duration_batching:\n  target_batch_duration: 1e3"))
    assert config.duration_batching.target_batch_duration == 1000.0


def test_relative_paths_resolve_against_data_root():
    config = load_vtg_data_config(
        {
            "dataset": {
                "data_root": "/srv/vtg",
                "annotation_file": "annotations/train.jsonl",
                "video_dir": "/elsewhere/videos",
            },
            "validation": {"annotation_file": "annotations/val.jsonl"},
        }
    )
    assert config.dataset.annotation_file == "/srv/vtg/annotations/train.jsonl"
    assert config.dataset.video_dir == "/elsewhere/videos"  # absolute: kept
    assert config.validation.annotation_file == "/srv/vtg/annotations/val.jsonl"
    no_root = load_vtg_data_config({"dataset": {"annotation_file": "annotations/train.jsonl"}})
    assert no_root.dataset.annotation_file == "annotations/train.jsonl"


def test_resolve_under_is_idempotent():
    once = resolve_under("annotations/train.jsonl", "data")
    assert once == "data/annotations/train.jsonl"
    assert resolve_under(once, "data") == once
    assert resolve_under("./data/videos/a.mp4", "./data/videos") == "data/videos/a.mp4"


def _all_fields(cls):
    for f in fields(cls):
        yield cls, f
        if is_dataclass(f.default_factory if callable(f.default_factory) else None):
            yield from _all_fields(f.default_factory)


def test_every_key_has_help():
    missing = [
        f"{cls.__name__}.{f.name}" for cls, f in _all_fields(VTGDataConfig) if not f.metadata.get("help")
    ]
    assert missing == []
