"""Run-management checks every task's tests share (the reward model's own are in test_faults.py):
a checkpoint whose save was interrupted is skipped by ``resume_from_checkpoint: latest``, and the
resumed run reproduces the uninterrupted run's per-step losses; :func:`final_norm_weight` is the
weight a NaN is injected into.

The interruption is deterministic and in-process: the trainer's ``_save_rng_state`` raises at one
step, after HF has written the model and the optimizer into ``checkpoint-N`` and before the RNG
state, the trainer state and the complete marker, which is what a kill at that moment leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest
from transformers.trainer_utils import get_last_checkpoint

from tests.training.test_faults import logged_losses
from vlmrm.training.run import CHECKPOINT_COMPLETE, resolve_resume

SAVE_STEPS = 2
LAST_STEP = 6
INTERRUPTED_SAVE = 4
"""Checkpoints at 2, 4, 6; the save at 4 is interrupted, so the resume must start from 2."""
RESUME_SETTINGS = {
    "max_steps": LAST_STEP,
    "save_strategy": "steps",
    "save_steps": SAVE_STEPS,
    "logging_steps": 1,
    "per_device_train_batch_size": 2,
}
"""Training keys of the runs compared: a loss logged per step, a checkpoint every SAVE_STEPS."""
LOSS_TOLERANCE = 1e-6


def final_norm_weight(model):
    """The language model's last norm weight: a NaN there makes every logit, so the loss, NaN. (The
    output embedding is no good target: with trainable token rows PEFT computes it on each access.)"""
    norms = [
        p for name, p in model.named_parameters() if "language_model" in name and name.endswith("norm.weight")
    ]
    return norms[-1]


class SaveInterrupted(RuntimeError):
    """Raised in place of a kill in the middle of a checkpoint's save."""


@contextmanager
def save_interrupted_at(trainer_class: type, step: int):
    """While active, ``trainer_class``'s save of ``checkpoint-<step>`` stops after the model and
    optimizer files (raising :class:`SaveInterrupted`); other saves are untouched."""
    original = trainer_class._save_rng_state

    def interrupted(self, output_dir):
        if self.state.global_step == step:
            raise SaveInterrupted(f"save of checkpoint-{step} interrupted")
        return original(self, output_dir)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer_class, "_save_rng_state", interrupted)
        yield


def check_interrupted_save_is_skipped_and_resume_reproduces_losses(
    run: Callable[[dict], object], values: Callable[..., dict], trainer_class: type, tmp_path: Path
) -> None:
    """``run(values(output_dir, **training))`` trains one task in-process with RESUME_SETTINGS.

    An uninterrupted run gives the expected losses; a second run's save at INTERRUPTED_SAVE is
    interrupted; HF's own choice would be that half-written folder, ``latest`` takes the complete
    one before it, and the resumed run's losses for every later step equal the uninterrupted ones.
    """
    run(values(tmp_path / "full"))
    expected = logged_losses(tmp_path / "full" / f"checkpoint-{LAST_STEP}")
    assert sorted(expected) == list(range(1, LAST_STEP + 1))

    out = tmp_path / "interrupted"
    with save_interrupted_at(trainer_class, INTERRUPTED_SAVE), pytest.raises(SaveInterrupted):
        run(values(out))
    half = out / f"checkpoint-{INTERRUPTED_SAVE}"
    complete = out / f"checkpoint-{INTERRUPTED_SAVE - SAVE_STEPS}"
    assert half.is_dir() and not (half / CHECKPOINT_COMPLETE).exists()
    assert (complete / CHECKPOINT_COMPLETE).is_file()
    assert get_last_checkpoint(str(out)) == str(half)  # plain HF resume would take the broken folder
    assert resolve_resume("latest", str(out)) == str(complete)

    run(values(out, resume_from_checkpoint="latest"))
    resumed = logged_losses(out / f"checkpoint-{LAST_STEP}")
    steps = range(INTERRUPTED_SAVE - SAVE_STEPS + 1, LAST_STEP + 1)
    assert sorted(resumed) == list(range(1, LAST_STEP + 1))
    assert [resumed[s] for s in steps] == pytest.approx([expected[s] for s in steps], abs=LOSS_TOLERANCE)
    assert (half / CHECKPOINT_COMPLETE).is_file()  # the resumed run wrote step 4 again, completely
