"""GRM SFT under the run management every task shares (vlmrm.training.run): an interrupted
checkpoint save is skipped by ``resume_from_checkpoint: latest`` and the resumed run reproduces the
uninterrupted losses; a NaN loss stops the run naming the step and the batch's examples (file and
index), or, with ``skip_nonfinite_loss``, is skipped and counted."""

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.grm.test_sft import NUM_PAIRS, config_values, kept_sample, write_image_pairs
from tests.training.run_checks import (
    RESUME_SETTINGS,
    check_interrupted_save_is_skipped_and_resume_reproduces_losses,
    final_norm_weight,
)
from tests.training.test_faults import PoisonWeightAtStep
from vlmrm.grm.convert import convert_file
from vlmrm.grm.records import append_filtered_jsonl
from vlmrm.grm.sft import load_grm_sft_config, run_grm_sft
from vlmrm.testing.tiny import tiny_checkpoint
from vlmrm.training.run import NonFiniteLossError
from vlmrm.training.sft import GenerationSFTTrainer

pytestmark = pytest.mark.slow
POISONED_STEP = 2


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """Synthetic pairs -> filtered.jsonl -> SFT JSON through the real converter (as test_sft.py)."""
    root = tmp_path_factory.mktemp("grm_run")
    pairs = write_image_pairs(root / "images")
    append_filtered_jsonl(root / "filtered.jsonl", [kept_sample(i, *p) for i, p in enumerate(pairs)])
    convert_file(root / "filtered.jsonl", root / "sft.json")
    return root / "sft.json"


def run_values(sft_file: Path, tiny_cache, output_dir, **training) -> dict:
    checkpoint = tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache)
    return config_values(sft_file, checkpoint, output_dir, **{**RESUME_SETTINGS, **training})


def test_interrupted_save_is_skipped_and_resume_reproduces_the_losses(converted, tiny_cache, tmp_path):
    check_interrupted_save_is_skipped_and_resume_reproduces_losses(
        lambda values: run_grm_sft(load_grm_sft_config(values=values)),
        lambda output_dir, **training: run_values(converted, tiny_cache, output_dir, **training),
        GenerationSFTTrainer,
        tmp_path,
    )


def test_nan_loss_stops_naming_the_step_and_the_batch_examples(converted, tiny_cache, tmp_path):
    values = run_values(converted, tiny_cache, tmp_path / "run", save_strategy="no")
    poison = PoisonWeightAtStep(POISONED_STEP, final_norm_weight, float("nan"))
    with pytest.raises(NonFiniteLossError, match=rf"at step {POISONED_STEP} \(batch sample ids") as err:
        run_grm_sft(load_grm_sft_config(values=values), callbacks=[poison])
    named = re.findall(rf"'{re.escape(str(converted))} example (\d+)'", str(err.value))
    assert len(named) == RESUME_SETTINGS["per_device_train_batch_size"]
    assert all(0 <= int(index) < NUM_PAIRS for index in named)


def test_skip_nonfinite_loss_skips_the_nan_step_and_counts_it(converted, tiny_cache, tmp_path):
    values = run_values(converted, tiny_cache, tmp_path / "run", save_strategy="no", skip_nonfinite_loss=True)
    poison = PoisonWeightAtStep(POISONED_STEP, final_norm_weight, float("nan"))
    metrics = run_grm_sft(load_grm_sft_config(values=values), callbacks=[poison])
    assert metrics["skipped_nonfinite_steps"] == 1
    adapter = load_file(tmp_path / "run" / "adapter_model.safetensors")
    assert adapter and all(torch.isfinite(t).all() for t in adapter.values())  # the NaN step changed nothing
