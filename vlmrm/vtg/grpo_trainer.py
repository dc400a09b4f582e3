"""TRL's GRPO with vlmrm's run management: :class:`GRPOTrainingArguments` (``GRPOConfig`` plus the
run keys every task shares) and :class:`ManagedGRPOTrainer` (complete-checkpoint marker and
non-finite-loss guard of :class:`vlmrm.training.run.ManagedRunMixin`).

TRL is imported at the top here, so this module is imported only where GRPO runs or its config is
parsed (:func:`vlmrm.vtg.config.training_class`, :func:`vlmrm.vtg.grpo.run_vtg_grpo`): the VTG SFT
job and the reward model never need TRL.
"""

from __future__ import annotations

from dataclasses import dataclass

from trl import GRPOConfig, GRPOTrainer

from vlmrm.training.run import ManagedRunMixin, RunArguments


@dataclass
class GRPOTrainingArguments(RunArguments, GRPOConfig):
    """TRL's ``GRPOConfig`` plus the run-management keys (``experiment_name``, early stopping,
    ``load_weights_only``, ``skip_nonfinite_loss``; ``resume_from_checkpoint: latest``)."""


class ManagedGRPOTrainer(ManagedRunMixin, GRPOTrainer):
    """TRL's ``GRPOTrainer`` whose checkpoints are marked complete and whose non-finite loss stops
    the run naming the step and the generation batch's ``sample_ids`` (or is skipped and counted)."""
