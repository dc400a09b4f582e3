"""A seeded held-out split of one pair file, for runs without a test file (``eval_split_ratio``).

VideoAlign evaluates on ``train_test_split(test_size=0.02)`` of its training CSV when no test CSV is
given; vlmrm holds out the same count, ceil(ratio x N), drawn with ``numpy.random.default_rng(seed)``
so every rank and every rerun with the seed holds out the same pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

PairT = TypeVar("PairT")


def held_out_count(num_pairs: int, ratio: float) -> int:
    """ceil(ratio x N) as ``datasets.train_test_split`` counts a float test size, at least 1 and
    leaving at least 1 pair to train on."""
    if num_pairs < 2:
        raise ValueError(f"eval_split_ratio: {num_pairs} pair(s) cannot be split into training and held-out")
    return min(max(1, math.ceil(ratio * num_pairs)), num_pairs - 1)


def split_held_out(pairs: Sequence[PairT], ratio: float, seed: int) -> tuple[list[PairT], list[PairT]]:
    """(training pairs, held-out pairs), each in file order."""
    count = held_out_count(len(pairs), ratio)
    held = set(np.random.default_rng(seed).permutation(len(pairs))[:count].tolist())
    return (
        [p for i, p in enumerate(pairs) if i not in held],
        [p for i, p in enumerate(pairs) if i in held],
    )
