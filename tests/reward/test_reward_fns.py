"""Reward functions for RL trainers: weights, normalisations, both signatures, any scorer."""

import numpy as np
import pytest
import torch

from vlmrm.reward.inference import RewardScorer
from vlmrm.reward.reward_fns import combine_rewards, generation_reward_fn, trl_reward_fn

SCORES = [
    {"raw": {"VQ": 1.0, "TA": 4.0}, "normalized": {"VQ": 0.5, "TA": -1.0}, "Overall": -0.5},
    {"raw": {"VQ": 3.0, "TA": 4.0}, "normalized": {"VQ": 1.5, "TA": -1.0}, "Overall": 0.5},
]


@pytest.mark.parametrize(
    "weights, normalization, expected",
    [
        (None, "auto", [-0.5, 0.5]),  # = Overall
        ({"VQ": 2.0}, "raw", [2.0, 6.0]),
        ({"VQ": 1.0, "TA": 0.5}, "stored", [0.0, 1.0]),
        (None, "batch", [-1.0, 1.0]),  # VQ z-scores -1, 1; TA constant -> 0
    ],
)
def test_combine_by_hand(weights, normalization, expected):
    rewards, values = combine_rewards(SCORES, weights, normalization)
    assert rewards.tolist() == pytest.approx(expected)
    assert set(values) == {"VQ", "TA"}


def test_combine_rejects_what_it_cannot_do():
    with pytest.raises(ValueError, match="unknown dimensions \\['MQ'\\]"):
        combine_rewards(SCORES, {"MQ": 1.0})
    without_stats = [{**s, "normalized": None} for s in SCORES]
    with pytest.raises(ValueError, match="no training statistics"):
        combine_rewards(without_stats, normalization="stored")
    assert combine_rewards(without_stats)[0].tolist() == [5.0, 7.0]  # auto falls back to raw
    with pytest.raises(ValueError, match="choose one of auto, stored, raw, batch"):
        combine_rewards(SCORES, normalization="minmax")


class RecordingScorer:
    """Any object with RewardScorer.score's signature works (e.g. a reward-server client)."""

    def __init__(self):
        self.calls = []

    def score(self, prompts, videos=None, images=None, responses=None, fps=None):
        self.calls.append({"prompts": prompts, "videos": videos, "images": images, "fps": fps})
        return [
            {"raw": {"VQ": float(i), "TA": 1.0}, "normalized": None, "Overall": i + 1.0}
            for i in range(len(prompts))
        ]


def test_adapters_call_any_scorer():
    scorer = RecordingScorer()
    videos = torch.zeros(2, 4, 3, 8, 8)
    rewards, info = generation_reward_fn(scorer, weights={"VQ": 2.0}, fps=8.0)(
        videos, ["a", "b"], [{}, {"fps": 4}]
    )
    assert rewards.tolist() == [0.0, 2.0] and info["dimensions"]["VQ"].tolist() == [0.0, 1.0]
    assert scorer.calls[-1]["fps"] == [8.0, 4] and scorer.calls[-1]["videos"] is videos
    generation_reward_fn(scorer)(["a.png", "b.png"], ["a", "b"], None)
    assert scorer.calls[-1]["images"] == ["a.png", "b.png"]
    generation_reward_fn(scorer)(["a.mp4"], ["a"], [{"fps": 30}])
    assert scorer.calls[-1]["fps"] == [None]  # files carry their own rate
    fn = trl_reward_fn(scorer, normalization="raw", name="vlmrm_sum")
    assert fn(["p", "p"], ["x", [{"role": "assistant", "content": "y"}]], video=["a.mp4", "b.mp4"]) == [
        1.0,
        2.0,
    ]
    assert scorer.calls[-1]["prompts"] == ["x", "y"] and fn.__name__ == "vlmrm_sum"
    with pytest.raises(KeyError, match="'video' or 'image' column"):
        fn(["p"], ["x"], caption=["c"])


def test_generation_reward_fn_on_the_tiny_scorer(reward_checkpoint):
    scorer = RewardScorer.from_pretrained(reward_checkpoint, device="cpu")
    videos = torch.rand(2, 8, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    reward_fn = generation_reward_fn(scorer, weights={"VQ": 1.0, "TA": 0.5}, normalization="raw", fps=8.0)
    rewards, info = reward_fn(videos, ["red", "blue"], [{}, {}])
    raw = scorer.raw_rewards(["red", "blue"], videos=videos, fps=8.0)
    dims = scorer.spec.eval_dim
    np.testing.assert_allclose(rewards, raw[:, dims.index("VQ")] + 0.5 * raw[:, dims.index("TA")], rtol=1e-6)
    assert len(info["scores"]) == 2
    images = (torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    image_rewards, _ = generation_reward_fn(scorer)(images, ["red", "blue"], None)
    assert image_rewards.shape == (2,) and np.isfinite(image_rewards).all()
