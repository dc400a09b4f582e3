"""The evaluation passes of ``eval_rm.py``: both pair orders scored in one forward, frames decoded
once per video for all checkpoints, and a final model identical to a checkpoint not scored twice.

Why: evaluation does no backward pass, yet it ran slower than a training step, because each pair
was decoded and run through the processor again for the swapped order, each checkpoint decoded
every video again, and the final model (usually a copy of the last checkpoint) was evaluated anew.

Both orders in one forward: a collated batch of B pairs has rows ``[A_1..A_B, B_1..B_B]``
(:mod:`vlmrm.reward.collator`), each row one video with the prompt, scored on its own (rows do not
attend to each other). The swapped pass scores the pairs with A and B exchanged, i.e. rows
``[B_1..B_B, A_1..A_B]``: the same sequences in the other order. So one forward over the 2B rows
serves both passes: the original pass reads rewards (rows 0..B-1, rows B..2B-1), the swapped pass
(rows B..2B-1, rows 0..B-1). The previous evaluator decoded, processed and ran every pair again
for the swapped pass and got the same per-row rewards (a test compares the metrics). For such a
per-sequence model swap consistency therefore equals the fraction of pairs with a non-zero margin,
as it did before (the model cannot prefer an order); a judge that sees both videos in one sequence
would need a real second forward.

Collated once per run: the processor batches (``input_ids``, ``pixel_values_videos``,
``video_grid_thw``, ``mm_token_type_ids``, labels ...) depend on the processor, the prompt template,
the frame sampling and the data, never on the weights. Consecutive checkpoints of a run share all of
them, so :class:`CollatedBatches` keeps the batches of the last checkpoint on the CPU and the next
one with the same :func:`batch_key` replays them without decoding or collating. After decoding
(the frame cache) collation was what bounded a later checkpoint. The batches are kept only while
their tensors fit ``limit_bytes`` (``batch_cache_mb``); past it the next checkpoint collates again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from vlmrm.core.progress import Progress
from vlmrm.pairs.video_pairs import VideoPairDataset
from vlmrm.reward.pair_forward import NON_MODEL_KEYS

logger = logging.getLogger(__name__)

WEIGHT_SUFFIX = "*.safetensors"
"""The files holding a checkpoint's weights (full models, shards, adapters and their heads)."""
HASH_CHUNK_BYTES = 1 << 24
SPEC_FIELDS_AFTER_TRAINING = ("normalization", "training_videos")
"""RewardSpec fields written after training: they may differ between a checkpoint and the final
model of the same weights without changing a reward."""
MEGABYTE = 1 << 20
DEFAULT_EVAL_WORKERS = 2
DATASET_SETTINGS = ("sampling", "image_factor", "seed", "epoch", "irrelevant_pairs")
"""Dataset attributes that decide its items besides the table (those a dataset type lacks are None)."""
TOKENIZER_SETTINGS = ("padding_side", "truncation_side", "pad_token", "model_max_length")
"""Tokenizer attributes that change ``input_ids`` / ``attention_mask`` besides the vocabulary."""
BACKEND_CALL_STATE = ("padding", "truncation")
"""Keys of a fast tokenizer's JSON that each call sets from its arguments (the first call changes them)."""


@dataclass
class PairScores:
    """Rewards of the evaluation pairs: ``rewards`` (N, 2, D) in the data's order (A, B), and with
    the swap check ``swapped`` (N, 2, D) with A and B exchanged (column 0 = the B video)."""

    rewards: np.ndarray
    swapped: np.ndarray | None


def eval_device() -> torch.device:
    """The first GPU when there is one (as Trainer would pick), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pass_label(swap: bool) -> str:
    return "original+swapped" if swap else "original"


def processor_fingerprint(processor) -> str:
    """SHA-256 of what a processor turns texts and frames into tokens and pixels with: its image /
    video processor settings, chat template, tokenizer (vocabulary, added and reward tokens,
    normalisation) and padding settings."""
    tokenizer = processor.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in BACKEND_CALL_STATE}
        vocabulary = json.dumps(state, sort_keys=True)
    else:
        vocabulary = repr(sorted(tokenizer.get_vocab().items()))
    parts = [
        processor.to_json_string(),
        repr(getattr(processor, "chat_template", None)),
        vocabulary,
        repr([getattr(tokenizer, name, None) for name in TOKENIZER_SETTINGS]),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def batch_key(collator, dataset, batch_size: int) -> str:
    """SHA-256 of everything a collated evaluation batch depends on: the collator's settings (template,
    dimensions, ``max_length``, sizes), its processor (:func:`processor_fingerprint`), the pairs, the
    dataset's sampling and decoder, and the batch size. Equal keys give equal batches."""
    settings = {
        f.name: getattr(collator, f.name) for f in fields(collator) if f.compare and f.name != "processor"
    }
    table = dataset.table
    parts = [
        type(collator).__name__,
        repr(sorted(settings.items())),
        processor_fingerprint(collator.processor),
        type(dataset).__name__,
        repr((table.source, getattr(table, "eval_dim", None), table.pairs)),
        repr([getattr(dataset, name, None) for name in DATASET_SETTINGS]),
        repr(getattr(getattr(dataset, "backend", None), "name", None)),
        repr(getattr(getattr(dataset, "guard", None), "on_bad_sample", None)),
        str(batch_size),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def batch_bytes(batch: dict) -> int:
    return sum(v.numel() * v.element_size() for v in batch.values() if isinstance(v, torch.Tensor))


def owned(batch: dict) -> dict:
    """``batch`` with tensors in shared memory (sent by DataLoader workers) copied into this process:
    each shared tensor kept holds a shared-memory handle, and a run keeping every batch of a data set
    ran out of them ("received 0 items of ancdata")."""
    return {k: v.clone() if isinstance(v, torch.Tensor) and v.is_shared() else v for k, v in batch.items()}


@dataclass
class CollatedBatches:
    """The collated batches of the last checkpoint scored (CPU tensors) and their :func:`batch_key`,
    kept while their tensors total at most ``limit_bytes`` (0 keeps none)."""

    limit_bytes: int
    key: str | None = None
    batches: list[dict] = field(default_factory=list)

    @classmethod
    def of_megabytes(cls, megabytes: int) -> CollatedBatches:
        return cls(megabytes * MEGABYTE)

    def replay(self, key: str) -> list[dict] | None:
        return self.batches if self.key == key else None

    def record(self, key: str, batches):
        """Yield ``batches`` and keep them under ``key`` unless they outgrow ``limit_bytes``."""
        self.key, self.batches = None, []
        kept, size = [], 0
        for batch in batches:
            if kept is not None:
                size += batch_bytes(batch)
                if size > self.limit_bytes:
                    if self.limit_bytes:
                        logger.info(
                            "collated batches exceed batch_cache_mb (%d MB); the next checkpoint collates again",
                            self.limit_bytes // MEGABYTE,
                        )
                    kept = None
                else:
                    kept.append(owned(batch))
            yield batch
        if kept is not None:
            self.key, self.batches = key, kept


def eval_workers(requested: int | None, dataset) -> int:
    """``dataloader_num_workers`` when set. By default min(``DEFAULT_EVAL_WORKERS``, CPU cores) while
    videos must be decoded (the first checkpoint of a run is decode-bound; workers overlap decoding
    with the forward), and 0 when every video is already in the frame cache (the training run's
    ``frame_cache_dir``, or an earlier checkpoint's): reading an entry and collating in the main
    process is cheaper than starting workers and sending batches between processes (tiny-model
    benchmark: 1.7x vs 1.4x the training step's pairs/s). Replayed batches need no workers at all."""
    if requested is not None:
        return requested
    if isinstance(dataset, VideoPairDataset) and dataset.frames_cached():
        return 0
    return min(DEFAULT_EVAL_WORKERS, os.cpu_count() or 1)


@torch.no_grad()
def score_pairs(
    model,
    collator,
    dataset,
    batch_size: int,
    swap: bool,
    num_workers: int | None = 0,
    name: str = "",
    collated: CollatedBatches | None = None,
) -> PairScores:
    """One forward per batch of ``batch_size`` pairs over rows ``[A, B]``, read in both orders with
    ``swap``. With ``collated``, batches of an earlier call with the same :func:`batch_key` are
    replayed instead of decoded and collated, and this call's batches are kept for the next.
    ``num_workers`` None: :func:`eval_workers` decides, only when batches are not replayed (its
    frame-cache check stats every video)."""
    device = eval_device()
    model.to(device).eval()
    batches = None
    if collated is not None:
        key = batch_key(collator, dataset, batch_size)
        batches = collated.replay(key)
        if batches is not None:
            logger.info(
                "%s: %s collated batches replayed (same processor, template, sampling, data)",
                name,
                len(batches),
            )
    if batches is None:
        batches = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            collate_fn=collator,
            num_workers=eval_workers(num_workers, dataset),
        )
        if collated is not None:
            batches = collated.record(key, batches)
    rewards, swapped = [], []
    desc = f"evaluate {name} ({pass_label(swap)})"
    with Progress(len(dataset), desc, "pairs") as bar:
        for batch in batches:
            pairs = batch["labels"].shape[0]
            inputs = {
                k: v.to(device) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()
                if k not in NON_MODEL_KEYS
            }
            side_a, side_b = model(**inputs).rewards.float().cpu().split(pairs)  # 2 x (B, D)
            rewards.append(torch.stack([side_a, side_b], dim=1))  # (B, 2, D)
            if swap:
                swapped.append(torch.stack([side_b, side_a], dim=1))
            bar.update(pairs)
    if not rewards:
        return PairScores(np.zeros((0, 2, 0)), np.zeros((0, 2, 0)) if swap else None)
    return PairScores(torch.cat(rewards).numpy(), torch.cat(swapped).numpy() if swap else None)


def weight_files(checkpoint: Path) -> list[Path]:
    return sorted(checkpoint.glob(WEIGHT_SUFFIX))


def weights_signature(checkpoint: Path) -> tuple:
    """(name, bytes) of each weight file: equal for identical weights, and free to compute."""
    return tuple((path.name, path.stat().st_size) for path in weight_files(checkpoint))


def weights_digest(checkpoint: Path) -> str:
    """SHA-256 over the names and bytes of a checkpoint's weight files."""
    digest = hashlib.sha256()
    for path in weight_files(checkpoint):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            while chunk := handle.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def same_scoring(spec_a, spec_b) -> bool:
    """Whether two reward specs score inputs alike (the fields set after training aside)."""
    fields_a = {k: v for k, v in vars(spec_a).items() if k not in SPEC_FIELDS_AFTER_TRAINING}
    fields_b = {k: v for k, v in vars(spec_b).items() if k not in SPEC_FIELDS_AFTER_TRAINING}
    return fields_a == fields_b


@dataclass
class Scored:
    """One scored checkpoint: what a later checkpoint with identical weights can reuse."""

    checkpoint: Path
    spec: object
    data: object
    scores: PairScores
    digest: str | None = None


@dataclass
class ScoredCheckpoints:
    """The checkpoints scored so far. A later one whose weight files have the same names, sizes and
    SHA-256 (hashed only when names and sizes match) and whose spec scores alike reuses the earlier
    scores instead of being loaded and evaluated again."""

    scored: list[Scored] = field(default_factory=list)

    def find(self, checkpoint: Path, spec) -> Scored | None:
        signature = weights_signature(checkpoint)
        if not signature:
            return None
        digest = None
        for earlier in self.scored:
            if weights_signature(earlier.checkpoint) != signature or not same_scoring(spec, earlier.spec):
                continue
            digest = digest or weights_digest(checkpoint)
            earlier.digest = earlier.digest or weights_digest(earlier.checkpoint)
            if earlier.digest == digest:
                return earlier
        return None

    def add(self, checkpoint: Path, spec, data, scores: PairScores) -> None:
        self.scored.append(Scored(checkpoint, spec, data, scores))
