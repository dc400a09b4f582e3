"""Frame-cache hit vs cold decode + resize of the same synthetic videos (``vlmrm.media.frame_cache``).

    .venv/bin/python benchmarks/frame_cache.py [--videos 32] [--repeats 10] [--backend pyav]

Cold = ``load_video`` (probe, decode the sampled frames, bicubic resize), what every epoch pays
without the cache; hit = ``FrameCache.load`` of the stored uint8 frames. Both produce the same
tensor (asserted). Prints the median per video of each and their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _setup import BENCH_FRAMES, BENCH_PIXELS, interleaved_medians, machine

from vlmrm.media.frame_cache import FrameCache
from vlmrm.media.sampling import QWEN2_IMAGE_FACTOR, FrameSampling
from vlmrm.media.video import load_video, resolve_backend
from vlmrm.testing.synthetic import SyntheticVideoConfig, generate_video_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vlmrm-bench-cache-"))
    data = generate_video_pairs(
        SyntheticVideoConfig(out_dir=work / "data", num_train=args.videos // 2, num_test=0)
    )
    videos = sorted((data.out_dir / "videos").glob("*.mp4"))[: args.videos]
    sampling = FrameSampling(num_frames=BENCH_FRAMES, min_pixels=BENCH_PIXELS, max_pixels=BENCH_PIXELS)
    backend = resolve_backend(args.backend)
    cache = FrameCache(work / "cache")
    for path in videos:
        stored = cache.load(path, sampling, backend, QWEN2_IMAGE_FACTOR)
        assert torch.equal(stored.frames, cache.load(path, sampling, backend, QWEN2_IMAGE_FACTOR).frames)

    def cold():
        for path in videos:
            load_video(path, sampling, backend, QWEN2_IMAGE_FACTOR)

    def hit():
        for path in videos:
            cache.load(path, sampling, backend, QWEN2_IMAGE_FACTOR)

    medians = interleaved_medians({"cold": cold, "hit": hit}, args.repeats)
    per_video = {name: seconds / len(videos) * 1000 for name, seconds in medians.items()}
    print(
        f"{len(videos)} videos, {BENCH_FRAMES} frames each -> {BENCH_PIXELS} px, backend {backend.name}; {machine()}"
    )
    print(f"cold decode + resize: {per_video['cold']:.2f} ms / video (median of {args.repeats} passes)")
    print(f"cache hit:            {per_video['hit']:.2f} ms / video")
    print(f"ratio cold / hit: {medians['cold'] / medians['hit']:.1f}x")


if __name__ == "__main__":
    main()
