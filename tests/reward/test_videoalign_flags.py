"""VideoAlign's train.sh flags written as a vlmrm YAML: every key accepted with its meaning or refused
naming our equivalent; the accepted ones train for 2 steps on the tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_run_values
from tests.reward.test_missing_labels import LogRecorder
from vlmrm.core.config import ConfigError
from vlmrm.reward.config import parse_config
from vlmrm.reward.train import run_training
from vlmrm.reward.videoalign_flags import SAME_KEYS, VIDEOALIGN_FLAGS, flag_table_markdown, latest_checkpoint
from vlmrm.testing.tiny import tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]

TRAIN_SH = {
    "lora_enable": True,
    "vision_lora": False,
    "freeze_vision_tower": False,
    "freeze_llm": False,
    "tune_merger": True,
    "fps": 2,
    "max_frame_pixels": 200704,
    "sample_type": "uniform",
    "lora_r": 64,
    "lora_alpha": 128,
    "lora_namespan_exclude": "['lm_head', 'rm_head', 'embed_tokens']",
    "bf16": True,
    "torch_dtype": "bfloat16",
    "num_lora_modules": -1,
    "model_name_or_path": "Qwen/Qwen2-VL-2B-Instruct",
    "meta_data": "datasets/train/example.csv",
    "meta_data_test": "datasets/train/example.csv",
    "data_dir": "datasets/train",
    "output_dir": "rm_output",
    "eval_dim": ["VQ", "MQ", "TA"],
    "output_dim": 3,
    "use_special_tokens": True,
    "reward_token": "special",
    "loss_type": "btt",
    "use_tied_data": True,
    "prompt_template_type": "detailed_special",
    "per_device_train_batch_size": 1,
    "per_device_eval_batch_size": 4,
    "gradient_accumulation_steps": 4,
    "num_train_epochs": 3,
    "learning_rate": "2e-6",
    "merger_lr": "2e-6",
    "vision_lr": "2e-6",
    "special_token_lr": "2e-6",
    "report_to": "none",
    "warmup_ratio": 0.05,
    "lr_scheduler_type": "constant_with_warmup",
    "eval_strategy": "steps",
    "logging_epochs": 0.01,
    "eval_epochs": 0.1,
    "save_epochs": 0.25,
    "max_length": 6144,
    "gradient_checkpointing": False,
    "save_only_model": True,
    "save_full_model": False,
    "dataloader_num_workers": 8,
}
"""VideoAlign's train.sh, flag by flag (report_to tensorboard -> none and no deepspeed: neither is
installed for the tests)."""

DATACLASS_DEFAULTS = {
    "dataset_num_proc": None,
    "center_rewards_coefficient": None,
    "disable_flash_attn2": False,
    "conduct_eval": True,
    "load_from_pretrained": None,
    "load_from_pretrained_step": None,
    "remove_unused_columns": False,
    "lora_dropout": 0.05,
    "lora_target_modules": None,
    "lora_modules_to_save": None,
    "lora_task_type": "CAUSAL_LM",
    "use_rslora": False,
    "model_revision": "main",
    "trust_remote_code": False,
    "attn_implementation": None,
    "load_in_8bit": False,
    "load_in_4bit": False,
    "bnb_4bit_quant_type": "nf4",
    "use_bnb_nested_quant": False,
    "num_frames": None,
    "p_shuffle_frames": 0.0,
    "p_color_jitter": 0.0,
    "add_noise": False,
}
"""The other keys of VideoAlign's argument dataclasses (TrainingConfig, PEFTLoraConfig, ModelConfig,
DataConfig), at VideoAlign's defaults."""

REFUSED = {
    "sample_type": "multi_pts",
    "lora_target_modules": ["q_proj"],
    "lora_task_type": "SEQ_CLS",
    "trust_remote_code": True,
    "load_in_8bit": True,
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "int8",
    "use_bnb_nested_quant": True,
    "add_noise": True,
    "p_shuffle_frames": 0.5,
    "p_color_jitter": 0.2,
    "dataset_num_proc": 8,
    "center_rewards_coefficient": 0.01,
}


ON_CPU = {"use_cpu": True}
"""Not a train.sh flag: bf16 on a machine without a GPU needs it (TrainingArguments' own check)."""


def write(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def test_every_videoalign_key_is_ours_or_in_the_table():
    keys = set(TRAIN_SH) | set(DATACLASS_DEFAULTS)
    training_arguments = {"bf16", "output_dir", "per_device_train_batch_size", "per_device_eval_batch_size"}
    training_arguments |= {"gradient_accumulation_steps", "num_train_epochs", "learning_rate", "report_to"}
    training_arguments |= {"warmup_ratio", "lr_scheduler_type", "eval_strategy", "gradient_checkpointing"}
    training_arguments |= {"save_only_model", "dataloader_num_workers"}
    assert keys - training_arguments == set(SAME_KEYS) | set(VIDEOALIGN_FLAGS)


def test_train_sh_with_every_dataclass_default_is_accepted(tmp_path):
    cfg = parse_config(write(tmp_path / "videoalign.yaml", {**TRAIN_SH, **DATACLASS_DEFAULTS, **ON_CPU}))
    assert cfg.model.attn_implementation == "flash_attention_2"  # disable_flash_attn2: false
    assert cfg.model.lora_namespan_exclude == ["lm_head", "rm_head", "embed_tokens"]
    assert cfg.model.model_revision == "main" and cfg.model.use_rslora is False
    assert cfg.data.eval_split_ratio is None  # conduct_eval with meta_data_test: evaluate on it
    assert cfg.training.learning_rate == 2e-6 and cfg.training.save_full_model is False


@pytest.mark.parametrize("key", sorted(REFUSED))
def test_refused_values_name_our_equivalent(key, tmp_path):
    assert {k for k, f in VIDEOALIGN_FLAGS.items() if f.keeps is not None} == set(REFUSED)
    with pytest.raises(ConfigError) as err:
        parse_config(write(tmp_path / "c.yaml", {**TRAIN_SH, **ON_CPU, key: REFUSED[key]}))
    message = str(err.value)
    assert f"{key}: {REFUSED[key]!r} is not supported" in message
    assert f"(vlmrm: {VIDEOALIGN_FLAGS[key].ours})" in message


def test_multi_pts_names_the_nearest_sampling():
    with pytest.raises(ConfigError, match="sample_type: uniform with num_frames: 24"):
        parse_config(values={**TRAIN_SH, **ON_CPU, "sample_type": "multi_pts"})


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"disable_flash_attn2": True}, ("model", "attn_implementation", "sdpa")),
        ({"conduct_eval": True, "meta_data_test": None}, ("data", "eval_split_ratio", 0.02)),
        ({"use_special_tokens": True, "reward_token": None}, ("model", "reward_token", "special")),
        ({"use_rslora": True}, ("model", "use_rslora", True)),
        ({"lora_modules_to_save": "['norm']"}, ("model", "lora_modules_to_save", ["norm"])),
        ({"loss_type": "constant_margin"}, ("training", "margin", 0.57)),
    ],
)
def test_accepted_flags_keep_their_meaning(values, expected):
    merged = {k: v for k, v in {**TRAIN_SH, **ON_CPU, **values}.items() if v is not None}
    section, name, value = expected
    assert getattr(getattr(parse_config(values=merged), section), name) == value


def test_ambiguous_and_conflicting_flags_are_refused():
    with pytest.raises(ConfigError, match="use_special_tokens: true with reward_token 'last' is ambiguous"):
        parse_config(values={**TRAIN_SH, **ON_CPU, "reward_token": "last"})
    with pytest.raises(ConfigError, match="disable_flash_attn2: sets attn_implementation: 'sdpa'"):
        parse_config(
            values={**TRAIN_SH, **ON_CPU, "disable_flash_attn2": True, "attn_implementation": "eager"}
        )
    with pytest.raises(
        ConfigError, match=r"loss_type: 'scaled' .* is not implemented \(vlmrm: loss_type: bt"
    ):
        parse_config(values={**TRAIN_SH, **ON_CPU, "loss_type": "scaled"})
    with pytest.raises(ConfigError, match="invalid choice: 'hinge'"):
        parse_config(values={**TRAIN_SH, **ON_CPU, "loss_type": "hinge"})
    with pytest.raises(ConfigError, match="load_from_pretrained_step: needs load_from_pretrained"):
        parse_config(values={**TRAIN_SH, **ON_CPU, "load_from_pretrained_step": 100})
    with pytest.raises(ConfigError, match="command line.*conduct_eval: false with meta_data_test"):
        parse_config(values={**TRAIN_SH, **ON_CPU}, overrides=["--conduct_eval", "false"])


def test_load_from_pretrained_picks_the_checkpoint_folder(tmp_path):
    for step in (100, 300, 200):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint-300")
    assert latest_checkpoint(tmp_path, 200) == str(tmp_path / "checkpoint-200")
    cfg = parse_config(
        values={**TRAIN_SH, **ON_CPU, "load_from_pretrained": str(tmp_path), "load_from_pretrained_step": 100}
    )
    assert cfg.model.init_from == str(tmp_path / "checkpoint-100")
    final = tmp_path / "final"
    final.mkdir()
    assert latest_checkpoint(final) == str(final)  # a vlmrm checkpoint folder itself


def test_migration_doc_shows_the_table():
    assert flag_table_markdown() in (ROOT / "docs" / "migration.md").read_text()


def test_train_sh_flags_train_two_steps_on_the_tiny_model(tiny_cache, synthetic_pairs, tmp_path):
    """train.sh's accepted flags (plus conduct_eval without a test CSV, disable_flash_attn2, use_rslora,
    lora_modules_to_save), shrunk to the tiny model: trains, holds out a seeded split, saves rsLoRA."""
    tiny = tiny_run_values(
        tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache), synthetic_pairs, tmp_path / "out"
    )
    shrink = {
        key: tiny[key] for key in ("model_name_or_path", "meta_data", "data_dir", "output_dir", "use_cpu")
    }
    values = {
        **TRAIN_SH,
        **DATACLASS_DEFAULTS,
        **shrink,
        "meta_data_test": None,
        "conduct_eval": True,
        "disable_flash_attn2": True,
        "use_rslora": True,
        "lora_modules_to_save": ["norm"],
        "bf16": False,
        "torch_dtype": "float32",
        "lora_r": 4,
        "lora_alpha": 8,
        "num_frames": 4,
        "eval_epochs": None,
        "eval_strategy": "no",
        "normalization_pairs": 0,
        "max_frame_pixels": 56 * 56,
        "min_frame_pixels": 56 * 56,
        "video_backend": "pyav",
        "max_steps": 2,
        "gradient_accumulation_steps": 1,
        "per_device_train_batch_size": 2,
        "dataloader_num_workers": 0,
        "save_epochs": None,
        "save_strategy": "no",
        "disable_tqdm": True,
    }
    values = {k: v for k, v in values.items() if v is not None}
    recorder = LogRecorder()
    metrics = run_training(parse_config(write(tmp_path / "videoalign.yaml", values)), callbacks=[recorder])
    assert (
        metrics["eval_split_train_pairs"] == 15 and metrics["eval_split_held_out_pairs"] == 1
    )  # ceil(0.02 x 16)
    losses = [log["loss"] for log in recorder.logs if "loss" in log]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)  # logging_epochs 0.01: every step
    adapter = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert adapter["use_rslora"] is True and "norm" in adapter["modules_to_save"]
    assert "eval_accuracy_mean" in metrics
