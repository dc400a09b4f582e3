"""RewardTrainer on the tiny model: merged vs separate forward, LR groups, freezing, reward-token rows."""

import json

import pytest
import torch

from tests.conftest import LORA_SPECIAL_TOKENS, tiny_run_values
from vlmrm.modeling.families import family_for
from vlmrm.modeling.loading import build_reward_model, load_reward_model
from vlmrm.modeling.trainable import configure_trainable, module_group
from vlmrm.reward.config import parse_config
from vlmrm.reward.train import (
    apply_epoch_intervals,
    build_datasets,
    build_trainer,
    run_training,
    steps_per_epoch,
)
from vlmrm.testing.tiny import tiny_checkpoint


def make_trainer(tiny_cache, synthetic_pairs, tmp_path, family="qwen2_vl", **overrides):
    values = tiny_run_values(
        tiny_checkpoint(family, cache_dir=tiny_cache), synthetic_pairs, tmp_path / "out", **overrides
    )
    cfg = parse_config(values=values)
    model, processor = build_reward_model(cfg.model, cfg.data, cfg.training)
    ids = model.reward_spec.reward_token_ids
    model = configure_trainable(model, cfg.model, family_for(family), ids)
    train, test = build_datasets(cfg, processor)
    trainer = build_trainer(cfg, model, processor, train, test)
    return cfg, trainer, trainer.data_collator([train[i] for i in range(4)])


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_merged_and_separate_forward_give_equal_losses(family, tiny_cache, synthetic_pairs, tmp_path):
    _, trainer, batch = make_trainer(tiny_cache, synthetic_pairs, tmp_path, family)
    trainer.model.eval()
    with torch.no_grad():
        trainer.args.merge_pair_forward = True
        merged, merged_out = trainer.compute_loss(trainer.model, batch, return_outputs=True)
        trainer.args.merge_pair_forward = False
        separate, separate_out = trainer.compute_loss(trainer.model, batch, return_outputs=True)
    assert torch.allclose(merged, separate, atol=1e-5)
    assert torch.allclose(merged_out["rewards_a"], separate_out["rewards_a"], atol=1e-5)
    assert torch.allclose(merged_out["rewards_b"], separate_out["rewards_b"], atol=1e-5)


def test_learning_rate_groups(tiny_cache, synthetic_pairs, tmp_path):
    _, trainer, _ = make_trainer(
        tiny_cache,
        synthetic_pairs,
        tmp_path,
        learning_rate=1e-3,
        vision_lr=1e-4,
        merger_lr=2e-4,
        head_lr=5e-3,
        weight_decay=0.1,
    )
    optimizer = trainer.create_optimizer()
    rates = {(g["group_name"], g["weight_decay"]): g["lr"] for g in optimizer.param_groups}
    assert rates[("vision", 0.1)] == 1e-4
    assert rates[("merger", 0.1)] == 2e-4
    assert rates[("head", 0.1)] == 5e-3
    assert rates[("llm", 0.1)] == 1e-3
    assert ("llm", 0.0) in rates  # norms and biases: no decay
    grouped = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert grouped == sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)


def test_freezing_follows_videoalign_semantics(tiny_cache, synthetic_pairs, tmp_path):
    _, trainer, _ = make_trainer(
        tiny_cache, synthetic_pairs, tmp_path, freeze_vision_tower=True, tune_merger=True, freeze_llm=True
    )
    family = family_for("qwen2_vl")
    trainable = {}
    for name, param in trainer.model.named_parameters():
        trainable.setdefault(module_group(name, family), set()).add(param.requires_grad)
    assert trainable == {
        "vision": {False},
        "merger": {True},
        "llm": {False},
        "embedding": {False},
        "head": {True},
        "lm_head": {False},
    }


def test_special_token_rows_only_change_under_frozen_llm(tiny_cache, synthetic_pairs, tmp_path):
    _cfg, trainer, _ = make_trainer(
        tiny_cache,
        synthetic_pairs,
        tmp_path,
        freeze_llm=True,
        freeze_vision_tower=True,
        use_special_tokens=True,
        reward_token="special",
        prompt_template_type="detailed_special",
        special_token_lr=1e-2,
        weight_decay=0.1,
        max_steps=3,
    )
    embedding = trainer.model.get_input_embeddings().weight
    before = embedding.detach().clone()
    trainer.train()
    after = trainer.model.get_input_embeddings().weight.detach()
    changed = (after != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == sorted(trainer.model.reward_spec.reward_token_ids)
    groups = {g["group_name"]: g for g in trainer.optimizer.param_groups}
    assert groups["reward_tokens"]["initial_lr"] == 1e-2 and groups["reward_tokens"]["weight_decay"] == 0.0


def test_epoch_fractions_become_steps(tiny_cache, synthetic_pairs, tmp_path):
    cfg, _trainer, _ = make_trainer(
        tiny_cache,
        synthetic_pairs,
        tmp_path,
        per_device_train_batch_size=3,
        gradient_accumulation_steps=2,
        logging_epochs=0.5,
        eval_epochs=1.0,
        save_epochs=0.25,
    )
    # 16 pairs / batch 3 -> ceil = 6 batches; // accumulation 2 -> 3 steps per epoch
    assert steps_per_epoch(16, cfg.training) == 3
    apply_epoch_intervals(cfg.training, 16)
    assert (cfg.training.logging_steps, cfg.training.eval_steps, cfg.training.save_steps) == (2, 3, 1)
    assert cfg.training.eval_strategy == "steps" and cfg.training.save_strategy == "steps"


@pytest.mark.slow
def test_lora_special_tokens_run_saves_adapter_that_reloads(tiny_cache, synthetic_pairs, tmp_path):
    values = tiny_run_values(
        tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache),
        synthetic_pairs,
        tmp_path / "out",
        **{**LORA_SPECIAL_TOKENS, "prompt_template_type": "detailed_special"},
        special_token_lr=1e-2,
        max_steps=2,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
    )
    metrics = run_training(parse_config(values=values))
    out = tmp_path / "out"
    for folder in (out, out / "checkpoint-2"):
        assert (folder / "adapter_config.json").is_file() and (folder / "config.json").is_file()
        model, processor = load_reward_model(folder)
        assert model.reward_spec.reward_token == "special"
    assert json.loads((out / "eval_results.json").read_text())["eval_loss"] == pytest.approx(
        metrics["eval_loss"]
    )
    # the reloaded adapter model reproduces the final evaluation loss exactly
    cfg = parse_config(values=values)
    _train, test = build_datasets(cfg, processor)
    trainer = build_trainer(cfg, model, processor, eval_dataset=test)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(metrics["eval_loss"], abs=1e-5)
