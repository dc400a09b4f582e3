"""The loss of an optimizer step does not depend on how its batch is split (issue 15, item 5).

One process with batch B, one process with B / k and k accumulation steps, and N processes with
B / N each must give the same loss, gradient and logged per-dimension values: every loss is
divided by the valid entries of the whole step (docs/reward_math.md, "Averaging over valid
entries"). Fast tests drive ``RewardTrainer.compute_loss`` on fixed rewards (no model forward);
the slow one trains the tiny model one step under all three splits.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from tests.conftest import tiny_run_values
from vlmrm.reward.config import parse_config
from vlmrm.reward.losses import bt_loss, pair_loss, valid_entries
from vlmrm.reward.trainer import RewardTrainer, StepItems

NAN = float("nan")
EVAL_DIM = ["VQ", "MQ", "TA"]
LABELS = torch.tensor(
    [
        [1.0, -1.0, 1.0],
        [0.0, 1.0, -1.0],
        [0.0, -1.0, NAN],
        [-1.0, 1.0, 1.0],
        [1.0, NAN, -1.0],
        [0.0, 1.0, 1.0],
        [-1.0, -1.0, 0.0],
        [1.0, 1.0, -1.0],
    ]
)
"""8 pairs x 3 dimensions: ties in every dimension (three in VQ), missing labels in two; the ties and
gaps fall unevenly on the two halves, so a per-process mean differs from the global one."""
NUM_IRRELEVANT = 4
IRRELEVANT_WEIGHT = 0.5
MICRO_BATCHES = 4
PROCESSES = 2
REL = 1e-6


def fixed_rewards(seed: int = 0) -> dict[str, torch.Tensor]:
    """Leaf reward tensors (float64) standing in for the model's outputs, gradients kept."""
    generator = torch.Generator().manual_seed(seed)
    pairs, dims = LABELS.shape

    def leaf(rows: int) -> torch.Tensor:
        return torch.randn(rows, dims, generator=generator, dtype=torch.float64).requires_grad_()

    return {"ra": leaf(pairs), "rb": leaf(pairs), "im": leaf(NUM_IRRELEVANT), "iu": leaf(NUM_IRRELEVANT)}


def batch(rewards: dict, pairs: slice, irrelevant: slice) -> dict:
    """A collated-batch stand-in: its labels and ``num_irrelevant``, and the rewards its forward gives."""
    return {
        "labels": LABELS[pairs],
        "num_irrelevant": irrelevant.stop - irrelevant.start,
        "ra": rewards["ra"][pairs],
        "rb": rewards["rb"][pairs],
        "im": rewards["im"][irrelevant],
        "iu": rewards["iu"][irrelevant],
    }


def splits(rewards: dict, parts: int) -> list[dict]:
    """``parts`` consecutive micro-batches of the 8 pairs and the irrelevant rows."""
    pair_step, irrelevant_step = len(LABELS) // parts, NUM_IRRELEVANT // parts
    return [
        batch(
            rewards,
            slice(i * pair_step, (i + 1) * pair_step),
            slice(i * irrelevant_step, (i + 1) * irrelevant_step),
        )
        for i in range(parts)
    ]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """A RewardTrainer whose forward returns the batch's fixed rewards (no backbone needed)."""
    out = tmp_path_factory.mktemp("exact")
    values = tiny_run_values(out / "no-model", out, out / "run", irrelevant_loss_weight=IRRELEVANT_WEIGHT)
    cfg = parse_config(values=values)
    trainer = RewardTrainer(
        model=torch.nn.Linear(1, 1), args=cfg.training, eval_dim=EVAL_DIM, family=None, frozen_llm=False
    )
    trainer.pair_rewards = lambda model, inputs: (
        inputs["ra"],
        inputs["rb"],
        trainer.args.tie_k,
        (inputs["im"], inputs["iu"]),
    )
    trainer.model.train()
    return trainer


def reference(loss_type: str, rewards: dict, tie_k: float) -> torch.Tensor:
    """The documented loss of the whole batch: the pair loss's mean over its valid entries plus the
    weighted mean irrelevant-query loss."""
    pair = pair_loss(loss_type, rewards["ra"], rewards["rb"], LABELS, tie_k=tie_k)
    irrelevant = bt_loss(rewards["im"], rewards["iu"], torch.ones_like(rewards["im"]))
    return pair.loss + IRRELEVANT_WEIGHT * irrelevant.loss


def gradients(rewards: dict) -> list[torch.Tensor]:
    grads = [rewards[k].grad.clone() for k in ("ra", "rb", "im", "iu")]
    for value in rewards.values():
        value.grad = None
    return grads


def logged(trainer) -> dict[str, float]:
    """What ``log`` writes for the recorded micro-batches (the per-dimension values)."""
    trainer.log({"loss": 0.0})
    return trainer.state.log_history[-1]


LOGGED_KEYS = [f"{kind}_{dim}" for kind in ("loss", "accuracy") for dim in EVAL_DIM] + [
    "loss_irrelevant",
    "accuracy_irrelevant",
]


@pytest.mark.parametrize("loss_type", ["bt", "btt", "margin"])
def test_valid_entries_are_the_entries_each_loss_averages_over(loss_type):
    rewards = fixed_rewards()
    result = pair_loss(loss_type, rewards["ra"], rewards["rb"], LABELS)
    mask = valid_entries(loss_type, LABELS)
    assert mask.sum(dim=0).tolist() == result.num_valid.tolist()
    expected_valid = (~LABELS.isnan()).sum() - (0 if loss_type == "btt" else (LABELS == 0).sum())
    assert mask.sum() == expected_valid
    assert result.loss_sum.item() == pytest.approx(result.loss.item() * mask.sum().item(), rel=REL)
    assert result.per_dim_sum.sum().item() == pytest.approx(result.loss_sum.item(), rel=REL)


def test_reg_is_no_pair_loss_to_count():
    with pytest.raises(ValueError, match="regression_loss"):
        valid_entries("reg", LABELS)


def test_step_items_count_valid_entries_over_micro_batches(trainer):
    trainer.args.loss_type = "bt"
    items = trainer._get_num_items_in_batch(splits(fixed_rewards(), MICRO_BATCHES), torch.device("cpu"))
    assert isinstance(items, StepItems)
    labelled = int((~LABELS.isnan()).sum())
    assert int(items.pairs) == labelled - int((LABELS == 0).sum())  # ties and gaps count nowhere
    assert int(items.irrelevant) == NUM_IRRELEVANT * len(EVAL_DIM)
    trainer.args.loss_type = "btt"
    items = trainer._get_num_items_in_batch(splits(fixed_rewards(), MICRO_BATCHES), torch.device("cpu"))
    assert int(items.pairs) == labelled  # a tie is an outcome under btt, a gap still is not


@pytest.mark.parametrize("loss_type", ["bt", "btt"])
def test_one_step_is_the_same_under_every_split(trainer, loss_type, monkeypatch):
    """Loss (Trainer's logged value), gradient and per-dimension logs of 1 x 8, 1 x 2 with 4
    accumulation steps, and 2 simulated processes x 4 all equal the documented whole-batch mean."""
    trainer.args.loss_type = loss_type
    cpu = torch.device("cpu")
    trainer._sums["train"].clear()
    rewards = fixed_rewards()
    expected = reference(loss_type, rewards, trainer.args.tie_k)
    expected.backward()
    expected_grads = gradients(rewards)

    # one process, one micro-batch of 8
    whole = splits(rewards, 1)
    single = trainer.compute_loss(
        trainer.model, whole[0], num_items_in_batch=trainer._get_num_items_in_batch(whole, cpu)
    )
    single.backward()
    single_logs = logged(trainer)
    assert single.item() == pytest.approx(expected.item(), rel=REL)
    for got, want in zip(gradients(rewards), expected_grads):
        torch.testing.assert_close(got, want)

    # one process, 4 micro-batches of 2: Trainer sums the micro-batch losses (loss_is_scaled_for_ga)
    assert trainer.loss_is_scaled_for_ga is True
    micro = splits(rewards, MICRO_BATCHES)
    items = trainer._get_num_items_in_batch(micro, cpu)
    accumulated = sum(trainer.compute_loss(trainer.model, part, num_items_in_batch=items) for part in micro)
    accumulated.backward()
    assert accumulated.item() == pytest.approx(expected.item(), rel=REL)
    for got, want in zip(gradients(rewards), expected_grads):
        torch.testing.assert_close(got, want)
    accumulated_logs = logged(trainer)

    # 2 processes of 4: each counts its share, the reduce adds the other's; DDP averages the
    # gradients and Trainer the logged losses over processes. The per-dimension sums of both
    # processes go into this one trainer, as log's reduce over processes adds them.
    shards = splits(rewards, PROCESSES)
    local = [trainer.batch_items(shard) for shard in shards]
    monkeypatch.setattr(Accelerator, "num_processes", property(lambda self: PROCESSES))
    per_process = []
    for rank, shard in enumerate(shards):
        others = sum(counts for r, counts in enumerate(local) if r != rank)
        monkeypatch.setattr(trainer.accelerator, "reduce", lambda t, reduction, o=others: t + o)
        items = trainer._get_num_items_in_batch([shard], cpu)
        per_process.append(trainer.compute_loss(trainer.model, shard, num_items_in_batch=items))
    monkeypatch.undo()
    averaged = sum(per_process) / PROCESSES
    averaged.backward()
    assert averaged.item() == pytest.approx(expected.item(), rel=REL)
    for got, want in zip(gradients(rewards), expected_grads):
        torch.testing.assert_close(got, want)
    distributed_logs = logged(trainer)

    for key in LOGGED_KEYS:
        assert accumulated_logs[key] == pytest.approx(single_logs[key], rel=REL), key
        assert distributed_logs[key] == pytest.approx(single_logs[key], rel=REL), key
    pair = pair_loss(loss_type, rewards["ra"], rewards["rb"], LABELS, tie_k=trainer.args.tie_k)
    for d, dim in enumerate(EVAL_DIM):
        assert single_logs[f"loss_{dim}"] == pytest.approx(pair.per_dim_loss[d].item(), rel=REL)


def test_evaluation_keeps_the_batch_mean(trainer):
    """Without a step count (``prediction_step``) the loss is the batch's own mean, no irrelevant term."""
    trainer.args.loss_type = "bt"
    rewards = fixed_rewards()
    trainer.model.eval()
    try:
        loss = trainer.compute_loss(trainer.model, splits(rewards, PROCESSES)[0])
    finally:
        trainer.model.train()
        trainer._sums["eval"].clear()
    half = slice(0, len(LABELS) // PROCESSES)
    expected = pair_loss("bt", rewards["ra"][half], rewards["rb"][half], LABELS[half]).loss
    assert loss.item() == pytest.approx(expected.item(), rel=REL)


# --- the tiny model, one optimizer step under three splits -----------------------------------

GLOBAL_BATCH = 8
TIED_VQ_ROWS = (1, 4, 6)
"""VQ ties on 3 of the 8 pairs: an odd count cannot fall evenly on two processes of 4."""
SPLITS = {
    "1x8": {"per_device_train_batch_size": GLOBAL_BATCH},
    "1x2x4": {
        "per_device_train_batch_size": GLOBAL_BATCH // MICRO_BATCHES,
        "gradient_accumulation_steps": MICRO_BATCHES,
    },
    "2x4": {"per_device_train_batch_size": GLOBAL_BATCH // PROCESSES},
}
TINY_REL = 1e-5
"""Padding differs between batch shapes, so rewards agree to float32 rounding, not bit for bit."""


def eight_pairs(source: Path, target: Path) -> Path:
    """The first 8 training pairs with VQ tied on ``TIED_VQ_ROWS``: a train set of exactly one
    global batch, so every split sees the same 8 pairs in its one step, whatever the sampler order."""
    with (source / "train.csv").open() as fh:
        rows = list(csv.DictReader(fh))[:GLOBAL_BATCH]
    for i in TIED_VQ_ROWS:
        rows[i]["VQ"] = "same"
    with target.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


def first_step(output_dir: Path) -> dict:
    state = json.loads((output_dir / "checkpoint-1" / "trainer_state.json").read_text())
    (entry,) = [e for e in state["log_history"] if "loss" in e and "train_runtime" not in e]
    return entry


@pytest.mark.slow
def test_tiny_model_first_step_is_the_same_under_every_split(tiny_cache, synthetic_pairs, tmp_path):
    from tests.reward.test_e2e_training import launch, write_config
    from vlmrm.reward.train import run_training
    from vlmrm.testing.tiny import tiny_checkpoint

    train_csv = eight_pairs(synthetic_pairs, tmp_path / "train8.csv")
    checkpoint = tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache)
    common = {
        "meta_data": str(train_csv),
        "meta_data_test": None,
        "loss_type": "bt",
        "max_steps": 1,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 1,
        "disable_dropout": True,
        "normalization_pairs": 0,
    }
    steps = {}
    for name, split in SPLITS.items():
        out = tmp_path / name
        values = tiny_run_values(checkpoint, synthetic_pairs, out, **common, **split)
        if name == "2x4":
            result = launch(write_config(tmp_path / "ddp.yaml", values), gpus=PROCESSES, port=29551)
            assert result.returncode == 0, result.stderr[-3000:]
        else:
            run_training(parse_config(values=values))
        steps[name] = first_step(out)
    print(json.dumps(steps, indent=1, sort_keys=True))
    keys = ["loss", "grad_norm"] + [f"{kind}_{dim}" for kind in ("loss", "accuracy") for dim in EVAL_DIM]
    base = steps["1x8"]
    assert all(math.isfinite(base[key]) for key in keys), base
    for name, entry in steps.items():
        for key in keys:
            assert entry[key] == pytest.approx(base[key], rel=TINY_REL), (name, key, entry[key], base[key])
