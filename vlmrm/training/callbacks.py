"""Trainer callbacks every task uses."""

from __future__ import annotations

from transformers import TrainerCallback


class EpochSetter(TrainerCallback):
    """Calls ``set_epoch`` on datasets / samplers that re-draw per epoch (random frames, batch
    order, a source mix)."""

    def __init__(self, *targets):
        self.targets = targets

    def on_epoch_begin(self, args, state, control, **kwargs):
        for target in self.targets:
            target.set_epoch(int(state.epoch or 0))
