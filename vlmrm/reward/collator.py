"""Pair batches for the reward model: the one batch convention of vlmrm, documented here.

For B pairs the collator returns one processor batch of 2B sequences (TRL's convention: the
first half is one side, the second half the other, so ``torch.chunk(rewards, 2)`` splits them):

==========================  ===============================================================
``input_ids``               (2B, T) rows 0..B-1 = video A of each pair, rows B..2B-1 = video B
``attention_mask``          (2B, T)
``mm_token_type_ids``       (2B, T) 0 text, 2 video; transformers 5.x builds M-RoPE from it
``pixel_values_videos``     (sum of patches, C * temporal_patch * patch^2), same video order
``video_grid_thw``          (2B, 3) frames/temporal_patch, height/patch, width/patch per video
``labels``                  (B, D) float, y in {+1 A better, -1 B better, 0 tie} per eval_dim,
                            NaN where the pair has no label in that dimension (masked)
``margin`` (score columns)  (B, D) float, s_A - s_B per pair and dimension
``pair_ids``                (B,) long, the data file's line of each pair (for error messages)
``skipped_samples``         only when some: ``file:line`` of pairs skipped in their place
                            (``on_bad_sample: skip``, :mod:`vlmrm.pairs.samples`)
``num_irrelevant``          K, only with irrelevant-query pairs: rows 2B..2B+K-1 are matched
                            (image, text), rows 2B+K..2B+2K-1 the same texts with unrelated images
==========================  ===============================================================

The reward forward of such a batch, merged or one forward per row group, is
:func:`vlmrm.reward.pair_forward.pair_rewards`.

Frames arrive already sampled and resized (``vlmrm.media.video``) so the video processor is told
not to sample or resize again; the frame metadata is passed on because Qwen3-VL writes frame
timestamps into the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import ProcessorMixin

from vlmrm.media.processor import processor_video_inputs
from vlmrm.pairs.samples import SKIPPED_KEY
from vlmrm.reward.templates import build_prompt, check_template

PAIR_SIDES = ("A", "B")


CHAT_TEXT_CACHE_SIZE = 100_000
"""Rendered chat texts kept per collator (a few MB of strings); emptied when full."""


@dataclass
class PairCollator:
    """Builds processor inputs for both sides of each pair with the prompt template applied.

    Video pairs: features hold ``video_A`` / ``video_B`` (``DecodedVideo``). Image pairs: features
    hold ``images_A`` / ``images_B`` (lists of PIL images) and optional ``response_A`` / ``response_B``
    (the text judged with them, written as the assistant turn).
    """

    processor: ProcessorMixin
    eval_dim: list[str]
    template_type: str = "simple"
    max_length: int | None = None
    video_position: str = "before_text"
    image_size: dict | None = None
    """``{"shortest_edge": min_pixels, "longest_edge": max_pixels}`` for images (None: processor default)."""
    _chat_texts: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_template(self.template_type)

    @classmethod
    def from_config(cls, processor: ProcessorMixin, run_config) -> PairCollator:
        """The collator of a training run (``RunConfig``): its template, ``max_length`` and sizes."""
        data = run_config.data
        return cls(
            processor,
            data.eval_dim,
            data.prompt_template_type,
            run_config.training.max_length,
            data.video_position,
            data.image_size(),
        )

    @classmethod
    def from_spec(cls, processor: ProcessorMixin, spec) -> PairCollator:
        """The collator a checkpoint was trained with, from its ``RewardSpec`` (inference, evaluation)."""
        return cls(
            processor,
            spec.eval_dim,
            spec.prompt_template_type,
            spec.max_length,
            spec.video_position,
            spec.image_size,
        )

    def chat_text(
        self, prompt: str, media: str = "video", response: str | None = None, count: int = 1
    ) -> str:
        """One user turn holding the visual(s) and the templated prompt (plus the response being judged,
        as the assistant turn, for text responses), ready for generation. Memoised: both sides of a
        pair and every epoch share a prompt, and rendering the Jinja chat template was a quarter of
        a batch's collation time on the tiny model."""
        key = (prompt, media, response, count)
        if key not in self._chat_texts:
            if len(self._chat_texts) >= CHAT_TEXT_CACHE_SIZE:
                self._chat_texts.clear()
            self._chat_texts[key] = self._render_chat_text(prompt, media, response, count)
        return self._chat_texts[key]

    def _render_chat_text(self, prompt: str, media: str, response: str | None, count: int) -> str:
        text = {"type": "text", "text": build_prompt(prompt, self.eval_dim, self.template_type)}
        visuals = [{"type": media}] * count
        content = [*visuals, text] if self.video_position == "before_text" else [text, *visuals]
        messages = [{"role": "user", "content": content}]
        if response is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": response}]})
        return self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=response is None
        )

    def encode(
        self,
        prompts: list[str],
        videos: list | None = None,
        images: list | None = None,
        responses: list | None = None,
    ) -> dict[str, torch.Tensor]:
        """Processor batch of one sequence per item: decoded videos (``DecodedVideo``) or PIL images."""
        responses = responses if responses is not None else [None] * len(prompts)
        if videos is not None:
            texts = [self.chat_text(p, "video", r) for p, r in zip(prompts, responses)]
            return dict(processor_video_inputs(self.processor, texts, videos))
        per_item = [list(i) if isinstance(i, (list, tuple)) else [i] for i in images]
        texts = [self.chat_text(p, "image", r, len(i)) for p, r, i in zip(prompts, responses, per_item)]
        kwargs = {"images_kwargs": {"size": self.image_size}} if self.image_size else {}
        flat = [image for item in per_item for image in item]
        return dict(self.processor(text=texts, images=flat, padding=True, return_tensors="pt", **kwargs))

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        prompts = [feature["prompt"] for _ in PAIR_SIDES for feature in features]
        if "video_A" in features[0]:
            batch = self.encode(prompts, videos=[f[f"video_{side}"] for side in PAIR_SIDES for f in features])
        else:
            extra = [item for f in features for item in f.get("irrelevant", [])]
            batch = self.encode(
                prompts + [i["prompt"] for i in extra] * 2,
                images=[f[f"images_{side}"] for side in PAIR_SIDES for f in features]
                + [i["matched"] for i in extra]
                + [i["unrelated"] for i in extra],
                responses=[f.get(f"response_{side}") for side in PAIR_SIDES for f in features]
                + [i["response"] for i in extra] * 2,
            )
            if extra:
                batch["num_irrelevant"] = torch.tensor(len(extra))
        pair_ids = torch.tensor([f["pair_id"] for f in features], dtype=torch.long)
        self._check_length(batch["attention_mask"][: len(PAIR_SIDES) * len(features)], features)
        batch["labels"] = torch.stack([f["labels"] for f in features])
        if "margin_scores" in features[0]:  # per-pair score differences s_A - s_B (score columns)
            batch["margin"] = torch.stack([f["margin_scores"] for f in features])
        batch["pair_ids"] = pair_ids
        skipped = [where for f in features for where in f.get(SKIPPED_KEY, ())]
        if skipped:
            batch[SKIPPED_KEY] = skipped
        return batch

    def sequence_lengths(self, batch: dict[str, torch.Tensor], pairs: int) -> torch.Tensor:
        """(2, B) tokens of each side of each pair, visual tokens included: what ``max_length`` bounds."""
        return batch["attention_mask"][: len(PAIR_SIDES) * pairs].sum(dim=1).view(len(PAIR_SIDES), -1)

    def _check_length(self, attention_mask: torch.Tensor, features: list[dict]) -> None:
        """Truncating would cut visual or reward tokens, so an over-long pair is an error naming its
        ``file:line`` (``pair_id`` is the data file's line) instead."""
        if self.max_length is None:
            return
        lengths = self.sequence_lengths({"attention_mask": attention_mask}, len(features))
        too_long = (lengths > self.max_length).any(dim=0)
        if too_long.any():
            details = ", ".join(
                f"{f.get('source', 'pair')}:{f['pair_id']}: {int(lengths[:, i].max())} tokens"
                for i, f in enumerate(features)
                if too_long[i]
            )
            raise ValueError(
                f"sequence longer than max_length={self.max_length} ({details}); lower fps / "
                "max_frame_pixels or raise max_length"
            )
