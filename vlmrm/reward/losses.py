"""Reward-model losses and the preference accuracy logged during training.

Pure functions on tensors; the formulas are in ``docs/reward_math.md``. Convention for every
pair loss:

- ``rewards_a``, ``rewards_b``: ``(B, D)`` rewards of item A and item B of each pair, one column
  per evaluated dimension (any ``D >= 1``).
- ``labels``: ``(B, D)`` with y = +1 (A better), -1 (B better) or 0 (tie); the dataset maps the
  CSV's ``A`` / ``B`` / ``same`` to these values (``vlmrm.pairs.labels.LABEL_VALUES``). NaN marks a missing
  label (an empty cell or VideoAlign's ``invalid``): that entry is masked, it counts in no loss, no
  accuracy and no ``num_valid``. Values are not re-checked here: that would force a device sync.
- d = r_A - r_B.

Losses are computed in at least float32 (bf16 rewards are upcast) and averaged over the entries
that carry a term for that loss (a tie has no BT term), never over the whole ``B x D`` grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from vlmrm.modeling.reward_model import DEFAULT_TIE_K

DEFAULT_MARGIN = 0.5
"""Fixed margin m of the margin loss (docs/reward_math.md, "Margin loss")."""

PairLossType = Literal["bt", "btt", "margin"]
PAIR_LOSS_TYPES: tuple[str, ...] = ("bt", "btt", "margin")


@dataclass
class PairLoss:
    """Result of every loss in this module (the regression loss included).

    Attributes:
        loss: scalar to backpropagate: mean over all valid entries. With no valid entry at all
            (e.g. a batch of ties under the BT loss) it is a zero that is still connected to the
            inputs' graph (a masked sum), so ``backward()`` and DDP's gradient sync still run.
        per_dim_loss: ``(D,)`` mean over each dimension's valid entries, detached, for logging;
            ``nan`` for a dimension without valid entries (0 would read as a perfect loss).
        num_valid: ``(D,)`` int64 count of valid entries per dimension (weights for averaging
            ``per_dim_loss`` over steps).
        loss_sum: scalar sum of the valid entries' terms, graph-connected: the numerator a trainer
            divides by the valid count of a whole optimizer step (every micro-batch and process),
            so the step's loss does not depend on how its batch is split (docs/reward_math.md,
            "Averaging over valid entries").
        per_dim_sum: ``(D,)`` detached sum of each dimension's valid terms (0 without any), for
            logging sums that add up exactly across micro-batches and processes.
    """

    loss: Tensor
    per_dim_loss: Tensor
    num_valid: Tensor
    loss_sum: Tensor
    per_dim_sum: Tensor


def _check_pair_inputs(rewards_a: Tensor, rewards_b: Tensor, labels: Tensor) -> None:
    if rewards_a.ndim != 2 or rewards_a.shape != rewards_b.shape or labels.shape != rewards_a.shape:
        raise ValueError(
            "rewards_a, rewards_b and labels must all have shape (B, D); got "
            f"{tuple(rewards_a.shape)}, {tuple(rewards_b.shape)}, {tuple(labels.shape)}"
        )


def _compute_dtype(tensor: Tensor) -> torch.dtype:
    """float32, or the input's dtype when wider (float64 stays float64)."""
    return torch.promote_types(tensor.dtype, torch.float32)


def _reward_diff(rewards_a: Tensor, rewards_b: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """d = r_A - r_B, the labels (missing ones set to 0) and the ``labelled`` mask (False where the
    label is NaN), ``(B, D)`` each. Zeroing first keeps a NaN out of every gradient."""
    _check_pair_inputs(rewards_a, rewards_b, labels)
    dtype = _compute_dtype(rewards_a)
    y = labels.to(dtype)
    labelled = ~torch.isnan(y)
    return rewards_a.to(dtype) - rewards_b.to(dtype), torch.where(labelled, y, torch.zeros_like(y)), labelled


def _reduce(per_entry: Tensor, valid: Tensor) -> PairLoss:
    """Average ``per_entry`` (B, D) over the entries where ``valid`` (B, D) is True."""
    # torch.where (not multiplication) so that a non-finite value in an invalid entry cannot leak.
    masked = torch.where(valid, per_entry, torch.zeros_like(per_entry))  # (B, D)
    num_valid = valid.sum(dim=0)  # (D,)
    # clamp: with no valid entry the sum is a graph-connected 0, and 0 / 1 keeps it so.
    loss_sum = masked.sum()
    loss = loss_sum / num_valid.sum().clamp(min=1)
    with torch.no_grad():
        per_dim_sum = masked.sum(dim=0)  # (D,)
        per_dim_loss = torch.where(num_valid > 0, per_dim_sum / num_valid.clamp(min=1), math.nan)
    return PairLoss(
        loss=loss, per_dim_loss=per_dim_loss, num_valid=num_valid, loss_sum=loss_sum, per_dim_sum=per_dim_sum
    )


def counts_ties(loss_type: str) -> bool:
    """Whether a tie (y = 0) is a valid entry of ``loss_type``: only under "btt", where a tie is an
    outcome with its own probability; "bt" and "margin" have no term for it."""
    if loss_type not in PAIR_LOSS_TYPES:
        _reject_pair_loss_type(loss_type)
    return loss_type == "btt"


def valid_entries(loss_type: str, labels: Tensor) -> Tensor:
    """``(B, D)`` bool mask of the entries that carry a term of ``loss_type``'s loss, from the labels
    alone (so it can be counted before the forward): labelled (not NaN), and y != 0 unless the loss
    counts ties (:func:`counts_ties`). The pair losses below mask with exactly this rule."""
    labelled = ~torch.isnan(labels)
    return labelled if counts_ties(loss_type) else labelled & (labels != 0)


def bt_loss(rewards_a: Tensor, rewards_b: Tensor, labels: Tensor) -> PairLoss:
    """Bradley-Terry loss: -log sigmoid(y * d) on entries with y != 0; ties contribute no term.

    Returns:
        PairLoss averaged over the non-tie entries.
    """
    diff, y, labelled = _reward_diff(rewards_a, rewards_b, labels)
    return _reduce(-F.logsigmoid(y * diff), valid=labelled & (y != 0))


def _log_tie_k(tie_k: float | Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """(ln k, ln(k^2 - 1)) as tensors broadcastable against ``like`` (B, D)."""
    if not torch.is_tensor(tie_k) and tie_k <= 1:
        raise ValueError(f"tie_k: the Rao-Kupper parameter must be > 1, got {tie_k}")
    k = torch.as_tensor(tie_k, dtype=like.dtype, device=like.device)  # () or (D,)
    # ln(k^2 - 1) = ln(k - 1) + ln(k + 1): keeps precision for k close to 1.
    return torch.log(k), torch.log(k - 1) + torch.log1p(k)


def btt_probabilities(diff: Tensor, tie_k: float | Tensor = DEFAULT_TIE_K) -> tuple[Tensor, Tensor, Tensor]:
    """Rao-Kupper outcome probabilities for reward differences ``diff`` = r_A - r_B.

        P(A > B) = sigmoid(d - ln k)
        P(B > A) = sigmoid(-d - ln k)
        P(tie)   = (k^2 - 1) * sigmoid(d - ln k) * sigmoid(-d - ln k)

    The three sum to 1 for every d; at d = 0, k = 5 they are 1/6, 1/6, 2/3.

    Args:
        diff: reward differences, any shape ending in D (e.g. ``(B, D)``).
        tie_k: k > 1, a float or a ``(D,)`` tensor (a learned per-dimension k), broadcast over
            the leading dimensions.

    Returns:
        (P(A > B), P(B > A), P(tie)), each shaped like ``diff``.
    """
    log_k, log_k2_minus_1 = _log_tie_k(tie_k, diff)
    p_a = torch.sigmoid(diff - log_k)
    p_b = torch.sigmoid(-diff - log_k)
    return p_a, p_b, torch.exp(log_k2_minus_1) * p_a * p_b


def bt_with_ties_loss(
    rewards_a: Tensor, rewards_b: Tensor, labels: Tensor, tie_k: float | Tensor = DEFAULT_TIE_K
) -> PairLoss:
    """Bradley-Terry-with-ties (Rao-Kupper) loss: -log P(observed label), see ``btt_probabilities``.

    Computed in log space for stability at large |d|:

        log P(A > B) = logsigmoid(d - ln k)
        log P(B > A) = logsigmoid(-d - ln k)
        log P(tie)   = ln(k^2 - 1) + logsigmoid(d - ln k) + logsigmoid(-d - ln k)

    Every labelled entry is valid: a tie is a label here, not a missing term.

    Args:
        tie_k: k > 1, a float or a ``(D,)`` tensor (e.g. ``learned_tie_k(raw)``; gradients flow to it).
    """
    diff, y, labelled = _reward_diff(rewards_a, rewards_b, labels)
    log_k, log_k2_minus_1 = _log_tie_k(tie_k, diff)
    log_p_a = F.logsigmoid(diff - log_k)  # (B, D)
    log_p_b = F.logsigmoid(-diff - log_k)  # (B, D)
    log_p_tie = log_k2_minus_1 + log_p_a + log_p_b  # (B, D)
    log_p_observed = torch.where(y > 0, log_p_a, torch.where(y < 0, log_p_b, log_p_tie))
    return _reduce(-log_p_observed, valid=labelled)


def margin_loss(
    rewards_a: Tensor, rewards_b: Tensor, labels: Tensor, margin: float | Tensor = DEFAULT_MARGIN
) -> PairLoss:
    """Bradley-Terry loss with a margin: -log sigmoid(y * d - m) on entries with y != 0.

    That is -log sigmoid(r_chosen - r_rejected - m): the preferred item must win by m.

    Args:
        margin: m, a float, or a tensor of shape ``(B,)`` (one margin per pair, TRL's ``margin``
            column) or ``(B, D)`` (one per pair and dimension). A 1-D tensor is always per pair.

    Returns:
        PairLoss averaged over the non-tie entries.
    """
    diff, y, labelled = _reward_diff(rewards_a, rewards_b, labels)
    m = torch.as_tensor(margin, dtype=diff.dtype, device=diff.device)
    if m.shape not in ((), diff.shape[:1], diff.shape):
        raise ValueError(
            f"margin must be a float, (B,) or (B, D) = {tuple(diff.shape)}; got {tuple(m.shape)}"
        )
    if m.ndim == 1:
        m = m.unsqueeze(-1)  # (B, 1): one margin per pair, shared by its dimensions
    m = torch.nan_to_num(m)  # a masked entry's margin may be missing too
    return _reduce(-F.logsigmoid(y * diff - m), valid=labelled & (y != 0))


def regression_loss(rewards: Tensor, targets: Tensor, mask: Tensor | None = None) -> PairLoss:
    """Mean squared error (r - s)^2 between rewards and numeric scores s on valid entries.

    Args:
        rewards: ``(B, D)`` rewards of single items.
        targets: ``(B, D)`` numeric scores; invalid entries may hold anything, ``nan`` included.
        mask: ``(B, D)`` bool, True where the target is valid; None means every entry is valid.
    """
    if rewards.ndim != 2 or targets.shape != rewards.shape:
        raise ValueError(
            f"rewards and targets must both be (B, D); got {tuple(rewards.shape)}, {tuple(targets.shape)}"
        )
    valid = torch.ones_like(rewards, dtype=torch.bool) if mask is None else mask.to(torch.bool)
    if valid.shape != rewards.shape:
        raise ValueError(f"mask must be (B, D) = {tuple(rewards.shape)}; got {tuple(valid.shape)}")
    dtype = _compute_dtype(rewards)
    # Zero the invalid targets first: a nan there would give nan gradients even when masked out.
    safe_targets = torch.where(valid, targets.to(dtype), torch.zeros((), dtype=dtype, device=rewards.device))
    return _reduce((rewards.to(dtype) - safe_targets) ** 2, valid=valid)


def pair_loss(
    loss_type: str,
    rewards_a: Tensor,
    rewards_b: Tensor,
    labels: Tensor,
    *,
    tie_k: float | Tensor = DEFAULT_TIE_K,
    margin: float | Tensor = DEFAULT_MARGIN,
) -> PairLoss:
    """The pair loss named by ``loss_type`` ("bt", "btt" or "margin"); the one dispatch point.

    ``tie_k`` is used by "btt" only and ``margin`` by "margin" only. "reg" is rejected: it
    regresses on numeric scores, not pair labels; call ``regression_loss`` for it.
    """
    if loss_type == "bt":
        return bt_loss(rewards_a, rewards_b, labels)
    if loss_type == "btt":
        return bt_with_ties_loss(rewards_a, rewards_b, labels, tie_k=tie_k)
    if loss_type == "margin":
        return margin_loss(rewards_a, rewards_b, labels, margin=margin)
    _reject_pair_loss_type(loss_type)


def _reject_pair_loss_type(loss_type: str) -> None:
    """Raise the error for a ``loss_type`` that is no pair loss ("reg" gets its own pointer)."""
    if loss_type == "reg":
        raise ValueError(
            "loss_type 'reg' needs numeric target scores, not pair labels: call "
            "regression_loss(rewards, targets, mask) instead of pair_loss"
        )
    raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {PAIR_LOSS_TYPES} or 'reg'")


@torch.no_grad()
def preference_accuracy(rewards_a: Tensor, rewards_b: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension preference accuracy, ties excluded (docs/reward_math.md, "Accuracy without ties").

    Over labelled entries with y != 0: correct iff sign(d) == y; d == 0 counts as wrong. Missing
    labels (NaN) count nowhere.

    Returns:
        (accuracy ``(D,)``, ``nan`` where a dimension has no non-tie entry;
        counts ``(D,)`` int64, the number of non-tie entries per dimension).
    """
    diff, y, labelled = _reward_diff(rewards_a, rewards_b, labels)
    valid = labelled & (y != 0)  # (B, D)
    correct = valid & (torch.sign(diff) == y)  # sign(0) = 0 never equals +-1
    counts = valid.sum(dim=0)  # (D,)
    accuracy = torch.where(counts > 0, correct.sum(dim=0) / counts.clamp(min=1), math.nan)
    return accuracy, counts


@torch.no_grad()
def resolved_above(higher: Tensor, lower: Tensor) -> Tensor:
    """``higher > lower`` after both are rounded to bfloat16, the dtype Qwen-VL reward models are
    trained and served in: a difference below bf16's spacing (2^-7 relative, 0.0156 at a reward of
    2) is rounding noise there, not a preference.

    Why: with no tie labels to calibrate against, plain ``>`` credits a model that ignores the input
    being tested. Measured on the tiny model trained on wording-only image pairs without irrelevant
    queries: matched image above an unrelated one in 94.5 % of pairs, at a mean margin of 0.0017 and
    a BT loss of 0.692 (= ln 2, chance).
    """
    return higher.to(torch.bfloat16) > lower.to(torch.bfloat16)
