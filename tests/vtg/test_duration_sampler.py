"""Duration-based batch sampler: packing limits, exactly-once coverage, equal and disjoint ranks for world
sizes 1-4, (seed, epoch) determinism, the sampler's start-up log lines, and batch-size logging in a real HF
Trainer run."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset
from transformers import Trainer, TrainingArguments

from vlmrm.vtg.duration_sampler import BatchSizeLogCallback, DurationBasedBatchSampler, pack_by_duration

SLACK = 1e-9  # float summation order differs between the packer and the test


@st.composite
def sampler_setups(draw):
    durations = draw(st.lists(st.floats(0.1, 60.0), min_size=1, max_size=40))
    target = draw(st.floats(1.0, 150.0))
    min_size = draw(st.integers(1, 4))
    max_size = draw(st.one_of(st.none(), st.integers(min_size, 8)))
    return durations, target, min_size, max_size


def rank_batches(durations, world, epoch=0, **kwargs) -> list[list[list[int]]]:
    """Batches of every rank for one epoch."""
    out = []
    for rank in range(world):
        sampler = DurationBasedBatchSampler(durations, num_replicas=world, rank=rank, **kwargs)
        sampler.set_epoch(epoch)
        out.append(list(sampler))
        assert len(out[-1]) == len(sampler)
    return out


def test_packing_hand_case():
    durations = [5, 1, 3, 8, 2, 20]
    order = [1, 4, 2, 0, 3, 5]  # by duration: 1, 2, 3, 5, 8, 20
    # 1 + 2 + 3 = 6, + 5 = 11 > 10: close; 5 + 8 = 13: close; 8 + 20: close; 20 > 10 alone
    assert pack_by_duration(durations, order, 10) == [[1, 4, 2], [0], [3], [5]]
    # max 2: [1, 2], then 3 + 5 = 8 <= 10 but the batch is full at 2; 8; 20
    assert pack_by_duration(durations, order, 10, max_batch_size=2) == [[1, 4], [2, 0], [3], [5]]
    # five 1 s clips, target 4: greedy gives [4 clips], [1 clip]; min 2 moves one clip to the last batch
    assert pack_by_duration([1] * 5, range(5), 4) == [[0, 1, 2, 3], [4]]
    assert pack_by_duration([1] * 5, range(5), 4, min_batch_size=2) == [[1, 2, 3], [0, 4]]


@settings(max_examples=300, deadline=None)
@given(setup=sampler_setups())
def test_packing_limits(setup):
    durations, target, min_size, max_size = setup
    order = sorted(range(len(durations)), key=durations.__getitem__)
    batches = pack_by_duration(durations, order, target, max_size, min_size)
    assert sorted(i for b in batches for i in b) == list(range(len(durations)))
    for k, batch in enumerate(batches):
        total = sum(durations[i] for i in batch)
        assert len(batch) == 1 or total <= target + SLACK  # only a lone sample may exceed the target
        assert max_size is None or len(batch) <= max_size
        if len(batch) < min_size and k + 1 < len(
            batches
        ):  # closed early only because the next one overflowed
            assert total + min(durations[i] for i in batches[k + 1]) > target - SLACK
    # where min is satisfiable for any min consecutive samples, only the last batch may fall short
    if max(durations) <= target / min_size:
        assert sum(len(b) < min_size for b in batches[:-1]) == 0


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@settings(max_examples=120, deadline=None)
@given(setup=sampler_setups(), seed=st.integers(0, 2**16), epoch=st.integers(0, 5))
def test_ranks_equal_disjoint_and_cover_every_sample_once(world, setup, seed, epoch):
    durations, target, min_size, max_size = setup
    kwargs = {
        "target_batch_duration": target,
        "max_batch_size": max_size,
        "min_batch_size": min_size,
        "seed": seed,
    }
    ranks = rank_batches(durations, world, epoch, **kwargs)
    steps = len(ranks[0])
    assert all(len(r) == steps for r in ranks)  # every rank runs the same number of steps
    assert steps >= 1
    counts = Counter(i for r in ranks for b in r for i in b)
    assert set(counts) == set(range(len(durations)))  # nothing lost without drop_last
    if world * steps <= len(durations):  # enough samples for disjoint non-empty batches
        assert all(c == 1 for c in counts.values())  # exactly once, so ranks are disjoint
    else:  # too few samples: only then one-sample batches repeat
        assert all(len(b) == 1 for r in ranks for b in r)
        assert sum(counts.values()) == world * steps
    for batch in (b for r in ranks for b in r):
        assert len(batch) == 1 or sum(durations[i] for i in batch) <= target + SLACK
        assert max_size is None or len(batch) <= max_size


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@settings(max_examples=120, deadline=None)
@given(setup=sampler_setups(), seed=st.integers(0, 2**16))
def test_drop_last_keeps_ranks_disjoint_and_batches_at_least_min(world, setup, seed):
    durations, target, min_size, max_size = setup
    kwargs = {
        "target_batch_duration": target,
        "max_batch_size": max_size,
        "min_batch_size": min_size,
        "seed": seed,
    }
    ranks = rank_batches(durations, world, drop_last=True, **kwargs)
    assert len({len(r) for r in ranks}) == 1
    counts = Counter(i for r in ranks for b in r for i in b)
    assert all(c == 1 for c in counts.values())  # at most once, never on two ranks
    assert all(len(b) >= min_size for r in ranks for b in r)
    full = rank_batches(
        durations, 1, target_batch_duration=target, max_batch_size=max_size, min_batch_size=min_size
    )
    kept = [b for b in full[0] if len(b) >= min_size]
    assert len(ranks[0]) == len(kept) // world  # only the remainder (count mod world) is dropped


def test_deterministic_per_seed_and_epoch_and_different_across_epochs():
    durations = [1.0 + (i * 7919 % 97) / 10 for i in range(200)]  # 1.0 .. 10.6 s, many ties
    kwargs = {"target_batch_duration": 30.0, "seed": 3, "num_replicas": 2, "rank": 1}
    first, second = (
        DurationBasedBatchSampler(durations, **kwargs),
        DurationBasedBatchSampler(durations, **kwargs),
    )
    epochs = []
    for epoch in range(3):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        epochs.append(list(first))
        assert epochs[-1] == list(second)
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    assert len({len(e) for e in epochs}) == 1  # same batch count every epoch
    other_seed = DurationBasedBatchSampler(durations, **{**kwargs, "seed": 4})
    assert list(other_seed) != epochs[0]


def test_no_shuffle_is_ascending_duration_and_epoch_independent():
    durations = [3.0, 1.0, 2.0, 5.0, 4.0]
    sampler = DurationBasedBatchSampler(durations, target_batch_duration=3.0, shuffle=False)
    assert list(sampler) == [[1, 2], [0], [4], [3]]  # 1 + 2 = 3 <= 3; 3; 4 and 5 overflow alone
    sampler.set_epoch(7)
    assert list(sampler) == [[1, 2], [0], [4], [3]]


def test_over_long_samples_on_more_ranks_than_samples_repeat():
    # 3 samples each over the target: 3 one-sample batches; 4 ranks need 4, so one batch repeats
    ranks = rank_batches([50.0, 60.0, 70.0], 4, target_batch_duration=10.0, seed=0)
    assert [len(r) for r in ranks] == [1, 1, 1, 1]
    assert Counter(i for r in ranks for b in r for i in b).total() == 4


def test_splitting_instead_of_padding():
    # 4 clips of 1 s, target 10: one batch of 4; on 2 ranks it is split into two batches of 2
    ranks = rank_batches([1.0] * 4, 2, target_batch_duration=10.0, seed=0)
    assert sorted(len(r[0]) for r in ranks) == [2, 2]
    assert sorted(i for r in ranks for i in r[0]) == [0, 1, 2, 3]


def test_init_log_lines_give_the_expected_batch_size(caplog):
    with caplog.at_level(logging.INFO, logger="vlmrm.vtg.duration_sampler"):
        DurationBasedBatchSampler([10.0, 20.0, 30.0], target_batch_duration=60.0, num_replicas=4, rank=1)
    assert caplog.messages == [
        # avg = 60 / 3 = 20; expected batch size = 60 / 20 = 3
        (
            "DurationBasedBatchSampler initialized: samples=3, target_duration=60.0s, "
            "avg_sample_duration=20.0s, expected_batch_size=3.0"
        ),
        "Duration range: min=10.0s, max=30.0s",
        "Distributed training: 4 GPUs, rank 1",
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"durations": [], "target_batch_duration": 1.0},
        {"durations": [1.0, float("nan")], "target_batch_duration": 1.0},
        {"durations": [1.0], "target_batch_duration": 0.0},
        {"durations": [1.0], "target_batch_duration": 1.0, "min_batch_size": 3, "max_batch_size": 2},
        {"durations": [1.0], "target_batch_duration": 1.0, "num_replicas": 2, "rank": 2},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        DurationBasedBatchSampler(**kwargs)


class ToyData(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return {"x": torch.full((2,), float(index)), "labels": torch.tensor(float(index))}


class ToyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, x, labels):
        return {"loss": torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), labels)}


def test_batch_size_log_callback_in_a_trainer_run(tmp_path, caplog):
    # durations sorted: four 1.0 (sum 4 <= 4), three 1.3 (3.9), two 2.0 (4), one 4.0 -> sizes 4, 3, 2, 1
    durations = [4.0, 1.3, 1.0, 2.0, 1.0, 1.3, 1.0, 2.0, 1.3, 1.0]
    sampler = DurationBasedBatchSampler(durations, target_batch_duration=4.0, shuffle=False)
    callback = BatchSizeLogCallback()

    class SizeRecordingTrainer(Trainer):
        def get_train_dataloader(self):
            return self.accelerator.prepare(DataLoader(self.train_dataset, batch_sampler=sampler))

        def training_step(self, model, inputs, num_items_in_batch=None):
            callback.record(len(inputs["x"]))
            return super().training_step(model, inputs, num_items_in_batch)

    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        max_steps=4,
        logging_steps=2,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = SizeRecordingTrainer(
        model=ToyModel(), args=args, train_dataset=ToyData(10), callbacks=[callback]
    )
    with caplog.at_level(logging.INFO, logger="vlmrm.vtg.duration_sampler"):
        trainer.train()
    assert callback.history == [(2, 3.5, 3, 4), (4, 1.5, 1, 2)]  # steps 1-2: sizes 4, 3; steps 3-4: 2, 1
    assert "Step 2: batch_size avg=3.5, min=3, max=4" in caplog.messages
    assert "Step 4: batch_size avg=1.5, min=1, max=2" in caplog.messages
