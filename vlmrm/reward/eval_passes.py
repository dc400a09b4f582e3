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
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vlmrm.core.progress import Progress
from vlmrm.reward.pair_forward import NON_MODEL_KEYS

WEIGHT_SUFFIX = "*.safetensors"
"""The files holding a checkpoint's weights (full models, shards, adapters and their heads)."""
HASH_CHUNK_BYTES = 1 << 24
SPEC_FIELDS_AFTER_TRAINING = ("normalization", "training_videos")
"""RewardSpec fields written after training: they may differ between a checkpoint and the final
model of the same weights without changing a reward."""


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


@torch.no_grad()
def score_pairs(
    model, collator, dataset, batch_size: int, swap: bool, num_workers: int = 0, name: str = ""
) -> PairScores:
    """One forward per batch of ``batch_size`` pairs over rows ``[A, B]``, read in both orders with ``swap``."""
    device = eval_device()
    model.to(device).eval()
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, collate_fn=collator, num_workers=num_workers
    )
    rewards, swapped = [], []
    desc = f"evaluate {name} ({pass_label(swap)})"
    with Progress(len(dataset), desc, "pairs") as bar:
        for batch in loader:
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
