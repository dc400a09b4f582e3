"""Run management on the tiny model: early stopping + best model, load_weights_only, experiment folders,
soft score clamp, dropout off."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from tests.conftest import LORA_SPECIAL_TOKENS, tiny_run_values
from vlmrm.core.config import ConfigError
from vlmrm.modeling.reward_model import soft_clamp
from vlmrm.reward.config import parse_config
from vlmrm.reward.train import run_training
from vlmrm.testing.tiny import tiny_checkpoint


class RiggedAccuracy(TrainerCallback):
    """Replaces each evaluation's accuracy_mean with the next value of a script (a real callback,
    run by the real Trainer before early stopping and best-model tracking read the metrics)."""

    def __init__(self, sequence):
        self.sequence = list(sequence)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics["eval_accuracy_mean"] = self.sequence.pop(0)


def head_weights(folder: Path) -> dict:
    """The trained reward weights a checkpoint saved: the head of a full model; every adapter tensor
    (LoRA, head copy, reward-token rows) of a PEFT checkpoint."""
    if (folder / "adapter_model.safetensors").is_file():
        return load_file(str(folder / "adapter_model.safetensors"))
    weights = load_file(str(folder / "model.safetensors"))
    return {k: v for k, v in weights.items() if k.startswith("rm_head")}


@pytest.mark.slow
def test_early_stopping_stops_and_restores_the_best_checkpoint(tiny_cache, synthetic_pairs, tmp_path):
    values = tiny_run_values(
        tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache),
        synthetic_pairs,
        tmp_path / "out",
        max_steps=10,
        eval_strategy="steps",
        eval_steps=1,
        save_strategy="steps",
        save_steps=1,
        early_stopping_patience=2,
        normalization_pairs=0,
    )
    # best at step 2 (0.8); steps 3 and 4 do not improve -> patience 2 is used up at step 4
    run_training(parse_config(values=values), callbacks=[RiggedAccuracy([0.5, 0.8, 0.6, 0.7, 0.9, 0.9])])
    out = tmp_path / "out"
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and not (out / "checkpoint-5").exists()
    assert state["best_model_checkpoint"].endswith("checkpoint-2") and state["best_metric"] == 0.8
    best, final = head_weights(out / "checkpoint-2"), head_weights(out)
    assert all(torch.equal(best[k], final[k]) for k in best)
    assert not all(torch.equal(best[k], v) for k, v in head_weights(out / "checkpoint-4").items())


NEGLIGIBLE_LEARNING_RATE = 1e-30
WEIGHT_UNCHANGED_ATOL = 1e-20
"""Two AdamW steps at NEGLIGIBLE_LEARNING_RATE move a weight by at most ~2e-30 (plus rounding to float32,
which leaves any weight of normal size untouched): far inside this, while a fresh head differs by ~1e-2."""


@pytest.mark.slow
@pytest.mark.parametrize("setting", [{}, LORA_SPECIAL_TOKENS], ids=["full", "lora"])
def test_load_weights_only_takes_weights_and_starts_fresh(setting, tiny_cache, synthetic_pairs, tmp_path):
    checkpoint = tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache)
    first = tiny_run_values(
        checkpoint,
        synthetic_pairs,
        tmp_path / "first",
        max_steps=2,
        save_strategy="steps",
        save_steps=2,
        **setting,
    )
    run_training(parse_config(values=first))
    # the weights stay what was loaded (0 is refused as a learning rate), so they show where they came from
    second = tiny_run_values(
        checkpoint,
        synthetic_pairs,
        tmp_path / "second",
        max_steps=2,
        learning_rate=NEGLIGIBLE_LEARNING_RATE,
        resume_from_checkpoint=str(tmp_path / "first" / "checkpoint-2"),
        load_weights_only=True,
        save_strategy="steps",
        save_steps=2,
        **setting,
    )
    run_training(parse_config(values=second))
    loaded, trained = head_weights(tmp_path / "first" / "checkpoint-2"), head_weights(tmp_path / "second")
    assert loaded and loaded.keys() == trained.keys()
    assert all(torch.allclose(loaded[k], trained[k], rtol=0, atol=WEIGHT_UNCHANGED_ATOL) for k in loaded)
    state = json.loads((tmp_path / "second" / "checkpoint-2" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2]  # step 0 again, not 2 + 2
    assert not (tmp_path / "second" / "checkpoint-4").exists()


@pytest.mark.slow
def test_experiment_name_makes_a_new_folder_per_run(tiny_cache, synthetic_pairs, tmp_path):
    values = tiny_run_values(
        tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache),
        synthetic_pairs,
        tmp_path / "runs",
        max_steps=1,
        experiment_name="exp",
    )
    run_training(parse_config(values=values))
    run_training(parse_config(values=values))
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(name.startswith("exp_") for name in folders)
    assert all((tmp_path / "runs" / name / "model.safetensors").is_file() for name in folders)


def test_soft_clamp_keeps_range_and_gradients():
    x = torch.tensor([-15.0, -5.0, 0.0, 0.01, 5.0, 15.0], requires_grad=True)  # up to 3 half-widths out
    y = soft_clamp(x, -5.0, 5.0)
    assert ((y > -5) & (y < 5)).all()
    assert y[2].item() == 0 and y[3].item() == pytest.approx(0.01, rel=1e-3)  # identity near the centre
    y.sum().backward()
    assert (x.grad > 0.009).all() and x.grad[
        2
    ] == 1.0  # 1 - tanh^2(3) = 0.0099 at 3 half-widths, 1 at the centre


def test_run_management_config_checks(tmp_path):
    with pytest.raises(ConfigError, match="score_min / score_max"):
        parse_config(values={"output_dir": "o", "score_min": 1.0})
    cfg = parse_config(
        values={
            "output_dir": "o",
            "early_stopping_patience": 3,
            "use_margin_loss": True,
            "eval_strategy": "steps",
            "save_strategy": "steps",
        }
    )
    args = cfg.training
    assert (
        args.load_best_model_at_end
        and args.metric_for_best_model == "accuracy_mean"
        and args.greater_is_better
    )
    assert args.loss_type == "margin"
