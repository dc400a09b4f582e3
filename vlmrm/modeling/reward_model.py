"""Qwen-VL backbone + reward head, for every family in :data:`vlmrm.modeling.families.FAMILIES`.

The reward model of a family is that family's own ``...ForConditionalGeneration`` class with a
reward head mixed in (:class:`RewardModelMixin`); the class is made from the family table, not
copied per family. So a reward model loads from a plain backbone checkpoint with the very
``from_pretrained(path)`` a user runs for ``Qwen/Qwen2-VL-2B-Instruct`` (the head starts fresh),
a saved reward checkpoint is a valid backbone checkpoint plus ``rm_head`` weights, and HF
Trainer, DeepSpeed ZeRO-3 and PEFT see an ordinary ``PreTrainedModel``.

Everything inference needs — evaluated dimensions, pooling, reward-token ids, prompt template,
frame sampling — is stored in the checkpoint's ``config.json`` under ``"vlmrm"``
(:class:`RewardSpec`), so a checkpoint scores videos without the training YAML.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.conversion_mapping import (
    get_checkpoint_conversion_mapping,
    register_checkpoint_conversion_mapping,
)
from transformers.utils import ModelOutput

from vlmrm.media.sampling import FrameSampling
from vlmrm.modeling.families import family_for

DEFAULT_TIE_K = 5.0
"""Rao-Kupper tie parameter k of the btt loss; VideoAlign's value (P(tie) = 2/3 at d = 0)."""

SPEC_ATTRIBUTE = "vlmrm"
"""Key of the reward settings inside the backbone config (and so inside config.json)."""

SPEC_FORMAT_VERSION = 1

ROPE_POSITIONS = ("mrope", "sequential")
"""Rotary position schemes of a reward forward (``RewardSpec.rope_positions``)."""
ROTARY_SECTIONS = 3
"""Qwen2-VL's M-RoPE sections (temporal, height, width): position_ids has shape (3, N, T)."""


def reward_token(dimension: str) -> str:
    """The special token whose hidden state gives ``dimension``'s reward, e.g. ``<|VQ_reward|>``."""
    return f"<|{dimension}_reward|>"


def learned_tie_k(raw: Tensor) -> Tensor:
    """k = 1 + softplus(raw): an unconstrained parameter mapped to a Rao-Kupper k > 1.

    k > 1 for every finite raw in exact arithmetic; in float32, 1 + softplus(raw) rounds to
    exactly 1 once raw < about -16 (then ln(k^2 - 1) = -inf). Starting from
    ``initial_tie_k_raw(DEFAULT_TIE_K)`` (about 3.98) keeps k far from that region.
    """
    return 1 + F.softplus(raw)


def initial_tie_k_raw(k: float | Tensor) -> float | Tensor:
    """Inverse of ``learned_tie_k``: raw = softplus^-1(k - 1) = ln(e^(k - 1) - 1).

    Evaluated as x + ln(1 - e^-x) with x = k - 1, which does not overflow for large k.
    Returns a float for a float k, a tensor for a tensor k. k = 5 gives ln(e^4 - 1) = ln(53.598) = 3.98151.
    """
    if torch.is_tensor(k):
        x = k - 1
        return x + torch.log(-torch.expm1(-x))
    if k <= 1:
        raise ValueError(f"tie_k: the Rao-Kupper parameter must be > 1, got {k}")
    x = k - 1
    return x + math.log(-math.expm1(-x))


@dataclass
class RewardSpec:
    """What turns a backbone into a reward model, saved with every checkpoint.

    Args:
        eval_dim: names of the rewards, in output order (1..N dimensions).
        output_dim: head outputs per pooled position: len(eval_dim), or with special tokens 1 (one
            shared head) or len(eval_dim) (one head row per dimension, see ``special_token_rewards``).
        reward_token: pooling — ``last`` non-pad token, masked ``mean``, or one ``special`` token
            per dimension.
        reward_token_ids: token id per dimension when ``reward_token == "special"``.
        learn_tie_k: learn one Rao-Kupper k > 1 per dimension (parameter ``tie_k_raw``).
        video_position, max_length: how the collator laid out and bounded each sequence in training.
        base_model_name_or_path: the backbone the reward model was trained from (adapters need it).
        sampling: frame-sampling fields of the data config used in training.
        normalization: per-dimension reward mean/std on the training pairs (set after training).
        prompt_template_text: a text template (``prompt_template_file``, or VideoAlign's text imported
            by ``python -m vlmrm.convert``); when set it replaces ``prompt_template_type``.
        rope_positions: ``mrope`` — the family's multimodal rotary positions (what ``generate`` uses);
            ``sequential`` — position t for token t in all three rotary sections, vision tokens
            included, which is what a reward forward under transformers 4.45 computed (its
            ``forward`` left ``position_ids`` to the text model); VideoAlign's models were trained so.
        training_videos: fps and sampled-frame ranges of the training videos (``{"fps": {"min",
            "max"}, "frames_sampled": {...}}``), so inference can warn about unlike inputs.
    """

    eval_dim: list[str]
    output_dim: int
    reward_token: str = "last"
    reward_head: str = "linear"
    reward_token_ids: list[int] = field(default_factory=list)
    tie_k: float = DEFAULT_TIE_K
    learn_tie_k: bool = False
    prompt_template_type: str = "simple"
    video_position: str = "before_text"
    max_length: int | None = None
    image_size: dict[str, int] | None = None
    score_range: tuple[float, float] | None = None
    base_model_name_or_path: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)
    normalization: dict[str, dict[str, float]] | None = None
    training_videos: dict[str, dict[str, float]] | None = None
    prompt_template_text: str | None = None
    rope_positions: str = "mrope"
    format_version: int = SPEC_FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.rope_positions not in ROPE_POSITIONS:
            raise ValueError(
                f"rope_positions: unknown {self.rope_positions!r}; choose {' or '.join(ROPE_POSITIONS)}"
            )
        if self.reward_token == "special" and len(self.reward_token_ids) != len(self.eval_dim):
            raise ValueError(
                f"reward_token 'special' needs one token id per dimension: {len(self.eval_dim)} dims "
                f"{self.eval_dim}, {len(self.reward_token_ids)} ids"
            )

    @property
    def num_dims(self) -> int:
        return len(self.eval_dim)

    def frame_sampling(self) -> FrameSampling:
        """The frame sampling of training, so inference and evaluation decode videos the same way."""
        return FrameSampling(**{k: v for k, v in self.sampling.items() if k != "video_backend"})

    @property
    def video_backend(self) -> str:
        return self.sampling.get("video_backend", "auto")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RewardSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def attach_spec(config, spec: RewardSpec) -> None:
    setattr(config, SPEC_ATTRIBUTE, spec.to_dict())


def spec_of(config) -> RewardSpec | None:
    values = getattr(config, SPEC_ATTRIBUTE, None)
    return RewardSpec.from_dict(values) if values else None


class RewardHead(nn.Module):
    """``linear``: hidden -> outputs. ``mlp``: hidden -> hidden -> outputs with GELU (image-ranking scorers' head).

    With ``learn_tie_k`` it also holds ``tie_k_raw`` (D,), k = 1 + softplus(raw): keeping every
    trained reward parameter in this one module lets PEFT save it with ``modules_to_save``.
    """

    def __init__(
        self, kind: str, hidden_size: int, output_dim: int, tie_k_init: tuple[int, float] | None = None
    ):
        super().__init__()
        if tie_k_init is not None:
            num_dims, start_k = tie_k_init
            self.tie_k_raw = nn.Parameter(torch.full((num_dims,), initial_tie_k_raw(start_k)))
        if kind == "linear":
            self.layers = nn.Sequential(nn.Linear(hidden_size, output_dim))
        elif kind == "mlp":
            self.layers = nn.Sequential(
                nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, output_dim)
            )
        else:
            raise ValueError(f"reward_head: unknown {kind!r}; choose linear or mlp")

    def forward(
        self, pooled: torch.Tensor, score_range: tuple[float, float] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(head outputs, learned k per dimension or None). k is returned from ``forward`` so a
        PEFT ``modules_to_save`` copy of the head supplies its own (trained) value."""
        tie_k = learned_tie_k(self.tie_k_raw.float()) if hasattr(self, "tie_k_raw") else None
        outputs = self.layers(pooled)
        if score_range is not None:
            outputs = soft_clamp(outputs, *score_range)
        return outputs, tie_k


def soft_clamp(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """c + h * tanh((x - c) / h), c = (low + high) / 2, h = (high - low) / 2: rewards stay in (low, high).

    Why not ``clamp``: a hard clamp has zero gradient outside the range, so a pair whose rewards are
    both clamped stops learning for good. tanh is the identity near the centre (slope 1 at x = c),
    saturates smoothly, and its gradient 1 - tanh^2 only vanishes asymptotically (0.0099 at three
    half-widths outside the centre; float32 rounds it to 0 beyond about nine).
    """
    centre, half = (low + high) / 2, (high - low) / 2
    return centre + half * torch.tanh((x - centre) / half)


def pool_hidden_states(
    hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, spec: RewardSpec
) -> torch.Tensor:
    """Pick the hidden states the head reads.

    Args:
        hidden: (N, T, H) last hidden states.
    Returns:
        (N, H) for ``last`` / ``mean``; (N, D, H) for ``special`` (one position per dimension).
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    mask = attention_mask.to(hidden.dtype)
    if spec.reward_token == "mean":
        return (hidden * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if spec.reward_token == "last":
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        last = (attention_mask.long() * positions).argmax(dim=1)  # last attended token, any padding side
        return hidden[rows, last]
    pooled = []
    for dim, token_id in zip(spec.eval_dim, spec.reward_token_ids):
        hits = input_ids == token_id  # (N, T)
        counts = hits.sum(dim=1)
        if not torch.all(counts == 1):
            bad = int((counts != 1).nonzero()[0])
            raise ValueError(
                f"reward token for {dim!r} (id {token_id}) appears {int(counts[bad])} times in sequence {bad}; "
                "use a prompt template that writes each reward token once (e.g. detailed_special)"
            )
        pooled.append(hidden[rows, hits.long().argmax(dim=1)])
    return torch.stack(pooled, dim=1)


def sequential_positions(input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
    """(3, N, T) rotary positions p = (number of attended tokens before t) in every section: 0..n-1 over
    a sequence's tokens whatever the padding side, as transformers 4.45 gave a right-padded batch
    (``RewardSpec.rope_positions == "sequential"``); pad positions are clamped to 0."""
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return positions.unsqueeze(0).expand(ROTARY_SECTIONS, *input_ids.shape)


def special_token_rewards(outputs: torch.Tensor) -> torch.Tensor:
    """(N, D, output_dim) head outputs at the D reward tokens -> (N, D) rewards.

    ``output_dim`` 1: one head shared by every token. ``output_dim`` D: VideoAlign's layout, token d
    reads output d (the diagonal), so each dimension has its own head row; the rows start different,
    which separates the dimensions' gradients from the first step even though the reward-token
    embeddings start equal.
    """
    if outputs.shape[-1] == 1:
        return outputs.squeeze(-1)
    return outputs.diagonal(dim1=1, dim2=2)


@dataclass
class RewardOutput(ModelOutput):
    """``rewards``: (N, D) float32, one scalar per sequence and evaluated dimension;
    ``tie_k``: (D,) learned Rao-Kupper k (None when k is the fixed ``tie_k`` of the spec)."""

    rewards: torch.Tensor | None = None
    tie_k: torch.Tensor | None = None


class RewardModelMixin:
    """Adds ``rm_head`` (and optionally learned tie parameters) to a Qwen-VL generation class."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        spec = spec_of(config)
        if spec is None:
            raise ValueError(
                "this config has no reward settings; build reward models with vlmrm.modeling.loading.build_reward_model "
                "or load a vlmrm checkpoint with load_reward_model"
            )
        learned = (spec.num_dims, spec.tie_k) if spec.learn_tie_k else None
        self.rm_head = RewardHead(spec.reward_head, config.text_config.hidden_size, spec.output_dim, learned)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """The family initialises the Linear layers; the learned tie parameters start at ``tie_k``."""
        super()._init_weights(module)
        if isinstance(module, RewardHead) and hasattr(module, "tie_k_raw"):
            with torch.no_grad():
                module.tie_k_raw.fill_(initial_tie_k_raw(self.reward_spec.tie_k))

    @property
    def reward_spec(self) -> RewardSpec:
        return spec_of(self.config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mm_token_type_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        video_grid_thw: torch.Tensor | None = None,
        second_per_grid_ts: torch.Tensor | None = None,
        **unused: Any,
    ) -> RewardOutput:
        """Rewards for N sequences. The backbone builds its multimodal (M-RoPE) positions itself
        from ``mm_token_type_ids`` and the grids, exactly as in generation."""
        backbone_inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mm_token_type_ids": mm_token_type_ids,
            "pixel_values": pixel_values,
            "image_grid_thw": image_grid_thw,
            "pixel_values_videos": pixel_values_videos,
            "video_grid_thw": video_grid_thw,
        }
        if second_per_grid_ts is not None:
            backbone_inputs["second_per_grid_ts"] = second_per_grid_ts
        spec = self.reward_spec
        if spec.rope_positions == "sequential":
            backbone_inputs["position_ids"] = sequential_positions(input_ids, attention_mask)
        outputs = self.model(**backbone_inputs, use_cache=False, return_dict=True)
        pooled = pool_hidden_states(outputs.last_hidden_state, input_ids, attention_mask, spec)
        rewards, tie_k = self.rm_head(pooled, tuple(spec.score_range) if spec.score_range else None)
        rewards = rewards.float()
        if spec.reward_token == "special":
            rewards = special_token_rewards(rewards)

        return RewardOutput(rewards=rewards, tie_k=tie_k)


@cache
def reward_model_class(model_type: str) -> type:
    """The reward-model class of a family: ``RewardModelMixin`` + the family's generation class.

    transformers renames legacy checkpoint keys (``model.layers`` -> ``model.language_model.layers``)
    per class name; the new class reuses its parent's renaming so released checkpoints load.
    """
    family = family_for(model_type)
    parent = family.model_class
    name = parent.__name__.replace("ForConditionalGeneration", "RewardModel")
    cls = type(name, (RewardModelMixin, parent), {"__module__": __name__, "__qualname__": name})
    conversions = get_checkpoint_conversion_mapping(parent.__name__)
    if conversions is not None:
        register_checkpoint_conversion_mapping(name, conversions, overwrite=True)
    globals()[name] = cls
    return cls
