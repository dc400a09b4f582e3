"""VTG GRPO under the run management every task shares: TRL's GRPOTrainer with ManagedRunMixin
marks its checkpoints complete and ``resume_from_checkpoint: latest`` continues from the newest."""

import json

import pytest
import yaml

from tests.training.test_faults import logged_losses
from tests.vtg.conftest import FEW_FRAMES
from tests.vtg.test_tasks import GRPO_CONFIG, task_values
from vlmrm.testing.tiny import tiny_checkpoint
from vlmrm.training.run import CHECKPOINT_COMPLETE
from vlmrm.vtg.config import load_vtg_task_config
from vlmrm.vtg.grpo import run_vtg_grpo

pytestmark = pytest.mark.slow
FIRST_STEPS, TOTAL_STEPS = 1, 2
FIRST_RUN_TAG = "logged_by_the_first_run"


def grpo_values(data, tiny_cache, output_dir, **training) -> dict:
    """The shipped tiny GRPO YAML from the base model (no SFT run) on the small data, a checkpoint
    every step."""
    checkpoint = tiny_checkpoint("qwen3_vl", cache_dir=tiny_cache)
    values = yaml.safe_load(GRPO_CONFIG.read_text())
    values["data_config"] = task_values(data, checkpoint, output_dir)["data_config"]
    values["data_config"]["validation"]["annotation_file"] = None
    values["data_config"]["video"]["max_frames"] = FEW_FRAMES
    values["model"]["name_or_path"] = str(checkpoint)
    values["rl"]["sft_checkpoint"] = None
    values["training"].update(
        output_dir=str(output_dir), use_cpu=True, disable_tqdm=True, save_strategy="steps", save_steps=1
    )
    values["training"].update(training)
    return values


def test_grpo_checkpoints_are_marked_and_latest_resumes_from_them(small_vtg_data, tiny_cache, tmp_path):
    out = tmp_path / "grpo"
    run_vtg_grpo(
        load_vtg_task_config(values=grpo_values(small_vtg_data, tiny_cache, out, max_steps=FIRST_STEPS))
    )
    first = out / f"checkpoint-{FIRST_STEPS}"
    assert json.loads((first / CHECKPOINT_COMPLETE).read_text()) == {"step": FIRST_STEPS}

    # tag the first run's logged step: a run that resumed from this checkpoint carries the tag on
    state_file = first / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"][0][FIRST_RUN_TAG] = True
    state_file.write_text(json.dumps(state))

    resumed = grpo_values(
        small_vtg_data, tiny_cache, out, max_steps=TOTAL_STEPS, resume_from_checkpoint="latest"
    )
    run_vtg_grpo(load_vtg_task_config(values=resumed))
    last = out / f"checkpoint-{TOTAL_STEPS}"
    assert (last / CHECKPOINT_COMPLETE).is_file()
    history = json.loads((last / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in history if entry.get(FIRST_RUN_TAG)] == [FIRST_STEPS]
    assert sorted(logged_losses(last)) == list(range(1, TOTAL_STEPS + 1))
