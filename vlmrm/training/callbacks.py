"""Trainer callbacks every task uses."""

from __future__ import annotations

import logging
import sys
import time

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 30.0
"""Seconds between two progress lines when stdout is not a terminal: a log file gets a readable
line every half minute instead of tqdm's carriage-return updates."""


class EpochSetter(TrainerCallback):
    """Calls ``set_epoch`` on datasets / samplers that re-draw per epoch (random frames, batch
    order, a source mix)."""

    def __init__(self, *targets):
        self.targets = targets

    def on_epoch_begin(self, args, state, control, **kwargs):
        for target in self.targets:
            target.set_epoch(int(state.epoch or 0))


def duration_text(seconds: float) -> str:
    """``1h02m``, ``4m05s`` or ``12s``."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressLines(TrainerCallback):
    """Training progress as one log line per ``interval_s`` (and at the last step) on rank 0:
    ``step 120/940 (12.8%), 1.52 s/step, elapsed 3m02s, ETA 20m46s``, plus each logged metrics dict as
    one line. ETA = (max_steps - step) x seconds per step since this run's first step."""

    def __init__(self, interval_s: float = PROGRESS_INTERVAL_S):
        self.interval_s = interval_s
        self.start: float | None = None
        self.first_step = 0
        self.last_line = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self.last_line = time.monotonic()
        self.first_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        now = time.monotonic()
        last = state.global_step >= state.max_steps
        if not state.is_world_process_zero or (now - self.last_line < self.interval_s and not last):
            return
        self.last_line = now
        done = state.global_step - self.first_step
        per_step = (now - self.start) / max(1, done)
        logger.info(
            "step %d/%d (%.1f%%), %.2f s/step, elapsed %s, ETA %s",
            state.global_step,
            state.max_steps,
            100 * state.global_step / max(1, state.max_steps),
            per_step,
            duration_text(now - self.start),
            duration_text(per_step * (state.max_steps - state.global_step)),
        )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in logs.items()}
            logger.info("step %d: %s", state.global_step, " ".join(f"{k}={v}" for k, v in shown.items()))


def plain_progress_for_logs(trainer, stream=None) -> bool:
    """When ``stream`` (stdout) is not a terminal, swap the Trainer's tqdm bars for
    :class:`ProgressLines`; returns whether it did. A terminal keeps tqdm."""
    stream = sys.stdout if stream is None else stream
    if stream.isatty() or trainer.args.disable_tqdm:
        return False
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(ProgressLines())
    return True
