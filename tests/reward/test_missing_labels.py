"""Masked (missing) labels through losses, accuracy, metrics and a short training run; per-pair
margins from score columns."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from vlmrm.reward.losses import (
    bt_loss,
    bt_with_ties_loss,
    btt_probabilities,
    margin_loss,
    preference_accuracy,
)
from vlmrm.reward.metrics import preference_metrics

NAN = float("nan")


@pytest.fixture
def batch():
    torch.manual_seed(0)
    a = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(
        [[1, NAN, 0], [-1, 1, NAN], [NAN, NAN, 1], [0, -1, -1], [1, 0, NAN], [NAN, 1, 0]], dtype=torch.float64
    )
    return a, b, y


def test_bt_loss_equals_the_masked_formula(batch):
    a, b, y = batch
    d = a - b
    keep = ~torch.isnan(y) & (y != 0)
    expected = (-F.logsigmoid(y[keep] * d[keep])).mean()
    result = bt_loss(a, b, y)
    assert result.loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert result.num_valid.tolist() == keep.sum(0).tolist()
    result.loss.backward()
    assert torch.isfinite(a.grad).all()
    assert (a.grad[torch.isnan(y)] == 0).all()  # a masked entry receives no gradient


def test_btt_and_margin_losses_equal_the_masked_formula(batch):
    a, b, y = batch
    d = (a - b).detach()
    labelled = ~torch.isnan(y)
    p_a, p_b, p_tie = btt_probabilities(d, 5.0)
    observed = torch.where(y > 0, p_a, torch.where(y < 0, p_b, p_tie))
    assert bt_with_ties_loss(a, b, y, 5.0).loss.item() == pytest.approx(
        (-observed[labelled].log()).mean().item(), rel=1e-10
    )
    margins = torch.rand(6, 3, dtype=torch.float64)
    margins[torch.isnan(y)] = NAN  # a missing label's score may be missing too
    keep = labelled & (y != 0)
    expected = (-F.logsigmoid(y[keep] * d[keep] - margins[keep])).mean()
    assert margin_loss(a, b, y, margins).loss.item() == pytest.approx(expected.item(), rel=1e-12)


def test_accuracy_and_metrics_skip_masked_labels(batch):
    a, b, y = batch
    accuracy, counts = preference_accuracy(a, b, y)
    keep = ~torch.isnan(y) & (y != 0)
    assert counts.tolist() == keep.sum(0).tolist()
    d = (a - b).detach()
    for k in range(3):
        column = keep[:, k]
        assert accuracy[k].item() == pytest.approx(
            (torch.sign(d[column, k]) == y[column, k]).double().mean().item()
        )
    metrics = preference_metrics(a.detach().numpy(), b.detach().numpy(), y.numpy(), ["VQ", "MQ", "TA"])
    assert [metrics[f"count_missing_{dim}"] for dim in ("VQ", "MQ", "TA")] == [2, 2, 2]
    assert [metrics[f"count_{dim}"] for dim in ("VQ", "MQ", "TA")] == [4, 4, 4]
    assert metrics["accuracy_VQ"] == pytest.approx(accuracy[0].item())
    assert not any(
        isinstance(v, float) and math.isnan(v) for k, v in metrics.items() if k.startswith("accuracy_")
    )


class LogRecorder(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def _blank_some_labels(src, dst, every: int) -> dict[str, int]:
    """Copy a pair CSV, emptying VQ on every ``every``-th row and writing ``invalid`` in MQ on the
    next; adds VideoAlign score columns. Returns the masked count per dimension."""
    with open(src, newline="") as handle:
        rows = list(csv.DictReader(handle))
    masked = {"VQ": 0, "MQ": 0, "TA": 0}
    rng = np.random.default_rng(0)
    for i, row in enumerate(rows):
        if i % every == 0:
            row["VQ"], masked["VQ"] = "", masked["VQ"] + 1
        elif i % every == 1:
            row["MQ"], masked["MQ"] = "invalid", masked["MQ"] + 1
        for dim in masked:
            row[f"MOS_A_{dim}"], row[f"MOS_B_{dim}"] = (f"{v:.2f}" for v in rng.uniform(1, 5, size=2))
    with open(dst, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return masked


def test_partially_labelled_csv_trains_and_logs_labelled_counts(tiny_cache, synthetic_pairs, tmp_path):
    from tests.conftest import tiny_run_values
    from vlmrm.reward.config import parse_config
    from vlmrm.reward.train import run_training
    from vlmrm.testing.tiny import tiny_checkpoint

    masked = _blank_some_labels(synthetic_pairs / "train.csv", tmp_path / "train.csv", every=4)
    _blank_some_labels(synthetic_pairs / "test.csv", tmp_path / "test.csv", every=4)
    values = tiny_run_values(
        tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache),
        synthetic_pairs,
        tmp_path / "out",
        meta_data=str(tmp_path / "train.csv"),
        meta_data_test=str(tmp_path / "test.csv"),
        loss_type="margin",
        margin_score_columns="MOS_{side}_{dim}",
        margin_scale=0.5,
        max_steps=2,
        eval_strategy="steps",
        eval_steps=2,
    )
    recorder = LogRecorder()
    metrics = run_training(parse_config(values=values), callbacks=[recorder])
    train_logs = [log for log in recorder.logs if "loss" in log]
    assert train_logs and all(math.isfinite(log["loss"]) for log in train_logs)
    # per-dimension labelled entries per batch (batch of 4 pairs): VQ and MQ lose some, TA none
    assert all(log["labelled_TA"] == 4 for log in train_logs)
    assert all(log["labelled_VQ"] < 4 for log in train_logs[:1])
    assert masked["VQ"] > 0 and masked["MQ"] > 0
    assert metrics["eval_count_missing_VQ"] == 2 and metrics["eval_count_missing_MQ"] == 2
    assert metrics["eval_count_missing_TA"] == 0


def test_trainer_loss_is_the_masked_margin_formula(tiny_cache, synthetic_pairs, tmp_path):
    """compute_loss on a batch with missing labels and score margins = the formula, by hand."""
    from tests.reward.test_trainer import make_trainer

    _blank_some_labels(synthetic_pairs / "train.csv", tmp_path / "train.csv", every=2)
    _, trainer, batch = make_trainer(
        tiny_cache,
        synthetic_pairs,
        tmp_path,
        meta_data=str(tmp_path / "train.csv"),
        meta_data_test=None,
        loss_type="margin",
        margin_score_columns="MOS_{side}_{dim}",
        margin_scale=0.5,
    )
    assert torch.isnan(batch["labels"]).any() and batch["margin"].shape == batch["labels"].shape
    trainer.model.eval()
    with torch.no_grad():
        loss, out = trainer.compute_loss(trainer.model, batch, return_outputs=True)
    d = (out["rewards_a"] - out["rewards_b"]).double()
    y = batch["labels"].double()
    m = 0.5 * torch.nan_to_num(y) * batch["margin"].double()  # preferred side's score minus the other's
    keep = ~torch.isnan(y) & (y != 0)
    expected = (-F.logsigmoid(y[keep] * d[keep] - m[keep])).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
