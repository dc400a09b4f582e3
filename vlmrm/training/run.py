"""Run management shared by every task's trainer: complete-checkpoint markers, ``resume: latest``,
the NaN/inf loss guard, ``experiment_name`` folders and early stopping.

Every trainer of vlmrm (the reward model's, the SFT trainer of VTG and GRM, TRL's GRPO trainer)
mixes in :class:`ManagedRunMixin` before the HF / TRL class, and every task's training arguments
mix in :class:`RunArguments`, so a fix to any of these lands once:

- HF writes ``checkpoint-N`` in place, file by file, and resume takes the newest folder: a run
  killed mid-write would resume from half a checkpoint. Once every rank has written its part,
  rank 0 writes :data:`CHECKPOINT_COMPLETE` into the folder; ``resume_from_checkpoint: latest``
  takes the newest *marked* folder (:func:`resolve_resume`).
- A non-finite loss is agreed on by every rank (DDP would average one rank's NaN gradients into
  all of them) and either stops the run naming the step and the batch's sample ids, or, with
  ``skip_nonfinite_loss``, drops that optimizer step's gradients and is counted.

Every task's run function goes through the same three steps, so none of them hands
``resume_from_checkpoint`` to the Trainer unresolved: :func:`prepare_run` (experiment folder, the
checkpoint ``latest`` names) before anything loads, :func:`start_training` (``load_weights_only``,
then ``Trainer.train``) and :func:`with_run_metrics` (skip counts into the returned metrics).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import EarlyStoppingCallback, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, IntervalStrategy

from vlmrm.core.config import AT_LEAST_ONE, NON_NEGATIVE, ConfigError, option
from vlmrm.modeling.loading import load_saved_weights, saved_weight_files
from vlmrm.training.callbacks import plain_progress_for_logs

logger = logging.getLogger(__name__)

CHECKPOINT_COMPLETE = "checkpoint_complete.json"
"""Written (to a temporary name, then renamed) into ``checkpoint-N`` after every rank's files are in."""

RESUME_LATEST = {"latest", "true", "True"}
"""``resume_from_checkpoint`` values that mean "the newest complete checkpoint of output_dir"."""

SAMPLE_ID_KEYS = ("pair_ids", "sample_ids")
"""Batch keys holding the data-file row / line of each sample, named in a non-finite-loss error
(a TRL batch is a list of rows: each row's key is read)."""


class NonFiniteLossError(RuntimeError):
    """A NaN or inf training loss (the message names the step and the batch's sample ids)."""


@dataclass
class RunArguments:
    """Run-management keys every task's training arguments carry: put before ``TrainingArguments``
    (or TRL's ``GRPOConfig``) in the bases, e.g. ``class X(RunArguments, TrainingArguments)``. Every
    field has a default, so the dataclass fields of both bases combine in any order."""

    experiment_name: str | None = option(
        None, "Write the run to output_dir/<experiment_name>_<YYYYmmdd_HHMMSS> (a new folder every run)."
    )
    early_stopping_patience: int | None = option(
        None,
        "Stop after this many evaluations without improvement of metric_for_best_model.",
        bound=AT_LEAST_ONE,
    )
    early_stopping_threshold: float = option(
        0.0, "Smallest improvement that counts for early stopping.", bound=NON_NEGATIVE
    )
    load_weights_only: bool = option(
        False, "With resume_from_checkpoint: take the weights only; fresh optimizer, scheduler and step 0."
    )
    skip_nonfinite_loss: bool = option(
        False,
        "A NaN/inf training loss stops the run naming the step and the batch's sample ids; true skips "
        "that optimizer step instead (its gradients dropped; counted as skipped_nonfinite_steps).",
    )

    def __post_init__(self) -> None:
        """Early stopping reads the best metric, so it turns ``load_best_model_at_end`` on before the
        next base's ``__post_init__`` (``TrainingArguments`` picks ``metric_for_best_model`` then and
        checks that evaluation and saving line up); then :meth:`check_run_arguments`."""
        if self.early_stopping_patience is not None:
            self.load_best_model_at_end = True
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        self.check_run_arguments()

    def check_run_arguments(self) -> None:
        """Cross-checks of the run keys; run by :meth:`__post_init__`."""
        if self.skip_nonfinite_loss and getattr(self, "deepspeed", None):
            raise ConfigError(
                "skip_nonfinite_loss: DeepSpeed keeps its own gradient buffers, which this skip cannot "
                "clear; leave it false (a non-finite loss then stops the run with the step and sample ids)"
            )
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(f"early_stopping_patience: must be >= 1, got {self.early_stopping_patience}")


def mark_checkpoint_complete(folder: Path, step: int) -> None:
    temporary = folder / f".{CHECKPOINT_COMPLETE}.tmp"
    temporary.write_text(json.dumps({"step": step}) + "\n")
    os.replace(temporary, folder / CHECKPOINT_COMPLETE)


def latest_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` holding :data:`CHECKPOINT_COMPLETE`; newer, unmarked folders
    (a save interrupted by a kill) are logged and skipped."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    steps = {}
    for child in folder.iterdir():
        match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", child.name)
        if match and child.is_dir():
            steps[int(match.group(1))] = child
    for step in sorted(steps, reverse=True):
        if (steps[step] / CHECKPOINT_COMPLETE).is_file():
            return str(steps[step])
        logger.warning("%s is incomplete (its save was interrupted): not resuming from it", steps[step])
    return None


def resolve_resume(value: str | None, output_dir: str) -> str | None:
    """``latest`` -> the newest complete checkpoint of ``output_dir`` (None: start fresh); a named
    folder without the marker is used with a warning (it may be an interrupted save)."""
    if value in RESUME_LATEST:
        return latest_complete_checkpoint(output_dir)
    if value and not (Path(value) / CHECKPOINT_COMPLETE).is_file():
        logger.warning("%s has no %s: it may be an interrupted save", value, CHECKPOINT_COMPLETE)
    return value


def experiment_output_dir(args) -> None:
    """``experiment_name`` -> ``output_dir/<name>_<YYYYmmdd_HHMMSS>``, chosen by rank 0 (a suffix
    rather than reusing a folder: a run never overwrites another) and broadcast to every rank."""
    if not getattr(args, "experiment_name", None):
        return
    base = Path(args.output_dir) / f"{args.experiment_name}_{time.strftime('%Y%m%d_%H%M%S')}"
    folder, suffix = base, 1
    while args.process_index == 0 and folder.exists():
        folder, suffix = base.with_name(f"{base.name}_{suffix}"), suffix + 1
    if args.world_size > 1 and torch.distributed.is_initialized():
        chosen = [str(folder)]
        torch.distributed.broadcast_object_list(chosen, src=0)
        folder = Path(chosen[0])
    args.output_dir = str(folder)
    args.logging_dir = str(folder / "runs")
    logger.info("experiment %s -> %s", args.experiment_name, folder)


def early_stopping(args) -> list:
    """HF's ``EarlyStoppingCallback`` on ``metric_for_best_model`` when a patience is set. Call it
    once the run knows whether it evaluates (``eval_strategy`` "no" when there is no held-out data):
    a patience without evaluations could never stop the run."""
    if getattr(args, "early_stopping_patience", None) is None:
        return []
    if args.eval_strategy == IntervalStrategy.NO:
        raise ConfigError(
            "early_stopping_patience: needs evaluations (held-out data and an eval_strategy other than no)"
        )
    return [EarlyStoppingCallback(args.early_stopping_patience, args.early_stopping_threshold)]


def load_initial_weights(model, checkpoint: str) -> None:
    """``load_weights_only``: the checkpoint's trained weights into the freshly built model (full or
    PEFT adapter); optimizer, scheduler and step start fresh because Trainer is not told to resume."""
    if hasattr(model, "peft_config"):
        from peft import load_peft_weights, set_peft_model_state_dict

        set_peft_model_state_dict(model, load_peft_weights(checkpoint, device="cpu"))
    elif saved_weight_files(checkpoint):
        load_saved_weights(model, checkpoint)
    else:
        raise ConfigError(
            f"resume_from_checkpoint {checkpoint}: no model weights to load (load_weights_only)"
        )
    logger.info("loaded weights only from %s (fresh optimizer, scheduler, step 0)", checkpoint)


def prepare_run(args) -> str | None:
    """Before anything loads: the seed, the ``experiment_name`` folder, then the checkpoint the run
    starts from (``latest`` -> the newest complete one; None: from scratch). Every task calls it, so
    a half-written checkpoint is never resumed from by any of them.

    The seed is set here, before the model is built, because building draws random numbers (LoRA
    matrices, new token rows): a resumed run must rebuild the same model as the run it continues,
    or its untrained, unsaved parts differ and so do its losses (Trainer seeds only later)."""
    set_seed(args.seed)
    experiment_output_dir(args)
    checkpoint = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    if checkpoint:
        logger.info(
            "starting from %s (%s)",
            checkpoint,
            "weights only" if getattr(args, "load_weights_only", False) else "resuming the run",
        )
    return checkpoint


def start_training(trainer, checkpoint: str | None):
    """``Trainer.train`` from :func:`prepare_run`'s checkpoint; with ``load_weights_only`` its weights
    go into ``trainer.model`` (the PEFT model when the trainer wrapped one) and the run starts at
    step 0. Output that is not a terminal gets progress lines instead of tqdm bars
    (:func:`plain_progress_for_logs`). Returns what ``train`` returns."""
    plain_progress_for_logs(trainer)
    if checkpoint and getattr(trainer.args, "load_weights_only", False):
        load_initial_weights(trainer.model, checkpoint)
        checkpoint = None
    return trainer.train(resume_from_checkpoint=checkpoint)


def with_run_metrics(trainer, metrics: dict) -> dict:
    """``metrics`` plus what the run itself counted (:meth:`ManagedRunMixin.run_metrics`)."""
    return {**metrics, **trainer.run_metrics()}


def batch_sample_ids(inputs):
    """The sample ids of a batch (:data:`SAMPLE_ID_KEYS`), as they are (a device tensor is only
    turned into a list when an error names it): a collated mapping's value, or each row's value when
    the batch is a list of rows (TRL's trainers); None when the batch records none."""
    if isinstance(inputs, Mapping):
        return next((inputs[key] for key in SAMPLE_ID_KEYS if key in inputs), None)
    if isinstance(inputs, list):
        rows = [row for row in inputs if isinstance(row, Mapping)]
        return [row[key] for row in rows for key in SAMPLE_ID_KEYS if key in row] or None
    return None


class ManagedRunMixin:
    """Put before ``transformers.Trainer`` (or a TRL trainer) in the bases: the checkpoint marker
    and the non-finite-loss guard. ``nonfinite_skipped`` counts the skipped steps."""

    nonfinite_skipped = 0

    def training_step(self, model, inputs, num_items_in_batch=None):
        """The wrapped trainer's step, then a finiteness check agreed by every rank. A non-finite
        loss raises :class:`NonFiniteLossError` with the step and the batch's sample ids, or, with
        ``skip_nonfinite_loss``, drops the gradients (set to None, so the optimizer leaves every
        weight and moment as it was; with gradient accumulation the step's other micro-batches go
        too) and counts it."""
        sample_ids = batch_sample_ids(inputs)
        loss = super().training_step(model, inputs, num_items_in_batch)
        local_bad = not bool(torch.isfinite(loss).all())
        flag = torch.tensor([float(local_bad)], device=loss.device)
        if self.accelerator.num_processes > 1:
            flag = self.accelerator.reduce(flag, reduction="sum")
        if flag.item() == 0:
            return loss
        step = self.state.global_step + 1
        if not getattr(self.args, "skip_nonfinite_loss", False):
            ids = sample_ids.tolist() if torch.is_tensor(sample_ids) else list(sample_ids or [])
            where = f"batch sample ids {ids}" if local_bad else "on another rank"
            raise NonFiniteLossError(
                f"non-finite training loss at step {step} ({where}; rank {self.args.process_index}); "
                "set skip_nonfinite_loss: true to skip such steps"
            )
        model.zero_grad(set_to_none=True)
        self.nonfinite_skipped += 1
        logger.warning(
            "step %d: non-finite loss, gradients dropped (%d so far)", step, self.nonfinite_skipped
        )
        return torch.zeros_like(loss)

    def _save_checkpoint(self, model, trial):
        """HF's save, then (after every rank wrote its part) rank 0 marks the folder complete."""
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            mark_checkpoint_complete(folder, self.state.global_step)

    def run_metrics(self) -> dict:
        """What the run itself adds to the final metrics (``skipped_nonfinite_steps``)."""
        if getattr(self.args, "skip_nonfinite_loss", False):
            return {"skipped_nonfinite_steps": self.nonfinite_skipped}
        return {}
