"""Loading reward checkpoints for inference: no false MISSING report for an adapter's head, a real
missing head is an error, and what a transformers-only ``AutoModel`` load of a checkpoint shows."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText

from tests.conftest import LORA_SPECIAL_TOKENS, tiny_run_values
from vlmrm.modeling.families import family_for
from vlmrm.modeling.loading import build_reward_model, load_reward_model
from vlmrm.modeling.trainable import configure_trainable
from vlmrm.reward.collator import PairCollator
from vlmrm.reward.config import parse_config
from vlmrm.reward.train import build_datasets
from vlmrm.testing.tiny import tiny_checkpoint

FAMILY = "qwen2_vl"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def saved_run(tiny_cache, synthetic_pairs, folder, **overrides):
    """A reward model saved as training saves it (adapter + backbone config with the spec, or the full
    model), its processor, and a batch to score."""
    values = tiny_run_values(
        tiny_checkpoint(FAMILY, cache_dir=tiny_cache), synthetic_pairs, folder / "out", **overrides
    )
    cfg = parse_config(values=values)
    model, processor = build_reward_model(cfg.model, cfg.data, cfg.training)
    backbone_config = model.config
    model = configure_trainable(model, cfg.model, family_for(FAMILY), model.reward_spec.reward_token_ids)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "rm_head" in name:
                param.normal_()  # a head unlike any fresh initialisation
    model.save_pretrained(folder)
    backbone_config.save_pretrained(folder)
    processor.save_pretrained(folder)
    train, _ = build_datasets(cfg, processor)
    batch = PairCollator(processor, cfg.data.eval_dim, cfg.data.prompt_template_type)([train[0]])
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "pair_ids")}
    model.eval()
    with torch.no_grad():
        rewards = model(**inputs).rewards
    return rewards, inputs


@pytest.fixture(scope="module")
def adapter_run(tiny_cache, synthetic_pairs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora")
    return folder, *saved_run(tiny_cache, synthetic_pairs, folder, **LORA_SPECIAL_TOKENS)


def load_output(caplog, capfd) -> str:
    """What a load logged, whether transformers' logger propagates (pytest's capture) or prints."""
    printed = capfd.readouterr()
    return caplog.text + printed.err + printed.out


def test_an_adapter_loads_without_a_false_missing_head_report(adapter_run, caplog, capfd):
    folder, rewards, inputs = adapter_run
    capfd.readouterr()
    caplog.clear()
    model, _ = load_reward_model(folder)
    printed = load_output(caplog, capfd)
    assert "rm_head" not in printed and "MISSING" not in printed
    with torch.no_grad():
        assert torch.equal(model(**inputs).rewards, rewards)  # the saved head, not a fresh one


def test_an_adapter_without_its_head_is_an_error(adapter_run, tmp_path):
    folder = tmp_path / "headless"
    shutil.copytree(adapter_run[0], folder)
    weights = folder / ADAPTER_WEIGHTS
    state = load_file(weights)
    save_file({k: v for k, v in state.items() if "rm_head" not in k}, weights)
    with pytest.raises(ValueError, match=r"the adapter has no reward head weights \(rm_head\)"):
        load_reward_model(folder)


def test_a_transformers_only_load_reports_the_head_it_leaves_out(
    tiny_cache, synthetic_pairs, tmp_path, caplog, capfd
):
    """``AutoModelForImageTextToText`` on a full vlmrm checkpoint gives the backbone without the head;
    transformers' load report names every ``rm_head`` weight as UNEXPECTED (README: "Loading a
    checkpoint without vlmrm")."""
    saved_run(tiny_cache, synthetic_pairs, tmp_path / "full")
    capfd.readouterr()
    caplog.clear()
    backbone = AutoModelForImageTextToText.from_pretrained(tmp_path / "full")
    report = load_output(caplog, capfd)
    assert not hasattr(backbone, "rm_head")
    assert "rm_head" in report and "UNEXPECTED" in report
