"""Supervised fine-tuning pieces shared by the generation tasks (``vtg_sft``, ``grm_sft``).

Batch convention of these tasks (one sequence per sample, loss on the target tokens only):

======================  ============================================================
``input_ids``           (B, T) right-padded with the tokenizer's pad id
``attention_mask``      (B, T) 1 on real tokens
``labels``              (B, T) the token id on target tokens, :data:`IGNORE_INDEX` elsewhere
``mm_token_type_ids``   (B, T) 0 text, 1 image, 2 video; transformers 5 builds M-RoPE from it
``pixel_values``        (image patches of the batch, D), rows' images in order (when any)
``image_grid_thw``      (images, 3)
``pixel_values_videos`` (video patches of the batch, D), rows' videos in order (when any)
``video_grid_thw``      (videos, 3)
``second_per_grid_ts``  (videos,) Qwen2.5-VL only: seconds per temporal patch
``sample_ids``          (B,) where each row came from (a data-file line, or "file example i"):
                        named by a non-finite-loss error, dropped before the model's forward
======================  ============================================================

Each sample is encoded on its own (:func:`masked_row`) and the rows are padded together
(:func:`pad_rows`): prompt and target pieces are tokenised apart and concatenated, so no tokeniser
merge across a boundary can shift the mask.

The training arguments of these tasks are :class:`SFTTrainingArguments` (HF's plus the run keys of
:class:`vlmrm.training.run.RunArguments`), their trainer :class:`GenerationSFTTrainer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import Trainer, TrainingArguments

from vlmrm.training.run import ManagedRunMixin, RunArguments

IGNORE_INDEX = -100  # positions the cross-entropy skips (PyTorch's and transformers' convention)
END_OF_TURN = "<|im_end|>"  # Qwen chat turns end with it; generation stops on it
TEXT_KEYS = ("input_ids", "attention_mask", "labels", "mm_token_type_ids")
VISUAL_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
)


def masked_row(
    pieces: list[tuple[torch.Tensor, bool]], mm_token_type_ids: torch.Tensor | None = None
) -> dict:
    """One sample's text tensors from token pieces in order.

    Args:
        pieces: ``(ids, is_target)`` with ``ids`` of shape (1, n); targets keep their ids as labels,
            other pieces get :data:`IGNORE_INDEX`.
        mm_token_type_ids: (1, n0) of the first piece (the one holding the visuals); every later
            piece is text (0).

    Returns:
        ``input_ids``, ``attention_mask``, ``labels``, ``mm_token_type_ids``, each of shape (T,).
    """
    ids = torch.cat([piece for piece, _ in pieces], dim=1)[0]  # (T,)
    labels = torch.cat(
        [piece if target else torch.full_like(piece, IGNORE_INDEX) for piece, target in pieces], dim=1
    )[0]
    types = [torch.zeros_like(piece) for piece, _ in pieces]
    if mm_token_type_ids is not None:
        types[0] = mm_token_type_ids
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": labels,
        "mm_token_type_ids": torch.cat(types, dim=1)[0],
    }


@dataclass
class SFTTrainingArguments(RunArguments, TrainingArguments):
    """HF ``TrainingArguments`` plus the run-management keys (``experiment_name``, early stopping,
    ``load_weights_only``, ``skip_nonfinite_loss``; ``resume_from_checkpoint: latest``) of
    ``vtg_sft`` and ``grm_sft``, the same keys as the reward model's."""


def pad_rows(rows: list[dict], pad_id: int, sample_ids: Sequence | None = None) -> dict:
    """Right-pad the rows' text tensors to the longest and concatenate their visual tensors.

    Args:
        rows: :func:`masked_row` output plus each row's visual tensors (module docstring's keys).
        pad_id: the tokenizer's pad id (``input_ids`` filler; labels are padded with -100).
        sample_ids: where each row came from, one per row: line numbers become a (B,) tensor,
            anything else (e.g. "file example i" strings) stays a list; None leaves the key out.

    Returns:
        The batch of the module docstring's table.
    """
    width = max(len(row["input_ids"]) for row in rows)
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE_INDEX, "mm_token_type_ids": 0}
    batch = {
        key: torch.stack(
            [torch.nn.functional.pad(row[key], (0, width - len(row[key])), value=fill[key]) for row in rows]
        )
        for key in TEXT_KEYS
    }
    for key in VISUAL_KEYS:
        present = [row[key] for row in rows if key in row]
        if present:
            batch[key] = torch.cat(present)
    if sample_ids is not None:
        if len(sample_ids) != len(rows):
            raise ValueError(f"pad_rows: {len(sample_ids)} sample ids for {len(rows)} rows")
        ids = list(sample_ids)
        batch["sample_ids"] = torch.tensor(ids) if all(isinstance(i, int) for i in ids) else ids
    return batch


class GenerationSFTTrainer(ManagedRunMixin, Trainer):
    """HF Trainer with run management (:class:`ManagedRunMixin`) and an optional batch sampler
    (VTG's duration-based batches): that sampler already gives each rank its own batches, so the
    loader is not sharded again."""

    def __init__(self, *args, batch_sampler=None, batch_log=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_sampler, self.batch_log = batch_sampler, batch_log

    def get_train_dataloader(self):
        if self.batch_sampler is None:
            return super().get_train_dataloader()
        args = self.args
        return torch.utils.data.DataLoader(
            self.train_dataset,
            batch_sampler=self.batch_sampler,
            collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
            prefetch_factor=args.dataloader_prefetch_factor if args.dataloader_num_workers else None,
            persistent_workers=args.dataloader_persistent_workers and args.dataloader_num_workers > 0,
        )

    def _prepare_inputs(self, inputs):
        """HF's device placement, without ``sample_ids``: the model's forward does not take them
        (the training step read them first, for its non-finite-loss error). Training, evaluation
        and prediction all pass through here before the forward."""
        prepared = super()._prepare_inputs(inputs)
        return {key: value for key, value in prepared.items() if key != "sample_ids"}

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.batch_log is not None:
            self.batch_log.record(int(inputs["input_ids"].shape[0]))
        return super().training_step(model, inputs, num_items_in_batch)
