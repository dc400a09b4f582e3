"""Score videos or images with a trained reward checkpoint: ``RewardScorer`` and a TRL reward function.

Everything the scorer needs — dimensions, template, frame sampling, tie k, normalisation — comes
from the checkpoint's ``config.json`` (``RewardSpec``), so no training YAML is involved::

    scorer = RewardScorer.from_pretrained("outputs/quickstart")
    scorer.score(videos=["a.mp4"], prompts=["red"])   # [{"raw": {...}, "normalized": {...}, "Overall": x}]
    scorer.compare("a.mp4", "b.mp4", "red")             # {"VQ": {"A": pA, "B": pB, "tie": pT}, ...}

Rewards: ``raw`` is the head output per dimension; ``normalized`` is (raw - mean) / std with the
training-set statistics stored after training (None when the checkpoint has none); ``Overall`` is
the sum of the normalised rewards (of the raw ones without statistics), as in ``vlmrm.reward.metrics``
(docs/reward_math.md, "Reward normalisation and Overall").
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from vlmrm.media.processor import image_factor
from vlmrm.media.sampling import num_sampled_frames
from vlmrm.media.video import load_video, probe_video, resolve_backend
from vlmrm.modeling.loading import load_reward_model
from vlmrm.modeling.reward_model import DEFAULT_TIE_K
from vlmrm.pairs.labels import OVERALL
from vlmrm.reward.collator import PairCollator
from vlmrm.reward.metrics import normalize_rewards

logger = logging.getLogger(__name__)


def rao_kupper_probabilities(margin: float, k: float = DEFAULT_TIE_K) -> dict[str, float]:
    """P(A), P(B), P(tie) for d = r_A - r_B (docs/reward_math.md, "Bradley-Terry with ties"): sigmoid(d - ln k), sigmoid(-d - ln k),
    (k^2 - 1) sigmoid(d - ln k) sigmoid(-d - ln k); they sum to 1."""
    log_k = math.log(k)

    def sigmoid(x: float) -> float:
        return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))

    p_a, p_b = sigmoid(margin - log_k), sigmoid(-margin - log_k)
    return {"A": p_a, "B": p_b, "tie": (k * k - 1) * p_a * p_b}


class RewardScorer:
    """Batched, ``torch.no_grad`` scoring with one loaded reward checkpoint."""

    def __init__(self, model, processor, device: str | torch.device | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.spec = model.reward_spec
        self.sampling = self.spec.frame_sampling()
        self.backend = resolve_backend(self.spec.video_backend)
        self.collator = PairCollator.from_spec(processor, self.spec)

    @classmethod
    def from_pretrained(
        cls, checkpoint: str | Path, device: str | None = None, base_model_path: str | None = None
    ) -> RewardScorer:
        model, processor = load_reward_model(checkpoint, base_path=base_model_path)
        return cls(model, processor, device)

    def tie_k(self, outputs) -> np.ndarray:
        """Per-dimension Rao-Kupper k: learned (``learn_tie_k``, returned by the forward) or the spec's."""
        if outputs.tie_k is not None:
            return outputs.tie_k.detach().float().cpu().numpy()
        return np.full(len(self.spec.eval_dim), self.spec.tie_k)

    def _check_video(self, path: Path) -> None:
        """Warn when a video's fps or sampled frame count lies outside what the model trained on."""
        seen = self.spec.training_videos or {}
        info = probe_video(path, self.backend)
        frames = num_sampled_frames(info.total_frames, info.fps, self.sampling)
        for name, value in (("fps", info.fps), ("frames_sampled", frames)):
            bounds = seen.get(name)
            if bounds and not bounds["min"] <= value <= bounds["max"]:
                logger.warning(
                    "%s: %s %s outside the training range [%s, %s]; scores may be off",
                    path,
                    name,
                    value,
                    bounds["min"],
                    bounds["max"],
                )

    @torch.no_grad()
    def raw_rewards(
        self,
        prompts: list[str],
        videos: list[str | Path] | None = None,
        images: list | None = None,
        responses: list[str] | None = None,
        batch_size: int = 8,
    ) -> np.ndarray:
        """(N, D) raw rewards; videos are paths (decoded with the checkpoint's sampling), images PIL
        images or paths."""
        items = videos if videos is not None else images
        if items is None or len(items) != len(prompts):
            raise ValueError("give one video (or image) per prompt")
        if responses is not None and len(responses) != len(prompts):
            raise ValueError("give one response per prompt")
        out = []
        for start in range(0, len(prompts), batch_size):
            chunk = slice(start, start + batch_size)
            if videos is not None:
                decoded = []
                for path in videos[chunk]:
                    self._check_video(Path(path))
                    decoded.append(
                        load_video(path, self.sampling, self.backend, image_factor(self.processor))
                    )
                batch = self.collator.encode(
                    prompts[chunk], videos=decoded, responses=responses and responses[chunk]
                )
            else:
                batch = self.collator.encode(
                    prompts[chunk],
                    images=[_image(i) for i in images[chunk]],
                    responses=responses and responses[chunk],
                )
            batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            outputs = self.model(**batch)
            self.last_tie_k = self.tie_k(outputs)
            out.append(outputs.rewards.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.spec.eval_dim)))

    def score(
        self, prompts: list[str], videos=None, images=None, responses=None, batch_size: int = 8
    ) -> list[dict]:
        """Per item: ``{"raw": {dim: r}, "normalized": {dim: z} | None, "Overall": float}``."""
        raw = self.raw_rewards(prompts, videos, images, responses, batch_size)
        dims = self.spec.eval_dim
        normalized = (
            normalize_rewards(raw, dims, self.spec.normalization) if self.spec.normalization else None
        )
        results = []
        for i in range(len(raw)):
            results.append(
                {
                    "raw": dict(zip(dims, raw[i].tolist())),
                    "normalized": dict(zip(dims, normalized[i].tolist())) if normalized is not None else None,
                    OVERALL: float((normalized if normalized is not None else raw)[i].sum()),
                }
            )
        return results

    def compare(self, a, b, prompt: str, media: str = "video") -> dict[str, dict[str, float]]:
        """P(A better), P(B better), P(tie) per dimension under the trained Rao-Kupper model."""
        key = "videos" if media == "video" else "images"
        rewards = self.raw_rewards([prompt, prompt], **{key: [a, b]})
        return {
            dim: rao_kupper_probabilities(float(rewards[0, d] - rewards[1, d]), float(k))
            for d, (dim, k) in enumerate(zip(self.spec.eval_dim, self.last_tie_k))
        }

    def as_reward_fn(self, dimension: str = OVERALL, video_key: str = "video", image_key: str = "image"):
        """A reward function with TRL's signature ``f(prompts, completions, **columns) -> list[float]``.

        The completion is the text being judged against the dataset's visual (column ``video_key`` or
        ``image_key``): e.g. a policy writing the caption/prompt of a given video is rewarded by how
        well the reward model finds the video matches it (TA), or by Overall.
        """
        if dimension != OVERALL and dimension not in self.spec.eval_dim:
            raise ValueError(f"dimension {dimension!r}: choose {OVERALL} or one of {self.spec.eval_dim}")

        def reward_fn(prompts, completions, **columns) -> list[float]:
            texts = [_completion_text(c) for c in completions]
            if video_key in columns:
                scores = self.score(texts, videos=columns[video_key])
            elif image_key in columns:
                scores = self.score(texts, images=columns[image_key])
            else:
                raise KeyError(
                    f"the dataset needs a {video_key!r} or {image_key!r} column for the reward model"
                )
            return [
                s[OVERALL] if dimension == OVERALL else (s["normalized"] or s["raw"])[dimension]
                for s in scores
            ]

        reward_fn.__name__ = f"vlmrm_{dimension}"
        return reward_fn


def _completion_text(completion) -> str:
    """TRL passes plain strings, or for conversational data a list of messages."""
    if isinstance(completion, str):
        return completion
    return " ".join(m["content"] if isinstance(m["content"], str) else "" for m in completion)


def _image(item):
    """An RGB image (:func:`vlmrm.media.image.open_image`, as in training) from a path or a PIL image;
    a list (several images for one item) element-wise."""
    from vlmrm.media.image import open_image

    if isinstance(item, (list, tuple)):
        return [_image(i) for i in item]
    return open_image(item)
