"""The README's main command, end to end in a temporary root (fresh build, then reuse)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quickstart_builds_validates_and_reuses(tmp_path):
    root = tmp_path / "qs"
    command = [sys.executable, "-m", "vlmrm.quickstart", "--root", str(root)]
    first = subprocess.run(command, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert "building tiny qwen2_vl checkpoint" in first.stdout
    assert "generating synthetic video pairs" in first.stdout
    summaries = [json.loads(line) for line in first.stdout.splitlines() if line.startswith("{")]
    assert [s["pairs"] for s in summaries] == [300, 100]
    assert all(s["readable_videos"] == 2 * s["pairs"] for s in summaries)
    assert (root / "tiny-qwen2_vl" / "config.json").is_file()

    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    assert "building" not in again.stdout and "generating" not in again.stdout
    assert "[quickstart] data OK" in again.stdout
