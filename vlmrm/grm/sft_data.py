"""GRM SFT data: the converted conversations of :mod:`vlmrm.grm.convert`, from several files mixed
by weight, encoded with the loss on the gpt turns only.

One example (a JSON array of them per file)::

    {"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", "value": "<think>…"}, ...],
     "images": ["first shown", "second shown"], "video_fps": 2.0}

* ``conversations`` alternate human / gpt, starting with human and ending with gpt; every gpt turn
  is a target, every human turn (and the chat template around it) is masked.
* ``images`` lists the media in the order shown; with ``video_fps`` they are videos (the layout
  :func:`vlmrm.grm.convert.to_sft_example` writes). A relative path is relative to the JSON file's
  folder. All visuals go at the start of the first human turn, before its text, the layout the
  rejection-sampling engines (:func:`vlmrm.grm.engines.chat_text`) generate with, so a model trains
  on exactly the prompt it is later asked with.
* Videos are decoded by :func:`vlmrm.media.video.load_video` at the example's ``video_fps`` (else
  the config's) and handed to the processor already sampled and resized
  (``do_sample_frames=False``), as in :mod:`vlmrm.reward.collator`.

**Source mix** (:func:`mix_counts`, :func:`epoch_order`): a source of ``n`` examples with weight
``w`` contributes ``round(w * n)`` examples per epoch: ``floor(w)`` full passes plus a seeded
random subset for the fraction (drawn again each epoch from ``(seed, epoch, source)``). Weight 1 is
every example once, 2 every example twice, 0.5 a random half. The epoch's list is then shuffled by
the Trainer's own (seeded, per-rank sharded) sampler, so under DDP every rank sees a disjoint part
of the same mix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from transformers import ProcessorMixin

from vlmrm.core.problems import DataValidationError, DuplicateJsonKey, Problem, loads_unique
from vlmrm.media.image import open_image
from vlmrm.media.processor import video_kwargs
from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import load_video, resolve_backend
from vlmrm.training.sft import END_OF_TURN, masked_row, pad_rows

Media = Literal["image", "video"]
HUMAN, GPT = "human", "gpt"
ROLES = {HUMAN: "user", GPT: "assistant"}
"""ShareGPT speaker names -> chat-template roles."""


class SFTDataError(ValueError):
    """A malformed example; :func:`load_sft_file` collects them with file and index."""


@dataclass(frozen=True)
class SFTExample:
    """One conversation with its media, and where it came from (for error messages)."""

    file: str
    index: int
    conversations: tuple[tuple[str, str], ...]  # (speaker, text) in order
    paths: tuple[Path, ...]
    media: Media
    video_fps: float | None = None

    @property
    def where(self) -> str:
        return f"{self.file} example {self.index}"


@dataclass(frozen=True)
class MediaLimits:
    """How media are sized: images through the processor's pixel bounds, videos when decoded."""

    video_fps: float
    image_min_pixels: int | None = None
    image_max_pixels: int | None = None
    video_min_pixels: int | None = None
    video_max_pixels: int | None = None
    video_max_frames: int | None = None
    video_backend: str = "auto"

    def frame_sampling(self, fps: float) -> FrameSampling:
        bounds = {
            "min_pixels": self.video_min_pixels,
            "max_pixels": self.video_max_pixels,
            "max_frames": self.video_max_frames,
        }
        return FrameSampling(fps=fps, **{k: v for k, v in bounds.items() if v is not None})

    @property
    def image_size(self) -> dict | None:
        """The configured bounds of the image processor's ``size`` (None: the processor's own)."""
        if self.image_min_pixels is None and self.image_max_pixels is None:
            return None
        size = {}
        if self.image_min_pixels is not None:
            size["shortest_edge"] = self.image_min_pixels
        if self.image_max_pixels is not None:
            size["longest_edge"] = self.image_max_pixels
        return size


def _example(record, file: str, index: int, root: Path) -> SFTExample:
    """Check one record; raises ``ValueError`` with the reason (the caller adds file and index)."""
    if not isinstance(record, dict):
        raise SFTDataError(f"expected an object, got {type(record).__name__}")
    unknown = sorted(set(record) - {"conversations", "images", "video_fps"})
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} (known: conversations, images, video_fps)")
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise ValueError("'conversations' must be a non-empty list")
    conversation = []
    for position, turn in enumerate(turns):
        expected = HUMAN if position % 2 == 0 else GPT
        if (
            not isinstance(turn, dict)
            or turn.get("from") != expected
            or not isinstance(turn.get("value"), str)
        ):
            raise ValueError(
                f"turn {position} must be {{'from': '{expected}', 'value': text}} (turns alternate "
                f"human, gpt, starting with human), got {turn!r}"
            )
        conversation.append((expected, turn["value"]))
    if conversation[-1][0] != GPT:
        raise ValueError("the last turn must be gpt (a trailing human turn has nothing to learn)")
    images = record.get("images", [])
    if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
        raise ValueError(f"'images' must be a list of paths, got {images!r}")
    fps = record.get("video_fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0):
        raise ValueError(f"'video_fps' must be a positive number, got {fps!r}")
    paths = tuple(Path(p) if Path(p).is_absolute() else root / p for p in images)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"missing media file(s): {', '.join(missing)}")
    media: Media = "video" if "video_fps" in record else "image"
    return SFTExample(file, index, tuple(conversation), paths, media, None if fps is None else float(fps))


def load_sft_file(path: str | Path) -> list[SFTExample]:
    """Every example of one converted file; all bad examples are reported at once (file, index)."""
    path = Path(path)
    try:
        records = loads_unique(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, DuplicateJsonKey) as err:
        raise DataValidationError([Problem(str(path), None, None, str(err), kind="missing_file")]) from err
    if not isinstance(records, list):
        raise DataValidationError([Problem(str(path), None, None, "expected a JSON array of examples")])
    examples, problems = [], []
    for index, record in enumerate(records):
        try:
            examples.append(_example(record, str(path), index, path.parent))
        except ValueError as err:
            problems.append(Problem(str(path), index, None, f"example {index}: {err}", kind="bad_field"))
    if problems:
        raise DataValidationError(problems)
    return examples


def mix_counts(sizes: list[int], weights: list[float]) -> list[int]:
    """Examples each source contributes per epoch: ``round(w * n)`` (module docstring).

    Raises ``ValueError`` for a non-positive weight or a source the rounding would drop entirely.
    """
    counts = []
    for size, weight in zip(sizes, weights, strict=True):
        if weight <= 0:
            raise ValueError(f"source weight must be > 0, got {weight}")
        count = round(weight * size)
        if count < 1:
            raise ValueError(f"weight {weight} x {size} examples rounds to 0 examples per epoch")
        counts.append(count)
    return counts


def epoch_order(sizes: list[int], weights: list[float], seed: int, epoch: int) -> list[tuple[int, int]]:
    """(source, index) pairs of one epoch: ``floor(w)`` full passes per source plus a random subset
    of ``round(w * n) - floor(w) * n`` examples drawn with ``default_rng((seed, epoch, source))``.
    Listed source by source; the Trainer's sampler shuffles them."""
    order = []
    for source, (size, count) in enumerate(zip(sizes, mix_counts(sizes, weights))):
        passes, rest = divmod(count, size)
        order += [(source, i) for _ in range(passes) for i in range(size)]
        subset = np.random.default_rng((seed, epoch, source)).permutation(size)[:rest]
        order += [(source, int(i)) for i in sorted(subset)]
    return order


class GRMSFTDataset(torch.utils.data.Dataset):
    """The epoch's mix of every source; items are an example and its loaded visuals."""

    def __init__(
        self,
        sources: list[list[SFTExample]],
        weights: list[float],
        limits: MediaLimits,
        factor: int,
        seed: int,
    ):
        self.sources, self.weights, self.limits, self.factor, self.seed = (
            sources,
            weights,
            limits,
            factor,
            seed,
        )
        self.backend = (
            resolve_backend(limits.video_backend)
            if any(e.media == "video" for examples in sources for e in examples)
            else None
        )
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Re-draw the fractional parts of the mix; the epoch's length stays the same."""
        self.order = epoch_order([len(s) for s in self.sources], self.weights, self.seed, epoch)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int) -> dict:
        source, index = self.order[position]
        example = self.sources[source][index]
        return {"example": example, "visuals": self.load_visuals(example)}

    def load_visuals(self, example: SFTExample) -> list:
        if example.media == "image":
            return [open_image(path) for path in example.paths]
        sampling = self.limits.frame_sampling(example.video_fps or self.limits.video_fps)
        return [load_video(path, sampling, self.backend, self.factor) for path in example.paths]


def chat_messages(example: SFTExample) -> list[dict]:
    """Chat-template messages: the visuals lead the first human turn (module docstring)."""
    messages = []
    for position, (speaker, text) in enumerate(example.conversations):
        content = [{"type": example.media} for _ in example.paths] if position == 0 else []
        content.append({"type": "text", "text": text})
        messages.append({"role": ROLES[speaker], "content": content})
    return messages


@dataclass
class GRMSFTCollator:
    """Encodes conversations with labels on the gpt turns (batch layout: :mod:`vlmrm.training.sft`)."""

    processor: ProcessorMixin
    max_length: int | None = None
    image_size: dict | None = None

    def pieces(self, example: SFTExample) -> list[tuple[str, bool]]:
        """``(text, is_target)`` pieces whose concatenation is the rendered conversation.

        A gpt turn's target is its text plus ``<|im_end|>``; the masked piece before it is
        whatever the chat template renders from the end of the previous target to the start of
        the assistant text (the human turn, role headers, the newline after ``<|im_end|>``).
        """
        messages, pieces, consumed = chat_messages(example), [], ""
        for position, (speaker, text) in enumerate(example.conversations):
            if speaker != GPT:
                continue
            prompt = self.processor.apply_chat_template(
                messages[:position], add_generation_prompt=True, tokenize=False
            )
            if not prompt.startswith(consumed):
                raise ValueError(
                    f"{example.where}: the chat template renders earlier turns differently once a later "
                    "turn follows (it rewrites past assistant text), so the gpt turns cannot be masked"
                )
            target = text + END_OF_TURN
            pieces += [(prompt[len(consumed) :], False), (target, True)]
            consumed = prompt + target
        return pieces

    def encode(self, example: SFTExample, visuals: list) -> dict:
        pieces = self.pieces(example)
        encoded = self.processor(
            text=[pieces[0][0]], return_tensors="pt", **self._visual_kwargs(example, visuals)
        )
        tokenizer = self.processor.tokenizer
        ids = [encoded["input_ids"]] + [
            tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            for text, _ in pieces[1:]
        ]
        length = sum(piece.shape[1] for piece in ids)
        if self.max_length is not None and length > self.max_length:
            raise ValueError(
                f"{example.where}: {length} tokens > max_length {self.max_length}; samples are never "
                "truncated (that would cut visual tokens or the answer): lower the pixel limits / "
                "video_fps or raise max_length"
            )
        row = masked_row(
            [(piece, target) for piece, (_, target) in zip(ids, pieces)], encoded.get("mm_token_type_ids")
        )
        visual = {
            k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")
        }
        return {**row, **visual}

    def _visual_kwargs(self, example: SFTExample, visuals: list) -> dict:
        if not visuals:
            return {}
        if example.media == "image":
            if not self.image_size:
                return {"images": visuals}
            default = self.processor.image_processor.size  # the bound not configured stays the processor's
            size = {key: default[key] for key in ("shortest_edge", "longest_edge")} | self.image_size
            return {"images": visuals, "images_kwargs": {"size": size}}
        return video_kwargs(visuals)

    def __call__(self, items: list[dict]) -> dict:
        """The batch of :mod:`vlmrm.training.sft`; ``sample_ids`` name each example as
        "<file> example <index>" (several files are mixed, so an index alone would be ambiguous)."""
        rows = [self.encode(item["example"], item["visuals"]) for item in items]
        where = [item["example"].where for item in items]
        return pad_rows(rows, self.processor.tokenizer.pad_token_id, where)


def load_sft_files(paths: list[str | Path]) -> list[list[SFTExample]]:
    """Examples of each file; an empty file is an error (its weight would mean nothing)."""
    sources = []
    for path in paths:
        examples = load_sft_file(path)
        if not examples:
            raise DataValidationError([Problem(str(path), None, None, "no examples")])
        sources.append(examples)
    return sources
