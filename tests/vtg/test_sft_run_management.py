"""VTG SFT under the run management every task shares (vlmrm.training.run): an interrupted
checkpoint save is skipped by ``resume_from_checkpoint: latest`` and the resumed run reproduces the
uninterrupted losses; a NaN loss stops the run naming the step and the batch's JSONL lines, or,
with ``skip_nonfinite_loss``, is skipped and counted."""

import re

import pytest
import torch
from safetensors.torch import load_file

from tests.training.run_checks import (
    RESUME_SETTINGS,
    check_interrupted_save_is_skipped_and_resume_reproduces_losses,
    final_norm_weight,
)
from tests.training.test_faults import PoisonWeightAtStep
from tests.vtg.conftest import FEW_FRAMES, NUM_TRAIN
from tests.vtg.test_tasks import task_values
from vlmrm.testing.tiny import tiny_checkpoint
from vlmrm.training.run import NonFiniteLossError
from vlmrm.training.sft import GenerationSFTTrainer
from vlmrm.vtg.config import load_vtg_task_config
from vlmrm.vtg.sft import run_vtg_sft

pytestmark = pytest.mark.slow
POISONED_STEP = 2


def run_values(data, tiny_cache, output_dir, **training) -> dict:
    """The shipped tiny SFT YAML on the small data: no held-out file (training losses only),
    few frames, the RESUME_SETTINGS schedule."""
    values = task_values(data, tiny_checkpoint("qwen3_vl", cache_dir=tiny_cache), output_dir)
    values["data_config"]["validation"]["annotation_file"] = None
    values["data_config"]["video"]["max_frames"] = FEW_FRAMES
    values["training"].pop("save_total_limit", None)  # every checkpoint stays, for the comparison
    values["training"].update({"eval_strategy": "no", **RESUME_SETTINGS, **training})
    return values


def test_interrupted_save_is_skipped_and_resume_reproduces_the_losses(small_vtg_data, tiny_cache, tmp_path):
    check_interrupted_save_is_skipped_and_resume_reproduces_losses(
        lambda values: run_vtg_sft(load_vtg_task_config(values=values)),
        lambda output_dir, **training: run_values(small_vtg_data, tiny_cache, output_dir, **training),
        GenerationSFTTrainer,
        tmp_path,
    )


def test_nan_loss_stops_naming_the_step_and_the_batch_lines(small_vtg_data, tiny_cache, tmp_path):
    values = run_values(small_vtg_data, tiny_cache, tmp_path / "run", save_strategy="no")
    poison = PoisonWeightAtStep(POISONED_STEP, final_norm_weight, float("nan"))
    with pytest.raises(NonFiniteLossError, match=rf"at step {POISONED_STEP} \(batch sample ids") as err:
        run_vtg_sft(load_vtg_task_config(values=values), callbacks=[poison])
    ids = [int(i) for i in re.search(r"sample ids \[([\d, ]+)\]", str(err.value)).group(1).split(",")]
    batch = RESUME_SETTINGS["per_device_train_batch_size"]
    assert len(ids) == batch and all(1 <= line <= NUM_TRAIN for line in ids)  # JSONL lines, 1-based


def test_skip_nonfinite_loss_skips_the_nan_step_and_counts_it(small_vtg_data, tiny_cache, tmp_path):
    values = run_values(
        small_vtg_data, tiny_cache, tmp_path / "run", save_strategy="no", skip_nonfinite_loss=True
    )
    poison = PoisonWeightAtStep(POISONED_STEP, final_norm_weight, float("nan"))
    metrics = run_vtg_sft(load_vtg_task_config(values=values), callbacks=[poison])
    assert metrics["skipped_nonfinite_steps"] == 1
    adapter = load_file(tmp_path / "run" / "adapter_model.safetensors")
    assert adapter and all(torch.isfinite(t).all() for t in adapter.values())  # the NaN step changed nothing
