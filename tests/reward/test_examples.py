"""The README's "Use a trained reward model" examples run on a tiny reward checkpoint."""

import runpy
from pathlib import Path

import pytest

from vlmrm.testing.synthetic import write_mp4

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # score_differentiable imports score_in_process's clip
    return lambda name: runpy.run_path(str(EXAMPLES / name), run_name=name)["main"]


def test_in_process_example_scores_clips_and_files(example, reward_checkpoint, tmp_path, capsys):
    from score_in_process import clip

    video = tmp_path / "clip.mp4"
    write_mp4(video, clip("red", 3), 8, "mpeg4")
    results = example("score_in_process.py")(
        ["--checkpoint", str(reward_checkpoint), "--video", str(video), "--device", "cpu"]
    )
    assert [r["item"] for r in results] == ["red square, moving", "blue square, still", str(video)]
    assert "reward_fn rewards:" in capsys.readouterr().out


def test_differentiable_example_raises_the_reward(example, reward_checkpoint):
    history = example("score_differentiable.py")(
        ["--checkpoint", str(reward_checkpoint), "--steps", "2", "--lr", "0.1", "--device", "cpu"]
    )
    assert len(history) == 3 and history[-1] > history[0]
