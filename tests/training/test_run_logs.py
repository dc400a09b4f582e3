"""Logs of a run: one rank speaks, summaries as tables, progress lines for log files, and DDP's
unused-parameter search off because every trainable parameter of a reward model gets a gradient."""

from __future__ import annotations

import io
import logging

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ProgressCallback

from tests.conftest import LORA_SPECIAL_TOKENS, tiny_run_values
from vlmrm.core.tables import summary_table
from vlmrm.modeling.families import family_for
from vlmrm.modeling.loading import build_reward_model
from vlmrm.modeling.trainable import configure_trainable
from vlmrm.reward.config import parse_config
from vlmrm.reward.train import build_datasets, build_trainer, ddp_unused_parameters
from vlmrm.testing.tiny import tiny_checkpoint
from vlmrm.training.callbacks import ProgressLines, duration_text, plain_progress_for_logs
from vlmrm.training.distributed import setup_logging


@pytest.fixture
def restored_logging():
    """setup_logging rewires the root logger and transformers' handler: put both back afterwards."""
    from transformers.utils import logging as hf_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)
    hf_logging.disable_propagation()
    hf_logging.enable_default_handler()


def test_rank_zero_prints_info_other_ranks_only_warnings_with_their_rank(restored_logging, capsys):
    log = logging.getLogger("vlmrm.test_run_logs")
    setup_logging(rank=0)
    log.info("summary")
    assert capsys.readouterr().err.rstrip().endswith("INFO vlmrm.test_run_logs: summary")
    setup_logging(rank=3)
    log.info("summary")
    log.warning("disk almost full")
    logging.getLogger("transformers.trainer").warning("from transformers")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("[rank 3] [") for line in lines)
    assert lines[0].endswith("WARNING vlmrm.test_run_logs: disk almost full")
    assert lines[1].endswith("from transformers")


def test_a_summary_is_a_short_table():
    summary = {
        "pairs": 300,
        "labels": {"VQ": {"A": 150, "B": 140, "same": 10}, "TA": {"A": 1, "B": 2, "same": 0}},
        "fps": {"min": 8.0, "max": 8.0},
        "duration_s": {"min": 1.0, "mean": 1.23456789, "max": 2.0},
        "problems": {},
    }
    assert summary_table("data: test.csv", summary).splitlines() == [
        "data: test.csv",
        "  pairs       300",
        "  labels VQ   A=150 B=140 same=10",
        "  labels TA   A=1 B=2 same=0",
        "  fps         min=8 max=8",
        "  duration_s  min=1 mean=1.235 max=2",
        "  problems    -",
    ]


def test_progress_lines_count_steps_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="vlmrm.training.callbacks")
    progress = ProgressLines(interval_s=0.0)
    args, control = TrainingArguments(output_dir="unused", report_to="none"), TrainerControl()
    state = TrainerState(max_steps=8, global_step=0, is_world_process_zero=True)
    progress.on_train_begin(args, state, control)
    state.global_step = 2
    progress.on_step_end(args, state, control)
    progress.on_log(args, state, control, logs={"loss": 0.693147, "epoch": 0.25})
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith("step 2/8 (25.0%), ") and ", ETA " in lines[0]
    assert lines[1] == "step 2: loss=0.6931 epoch=0.25"
    state.is_world_process_zero = False
    progress.on_step_end(args, state, control)
    assert len(caplog.records) == 2  # other ranks stay quiet
    assert [duration_text(s) for s in (12.4, 245, 3720)] == ["12s", "4m05s", "1h02m"]


@pytest.mark.parametrize(
    "overrides",
    [
        {**LORA_SPECIAL_TOKENS, "freeze_vision_tower": False},  # LoRA, vision in modules_to_save
        {**LORA_SPECIAL_TOKENS, "freeze_vision_tower": True, "tune_merger": True},
        {"freeze_vision_tower": True, "loss_type": "btt", "learn_tie_k": True},  # full LLM, learned k
    ],
    ids=["lora_vision", "lora_frozen_vision_merger", "full_frozen_vision_learned_tie"],
)
def test_every_trainable_parameter_gets_a_gradient(overrides, tiny_cache, synthetic_pairs, tmp_path):
    """What makes ``ddp_find_unused_parameters: false`` right: one training step leaves no trainable
    parameter without a gradient (DDP would otherwise fail the next step)."""
    values = tiny_run_values(
        tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache), synthetic_pairs, tmp_path / "out", **overrides
    )
    cfg = parse_config(values=values)
    ddp_unused_parameters(cfg.training)
    assert cfg.training.ddp_find_unused_parameters is False
    model, processor = build_reward_model(cfg.model, cfg.data, cfg.training)
    model = configure_trainable(model, cfg.model, family_for("qwen2_vl"), model.reward_spec.reward_token_ids)
    train, _ = build_datasets(cfg, processor)
    trainer = build_trainer(cfg, model, processor, train)
    trainer.model.train()
    trainer.training_step(trainer.model, trainer.data_collator([train[i] for i in range(4)]))
    trainable = {name: p for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and [name for name, p in trainable.items() if p.grad is None] == []
    assert plain_progress_for_logs(trainer, io.StringIO()) == (not cfg.training.disable_tqdm)


def callback_types(trainer) -> set[type]:
    return {type(callback) for callback in trainer.callback_handler.callbacks}


def test_a_log_file_gets_progress_lines_instead_of_bars(tiny_cache, synthetic_pairs, tmp_path):
    values = tiny_run_values(
        tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache),
        synthetic_pairs,
        tmp_path / "out",
        disable_tqdm=False,
        max_train_samples=4,
        meta_data_test=None,
    )
    cfg = parse_config(values=values)
    model, processor = build_reward_model(cfg.model, cfg.data, cfg.training)
    train, _ = build_datasets(cfg, processor)
    trainer = build_trainer(cfg, model, processor, train)
    assert ProgressCallback in callback_types(trainer)
    assert plain_progress_for_logs(trainer, io.StringIO())
    assert ProgressCallback not in callback_types(trainer) and ProgressLines in callback_types(trainer)
