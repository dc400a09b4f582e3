"""Duration-based batching: batches of videos whose summed duration stays near a target, so GPU memory per
step stays roughly constant when clip lengths vary (`duration_batching:` in the data config).

Packing (`pack_by_duration`), on indices sorted by duration (ties in a (seed, epoch) random order):
greedily add the next sample while the batch's summed duration stays <= target and its size < max; a
single sample longer than the target forms its own batch. Precedence of the limits:
max_batch_size (always) > target duration (always, except such a single sample) > min_batch_size
(best effort: a batch closes below min only when the next sample would overflow the target; an undersized
last batch takes the shortest samples of the batch before while that one stays >= min and the target
holds). With drop_last, batches still below min_batch_size are dropped.

Distributed (num_replicas = R > 1): every rank builds the same batch list from (seed, epoch), then takes
batches rank, rank + R, ... . Every rank must run the same number of steps, so the batch count is made a
multiple of R: with drop_last, the last (count mod R) batches of the shuffled order are dropped; without,
the batches with the most samples are split in two (halves keep both limits; they may fall below min),
so every sample is still seen exactly once per epoch and ranks stay disjoint. That needs at least as many
samples as the next multiple of R (e.g. 5 over-long samples on 4 ranks need 8 batches); with fewer, every
batch is split down to one sample and batches are repeated from the start of the shuffled order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler
from transformers import TrainerCallback

logger = logging.getLogger(__name__)


def pack_by_duration(
    durations: Sequence[float],
    order: Sequence[int],
    target: float,
    max_batch_size: int | None = None,
    min_batch_size: int = 1,
) -> list[list[int]]:
    """Greedy packing of `order` (sample indices, normally sorted by duration) into batches; see module doc."""
    batches: list[list[int]] = []
    batch: list[int] = []
    total = 0.0
    for index in order:
        d = float(durations[index])
        full = max_batch_size is not None and len(batch) >= max_batch_size
        if batch and (full or total + d > target):
            batches.append(batch)
            batch, total = [], 0.0
        batch.append(index)
        total += d
    if batch:
        batches.append(batch)
    if len(batches) >= 2:  # top up an undersized last batch with the shortest samples of the one before
        previous, last = batches[-2], batches[-1]
        last_total = sum(float(durations[i]) for i in last)
        while len(last) < min_batch_size and len(previous) > min_batch_size:
            if last_total + float(durations[previous[0]]) > target:
                break
            last_total += float(durations[previous[0]])
            last.insert(0, previous.pop(0))
    return batches


def _split_largest(batches: list[list[int]], count: int) -> list[list[int]]:
    """Split the `count` batches with the most samples (ties: earliest) into two halves each."""
    result = [list(b) for b in batches]
    for _ in range(count):
        largest = max(range(len(result)), key=lambda i: (len(result[i]), -i))
        if len(result[largest]) < 2:
            raise ValueError("no batch left to split")
        batch = result[largest]
        half = len(batch) // 2
        result[largest : largest + 1] = [batch[:half], batch[half:]]
    return result


class DurationBasedBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices (use as a DataLoader `batch_sampler`); call `set_epoch` every epoch.

    Args:
        durations: clip duration in seconds of every dataset sample (`VTGDataset.durations`).
        target_batch_duration: summed seconds a batch may hold.
        max_batch_size / min_batch_size: limits on samples per batch (see module doc for precedence).
        drop_last: drop batches below min_batch_size, and truncate instead of split in distributed runs.
        seed: with the epoch, seeds tie-breaking and batch order; equal on every rank.
        num_replicas / rank: default to the torch.distributed world, else 1 / 0.
        shuffle: False keeps ascending-duration order (ties by index) and never shuffles.
    """

    def __init__(
        self,
        durations: Sequence[float],
        target_batch_duration: float,
        max_batch_size: int | None = None,
        min_batch_size: int = 1,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
    ):
        self.durations = np.asarray(durations, dtype=float)
        if self.durations.ndim != 1 or self.durations.size == 0:
            raise ValueError("durations must be a non-empty 1-D sequence")
        if not np.isfinite(self.durations).all() or (self.durations < 0).any():
            raise ValueError("durations must be finite and >= 0")
        if not target_batch_duration > 0:
            raise ValueError(f"target_batch_duration must be > 0, got {target_batch_duration}")
        if min_batch_size < 1 or (max_batch_size is not None and max_batch_size < min_batch_size):
            raise ValueError(
                f"need 1 <= min_batch_size <= max_batch_size, got {min_batch_size}, {max_batch_size}"
            )
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        self.num_replicas = num_replicas
        self.rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is outside [0, {self.num_replicas})")
        self.target_batch_duration = float(target_batch_duration)
        self.max_batch_size, self.min_batch_size = max_batch_size, min_batch_size
        self.drop_last, self.seed, self.shuffle = drop_last, seed, shuffle
        self.epoch = 0
        average = float(self.durations.mean())
        expected = self.target_batch_duration / average if average > 0 else float("inf")
        logger.info(
            "DurationBasedBatchSampler initialized: samples=%d, target_duration=%.1fs, "
            "avg_sample_duration=%.1fs, expected_batch_size=%.1f",
            self.durations.size,
            self.target_batch_duration,
            average,
            expected,
        )
        logger.info("Duration range: min=%.1fs, max=%.1fs", self.durations.min(), self.durations.max())
        if self.num_replicas > 1:
            logger.info("Distributed training: %d GPUs, rank %d", self.num_replicas, self.rank)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self, epoch: int | None = None) -> list[list[int]]:
        """All ranks' batches of `epoch` (default: the current one), in step order, before rank slicing."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        n = self.durations.size
        ties = rng.permutation(n) if self.shuffle else np.arange(n)
        order = ties[np.argsort(self.durations[ties], kind="stable")]
        batches = pack_by_duration(
            self.durations, order, self.target_batch_duration, self.max_batch_size, self.min_batch_size
        )
        if self.drop_last:
            batches = [b for b in batches if len(b) >= self.min_batch_size]
        replicas = self.num_replicas
        if not self.drop_last and len(batches) % replicas:
            needed = replicas - len(batches) % replicas
            splittable = sum(len(b) for b in batches) - len(batches)  # each split adds one batch
            batches = _split_largest(batches, min(needed, splittable))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.drop_last:
            batches = batches[: len(batches) - len(batches) % replicas]
        elif len(batches) % replicas:  # too few samples even as one-sample batches: repeat some
            needed = replicas - len(batches) % replicas
            batches = batches + [batches[i % len(batches)] for i in range(needed)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.global_batches()[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        """Batches this rank yields per epoch (the same for every epoch: packing depends on sorted durations)."""
        return math.ceil(len(self.global_batches()) / self.num_replicas)


class BatchSizeLogCallback(TrainerCallback):
    """Logs "Step N: batch_size avg=…, min=…, max=…" over the micro-batches of each logging interval.

    HF callbacks never see the inputs, so the training loop reports each batch: call `record(size)` from
    the trainer's `training_step` (it runs in the main process, after prefetching, so it counts exactly
    the batches trained on, also with DataLoader workers). `history` keeps (step, avg, min, max).
    """

    def __init__(self):
        self.sizes: list[int] = []
        self.history: list[tuple[int, float, int, int]] = []

    def record(self, batch_size: int) -> None:
        self.sizes.append(int(batch_size))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self.sizes:
            return
        average, smallest, largest = sum(self.sizes) / len(self.sizes), min(self.sizes), max(self.sizes)
        self.history.append((state.global_step, average, smallest, largest))
        logger.info(
            "Step %d: batch_size avg=%.1f, min=%d, max=%d", state.global_step, average, smallest, largest
        )
        self.sizes = []
