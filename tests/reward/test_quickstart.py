"""The README's main command: prepare (build + validate, then reuse) and the accuracy report."""

import json
import re
import subprocess
import sys
import time

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


def test_report_ends_with_what_was_made_and_the_next_commands(tmp_path, capsys):
    out, root = tmp_path / "out", tmp_path / "qs"
    (out / "checkpoint-10").mkdir(parents=True)
    (out / "checkpoint-5").mkdir()
    metrics = {f"eval_accuracy_{d}": 1.0 for d in ("VQ", "MQ", "TA")}
    metrics.update({f"eval_accuracy_with_ties_{d}": 0.9 for d in ("VQ", "MQ", "TA")})
    (out / "eval_results.json").write_text(json.dumps(metrics))
    (root / "synthetic").mkdir(parents=True)
    (root / "synthetic" / "test.csv").write_text(
        "path_A,path_B,prompt,VQ,MQ,TA\nvideos/t_A.mp4,videos/t_B.mp4,the red square,A,B,same\n"
    )
    started = time.time() - 125
    assert main(["report", str(out), "--root", str(root), "--started", str(started)]) == 0
    text = capsys.readouterr().out
    made, after = text.split("[quickstart] made:")[1].split("[quickstart] next:")
    assert f"{out}/ (final) + checkpoint-5, checkpoint-10" in made
    assert f".venv/bin/tensorboard --logdir {out / 'runs'}" in made
    assert re.search(r"elapsed +2 min [56] s", made)
    assert "./run_eval.sh" in after
    assert (
        f".venv/bin/python -m vlmrm.score --checkpoint {out} --video {root}/synthetic/videos/t_A.mp4 "
        f'--video {root}/synthetic/videos/t_B.mp4 --prompt "the red square" --compare'
    ) in after
