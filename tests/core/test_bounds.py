"""Numeric settings are checked when a config is loaded: NaN and infinity never pass, and every
number outside its key's declared :class:`vlmrm.core.config.Bound` (``option(bound=...)``, or the
table for transformers' own keys) is an error naming the file (or the command line) and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlmrm.cli.config_reference import field_rows
from vlmrm.core.config import NON_NEGATIVE, POSITIVE, Bound, ConfigError
from vlmrm.grm.evaluate import GRMEvalConfig
from vlmrm.grm.sft import GRMSFTSections, load_grm_sft_config
from vlmrm.reward.config import DataConfig, ModelConfig, RewardTrainingArguments, parse_config
from vlmrm.reward.evaluate import EvalConfig
from vlmrm.vtg.config import VTGTaskSections, load_vtg_task_config
from vlmrm.vtg.data_config import VTGDataConfig
from vlmrm.vtg.evaluate import VTGEvalConfig

ROOT = Path(__file__).resolve().parents[2]
BASE = "output_dir: out\nuse_cpu: true\n"
UNBOUNDED = {
    (ModelConfig, "num_lora_modules"): "-1 means every matching module",
    (RewardTrainingArguments, "score_min"): "any finite reward range",
    (RewardTrainingArguments, "score_max"): "any finite reward range",
    (VTGTaskSections, "rewards[].weight"): "a reward may count against",
}
"""Numeric keys with no bound, and why (every number is still required to be finite)."""
CONFIG_CLASSES = (
    ModelConfig,
    DataConfig,
    RewardTrainingArguments,
    EvalConfig,
    VTGTaskSections,
    VTGDataConfig,
    VTGEvalConfig,
    GRMSFTSections,
    GRMEvalConfig,
)


def test_bounds_read_as_written():
    assert [str(b) for b in (POSITIVE, NON_NEGATIVE, Bound(0, 1, high_open=True), Bound(None, 3))] == [
        "> 0",
        ">= 0",
        "in [0, 1)",
        "<= 3",
    ]
    assert not POSITIVE.holds(0) and NON_NEGATIVE.holds(0) and not Bound(0, 1, high_open=True).holds(1)


def test_every_numeric_key_has_a_bound_or_a_reason():
    unbounded = [
        (cls, key)
        for cls in CONFIG_CLASSES
        for key, kind, _, _ in field_rows(cls)
        if any(word in kind for word in ("int", "float")) and "," not in kind
    ]
    assert sorted(unbounded, key=str) == sorted(UNBOUNDED, key=str)


REWARD_CASES = [
    ("learning_rate: .nan", "learning_rate: must be a finite number, got nan"),
    ("learning_rate: 0", "learning_rate: must be > 0, got 0"),
    ("per_device_train_batch_size: 0", "per_device_train_batch_size: must be >= 1, got 0"),
    ("gradient_accumulation_steps: -2", "gradient_accumulation_steps: must be >= 1, got -2"),
    ("tie_k: 1", "tie_k: must be > 1, got 1"),
    ("tie_k: .inf", "tie_k: must be a finite number, got inf"),
    ("fps: 0", "fps: must be > 0, got 0"),
    ("fps: -.inf", "fps: must be a finite number, got -inf"),
    ("num_frames: 1", "num_frames: must be >= 2, got 1"),
    ("max_frame_pixels: -5", "max_frame_pixels: must be >= 0, got -5"),
    ("total_pixels: 0", "total_pixels: must be >= 1, got 0"),
    ("lora_dropout: 1.0", "lora_dropout: must be in [0, 1), got 1"),
    ("head_lr: -1e-4", "head_lr: must be > 0, got -0.0001"),
    ("score_min: .nan\nscore_max: 1", "score_min: must be a finite number, got nan"),
]


@pytest.mark.parametrize(("line", "message"), REWARD_CASES)
def test_reward_config_number_out_of_bounds_names_file_and_key(tmp_path, line, message):
    path = tmp_path / "cfg.yaml"
    path.write_text(BASE + line + "\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(path)
    assert str(caught.value) == f"{path}: {message}"


def test_reward_override_out_of_bounds_names_the_command_line(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(BASE)
    with pytest.raises(ConfigError) as caught:
        parse_config(path, ["--learning_rate", "nan"])
    assert str(caught.value) == "command line: learning_rate: must be a finite number, got nan"


@pytest.mark.parametrize(
    ("loader", "config", "override", "message"),
    [
        (load_vtg_task_config, "vtg_sft_tiny", ["--data_config.video.fps", "-1"], "data_config.video.fps: must be >= 0, got -1"),
        (load_vtg_task_config, "vtg_sft_tiny", ["--data_config.dataloader.batch_size", "0"], "data_config.dataloader.batch_size: must be >= 1, got 0"),
        (load_vtg_task_config, "vtg_grpo_tiny", ["--rl.temperature", ".nan"], "rl.temperature: must be a finite number, got nan"),
        (load_grm_sft_config, "grm_sft_tiny", ["--video_fps", "0"], "video_fps: must be > 0, got 0"),
        (load_grm_sft_config, "grm_sft_tiny", ["--lora.lora_dropout", "1"], "lora.lora_dropout: must be in [0, 1), got 1"),
        (load_grm_sft_config, "grm_sft_tiny", ["--training.learning_rate", "-1"], "training.learning_rate: must be > 0, got -1"),
    ],
)  # fmt: skip
def test_nested_config_number_out_of_bounds_names_the_dotted_key(loader, config, override, message):
    with pytest.raises(ConfigError) as caught:
        loader(ROOT / "training_configs" / f"{config}.yaml", [*override, "--use_cpu", "true"])
    assert str(caught.value) == f"command line: {message}"


def test_bound_is_listed_in_the_reference():
    kinds = {key: kind for key, kind, _, _ in field_rows(RewardTrainingArguments)}
    assert kinds["tie_k"] == "float, > 1"
    assert {key: kind for key, kind, _, _ in field_rows(DataConfig)}["num_frames"] == "int | None, >= 2"
