"""VideoAlign's inference call on a vlmrm checkpoint: port a script by changing its import.

::

    # from inference import VideoVLMRewardInference
    from vlmrm.reward.videoalign_compat import VideoVLMRewardInference
    inferencer = VideoVLMRewardInference("converted/")          # a vlmrm checkpoint
    inferencer.reward(video_paths, prompts, use_norm=True)       # [{"VQ", "MQ", "TA", "Overall"}, ...]

Output mapping (docs/videoalign_checkpoints.md): each dimension's value is ``RewardScorer``'s
``raw`` reward, or with ``use_norm`` (and statistics in the checkpoint) its ``normalized`` one,
(r - mean) / std; ``Overall`` is their sum — VideoAlign's definition and ``RewardScorer``'s
``Overall``. ``fps`` / ``num_frames`` / ``max_pixels`` override the checkpoint's frame sampling for
the call, as VideoAlign's arguments override its ``data_config``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from vlmrm.pairs.labels import OVERALL
from vlmrm.reward.inference import RewardScorer
from vlmrm.reward.metrics import normalize_rewards


class VideoVLMRewardInference:
    """``reward(video_paths, prompts, fps, num_frames, max_pixels, use_norm)`` over a ``RewardScorer``.

    Args:
        load_from_pretrained: a vlmrm reward checkpoint (e.g. converted with ``python -m vlmrm.convert``).
        device, dtype: where and in which precision the model runs (VideoAlign's defaults).
    """

    def __init__(
        self,
        load_from_pretrained: str | Path,
        device: str = "cuda",
        dtype: torch.dtype = torch.bfloat16,
        base_model_path: str | None = None,
    ):
        self.scorer = RewardScorer.from_pretrained(load_from_pretrained, device, base_model_path)
        self.scorer.model.to(dtype)
        self.default_sampling = self.scorer.sampling

    @torch.no_grad()
    def reward(
        self,
        video_paths: list[str],
        prompts: list[str],
        fps: float | None = None,
        num_frames: int | None = None,
        max_pixels: int | None = None,
        use_norm: bool = True,
    ) -> list[dict[str, float]]:
        """One dict per video: each dimension's reward and ``Overall`` (their sum)."""
        if fps is not None and num_frames is not None:
            raise ValueError("fps and num_frames cannot be set at the same time")
        changes = {}
        if fps is not None:
            changes.update(fps=fps, num_frames=None)
        if num_frames is not None:
            changes["num_frames"] = num_frames
        if max_pixels is not None:
            changes["max_pixels"] = max_pixels
        self.scorer.sampling = dataclasses.replace(self.default_sampling, **changes)
        try:
            raw = self.scorer.raw_rewards(
                list(prompts), videos=list(video_paths), batch_size=len(prompts) or 1
            )
        finally:
            self.scorer.sampling = self.default_sampling
        dims = self.scorer.spec.eval_dim
        values = normalize_rewards(raw, dims, self.scorer.spec.normalization) if use_norm else raw
        results = []
        for row in values:
            item = {dim: float(v) for dim, v in zip(dims, row)}
            item[OVERALL] = float(sum(item.values()))
            results.append(item)
        return results
