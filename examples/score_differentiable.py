"""Reward gradients w.r.t. video pixels: a few steps of gradient ascent on a clip (reward guidance / ReFL-style).

    python examples/score_differentiable.py --checkpoint outputs/quickstart [--steps 5] [--lr 0.05] [--dimension Overall]

The clip is pixels = sigmoid(logits), (T, H, W, 3) floats in [0, 1] at 8 fps, starting from a red
square moving right. ``RewardScorer.score_tensor`` keeps the graph from the pixels through sampling,
resize, normalisation and patchification to the rewards, so ``reward.backward()`` gives d reward /
d pixels; Adam follows it for ``--steps`` steps and the reward is printed each step. A generator
fine-tuned this way would back-propagate the same gradient into its own weights instead.
"""

from __future__ import annotations

import argparse

import torch

from vlmrm.pairs.labels import OVERALL
from vlmrm.reward.inference import RewardScorer

CLIP_FPS = 8.0
LOGIT_CLAMP = 0.999
"""Initial pixels are pulled into (0.0005, 0.9995) so their logits are finite."""


def weights_for(scorer: RewardScorer, dimension: str) -> torch.Tensor:
    """Per-dimension weights of the objective: all ones for Overall (raw sum), else one-hot."""
    dims = scorer.spec.eval_dim
    if dimension == OVERALL:
        return torch.ones(len(dims))
    if dimension not in dims:
        raise SystemExit(f"--dimension {dimension!r}: choose {OVERALL} or one of {dims}")
    return torch.nn.functional.one_hot(torch.tensor(dims.index(dimension)), len(dims)).float()


def main(argv: list[str] | None = None) -> list[float]:
    from score_in_process import clip

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="outputs/quickstart", help="reward checkpoint directory")
    parser.add_argument("--prompt", default="a red square moves to the right")
    parser.add_argument("--dimension", default=OVERALL, help="reward dimension to raise, or Overall")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    args = parser.parse_args(argv)
    scorer = RewardScorer.from_pretrained(args.checkpoint, device=args.device, dtype="float32")
    weights = weights_for(scorer, args.dimension).to(scorer.device)

    start = torch.from_numpy(clip("red", 3)).float().div(255).clamp(1 - LOGIT_CLAMP, LOGIT_CLAMP)
    logits = torch.logit(start).to(scorer.device).requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=args.lr)
    history = []
    for step in range(args.steps + 1):
        rewards = scorer.score_tensor([args.prompt], [torch.sigmoid(logits)], fps=CLIP_FPS)  # (1, D)
        objective = (rewards[0] * weights).sum()
        history.append(float(objective))
        print(f"step {step}: {args.dimension} reward {float(objective):.4f}", flush=True)
        if step == args.steps:
            break
        optimizer.zero_grad()
        (-objective).backward()
        optimizer.step()
    return history


if __name__ == "__main__":
    main()
