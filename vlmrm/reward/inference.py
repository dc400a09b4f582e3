"""Score videos or images with a trained reward checkpoint: ``RewardScorer`` and a TRL reward function.

Everything the scorer needs — dimensions, template, frame sampling, tie k, normalisation — comes
from the checkpoint's ``config.json`` (``RewardSpec``), so no training YAML is involved::

    scorer = RewardScorer.from_pretrained("outputs/quickstart", device="cuda", dtype="bfloat16")
    scorer.score(videos=["a.mp4"], prompts=["red"])   # [{"raw": {...}, "normalized": {...}, "Overall": x}]
    scorer.score(["red"], videos=[frames], fps=[8.0])   # frames: (T, C, H, W) or (T, H, W, C) tensor/array
    scorer.compare("a.mp4", "b.mp4", "red")             # {"VQ": {"A": pA, "B": pB, "tie": pT}, ...}
    rewards = scorer.score_tensor(["red"], [video], fps=8.0)  # (N, D) raw rewards with autograd graph

Inputs: a video is a file path (decoded with the checkpoint's sampling and backend) or frames in
memory — uint8 0..255 or float in [0, 1], (T, C, H, W) or (T, H, W, C), or a (B, T, ...) batch —
with their frame rate (``fps``, one float or one per item, or ``timestamps`` per item). Frames are
sampled and resized exactly as a file of that fps and frame count (:mod:`vlmrm.media.torch_processing`),
so a decoded file and its frames score the same. An image is a path, a PIL image, or a (C, H, W) /
(H, W, C) tensor or array (or a (B, ...) batch), converted to the PIL image the processor gets from a file.

Batching: items are sorted by visual-token count (then text length) and scored ``batch_size`` at a
time, so each forward pads its sequences to the length of near-equal neighbours; results come back
in input order.

Rewards: ``raw`` is the head output per dimension; ``normalized`` is (raw - mean) / std with the
training-set statistics stored after training (None when the checkpoint has none); ``Overall`` is
the sum of the normalised rewards (of the raw ones without statistics), as in ``vlmrm.reward.metrics``
(docs/reward_math.md, "Reward normalisation and Overall").
"""

from __future__ import annotations

import logging
import math
import numbers
from pathlib import Path

import numpy as np
import torch

from vlmrm.media.processor import image_factor
from vlmrm.media.sampling import num_sampled_frames
from vlmrm.media.torch_processing import (
    as_tensor,
    channels_first,
    fps_from_timestamps,
    sample_video_float,
    sample_video_frames,
    to_uint8,
    video_pixel_values,
)
from vlmrm.media.video import VideoInfo, load_video, probe_video, resolve_backend
from vlmrm.modeling.loading import DTYPES, load_reward_model
from vlmrm.modeling.reward_model import DEFAULT_TIE_K
from vlmrm.pairs.labels import OVERALL
from vlmrm.reward.collator import PairCollator
from vlmrm.reward.metrics import normalize_rewards

logger = logging.getLogger(__name__)

PIXEL_KEY_PREFIX = "pixel_values"
"""``pixel_values`` (images) and ``pixel_values_videos``: the inputs cast to the scorer's dtype."""


def rao_kupper_probabilities(margin: float, k: float = DEFAULT_TIE_K) -> dict[str, float]:
    """P(A), P(B), P(tie) for d = r_A - r_B (docs/reward_math.md, "Bradley-Terry with ties"): sigmoid(d - ln k), sigmoid(-d - ln k),
    (k^2 - 1) sigmoid(d - ln k) sigmoid(-d - ln k); they sum to 1."""
    log_k = math.log(k)

    def sigmoid(x: float) -> float:
        return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))

    p_a, p_b = sigmoid(margin - log_k), sigmoid(-margin - log_k)
    return {"A": p_a, "B": p_b, "tie": (k * k - 1) * p_a * p_b}


class RewardScorer:
    """Batched scoring with one loaded reward checkpoint on a chosen device and dtype.

    The model is frozen (``requires_grad_(False)``): :meth:`score_tensor` differentiates with
    respect to the input pixels only."""

    def __init__(self, model, processor, device: str | torch.device | None = None, dtype=None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(device=self.device, dtype=_dtype(dtype)).eval().requires_grad_(False)
        self.dtype = next(self.model.parameters()).dtype
        self.processor = processor
        self.spec = model.reward_spec
        self.sampling = self.spec.frame_sampling()
        self.backend = resolve_backend(self.spec.video_backend)
        self.collator = PairCollator.from_spec(processor, self.spec)
        self.factor = image_factor(processor)

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | Path,
        device: str | None = None,
        base_model_path: str | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> RewardScorer:
        """``dtype``: ``float32``, ``bfloat16``, ``float16`` (or a torch dtype); default: as saved."""
        model, processor = load_reward_model(checkpoint, dtype=_dtype(dtype), base_path=base_model_path)
        return cls(model, processor, device)

    def tie_k(self, outputs) -> np.ndarray:
        """Per-dimension Rao-Kupper k: learned (``learn_tie_k``, returned by the forward) or the spec's."""
        if outputs.tie_k is not None:
            return outputs.tie_k.detach().float().cpu().numpy()
        return np.full(len(self.spec.eval_dim), self.spec.tie_k)

    def _check_video(self, name: str, info: VideoInfo) -> None:
        """Warn when a video's fps or sampled frame count lies outside what the model trained on."""
        seen = self.spec.training_videos or {}
        frames = num_sampled_frames(info.total_frames, info.fps, self.sampling)
        for field, value in (("fps", info.fps), ("frames_sampled", frames)):
            bounds = seen.get(field)
            if bounds and not bounds["min"] <= value <= bounds["max"]:
                logger.warning(
                    "%s: %s %s outside the training range [%s, %s]; scores may be off",
                    name,
                    field,
                    value,
                    bounds["min"],
                    bounds["max"],
                )

    def _frame_rates(self, videos: list, fps, timestamps) -> list[float | None]:
        """One frame rate per video: None for files (they carry their own), else from ``fps`` or
        ``timestamps``; a missing or superfluous rate is an error naming the item."""
        rates = _per_item(fps, len(videos), "fps")
        times = _per_item(timestamps, len(videos), "timestamps", scalar_ok=False)
        out = []
        for i, (video, rate, stamps) in enumerate(zip(videos, rates, times)):
            if isinstance(video, (str, Path)):
                if rate is not None or stamps is not None:
                    raise ValueError(
                        f"videos[{i}] is a file ({video}): it has its own frame rate; give fps only for frames"
                    )
                out.append(None)
            elif rate is not None and stamps is not None:
                raise ValueError(f"videos[{i}]: give fps or timestamps, not both")
            elif rate is None and stamps is None:
                raise ValueError(f"videos[{i}]: frames need their frame rate: pass fps= or timestamps=")
            else:
                out.append(float(rate) if stamps is None else fps_from_timestamps(stamps, f"videos[{i}]"))
        return out

    def _decode(self, videos: list, rates: list[float | None]) -> list:
        decoded = []
        for i, (video, rate) in enumerate(zip(videos, rates)):
            if rate is None:
                info = probe_video(video, self.backend)
                self._check_video(str(video), info)
                decoded.append(load_video(video, self.sampling, self.backend, self.factor))
                continue
            item = sample_video_frames(video, rate, self.sampling, self.factor, f"videos[{i}]")
            self._check_video(f"videos[{i}]", item.info)
            decoded.append(item)
        return decoded

    def _forward(self, batch: dict):
        """The model on one processor batch, moved to the scorer's device; pixels in its dtype
        (other float inputs, e.g. Qwen2.5-VL's ``second_per_grid_ts``, keep theirs)."""
        batch = {
            k: v.to(self.device, self.dtype if k.startswith(PIXEL_KEY_PREFIX) else None)
            if torch.is_tensor(v)
            else v
            for k, v in batch.items()
        }
        outputs = self.model(**batch)
        self.last_tie_k = self.tie_k(outputs)
        return outputs

    def _batches(self, sizes: list[int], texts: list[int], batch_size: int) -> list[list[int]]:
        """Item indices per forward: sorted by (visual size, text length), cut every ``batch_size``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        order = sorted(range(len(sizes)), key=lambda i: (sizes[i], texts[i]))
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]

    @torch.no_grad()
    def raw_rewards(
        self,
        prompts: list[str],
        videos=None,
        images=None,
        responses: list[str] | None = None,
        batch_size: int = 8,
        fps=None,
        timestamps=None,
    ) -> np.ndarray:
        """(N, D) raw rewards in input order (inputs: module doc)."""
        if (videos is None) == (images is None):
            raise ValueError("give videos or images (one per prompt), not both or neither")
        items = _split_batch(videos if videos is not None else images, 5 if videos is not None else 4)
        _check_counts(prompts, items, responses)
        if videos is not None:
            media = self._decode(items, self._frame_rates(items, fps, timestamps))
            sizes = [v.frames.numel() for v in media]
        else:
            if fps is not None or timestamps is not None:
                raise ValueError("fps / timestamps are for videos; images have none")
            media = [_image(item, f"images[{i}]") for i, item in enumerate(items)]
            sizes = [sum(i.width * i.height for i in (m if isinstance(m, list) else [m])) for m in media]
        key = "videos" if videos is not None else "images"
        texts = [len(p) + len(r or "") for p, r in zip(prompts, responses or [None] * len(prompts))]
        out = np.zeros((len(prompts), len(self.spec.eval_dim)), dtype=np.float32)
        for rows in self._batches(sizes, texts, batch_size):
            batch = self.collator.encode(
                [prompts[i] for i in rows],
                responses=[responses[i] for i in rows] if responses is not None else None,
                **{key: [media[i] for i in rows]},
            )
            out[rows] = self._forward(batch).rewards.float().cpu().numpy()
        return out

    def score(
        self,
        prompts: list[str],
        videos=None,
        images=None,
        responses=None,
        batch_size: int = 8,
        fps=None,
        timestamps=None,
    ) -> list[dict]:
        """Per item: ``{"raw": {dim: r}, "normalized": {dim: z} | None, "Overall": float}``."""
        raw = self.raw_rewards(prompts, videos, images, responses, batch_size, fps, timestamps)
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

    def score_tensor(
        self,
        prompts: list[str],
        videos,
        fps=None,
        timestamps=None,
        responses: list[str] | None = None,
        batch_size: int = 8,
    ) -> torch.Tensor:
        """(N, D) raw rewards that keep the autograd graph back to the input frames.

        ``videos``: float frames in [0, 1] (or uint8, which has no gradient), (T, C, H, W) /
        (T, H, W, C) each or a (B, T, ...) batch, with ``fps`` or ``timestamps`` as for :meth:`score`.
        Sampling picks the same frames as :meth:`score`; resize, normalisation and patchification
        run in torch (:mod:`vlmrm.media.torch_processing`), the processor only writes the text
        tokens. Rewards equal :meth:`score`'s up to the uint8 rounding of resized pixels that the
        exact path does (docs/reward_math.md, "Differentiable rewards")."""
        items = _split_batch(videos, 5)
        _check_counts(prompts, items, responses)
        rates = self._frame_rates(items, fps, timestamps)
        prepared = []
        for i, (video, rate) in enumerate(zip(items, rates)):
            if rate is None:
                raise ValueError(f"videos[{i}] is a file: score_tensor differentiates frames in memory")
            frames, stand_in = sample_video_float(
                as_tensor(video).to(self.device), rate, self.sampling, self.factor, f"videos[{i}]"
            )
            self._check_video(f"videos[{i}]", stand_in.info)
            prepared.append((frames, stand_in))
        sizes = [frames.numel() for frames, _ in prepared]
        texts = [len(p) for p in prompts]
        rows_out: list[torch.Tensor | None] = [None] * len(items)
        for rows in self._batches(sizes, texts, batch_size):
            batch = self.collator.encode(
                [prompts[i] for i in rows],
                videos=[prepared[i][1] for i in rows],
                responses=[responses[i] for i in rows] if responses is not None else None,
            )
            pixels, grid = video_pixel_values([prepared[i][0] for i in rows], self.processor.video_processor)
            if not torch.equal(grid, batch["video_grid_thw"]):
                raise RuntimeError(
                    f"torch patch grid {grid.tolist()} != processor's {batch['video_grid_thw'].tolist()}"
                )
            batch["pixel_values_videos"] = pixels
            rewards = self._forward(batch).rewards
            for j, i in enumerate(rows):
                rows_out[i] = rewards[j]
        return torch.stack(rows_out)

    def compare(self, a, b, prompt: str, media: str = "video", fps=None) -> dict[str, dict[str, float]]:
        """P(A better), P(B better), P(tie) per dimension under the trained Rao-Kupper model."""
        key = "videos" if media == "video" else "images"
        rewards = self.raw_rewards([prompt, prompt], fps=fps, **{key: [a, b]})
        return {
            dim: rao_kupper_probabilities(float(rewards[0, d] - rewards[1, d]), float(k))
            for d, (dim, k) in enumerate(zip(self.spec.eval_dim, self.last_tie_k))
        }

    def as_reward_fn(self, dimension: str = OVERALL, video_key: str = "video", image_key: str = "image"):
        """A reward function with TRL's signature ``f(prompts, completions, **columns) -> list[float]``.

        The completion is the text being judged against the dataset's visual (column ``video_key`` or
        ``image_key``): e.g. a policy writing the caption/prompt of a given video is rewarded by how
        well the reward model finds the video matches it (TA), or by Overall. Weights and other
        normalisations: :func:`vlmrm.reward.reward_fns.trl_reward_fn`.
        """
        from vlmrm.reward.reward_fns import trl_reward_fn

        if dimension != OVERALL and dimension not in self.spec.eval_dim:
            raise ValueError(f"dimension {dimension!r}: choose {OVERALL} or one of {self.spec.eval_dim}")
        weights = None if dimension == OVERALL else {dimension: 1.0}
        return trl_reward_fn(
            self, weights=weights, video_key=video_key, image_key=image_key, name=f"vlmrm_{dimension}"
        )


def _dtype(dtype):
    """A torch dtype from a name (``bfloat16``) or dtype; None stays None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _split_batch(items, batch_ndim: int) -> list:
    """A (B, ...) tensor/array of ``batch_ndim`` dims -> list of B items; lists stay lists."""
    if isinstance(items, (np.ndarray, torch.Tensor)):
        if items.ndim != batch_ndim:
            raise ValueError(
                f"a batch tensor needs {batch_ndim} dims (B first), got shape {tuple(items.shape)}; "
                "or pass a list with one item per prompt"
            )
        return list(items)
    return list(items)


def _check_counts(prompts: list[str], items: list, responses) -> None:
    if len(items) != len(prompts):
        raise ValueError(f"{len(items)} videos/images for {len(prompts)} prompts: give one per prompt")
    if responses is not None and len(responses) != len(prompts):
        raise ValueError(f"{len(responses)} responses for {len(prompts)} prompts: give one per prompt")


def _per_item(value, count: int, name: str, scalar_ok: bool = True) -> list:
    """``value`` for each of ``count`` items: None -> Nones, a number -> repeated, a list -> checked."""
    if value is None:
        return [None] * count
    if scalar_ok and isinstance(value, numbers.Real):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise ValueError(f"{len(values)} {name} values for {count} videos: give one per video")
    return values


def _image(item, name: str = "image"):
    """The PIL image the processor gets: a path or PIL image through
    :func:`vlmrm.media.image.open_image` (as in training: EXIF orientation, alpha on white, 16-bit and
    float scaled to 8 bits), or a uint8 / [0, 1] float (C, H, W) or (H, W, C) tensor or array; a list
    (several images for one item) element-wise."""
    from PIL import Image

    from vlmrm.media.image import open_image

    if isinstance(item, (list, tuple)):
        return [_image(i, f"{name}[{j}]") for j, i in enumerate(item)]
    if isinstance(item, (str, Path, Image.Image)):
        return open_image(item)
    pixels = as_tensor(item)
    if pixels.ndim != 3:
        raise ValueError(f"{name} of shape {tuple(pixels.shape)}: expected (C, H, W) or (H, W, C)")
    pixels = to_uint8(channels_first(pixels, name), name)
    return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy())
