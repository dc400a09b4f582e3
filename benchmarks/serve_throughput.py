"""Reward-server throughput and latency with dynamic batching vs without, tiny model on CPU.

    .venv/bin/python benchmarks/serve_throughput.py [--clients 16] [--requests 8] [--max_batch 16]
        [--max_wait_ms 10]

Starts ``python -m vlmrm.serve`` twice on 127.0.0.1 (one checkpoint, one set of synthetic mp4s): with
``--max_batch`` / ``--max_wait_ms``, then with ``--max_batch 1`` (every request scored alone). Each
time ``--clients`` threads, each with its own ``vlmrm.serve.Client``, send ``--requests`` requests of
one video (a server-side path) one after another, after one untimed warm-up request each. Prints
requests/s (all requests / wall time) and p50 / p95 request latency of each way, their ratios, and
asserts both ways return the same rewards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _setup import BENCH_FRAMES, machine, tiny_bench

from vlmrm.serve import Client
from vlmrm.serve.process import ServerProcess

REPO = Path(__file__).resolve().parents[1]
REWARD_TOLERANCE = 1e-5
PERCENTILES = {"p50": 50, "p95": 95}


def run_clients(url: str, videos: list[Path], clients: int, requests: int) -> tuple[dict, dict]:
    """(requests/s and latency percentiles, the reward of each video) under ``clients`` threads."""
    barrier = threading.Barrier(clients + 1)
    latencies: list[float] = []
    rewards: dict[str, dict] = {}
    lock = threading.Lock()

    def client_loop(i: int) -> None:
        with Client(url, timeout=600, retries=0) as client:
            video = videos[i % len(videos)]
            client.score(["a red ball"], videos=[video])  # warm-up, untimed
            barrier.wait()
            for _ in range(requests):
                start = time.perf_counter()
                (score,) = client.score(["a red ball"], videos=[video])
                with lock:
                    latencies.append(time.perf_counter() - start)
                    rewards[video.name] = score["raw"]

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    result = {"requests_per_s": len(latencies) / wall, "wall_s": wall}
    result.update({name: cuts[p - 1] for name, p in PERCENTILES.items()})
    return result, rewards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=8, help="timed requests per client")
    parser.add_argument("--max_batch", type=int, default=16)
    parser.add_argument("--max_wait_ms", type=float, default=10.0)
    args = parser.parse_args()
    bench = tiny_bench(args.clients // 2 or 1)
    checkpoint = bench.work / "checkpoint"
    bench.model.save_pretrained(checkpoint)
    bench.processor.save_pretrained(checkpoint)
    videos = sorted((bench.work / "data" / "videos").glob("*.mp4"))
    ways = {
        "batched": ["--max_batch", str(args.max_batch), "--max_wait_ms", str(args.max_wait_ms)],
        "batch 1": ["--max_batch", "1", "--max_wait_ms", "0"],
    }
    results, rewards = {}, {}
    logs = Path(tempfile.mkdtemp(prefix="vlmrm-serve-bench-"))
    for name, options in ways.items():
        server = ServerProcess.start(
            checkpoint, logs / f"{name}.log", "--device", "cpu", *options, env={"PYTHONPATH": str(REPO)}
        )
        try:
            results[name], rewards[name] = run_clients(server.url, videos, args.clients, args.requests)
            results[name]["batches"] = Client(server.url).health()["batches"]
        finally:
            server.stop()
    for video, raw in rewards["batched"].items():
        other = rewards["batch 1"][video]
        assert all(abs(raw[d] - other[d]) <= REWARD_TOLERANCE for d in raw), (video, raw, other)

    print(
        f"{args.clients} clients x {args.requests} requests of 1 video ({BENCH_FRAMES} frames, 56x56); "
        f"{machine()}"
    )
    for name, row in results.items():
        print(
            f"{name:>8}: {row['requests_per_s']:.1f} requests/s, p50 {row['p50'] * 1000:.0f} ms, "
            f"p95 {row['p95'] * 1000:.0f} ms, {row['batches']} batches (warm-up included)"
        )
    batched, single = results["batched"], results["batch 1"]
    print(
        f"ratio batched / batch 1: throughput {batched['requests_per_s'] / single['requests_per_s']:.2f}x, "
        f"p50 latency {single['p50'] / batched['p50']:.2f}x lower, p95 {single['p95'] / batched['p95']:.2f}x lower"
    )
    print(json.dumps({"benchmark": "serve_throughput", **vars(args), "results": results}))


if __name__ == "__main__":
    main()
