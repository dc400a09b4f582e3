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
======================  ============================================================

Each sample is encoded on its own (:func:`masked_row`) and the rows are padded together
(:func:`pad_rows`): prompt and target pieces are tokenised apart and concatenated, so no tokeniser
merge across a boundary can shift the mask.
"""

from __future__ import annotations

import torch
from transformers import Trainer

from vlmrm.training.run import ManagedRunMixin

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


def pad_rows(rows: list[dict], pad_id: int) -> dict:
    """Right-pad the rows' text tensors to the longest and concatenate their visual tensors."""
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
    return batch


class GenerationSFTTrainer(ManagedRunMixin, Trainer):
    """HF Trainer with an optional batch sampler (VTG's duration-based batches): that sampler
    already gives each rank its own batches, so the loader is not sharded again."""

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

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.batch_log is not None:
            self.batch_log.record(int(inputs["input_ids"].shape[0]))
        return super().training_step(model, inputs, num_items_in_batch)
