"""Decoder backends on the same synthetic videos: ms per video and RSS growth over many decodes.

    .venv/bin/python benchmarks/decoders.py [--videos 32] [--repeats 10] [--rss_decodes 500]

Every backend gets the same frame indices (asserted) and must return the same frames (asserted),
so the timing compares like with like. torchcodec is included when it loads (it needs FFmpeg's
shared libraries). RSS growth: each backend in a fresh process, resident memory after a warm-up of
:data:`RSS_WARMUP` decodes vs after ``--rss_decodes`` more (a leak grows with the count; a cache
settles).
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
from pathlib import Path

import psutil
import torch
from _setup import BENCH_FRAMES, BENCH_PIXELS, interleaved_medians, machine

from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import BACKENDS, backend_usable, load_video
from vlmrm.testing.synthetic import SyntheticVideoConfig, generate_video_pairs

RSS_WARMUP = 50
MIB = 1024**2
SAMPLING = FrameSampling(num_frames=BENCH_FRAMES, min_pixels=BENCH_PIXELS, max_pixels=BENCH_PIXELS)


def rss_growth(name: str, videos: list[Path], decodes: int) -> float:
    """MiB of resident memory added by ``decodes`` decodes after the warm-up (run in a child)."""
    backend = BACKENDS[name]
    process = psutil.Process()
    for i in range(RSS_WARMUP):
        load_video(videos[i % len(videos)], SAMPLING, backend)
    before = process.memory_info().rss
    for i in range(decodes):
        load_video(videos[i % len(videos)], SAMPLING, backend)
    return (process.memory_info().rss - before) / MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rss_decodes", type=int, default=500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vlmrm-bench-decoders-"))
    data = generate_video_pairs(
        SyntheticVideoConfig(out_dir=work / "data", num_train=args.videos // 2, num_test=0)
    )
    videos = sorted((data.out_dir / "videos").glob("*.mp4"))[: args.videos]
    names = [name for name in BACKENDS if backend_usable(name)]
    skipped = [name for name in BACKENDS if name not in names]
    reference = {path: load_video(path, SAMPLING, BACKENDS[names[0]]) for path in videos}
    for name in names[1:]:
        for path, expected in reference.items():
            got = load_video(path, SAMPLING, BACKENDS[name])
            assert got.indices == expected.indices, (name, path)
            assert torch.equal(got.frames, expected.frames), (name, path)

    def decode_all(name):
        return lambda: [load_video(path, SAMPLING, BACKENDS[name]) for path in videos]

    medians = interleaved_medians({name: decode_all(name) for name in names}, args.repeats)
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        growth = {name: pool.apply(rss_growth, (name, videos, args.rss_decodes)) for name in names}
    print(f"{len(videos)} videos, {BENCH_FRAMES} frames each -> {BENCH_PIXELS} px; {machine()}")
    print(
        f"identical frame indices and frames across {', '.join(names)}"
        + (f" (not loadable: {', '.join(skipped)})" if skipped else "")
    )
    fastest = min(medians.values())
    for name in names:
        per_video = medians[name] / len(videos) * 1000
        print(
            f"{name:10s} {per_video:6.2f} ms / video  ({medians[name] / fastest:.2f}x the fastest)  "
            f"RSS +{growth[name]:.1f} MiB over {args.rss_decodes} decodes"
        )


if __name__ == "__main__":
    main()
