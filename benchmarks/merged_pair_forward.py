"""Step time of one merged A+B forward vs two separate forwards (fwd + bwd), tiny model on CPU.

    .venv/bin/python benchmarks/merged_pair_forward.py [--family qwen2_vl] [--pairs 8] [--repeats 20]

Prints the loss of each way on the same batch (they must agree: the merge changes the batching, not
the maths), the median step time of each way measured in one run after warm-up, and their ratio.
"""

from __future__ import annotations

import argparse

import torch
from _setup import interleaved_medians, machine, tiny_bench

LOSS_TOLERANCE = 1e-5
"""float32 sums in another order: differences of a few ulp, far below any training signal."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", default="qwen2_vl")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    bench = tiny_bench(args.pairs, family=args.family)
    trainer, model = bench.trainer, bench.model
    batch = trainer.data_collator([bench.train[i] for i in range(args.pairs)])

    def loss(merged: bool) -> torch.Tensor:
        trainer.args.merge_pair_forward = merged
        return trainer.compute_loss(model, batch)

    model.eval()  # no dropout: both ways see the same network
    with torch.no_grad():
        losses = {merged: loss(merged).item() for merged in (True, False)}
    assert abs(losses[True] - losses[False]) <= LOSS_TOLERANCE, losses
    model.train()

    def step(merged: bool):
        def run():
            loss(merged).backward()
            model.zero_grad(set_to_none=True)

        return run

    timings = interleaved_medians({"merged": step(True), "separate": step(False)}, args.repeats)
    print(f"pairs per step: {args.pairs}, family: {args.family}; {machine()}")
    print(f"loss merged {losses[True]:.6f} = separate {losses[False]:.6f}")
    print(f"merged forward:   {timings['merged'] * 1000:.1f} ms / step (median of {args.repeats})")
    print(f"separate forward: {timings['separate'] * 1000:.1f} ms / step")
    print(f"ratio separate / merged: {timings['separate'] / timings['merged']:.2f}x")


if __name__ == "__main__":
    main()
