"""The README's main command: prepare (build + validate, then reuse) and the accuracy report."""

import json
import subprocess
import sys

import pytest

from vlmrm.reward.quickstart import main


@pytest.mark.slow
def test_prepare_builds_validates_and_reuses(tmp_path):
    root = tmp_path / "qs"
    command = [
        sys.executable,
        "-m",
        "vlmrm.reward.quickstart",
        "prepare",
        "--root",
        str(root),
        "--num_train",
        "12",
        "--num_test",
        "6",
    ]
    first = subprocess.run(command, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert "building tiny qwen2_vl checkpoint" in first.stdout
    assert "generating synthetic video pairs" in first.stdout
    summaries = [json.loads(line) for line in first.stdout.splitlines() if line.startswith("{")]
    assert [s["pairs"] for s in summaries] == [12, 6]
    assert all(s["readable_videos"] == 2 * s["pairs"] for s in summaries)
    assert (root / "tiny-qwen2_vl" / "config.json").is_file()

    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    assert "building" not in again.stdout and "generating" not in again.stdout
    assert "[quickstart] data OK" in again.stdout


def test_report_compares_each_dimension_with_the_bar(tmp_path, capsys):
    metrics = {f"eval_accuracy_{d}": a for d, a in (("VQ", 1.0), ("MQ", 0.95), ("TA", 0.85))}
    metrics.update({f"eval_accuracy_with_ties_{d}": 0.8 for d in ("VQ", "MQ", "TA")})
    (tmp_path / "eval_results.json").write_text(json.dumps(metrics))
    assert main(["report", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "VQ: 1.000 (ok)" in out and "TA: 0.850 (below 0.9)" in out
    metrics["eval_accuracy_TA"] = 0.9
    (tmp_path / "eval_results.json").write_text(json.dumps(metrics))
    assert main(["report", str(tmp_path)]) == 0
    assert main(["report", str(tmp_path / "missing")]) == 1
