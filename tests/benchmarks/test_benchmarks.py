"""Every CPU benchmark runs end to end at its smallest size and prints its ratio (no timing asserted:
the numbers live in benchmarks/README.md; this keeps the scripts from rotting)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "script, args, ratio",
    [
        ("merged_pair_forward.py", ["--pairs", "2", "--repeats", "1"], r"ratio separate / merged: [\d.]+x"),
        ("frame_cache.py", ["--videos", "4", "--repeats", "1"], r"ratio cold / hit: [\d.]+x"),
        (
            "decoders.py",
            ["--videos", "4", "--repeats", "1", "--rss_decodes", "4"],
            r"pyav +[\d.]+ ms / video",
        ),
        (
            "loader_throughput.py",
            ["--pairs", "8", "--batch", "4", "--passes", "1", "--repeats", "1"],
            r"ratio loader \(2 workers, cached\) / train step: [\d.]+x",
        ),
        (
            "serve_throughput.py",
            ["--clients", "2", "--requests", "1"],
            r"ratio batched / batch 1: throughput [\d.]+x",
        ),
    ],
)
def test_benchmark_runs_and_prints_its_ratio(script, args, ratio):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(ratio, result.stdout), result.stdout
