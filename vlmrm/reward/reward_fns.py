"""Reward functions with the signatures RL trainers call, on any scorer with ``RewardScorer.score``'s shape.

Two signatures:

* TRL (GRPOTrainer ``reward_funcs``): ``f(prompts, completions, **columns) -> list[float]`` — the
  completion is text judged against the dataset's video/image column (:func:`trl_reward_fn`).
* Flow-GRPO / DanceGRPO-style generator RL: ``reward_fn(videos_or_images, prompts, metadata) ->
  (rewards, info)`` — the policy generated the visuals (:func:`generation_reward_fn`).

The scorer is anything with ``score(prompts, videos=..., images=..., responses=..., fps=...)``
returning ``RewardScorer.score``'s list of ``{"raw": {dim: r}, "normalized": {dim: z} | None,
"Overall": x}``: the in-process :class:`vlmrm.reward.inference.RewardScorer` or a client of a
reward server.

The scalar reward of item i is :func:`combine_rewards`: ``sum_d w_d v_id`` over the weighted
dimensions, where v is chosen by ``normalization``:

* ``auto`` — the stored training-set z-scores when the checkpoint has them, else raw (as ``Overall``);
* ``stored`` — (r - mean_d) / std_d with the checkpoint's training statistics (error without them);
* ``raw`` — the head outputs;
* ``batch`` — (r - mean) / std over this call's items per dimension (std 0 -> 0), so dimensions
  of different scales weigh as their weights say within every batch.

Default weights: 1 for every dimension (with ``auto``: exactly ``Overall``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Normalization = Literal["auto", "stored", "raw", "batch"]
NORMALIZATIONS = ("auto", "stored", "raw", "batch")


def dimension_values(scores: list[dict], normalization: Normalization = "auto") -> dict[str, np.ndarray]:
    """Per dimension, the (N,) values the reward is made of (module doc, ``normalization``)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization {normalization!r}: choose one of {', '.join(NORMALIZATIONS)}")
    if not scores:
        return {}
    stored = scores[0]["normalized"] is not None
    if normalization == "stored" and not stored:
        raise ValueError(
            "normalization 'stored': this checkpoint has no training statistics; choose raw, batch or auto"
        )
    key = "normalized" if normalization == "stored" or (normalization == "auto" and stored) else "raw"
    values = {dim: np.array([s[key][dim] for s in scores], dtype=float) for dim in scores[0]["raw"]}
    if normalization == "batch":
        for dim, v in values.items():
            std = v.std()
            values[dim] = (v - v.mean()) / std if std > 0 else np.zeros_like(v)
    return values


def combine_rewards(
    scores: list[dict], weights: dict[str, float] | None = None, normalization: Normalization = "auto"
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(N,) rewards ``sum_d w_d v_d`` and the per-dimension values v used; unknown dimensions in
    ``weights`` are errors."""
    values = dimension_values(scores, normalization)
    if not values:
        return np.zeros(0), {}
    weights = weights if weights is not None else {dim: 1.0 for dim in values}
    unknown = sorted(set(weights) - set(values))
    if unknown:
        raise ValueError(f"weights name unknown dimensions {unknown}; the model has {list(values)}")
    rewards = sum(float(w) * values[dim] for dim, w in weights.items())
    return np.asarray(rewards, dtype=float), values


def completion_text(completion) -> str:
    """TRL passes plain strings, or for conversational data a list of messages."""
    if isinstance(completion, str):
        return completion
    return " ".join(m["content"] if isinstance(m["content"], str) else "" for m in completion)


def trl_reward_fn(
    scorer,
    weights: dict[str, float] | None = None,
    normalization: Normalization = "auto",
    video_key: str = "video",
    image_key: str = "image",
    fps_key: str = "fps",
    name: str = "vlmrm",
):
    """TRL's ``f(prompts, completions, **columns) -> list[float]``: each completion (text) is scored
    with the row's ``video_key`` or ``image_key`` column as the visual; a ``fps_key`` column gives the
    frame rate of in-memory frames."""

    def reward_fn(prompts, completions, **columns) -> list[float]:
        texts = [completion_text(c) for c in completions]
        if video_key in columns:
            scores = scorer.score(texts, videos=columns[video_key], fps=columns.get(fps_key))
        elif image_key in columns:
            scores = scorer.score(texts, images=columns[image_key])
        else:
            raise KeyError(f"the dataset needs a {video_key!r} or {image_key!r} column for the reward model")
        return combine_rewards(scores, weights, normalization)[0].tolist()

    reward_fn.__name__ = name
    return reward_fn


def generation_reward_fn(
    scorer,
    weights: dict[str, float] | None = None,
    normalization: Normalization = "auto",
    fps: float | None = None,
    fps_key: str = "fps",
):
    """Flow-GRPO-style ``reward_fn(videos_or_images, prompts, metadata) -> (rewards, info)``.

    ``videos_or_images``: a (B, T, C, H, W) / (B, T, H, W, C) batch or list of videos (frames or
    paths), or a (B, C, H, W) / (B, H, W, C) batch or list of images (PIL, frames, paths); what a
    list holds is told by its first item (a 4-D array or a video file suffix means videos).
    Frame rate per video: ``metadata[i][fps_key]`` when present, else ``fps``. Returns ``rewards``
    (B,) float array and ``info``: ``{"dimensions": {dim: (B,) values used}, "scores": score()'s dicts}``.
    """

    def reward_fn(videos_or_images, prompts, metadata=None) -> tuple[np.ndarray, dict]:
        prompts = list(prompts)
        if _is_video_batch(videos_or_images):
            rates = [(m or {}).get(fps_key, fps) for m in (metadata or [None] * len(prompts))]
            paths = [isinstance(v, str) or hasattr(v, "suffix") for v in videos_or_images]
            rates = [None if is_path else rate for is_path, rate in zip(paths, rates)]
            scores = scorer.score(prompts, videos=videos_or_images, fps=rates)
        else:
            scores = scorer.score(prompts, images=videos_or_images)
        rewards, values = combine_rewards(scores, weights, normalization)
        return rewards, {"dimensions": values, "scores": scores}

    return reward_fn


VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".gif")


def _is_video_batch(items) -> bool:
    """A 5-D batch, or a list whose first item is 4-D frames or a video file."""
    if hasattr(items, "ndim"):
        return items.ndim == 5
    first = items[0] if len(items) else None
    if hasattr(first, "ndim"):
        return first.ndim == 4
    return str(first).lower().endswith(VIDEO_SUFFIXES)
