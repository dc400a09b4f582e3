"""A final model is reused only when its weight bytes and scoring spec equal a scored checkpoint's."""

import shutil

import numpy as np

from vlmrm.modeling.reward_model import RewardSpec
from vlmrm.reward.eval_passes import PairScores, ScoredCheckpoints


def checkpoint(folder, data: bytes):
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(data)
    return folder


def test_identical_weights_and_spec_are_found_and_anything_else_is_not(tmp_path):
    spec = RewardSpec(eval_dim=["VQ"], output_dim=1, sampling={"num_frames": 8})
    scores = PairScores(np.zeros((1, 2, 1)), None)
    scored = ScoredCheckpoints()
    step4 = checkpoint(tmp_path / "checkpoint-4", b"weights-1")
    scored.add(step4, spec, "data", scores)
    final = tmp_path / "final"
    shutil.copytree(step4, final)
    normalised = RewardSpec(**{**vars(spec), "normalization": {"VQ": {"mean": 0.0, "std": 1.0}}})
    assert scored.find(final, normalised).checkpoint == step4  # set after training: same rewards
    other_sampling = RewardSpec(**{**vars(spec), "sampling": {"num_frames": 4}})
    assert scored.find(final, other_sampling) is None
    same_size = checkpoint(tmp_path / "other", b"weights-2")
    assert scored.find(same_size, spec) is None
    assert scored.find(checkpoint(tmp_path / "empty", b""), spec) is None
