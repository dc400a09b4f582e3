"""Step time of one merged A+B forward vs two separate forwards (fwd + bwd), tiny model on CPU.

    .venv/bin/python benchmarks/merged_pair_forward.py [--family qwen2_vl] [--pairs 8] [--repeats 20]

Prints the median step time of each way, measured in one run after warm-up, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vlmrm.config import parse_config
from vlmrm.data.collator import PairCollator
from vlmrm.models.builder import build_reward_model
from vlmrm.synthetic import SyntheticVideoConfig, generate_video_pairs
from vlmrm.tiny import tiny_checkpoint
from vlmrm.train import build_datasets, build_trainer

WARMUP_STEPS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", default="qwen2_vl")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vlmrm-bench-"))
    data = generate_video_pairs(
        SyntheticVideoConfig(out_dir=work / "data", num_train=args.pairs, num_test=0)
    ).out_dir
    cfg = parse_config(
        values={
            "model_name_or_path": str(tiny_checkpoint(args.family)),
            "torch_dtype": "float32",
            "meta_data": str(data / "train.csv"),
            "data_dir": str(data),
            "num_frames": 8,
            "min_frame_pixels": 3136,
            "max_frame_pixels": 3136,
            "prompt_template_type": "simple",
            "output_dir": str(work / "out"),
            "use_cpu": True,
            "report_to": "none",
        }
    )
    model, processor = build_reward_model(cfg.model, cfg.data, cfg.training)
    train, _ = build_datasets(cfg, processor)
    batch = PairCollator(processor, cfg.data.eval_dim, cfg.data.prompt_template_type)(
        [train[i] for i in range(args.pairs)]
    )
    trainer = build_trainer(cfg, model, processor)
    samples: dict[bool, list[float]] = {True: [], False: []}
    for step in range(WARMUP_STEPS + args.repeats):
        for merged in (True, False):  # interleaved, so machine noise hits both ways alike
            trainer.args.merge_pair_forward = merged
            start = time.perf_counter()
            trainer.compute_loss(model, batch).backward()
            model.zero_grad(set_to_none=True)
            if step >= WARMUP_STEPS:
                samples[merged].append(time.perf_counter() - start)
    timings = {merged: statistics.median(values) for merged, values in samples.items()}
    print(f"pairs per step: {args.pairs}, threads: {torch.get_num_threads()}, family: {args.family}")
    print(f"merged forward:   {timings[True] * 1000:.1f} ms / step (median of {args.repeats})")
    print(f"separate forward: {timings[False] * 1000:.1f} ms / step")
    print(f"ratio separate / merged: {timings[False] / timings[True]:.2f}x")


if __name__ == "__main__":
    main()
