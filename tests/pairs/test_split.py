"""The seeded held-out split of eval_split_ratio: VideoAlign's count, the same pairs for a seed."""

import pytest

from vlmrm.pairs.split import held_out_count, split_held_out


@pytest.mark.parametrize(
    ("n", "ratio", "count"), [(16, 0.02, 1), (100, 0.02, 2), (101, 0.02, 3), (8, 0.25, 2), (2, 0.9, 1)]
)
def test_held_out_count_is_ceil_like_train_test_split(n, ratio, count):
    assert held_out_count(n, ratio) == count


def test_split_is_seeded_disjoint_and_in_file_order():
    pairs = list(range(50))
    train, held = split_held_out(pairs, 0.1, seed=3)
    assert sorted(train + held) == pairs and len(held) == 5
    assert train == sorted(train) and held == sorted(held)
    assert split_held_out(pairs, 0.1, seed=3) == (train, held)
    assert split_held_out(pairs, 0.1, seed=4)[1] != held


def test_one_pair_cannot_be_split():
    with pytest.raises(ValueError, match="cannot be split"):
        held_out_count(1, 0.5)
