"""``RewardTrainer``: HF ``Trainer`` with the pair loss, per-dimension logging and LR groups.

Only the narrow hooks are overridden (``compute_loss``, ``prediction_step``, ``create_optimizer``,
``log``), as TRL's RewardTrainer does; training, checkpointing, DeepSpeed and DDP stay Trainer's,
and run management (checkpoint markers, the non-finite-loss guard) is the shared
:class:`vlmrm.training.run.ManagedRunMixin`.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import torch
from transformers import Trainer
from transformers.trainer_utils import _is_peft_model

from vlmrm.modeling.families import ModelFamily
from vlmrm.modeling.loading import load_saved_weights, saved_weight_files
from vlmrm.modeling.trainable import optimizer_param_groups
from vlmrm.reward.losses import bt_loss, pair_loss, preference_accuracy, resolved_above
from vlmrm.reward.metrics import preference_metrics
from vlmrm.reward.pair_forward import pair_rewards
from vlmrm.training.run import ManagedRunMixin

logger = logging.getLogger(__name__)


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

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rewards_a, rewards_b, tie_k, irrelevant = self.pair_rewards(model, inputs)
        labels = inputs["labels"].to(rewards_a.dtype)
        margin = self.args.margin
        if "margin" in inputs:  # per pair m = margin_scale * y (s_A - s_B): preferred minus other score
            margin = self.args.margin_scale * torch.nan_to_num(labels) * inputs["margin"].to(rewards_a.dtype)
        result = pair_loss(self.args.loss_type, rewards_a, rewards_b, labels, tie_k=tie_k, margin=margin)
        loss = result.loss
        irrelevant_loss = None
        if irrelevant is not None:
            matched, unrelated = irrelevant
            irrelevant_loss = bt_loss(matched, unrelated, torch.ones_like(matched)).loss
            if model.training:  # evaluation reports it apart, so eval_loss stays comparable with it off
                loss = loss + self.args.irrelevant_loss_weight * irrelevant_loss
        self._record(rewards_a, rewards_b, labels, result, irrelevant, irrelevant_loss)
        if return_outputs:
            return loss, {"rewards_a": rewards_a, "rewards_b": rewards_b}
        return loss

    @torch.no_grad()
    def _record(self, rewards_a, rewards_b, labels, result, irrelevant=None, irrelevant_loss=None) -> None:
        """Accumulate per-dimension loss sums and accuracy counts until the next ``log``; irrelevant-
        query pairs under ``loss_irrelevant`` / ``accuracy_irrelevant`` (matched above unrelated, at
        bf16 resolution: :func:`resolved_above`) / ``margin_irrelevant`` (mean matched - unrelated)."""
        mode = "train" if self.model.training else "eval"
        accuracy, counts = preference_accuracy(rewards_a, rewards_b, labels)
        sums = self._sums[mode]

        def add(name: str, total, count) -> None:
            sums[f"{name}:sum"] = sums[f"{name}:sum"] + total
            sums[f"{name}:n"] = sums[f"{name}:n"] + count

        if irrelevant is not None:
            matched, unrelated = irrelevant
            count = float(matched.numel())
            add("loss_irrelevant", irrelevant_loss.detach() * count, count)
            add("accuracy_irrelevant", resolved_above(matched, unrelated).sum().float(), count)
            add("margin_irrelevant", (matched - unrelated).sum().detach(), count)
        labelled = (~torch.isnan(labels)).sum(dim=0).float()  # (D,) entries with a label
        for d, dim in enumerate(self.eval_dim):
            # per-dimension labelled entries per batch (a masked label counts nowhere): *_labelled
            add(f"labelled_{dim}", labelled[d], 1.0)
            valid = result.num_valid[d].float()
            add(f"loss_{dim}", torch.nan_to_num(result.per_dim_loss[d]) * valid, valid)
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

    # --- evaluation ---------------------------------------------------------------------------

    def evaluation_loop(self, *args, **kwargs):
        """Per-dimension eval sums belong to one loop: ``predict`` (no ``log``) leaves none behind."""
        self._sums["eval"].clear()
        return super().evaluation_loop(*args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Returns (loss, rewards (B, 2, D) stacked A/B, labels (B, D)) for ``compute_metrics``."""
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
