"""Faults: a SIGKILLed 2-process run resumes to the uninterrupted losses, a checkpoint whose write
was killed is never resumed from, and a non-finite loss stops (or is skipped and counted)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from transformers import TrainerCallback

from tests.conftest import tiny_run_values
from tests.reward.test_e2e_training import ROOT, launch, write_config
from vlmrm.modeling.loading import load_reward_model
from vlmrm.reward.config import parse_config
from vlmrm.reward.train import run_training
from vlmrm.testing.tiny import tiny_checkpoint
from vlmrm.training.run import CHECKPOINT_COMPLETE, NonFiniteLossError, resolve_resume

pytestmark = pytest.mark.slow
KILL_POLL_S = 0.01
RUN_TIMEOUT_S = 600


def logged_losses(checkpoint) -> dict[int, float]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


def fault_values(tiny_cache, synthetic_pairs, output_dir, **overrides):
    return tiny_run_values(
        tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache),
        synthetic_pairs,
        output_dir,
        **{
            "max_steps": 12,
            "per_device_train_batch_size": 2,
            "save_strategy": "steps",
            "save_steps": 3,
            **overrides,
        },
    )


KILLED_RUN = {"max_steps": 40, "save_steps": 5}
"""Long enough (10 epochs of the 16 synthetic pairs) for a kill to land between checkpoints."""


def test_sigkilled_two_process_run_resumes_to_the_uninterrupted_losses(tiny_cache, synthetic_pairs, tmp_path):
    def values(name, **extra):
        return fault_values(tiny_cache, synthetic_pairs, tmp_path / name, **KILLED_RUN, **extra)

    result = launch(write_config(tmp_path / "full.yaml", values("full")), port=29551)
    assert result.returncode == 0, result.stderr[-3000:]
    last = KILLED_RUN["max_steps"]
    expected = logged_losses(tmp_path / "full" / f"checkpoint-{last}")
    assert sorted(expected) == list(range(1, last + 1))

    out = tmp_path / "killed"
    config = write_config(tmp_path / "killed.yaml", values("killed"))
    command = [
        "bash",
        str(ROOT / "run_distributed.sh"),
        "--gpus",
        "2",
        "--port",
        "29552",
        "--config",
        str(config),
    ]
    env = {**os.environ, "PYTHON": sys.executable}
    process = subprocess.Popen(command, env=env, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    first = out / f"checkpoint-{KILLED_RUN['save_steps']}" / CHECKPOINT_COMPLETE
    while not first.is_file():
        assert process.poll() is None and time.monotonic() < deadline, "run ended before its first checkpoint"
        time.sleep(KILL_POLL_S)
    os.killpg(process.pid, signal.SIGKILL)  # launcher, torchrun and both ranks: no chance to clean up
    process.wait()
    assert not (out / f"checkpoint-{last}").exists(), "the run finished before it was killed"

    resumed_from = resolve_resume("latest", str(out))
    resumed = launch(
        write_config(tmp_path / "resume.yaml", values("killed", resume_from_checkpoint="latest")), port=29553
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    losses = logged_losses(out / f"checkpoint-{last}")
    first_new = int(resumed_from.rsplit("-", 1)[1]) + 1
    assert KILLED_RUN["save_steps"] < first_new <= last
    assert [losses[s] for s in range(first_new, last + 1)] == pytest.approx(
        [expected[s] for s in range(first_new, last + 1)], rel=1e-5, abs=1e-6
    )


KILL_DURING_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    from vlmrm.reward.config import parse_config
    from vlmrm.reward.train import run_training
    from vlmrm.reward.trainer import RewardTrainer

    def die_mid_save(self, output_dir):  # model and optimizer are written, the RNG state is next
        if self.state.global_step == 6:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, output_dir)

    original = RewardTrainer._save_rng_state
    RewardTrainer._save_rng_state = die_mid_save
    run_training(parse_config(sys.argv[1]))
    """
)


def test_a_checkpoint_killed_while_being_written_is_never_resumed(tiny_cache, synthetic_pairs, tmp_path):
    out = tmp_path / "run"
    values = fault_values(tiny_cache, synthetic_pairs, out)
    config = write_config(tmp_path / "run.yaml", values)
    died = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, str(config)], cwd=ROOT, check=False)
    assert died.returncode == -signal.SIGKILL
    assert (out / "checkpoint-6").is_dir() and not (out / "checkpoint-6" / CHECKPOINT_COMPLETE).exists()
    assert resolve_resume("latest", str(out)) == str(out / "checkpoint-3")

    run_training(parse_config(values={**values, "resume_from_checkpoint": "latest"}))
    uninterrupted = tmp_path / "full"
    run_training(parse_config(values=fault_values(tiny_cache, synthetic_pairs, uninterrupted)))
    resumed, expected = logged_losses(out / "checkpoint-12"), logged_losses(uninterrupted / "checkpoint-12")
    assert [resumed[s] for s in range(4, 13)] == pytest.approx([expected[s] for s in range(4, 13)], abs=1e-6)


def reward_head_weight(model):
    return model.rm_head.layers[0].weight


class PoisonWeightAtStep(TrainerCallback):
    """Fills one weight (default: the reward head's first layer) with ``value`` during one optimizer
    step (restored after it): that step's loss is non-finite whatever the batch, the others are
    normal. ``weight_of(model)`` picks the weight, so every task's tests inject the fault the same way."""

    def __init__(self, step: int, weight_of=reward_head_weight, value: float = float("inf")):
        self.step, self.weight_of, self.value, self.saved = step, weight_of, value, None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step:
            weight = self.weight_of(model)
            self.saved = weight.detach().clone()
            with torch.no_grad():
                weight.fill_(self.value)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.saved is not None:
            with torch.no_grad():
                self.weight_of(model).copy_(self.saved)
            self.saved = None


def test_nonfinite_loss_stops_naming_the_step_and_sample_ids(tiny_cache, synthetic_pairs, tmp_path):
    values = fault_values(tiny_cache, synthetic_pairs, tmp_path / "run", save_strategy="no", max_steps=4)
    with pytest.raises(NonFiniteLossError, match=r"at step 3 \(batch sample ids \[\d+, \d+\]"):
        run_training(parse_config(values=values), callbacks=[PoisonWeightAtStep(3)])


def test_skip_nonfinite_loss_skips_the_step_and_counts_it(tiny_cache, synthetic_pairs, tmp_path):
    out = tmp_path / "run"
    values = fault_values(
        tiny_cache, synthetic_pairs, out, save_strategy="no", max_steps=4, skip_nonfinite_loss=True
    )
    metrics = run_training(parse_config(values=values), callbacks=[PoisonWeightAtStep(3)])
    assert metrics["skipped_nonfinite_steps"] == 1
    assert json.loads((out / "eval_results.json").read_text())["skipped_nonfinite_steps"] == 1
    model, _ = load_reward_model(out)
    assert all(torch.isfinite(p).all() for p in model.parameters())
