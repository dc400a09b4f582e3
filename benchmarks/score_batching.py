"""Scoring throughput: one video per forward vs token-count-grouped batches (``RewardScorer``).

    .venv/bin/python benchmarks/score_batching.py [--videos 32] [--batch 16] [--repeats 5] [--device cpu] [--dtype float32]

An untrained tiny Qwen2-VL reward checkpoint set up like the quickstart (special reward tokens,
8 frames of 56x56 per video), scored on in-memory uint8 videos (16 frames of 64x64 at 8 fps, so
sampling and resizing are in the timing, decoding is not). Rewards of both ways are asserted
equal; prints videos/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _setup import BENCH_FRAMES, BENCH_PIXELS, interleaved_medians, machine

from vlmrm.modeling.loading import build_reward_model
from vlmrm.reward.config import parse_config
from vlmrm.reward.inference import RewardScorer
from vlmrm.testing.tiny import tiny_checkpoint

VIDEO_FPS = 8.0
VIDEO_SHAPE = (16, 64, 64, 3)
EQUAL_ATOL = 1e-5


def reward_checkpoint(work: Path) -> Path:
    """A tiny reward checkpoint saved as training saves one (no training: timing only)."""
    cfg = parse_config(
        values={
            "model_name_or_path": str(tiny_checkpoint("qwen2_vl")),
            "torch_dtype": "float32",
            "meta_data": str(work / "unused.csv"),
            "eval_dim": ["VQ", "MQ", "TA"],
            "use_special_tokens": True,
            "reward_token": "special",
            "output_dim": 3,
            "prompt_template_type": "simple_special",
            "num_frames": BENCH_FRAMES,
            "min_frame_pixels": BENCH_PIXELS,
            "max_frame_pixels": BENCH_PIXELS,
            "output_dir": str(work / "checkpoint"),
            "use_cpu": True,
            "report_to": "none",
        }
    )
    model, processor = build_reward_model(cfg.model, cfg.data, cfg.training)
    model.save_pretrained(work / "checkpoint")
    processor.save_pretrained(work / "checkpoint")
    return work / "checkpoint"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vlmrm-bench-score-"))
    scorer = RewardScorer.from_pretrained(reward_checkpoint(work), device=args.device, dtype=args.dtype)
    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 256, VIDEO_SHAPE, dtype=np.uint8) for _ in range(args.videos)]
    prompts = [f"a red ball moves {'left' if i % 2 else 'right'}" for i in range(args.videos)]

    def score(batch_size: int):
        return scorer.raw_rewards(prompts, videos=videos, fps=VIDEO_FPS, batch_size=batch_size)

    np.testing.assert_allclose(score(1), score(args.batch), rtol=0, atol=EQUAL_ATOL)
    medians = interleaved_medians(
        {"one": lambda: score(1), "batched": lambda: score(args.batch)}, args.repeats
    )
    rate = {name: args.videos / seconds for name, seconds in medians.items()}
    print(
        f"{args.videos} videos of {VIDEO_SHAPE} at {VIDEO_FPS:g} fps -> {BENCH_FRAMES} frames of "
        f"{BENCH_PIXELS} px; {args.device} {args.dtype}; {machine()}"
    )
    print(f"batch 1:  {rate['one']:.1f} videos/s (median of {args.repeats} passes)")
    print(f"batch {args.batch}: {rate['batched']:.1f} videos/s")
    print(f"ratio batched / batch 1: {rate['batched'] / rate['one']:.2f}x")


if __name__ == "__main__":
    main()
