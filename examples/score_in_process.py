"""Score videos with a trained reward checkpoint in this process: files, in-memory frames, a reward function.

    python examples/score_in_process.py --checkpoint outputs/quickstart [--video a.mp4 ...] [--device cuda --dtype bfloat16]

Scores two generated clips (a red square moving right, a blue one standing still; 16 frames of 64x64
at 8 fps, as (T, H, W, C) uint8 arrays) plus any --video files in one batched call, prints each
item's raw / normalised rewards and Overall, then the same clips through the Flow-GRPO-style reward
function (weights per dimension) and the preference probabilities between the two clips.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from vlmrm.reward.inference import RewardScorer
from vlmrm.reward.reward_fns import generation_reward_fn

CLIP_FRAMES, CLIP_SIZE, CLIP_FPS, SQUARE = 16, 64, 8.0, 16
COLOURS = {"red": (220, 40, 40), "blue": (40, 40, 220)}


def clip(colour: str, speed: int) -> np.ndarray:
    """(T, H, W, 3) uint8: a square of ``colour`` moving ``speed`` pixels per frame on grey."""
    frames = np.full((CLIP_FRAMES, CLIP_SIZE, CLIP_SIZE, 3), 128, np.uint8)
    for t in range(CLIP_FRAMES):
        x = min(t * speed, CLIP_SIZE - SQUARE)
        frames[t, 24 : 24 + SQUARE, x : x + SQUARE] = COLOURS[colour]
    return frames


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="outputs/quickstart", help="reward checkpoint directory")
    parser.add_argument("--video", action="append", default=[], help="video file to score too (repeatable)")
    parser.add_argument("--prompt", default="a red square moves to the right")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--dtype", help="float32, bfloat16, float16 (default: as saved)")
    args = parser.parse_args(argv)
    scorer = RewardScorer.from_pretrained(args.checkpoint, device=args.device, dtype=args.dtype)

    clips = [clip("red", 3), clip("blue", 0)]
    videos = [*clips, *args.video]
    fps = [CLIP_FPS] * len(clips) + [None] * len(args.video)  # files carry their own frame rate
    scores = scorer.score([args.prompt] * len(videos), videos=videos, fps=fps)
    names = ["red square, moving", "blue square, still", *args.video]
    results = [{"item": name, **s} for name, s in zip(names, scores)]
    print(json.dumps(results, indent=2))

    weights = {dim: 1.0 for dim in scorer.spec.eval_dim}
    reward_fn = generation_reward_fn(scorer, weights=weights, normalization="auto", fps=CLIP_FPS)
    rewards, _ = reward_fn(np.stack(clips), [args.prompt] * len(clips), [{}, {}])
    print("reward_fn rewards:", [round(float(r), 4) for r in rewards])
    print("P(moving red better) per dimension:", json.dumps(scorer.compare(*clips, args.prompt, fps=CLIP_FPS)))
    return results


if __name__ == "__main__":
    main()
