"""The reward forward of a pair batch, shared by ``RewardTrainer`` and ``benchmarks/gpu_step.py``.

A collated pair batch (the layout is in :mod:`vlmrm.reward.collator`) holds 2B rows, A sides
first, then B sides, then optionally K matched and K unrelated irrelevant-query rows. The model
either sees all rows in one forward (``merged``) or one forward per row group; the rewards are the
same up to float rounding, the merged forward runs one kernel sequence and reads the weights once
per step, the per-group forwards hold fewer activations at a time.

Imports torch alone, so the GPU benchmark (whose machine has torch + transformers but neither
TRL, DeepSpeed, decoders, qwen-vl-utils nor pandas) times this very code path.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

NON_MODEL_KEYS = ("labels", "pair_ids", "margin", "num_irrelevant")
"""Batch entries the loss reads; the model is not given them."""

ROW_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "second_per_grid_ts")
"""Batch entries with one row per sequence."""

VISUAL_KEYS = {"video_grid_thw": "pixel_values_videos", "image_grid_thw": "pixel_values"}
"""Grid entry (one (t, h, w) row per visual) -> its flat patch tensor (t * h * w rows per visual)."""


def split_rows(batch: dict[str, torch.Tensor], sizes: list[int]) -> list[dict]:
    """Split a collated batch into consecutive row groups of ``sizes`` (model batches).

    Rows split by count; the flat patch tensors split after the patches of each group's visuals
    (patches per visual = t * h * w of its grid).
    """
    parts: list[dict] = [{} for _ in sizes]
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    for key in ROW_KEYS:
        if key in batch:
            for part, start, end in zip(parts, bounds, bounds[1:]):
                part[key] = batch[key][start:end]
    for grid_key, pixel_key in VISUAL_KEYS.items():
        if grid_key not in batch:
            continue
        grid = batch[grid_key]
        patches = [0] + grid.prod(dim=1).cumsum(0).tolist()
        for part, start, end in zip(parts, bounds, bounds[1:]):
            part[grid_key] = grid[start:end]
            part[pixel_key] = batch[pixel_key][int(patches[start]) : int(patches[end])]
    return parts


class PairRewards(NamedTuple):
    """Rewards of one pair batch.

    ``rewards_a`` / ``rewards_b``: (B, D). ``tie_k``: the model's learned (D,) Rao-Kupper k, or None
    when the model learns none (the loss then uses the configured k). ``irrelevant``: the (K, D)
    rewards of the matched and of the unrelated irrelevant-query rows, or None without them.
    """

    rewards_a: torch.Tensor
    rewards_b: torch.Tensor
    tie_k: torch.Tensor | None
    irrelevant: tuple[torch.Tensor, torch.Tensor] | None


def pair_rewards(model, inputs: dict, merged: bool) -> PairRewards:
    """Run the reward ``model`` on a collated pair batch: one forward over every row (``merged``)
    or one forward per row group (A sides, B sides, then matched and unrelated rows if any)."""
    model_inputs = {k: v for k, v in inputs.items() if k not in NON_MODEL_KEYS}
    pairs = inputs["labels"].shape[0]
    extra = int(inputs.get("num_irrelevant", 0))
    sizes = [pairs, pairs] + ([extra, extra] if extra else [])
    if merged:
        outputs = model(**model_inputs)
        groups = outputs.rewards.split(sizes, dim=0)
    else:
        results = [model(**part) for part in split_rows(model_inputs, sizes)]
        outputs, groups = results[0], [r.rewards for r in results]
    irrelevant = (groups[2], groups[3]) if extra else None
    return PairRewards(groups[0], groups[1], outputs.tie_k, irrelevant)
