"""The pair forward shared by the trainer and the GPU benchmark: row groups and their patches."""

from types import SimpleNamespace

import pytest
import torch

from vlmrm.reward.pair_forward import pair_rewards, split_rows

PAIRS, IRRELEVANT = 2, 1
PATCH_DIM = 3


def pair_batch(irrelevant: int = IRRELEVANT) -> dict:
    """Rows A, A, B, B (then matched and unrelated); row r's tokens are r, its video has r + 1
    patches, each filled with r."""
    rows = 2 * PAIRS + 2 * irrelevant
    grid = torch.tensor([[1, 1, r + 1] for r in range(rows)])
    return {
        "input_ids": torch.arange(rows).unsqueeze(1).repeat(1, 4),
        "attention_mask": torch.ones(rows, 4, dtype=torch.long),
        "video_grid_thw": grid,
        "pixel_values_videos": torch.cat([torch.full((r + 1, PATCH_DIM), float(r)) for r in range(rows)]),
        "labels": torch.ones(PAIRS, 1),
        "pair_ids": torch.arange(PAIRS),
        **({"num_irrelevant": torch.tensor(irrelevant)} if irrelevant else {}),
    }


class RowProbe(torch.nn.Module):
    """Rewards (N, 2): the row's token and the mean of the patches it was given (equal when the
    patches reached their row)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, input_ids, attention_mask, video_grid_thw, pixel_values_videos, **unused):
        assert not unused, f"non-model keys reached the model: {sorted(unused)}"
        self.calls += 1
        per_video = pixel_values_videos.split(video_grid_thw.prod(dim=1).tolist())
        means = torch.stack([patches.mean() for patches in per_video])
        return SimpleNamespace(rewards=torch.stack([input_ids[:, 0].float(), means], dim=1), tie_k=None)


@pytest.mark.parametrize("merged", [True, False])
def test_row_groups_and_their_patches(merged):
    model = RowProbe()
    rewards = pair_rewards(model, pair_batch(), merged=merged)
    assert model.calls == (1 if merged else 4)
    for got, rows in (
        (rewards.rewards_a, [0, 1]),
        (rewards.rewards_b, [2, 3]),
        (rewards.irrelevant[0], [4]),
        (rewards.irrelevant[1], [5]),
    ):
        expected = torch.tensor(rows, dtype=torch.float32)
        torch.testing.assert_close(got, torch.stack([expected, expected], dim=1))
    assert rewards.tie_k is None


def test_split_rows_cuts_the_patches_after_each_groups_videos():
    batch = pair_batch()
    parts = split_rows({k: v for k, v in batch.items() if k != "labels"}, [2, 4])
    assert [len(part["input_ids"]) for part in parts] == [2, 4]
    assert [len(part["pixel_values_videos"]) for part in parts] == [1 + 2, 3 + 4 + 5 + 6]


@pytest.mark.parametrize("merged", [True, False])
def test_without_irrelevant_rows_there_are_two_groups(merged):
    model = RowProbe()
    rewards = pair_rewards(model, pair_batch(irrelevant=0), merged=merged)
    assert model.calls == (1 if merged else 2)
    assert rewards.irrelevant is None
    torch.testing.assert_close(rewards.rewards_b[:, 0], torch.tensor([2.0, 3.0]))
