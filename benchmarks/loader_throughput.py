"""Data-loader pairs/s (0, 1, 2 workers; cold decode and frame-cache hits) vs the pairs/s a training
step consumes, and evaluation pairs/s vs the training step's, on the tiny model with synthetic video pairs.

    .venv/bin/python benchmarks/loader_throughput.py [--pairs 64] [--batch 8] [--passes 3] [--repeats 10]

Loader: a ``DataLoader`` over the run's ``VideoPairDataset`` with the run's collator (decoding in
``__getitem__``, processor work in the collator, both inside the workers), persistent workers, one
untimed pass first (worker start-up, cache fill), then ``--passes`` timed passes. Train step:
forward + backward + AdamW step of one collated batch, median after warm-up, timed taking turns
with the evaluation passes below so that the load of a shared machine hits both alike. The loader must
outpace the step by a wide margin, or the accelerator waits on the CPU.

Evaluation: ``eval_rm.py``'s passes (:func:`vlmrm.reward.eval_passes.score_pairs`: both pair orders,
decoding, collation and forward included) over the held-out pairs: the first checkpoint of a run
(an empty frame cache, with 0 and with ``EVAL_WORKERS`` DataLoader workers; or the training
run's frame cache, which its in-training evaluation filled, as ``eval_rm`` with
``frame_cache_dir``), a later checkpoint with another processor or template (frames cached,
collated again) and a later checkpoint with the same processor, template and sampling (the
collated batches replayed, the usual case); medians of
``--repeats``. Pairs/s counts each pair once although it is scored in both orders; it should beat
the training step, which runs a backward and an optimizer step on top of one order's forward.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable

import torch
from _setup import interleaved_medians, machine, tiny_bench

from vlmrm.media.frame_cache import FrameCache
from vlmrm.reward.eval_passes import CollatedBatches, score_pairs

WORKER_COUNTS = (0, 1, 2)
EVAL_WORKERS = 2
BATCH_CACHE_MB = 2048
EVAL_LABELS = {
    "first": "first checkpoint (decoding, 0 workers)",
    "first_workers": f"first checkpoint (decoding, {EVAL_WORKERS} workers)",
    "first_training_cache": "first checkpoint, training run's frame_cache_dir (default workers: none, all cached)",
    "collated": "later checkpoint, other processor (frames cached, collated again)",
    "replayed": "later checkpoint, same processor (collated batches replayed)",
}


def loader_pairs_per_second(dataset, collator, batch: int, workers: int, passes: int) -> float:
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        num_workers=workers,
        collate_fn=collator,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers else None,
    )
    for _ in loader:  # untimed: workers start, the cache fills
        pass
    start = time.perf_counter()
    for _ in range(passes):
        for _ in loader:
            pass
    return passes * len(dataset) / (time.perf_counter() - start)


def eval_ways(model, collator, dataset, batch: int) -> dict[str, Callable[[], object]]:
    """The evaluation passes timed (both orders): ``first`` / ``first_workers`` (a fresh frame cache
    each time, 0 / ``EVAL_WORKERS`` workers), ``first_training_cache`` (``dataset``'s own frame
    cache, which the in-training evaluation filled: ``eval_rm`` with the run's ``frame_cache_dir``
    and its default workers; nothing collated yet), ``collated`` (frames cached, collated again,
    0 workers) and ``replayed`` (the collated batches of the checkpoint before)."""

    def first(workers: int):
        def evaluate() -> None:
            fresh = copy.copy(dataset)
            fresh.frame_cache = FrameCache(tempfile.mkdtemp(prefix="vlmrm-bench-eval-cache-"))
            empty = CollatedBatches.of_megabytes(BATCH_CACHE_MB)
            score_pairs(model, collator, fresh, batch, True, workers, "benchmark", empty)

        return evaluate

    cached = copy.copy(dataset)
    cached.frame_cache = FrameCache(tempfile.mkdtemp(prefix="vlmrm-bench-eval-cache-"))
    collated = CollatedBatches.of_megabytes(BATCH_CACHE_MB)
    score_pairs(model, collator, cached, batch, True, 0, "benchmark", collated)  # fills both caches
    return {
        "first": first(0),
        "first_workers": first(EVAL_WORKERS),
        "first_training_cache": lambda: score_pairs(
            model,
            collator,
            dataset,
            batch,
            True,
            None,
            "benchmark",
            CollatedBatches.of_megabytes(BATCH_CACHE_MB),
        ),
        "collated": lambda: score_pairs(model, collator, cached, batch, True, 0, "benchmark"),
        "replayed": lambda: score_pairs(model, collator, cached, batch, True, 0, "benchmark", collated),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    bench = tiny_bench(
        args.pairs,
        num_test=args.pairs,
        per_device_train_batch_size=args.batch,
        per_device_eval_batch_size=args.batch,
        frame_cache=True,
    )
    cold = copy.copy(bench.train)
    cold.frame_cache = None
    collator = bench.trainer.data_collator

    loader = {}
    for name, dataset in (("cold", cold), ("cached", bench.train)):
        for workers in WORKER_COUNTS:
            loader[name, workers] = loader_pairs_per_second(
                dataset, collator, args.batch, workers, args.passes
            )

    trainer, model = bench.trainer, bench.model
    model.train()
    optimizer = trainer.create_optimizer()
    inputs = collator([bench.train[i] for i in range(args.batch)])

    def train_step():
        model.train()
        trainer.compute_loss(model, inputs).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    metrics = trainer.evaluate()
    eval_pairs = len(bench.test) / metrics["eval_runtime"]
    ways = {"step": train_step, **eval_ways(model, collator, bench.test, args.batch)}
    seconds = interleaved_medians(ways, args.repeats)  # taking turns: a shared machine's load hits all
    step_s = seconds["step"]
    step_pairs = args.batch / step_s
    evaluation = {name: len(bench.test) / seconds[name] for name in EVAL_LABELS}

    print(f"{args.pairs} pairs, batch {args.batch}, {machine()}")
    print(f"train step (fwd + bwd + AdamW): {step_s * 1000:.1f} ms -> {step_pairs:.1f} pairs/s")
    for (name, workers), rate in loader.items():
        print(
            f"loader {name:6s} {workers} workers: {rate:7.1f} pairs/s = {rate / step_pairs:5.1f}x the train step"
        )
    print(f"in-training evaluation (trainer.evaluate, one order, loading included): {eval_pairs:.1f} pairs/s")
    for name, label in EVAL_LABELS.items():
        rate = evaluation[name]
        print(
            f"eval_rm passes (both orders, one forward), {label}: {rate:.1f} pairs/s = {rate / step_pairs:.1f}x the train step"
        )
    print(f"ratio loader (2 workers, cached) / train step: {loader['cached', 2] / step_pairs:.1f}x")


if __name__ == "__main__":
    main()
