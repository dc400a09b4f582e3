"""``RewardTrainer``: HF ``Trainer`` with the pair loss, per-dimension logging and LR groups.

Only the narrow hooks are overridden (``compute_loss``, ``prediction_step``, ``create_optimizer``,
``log``), as TRL's RewardTrainer does; training, checkpointing, DeepSpeed and DDP stay Trainer's,
and run management (checkpoint markers, the non-finite-loss guard) is the shared
:class:`vlmrm.training.run.ManagedRunMixin`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import NamedTuple

import numpy as np
import torch
from transformers import Trainer
from transformers.trainer_utils import _is_peft_model

from vlmrm.modeling.families import ModelFamily
from vlmrm.modeling.loading import load_saved_weights, saved_weight_files
from vlmrm.modeling.trainable import optimizer_param_groups
from vlmrm.pairs.samples import SKIPPED_KEY
from vlmrm.reward.losses import bt_loss, pair_loss, preference_accuracy, resolved_above, valid_entries
from vlmrm.reward.metrics import preference_metrics
from vlmrm.reward.pair_forward import pair_rewards
from vlmrm.training.run import ManagedRunMixin

logger = logging.getLogger(__name__)


class StepItems(NamedTuple):
    """The valid entries of one optimizer step, summed over its micro-batches and processes: the
    divisors that make its loss independent of how the step's batch is split
    (docs/reward_math.md, "Averaging over valid entries").

    ``pairs``: () int64, the (pair, dimension) entries with a term of the pair loss
    (:func:`vlmrm.reward.losses.valid_entries`). ``irrelevant``: () int64, the K x D entries of the
    irrelevant-query loss (every one carries a term).
    """

    pairs: torch.Tensor
    irrelevant: torch.Tensor


class RewardTrainer(ManagedRunMixin, Trainer):
    """Trains a reward model on collated pair batches (see ``vlmrm.reward.collator``).

    Args:
        eval_dim: names of the reward dimensions (for metric names).
        family: the backbone's row of the family table (for parameter groups).
        frozen_llm: reward-token rows of a frozen LLM train at ``special_token_lr``, no decay.
    """

    def __init__(self, *args, eval_dim: list[str], family: ModelFamily, frozen_llm: bool, **kwargs):
        kwargs.setdefault("compute_metrics", self._compute_metrics)
        super().__init__(*args, **kwargs)
        self.eval_dim = list(eval_dim)
        self.family = family
        self.frozen_llm = frozen_llm
        self.skipped_samples: set[str] = set()
        """``file:line`` of every pair skipped inside the loop on this process (``on_bad_sample: skip``)."""
        self._sums: dict[str, dict[str, torch.Tensor]] = {
            "train": defaultdict(float),
            "eval": defaultdict(float),
        }

    # --- loss ---------------------------------------------------------------------------------

    def pair_rewards(self, model, inputs: dict):
        """(B, D) rewards of the A and of the B sides, the tie k, and for irrelevant-query rows the
        (K, D) rewards of the matched and of the unrelated images (else None): one merged forward or
        one forward per row group (``merge_pair_forward``), by :func:`vlmrm.reward.pair_forward.pair_rewards`,
        the function ``benchmarks/gpu_step.py`` times."""
        rewards = pair_rewards(model, inputs, merged=self.args.merge_pair_forward)
        tie_k = rewards.tie_k if rewards.tie_k is not None else self.args.tie_k
        return rewards.rewards_a, rewards.rewards_b, tie_k, rewards.irrelevant

    # Trainer's training_step must not divide our loss by the accumulation steps: compute_loss
    # already divides by the valid entries of the whole optimizer step (see ``compute_loss``).
    loss_is_scaled_for_ga = True

    def batch_items(self, inputs: dict) -> torch.Tensor:
        """(2,) int64: this micro-batch's valid pair-loss entries and irrelevant-query entries,
        counted from ``labels`` and ``num_irrelevant`` alone, so before any forward."""
        labels = inputs["labels"]
        pairs = valid_entries(self.args.loss_type, labels.float()).sum()
        irrelevant = int(inputs.get("num_irrelevant", 0)) * labels.shape[1]  # (K, D) entries
        # on the labels' device: no host sync per micro-batch
        return torch.stack(
            [pairs.to(torch.int64), torch.tensor(irrelevant, dtype=torch.int64, device=labels.device)]
        )

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> StepItems | None:
        """Trainer's hook, called once per optimizer step with all its micro-batches: our
        :class:`StepItems`, summed over the micro-batches and then over every process (always,
        whatever ``average_tokens_across_devices`` says: the rule is exact only globally). Trainer's
        own count (every label != -100) would count ties and missing (NaN) labels."""
        if not batch_samples or "labels" not in batch_samples[0]:
            return None
        counts = torch.stack([self.batch_items(batch) for batch in batch_samples]).sum(dim=0).to(device)
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        return StepItems(pairs=counts[0], irrelevant=counts[1])

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Trainer's step; a call outside Trainer's loop (no count given) counts its own batch, so
        the loss is still normalised (``loss_is_scaled_for_ga``) as a one-micro-batch step."""
        self.skipped_samples.update(inputs.pop(SKIPPED_KEY, ()))
        if num_items_in_batch is None:
            num_items_in_batch = self._get_num_items_in_batch([inputs], self.args.device)
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The pair loss (plus ``irrelevant_loss_weight`` x the irrelevant-query loss in training).

        With ``num_items_in_batch`` (training: a :class:`StepItems` of the optimizer step) each
        loss is this micro-batch's sum of terms over the step's global valid count, times the
        number of processes P:

            loss = P * sum_{(i, d) in V_local} loss_id / max(|V_step|, 1)

        DDP / DeepSpeed average the gradients over the P processes and accumulation adds the
        micro-batches' gradients, so the step's gradient is that of sum over V_step / |V_step|,
        the loss of the whole batch on one process; Trainer's logged loss (the per-process sums of
        the micro-batch losses, averaged over processes) is the same value. Without it
        (evaluation, a direct call) each loss is this batch's own mean over its valid entries.
        """
        rewards_a, rewards_b, tie_k, irrelevant = self.pair_rewards(model, inputs)
        labels = inputs["labels"].to(rewards_a.dtype)
        margin = self.args.margin
        if "margin" in inputs:  # per pair m = margin_scale * y (s_A - s_B): preferred minus other score
            margin = self.args.margin_scale * torch.nan_to_num(labels) * inputs["margin"].to(rewards_a.dtype)
        result = pair_loss(self.args.loss_type, rewards_a, rewards_b, labels, tie_k=tie_k, margin=margin)
        irrelevant_result = None
        if irrelevant is not None:
            matched, unrelated = irrelevant
            irrelevant_result = bt_loss(matched, unrelated, torch.ones_like(matched))
        if num_items_in_batch is None:
            loss = result.loss
            irrelevant_loss = irrelevant_result.loss if irrelevant_result is not None else None
        else:
            processes = self.accelerator.num_processes
            loss = result.loss_sum * processes / num_items_in_batch.pairs.clamp(min=1)
            irrelevant_loss = (
                irrelevant_result.loss_sum * processes / num_items_in_batch.irrelevant.clamp(min=1)
                if irrelevant_result is not None
                else None
            )
        if irrelevant_loss is not None and model.training:
            # evaluation reports it apart, so eval_loss stays comparable with it off
            loss = loss + self.args.irrelevant_loss_weight * irrelevant_loss
        self._record(rewards_a, rewards_b, labels, result, irrelevant, irrelevant_result)
        if return_outputs:
            return loss, {"rewards_a": rewards_a, "rewards_b": rewards_b}
        return loss

    @torch.no_grad()
    def _record(self, rewards_a, rewards_b, labels, result, irrelevant=None, irrelevant_result=None) -> None:
        """Accumulate per-dimension loss sums and accuracy counts until the next ``log``; irrelevant-
        query pairs under ``loss_irrelevant`` / ``accuracy_irrelevant`` (matched above unrelated, at
        bf16 resolution: :func:`resolved_above`) / ``margin_irrelevant`` (mean matched - unrelated).

        Sums of terms and counts of entries, never means: ``log`` adds them over micro-batches and
        processes and divides once, so a logged value does not depend on how the batch was split."""
        mode = "train" if self.model.training else "eval"
        accuracy, counts = preference_accuracy(rewards_a, rewards_b, labels)
        sums = self._sums[mode]

        def add(name: str, total, count) -> None:
            sums[f"{name}:sum"] = sums[f"{name}:sum"] + total
            sums[f"{name}:n"] = sums[f"{name}:n"] + count

        if irrelevant is not None:
            matched, unrelated = irrelevant
            count = float(matched.numel())
            add("loss_irrelevant", irrelevant_result.loss_sum.detach(), count)
            add("accuracy_irrelevant", resolved_above(matched, unrelated).sum().float(), count)
            add("margin_irrelevant", (matched - unrelated).sum().detach(), count)
        labelled = (~torch.isnan(labels)).sum(dim=0).float()  # (D,) entries with a label
        for d, dim in enumerate(self.eval_dim):
            # per-dimension labelled entries per batch (a masked label counts nowhere): *_labelled
            add(f"labelled_{dim}", labelled[d], 1.0)
            add(f"loss_{dim}", result.per_dim_sum[d], result.num_valid[d].float())
            add(f"accuracy_{dim}", torch.nan_to_num(accuracy[d]) * counts[d], counts[d].float())

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """Add the per-dimension means (summed over processes) under the same names in both modes.

        In evaluation ``compute_metrics`` already gives exact accuracies over the whole set; the
        per-batch means only add what it lacks (the per-dimension losses).
        """
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        sums = self._sums[mode]
        if sums:
            names = sorted(sums)
            device = self.accelerator.device
            totals = torch.stack(
                [torch.as_tensor(sums[n], dtype=torch.float32, device=device) for n in names]
            )
            totals = (
                self.accelerator.reduce(totals, reduction="sum")
                if self.accelerator.num_processes > 1
                else totals
            )
            values = dict(zip(names, totals.tolist()))
            prefix = "eval_" if mode == "eval" else ""
            for name in sorted({n.rsplit(":", 1)[0] for n in names}):
                count = values[f"{name}:n"]
                logs.setdefault(f"{prefix}{name}", values[f"{name}:sum"] / count if count else float("nan"))
            sums.clear()
        super().log(logs, *args, **kwargs)

    def loop_skips(self) -> list[str]:
        """``file:line`` of every pair skipped inside the loop on any process, sorted; a collective
        (every rank calls it)."""
        skipped = sorted(self.skipped_samples)
        if self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            skipped = sorted(set(gather_object(skipped)))
        return skipped

    # --- evaluation ---------------------------------------------------------------------------

    def evaluation_loop(self, *args, **kwargs):
        """Per-dimension eval sums belong to one loop: ``predict`` (no ``log``) leaves none behind."""
        self._sums["eval"].clear()
        return super().evaluation_loop(*args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Returns (loss, rewards (B, 2, D) stacked A/B, labels (B, D)) for ``compute_metrics``."""
        self.skipped_samples.update(inputs.pop(SKIPPED_KEY, ()))
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        if prediction_loss_only:
            return loss.detach(), None, None
        rewards = torch.stack([outputs["rewards_a"], outputs["rewards_b"]], dim=1)
        return loss.detach(), rewards, inputs["labels"]

    def _compute_metrics(self, eval_prediction) -> dict[str, float]:
        rewards = np.asarray(eval_prediction.predictions)  # (N, 2, D)
        labels = np.asarray(eval_prediction.label_ids)
        return preference_metrics(rewards[:, 0], rewards[:, 1], labels, self.eval_dim)

    def _reloads_full_weights(self, model, folder: str) -> bool:
        """Trainer's own plain ``load_state_dict`` path, which needs key conversion (see ``load_saved_weights``)."""
        return not (self.is_deepspeed_enabled or self.is_fsdp_enabled or _is_peft_model(model)) and bool(
            saved_weight_files(folder)
        )

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        model = model if model is not None else self.model
        if not self._reloads_full_weights(model, resume_from_checkpoint):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        logger.info("loading model weights from %s", resume_from_checkpoint)
        load_saved_weights(model, resume_from_checkpoint)

    def _load_best_model(self):
        if not self._reloads_full_weights(self.model, self.state.best_model_checkpoint):
            return super()._load_best_model()
        logger.info(
            "loading best model from %s (score %s)", self.state.best_model_checkpoint, self.state.best_metric
        )
        load_saved_weights(self.model, self.state.best_model_checkpoint)

    # --- optimizer ----------------------------------------------------------------------------

    def create_optimizer(self, model=None):
        """AdamW (or ``optim``) over our parameter groups: vision / merger / LLM / head / reward tokens."""
        if self.optimizer is not None:
            return self.optimizer
        model = model if model is not None else self.model
        decay = set(self.get_decay_parameter_names(model))
        groups = optimizer_param_groups(model, self.args, self.family, decay, self.frozen_llm)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        optimizer_kwargs.pop("lr", None)
        self.optimizer = optimizer_cls(groups, lr=self.args.learning_rate, **optimizer_kwargs)
        for group in groups:
            logger.info(
                "optimizer group %-13s lr=%g weight_decay=%g params=%d",
                group["group_name"],
                group["lr"],
                group["weight_decay"],
                sum(p.numel() for p in group["params"]),
            )
        return self.optimizer
