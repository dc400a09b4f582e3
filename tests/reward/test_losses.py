"""Losses and accuracy against hand-computed numbers (formulas: docs/reward_math.md)."""

import math

import pytest
import torch

from vlmrm.modeling.reward_model import DEFAULT_TIE_K, initial_tie_k_raw, learned_tie_k
from vlmrm.reward.losses import (
    PAIR_LOSS_TYPES,
    bt_loss,
    bt_with_ties_loss,
    btt_probabilities,
    margin_loss,
    pair_loss,
    preference_accuracy,
    regression_loss,
    resolved_above,
)

# Hand-computed constants, -log sigmoid(x) = log(1 + e^-x):
NEG_LOGSIG_1 = 0.31326169  # log(1 + e^-1) = log(1.367879)
NEG_LOGSIG_MINUS_1 = 1.31326169  # log(1 + e^1) = log(3.718282)
NEG_LOGSIG_MINUS_2 = 2.12692801  # log(1 + e^2) = log(8.389056)
NEG_LOGSIG_HALF = 0.47407698  # log(1 + e^-0.5) = log(1.606531)
LN2 = 0.69314718  # -log sigmoid(0) = log 2
LN6 = 1.79175947  # -log(1/6)
LN1_5 = 0.40546511  # -log(2/3) = log 1.5


def pair(diff, labels, dtype=torch.float32):
    """Rewards with r_A = diff and r_B = 0, so d = diff; leaf tensors that require grad."""
    diff = torch.tensor(diff, dtype=dtype)
    rewards_a = diff.clone().requires_grad_(True)
    rewards_b = torch.zeros_like(diff).requires_grad_(True)
    return rewards_a, rewards_b, torch.tensor(labels, dtype=torch.float32)


# ---- BTT probabilities ----


def test_btt_probabilities_at_zero_diff_k5():
    # sigmoid(0 - ln 5) = 1 / (1 + 5) = 1/6; P(tie) = (25 - 1) * 1/6 * 1/6 = 24/36 = 2/3.
    p_a, p_b, p_tie = btt_probabilities(torch.zeros(1, 1), 5.0)
    assert p_a.item() == pytest.approx(1 / 6)
    assert p_b.item() == pytest.approx(1 / 6)
    assert p_tie.item() == pytest.approx(2 / 3)


@pytest.mark.parametrize("k", [1.01, 1.5, 2.0, DEFAULT_TIE_K, 20.0])
def test_btt_probabilities_sum_to_one_float_k(k):
    diff = torch.linspace(-30, 30, 121, dtype=torch.float64).reshape(-1, 1)  # (121, 1)
    p_a, p_b, p_tie = btt_probabilities(diff, k)
    torch.testing.assert_close(p_a + p_b + p_tie, torch.ones_like(diff))
    assert (p_a >= 0).all() and (p_b >= 0).all() and (p_tie >= 0).all()


def test_btt_probabilities_sum_to_one_tensor_k_broadcasts_per_dim():
    k = torch.tensor([1.1, 2.0, 5.0, 50.0], dtype=torch.float64)  # (D=4,)
    diff = torch.linspace(-10, 10, 41, dtype=torch.float64)[:, None].expand(41, 4)  # (41, 4)
    p_a, p_b, p_tie = btt_probabilities(diff, k)
    torch.testing.assert_close(p_a + p_b + p_tie, torch.ones_like(diff))
    # Column j uses k[j]: same as calling with that float.
    for j in range(4):
        torch.testing.assert_close(p_tie[:, j], btt_probabilities(diff[:, j : j + 1], k[j].item())[2][:, 0])


def test_btt_probabilities_reject_k_not_above_one():
    with pytest.raises(ValueError, match="tie_k"):
        btt_probabilities(torch.zeros(1, 1), 1.0)


# ---- BTT loss ----


def test_btt_loss_at_zero_diff_for_each_label():
    # d = 0, k = 5: -log(1/6) = ln 6 for A and B, -log(2/3) = ln 1.5 for a tie.
    rewards_a, rewards_b, labels = pair([[0.0, 0.0, 0.0]], [[1, -1, 0]])
    out = bt_with_ties_loss(rewards_a, rewards_b, labels, tie_k=5.0)
    torch.testing.assert_close(out.per_dim_loss, torch.tensor([LN6, LN6, LN1_5]))
    assert out.loss.item() == pytest.approx((2 * LN6 + LN1_5) / 3)
    assert out.num_valid.tolist() == [1, 1, 1]  # ties are valid entries for btt


def test_btt_loss_at_unit_diff():
    # d = 1, k = 5, y = +1: P(A) = sigmoid(1 - ln 5) = e / (e + 5) = 2.718282 / 7.718282 = 0.352187,
    # -log 0.352187 = 1.043592.
    rewards_a, rewards_b, labels = pair([[1.0]], [[1]])
    assert bt_with_ties_loss(rewards_a, rewards_b, labels).loss.item() == pytest.approx(1.043592, abs=1e-5)


def test_btt_tensor_k_matches_float_k_per_dim():
    rewards_a, rewards_b, labels = pair([[0.3, -1.2], [2.0, 0.0]], [[1, 0], [-1, 0]])
    k = torch.tensor([2.0, 5.0])
    out = bt_with_ties_loss(rewards_a, rewards_b, labels, tie_k=k)
    for j, k_j in enumerate([2.0, 5.0]):
        col = bt_with_ties_loss(rewards_a[:, j : j + 1], rewards_b[:, j : j + 1], labels[:, j : j + 1], k_j)
        assert out.per_dim_loss[j].item() == pytest.approx(col.loss.item())


def test_btt_gradient_reaches_learned_k():
    raw = torch.full((2,), initial_tie_k_raw(DEFAULT_TIE_K), requires_grad=True)
    rewards_a, rewards_b, labels = pair([[0.0, 0.0]], [[0, 0]])
    bt_with_ties_loss(rewards_a, rewards_b, labels, tie_k=learned_tie_k(raw)).loss.backward()
    # All ties at d = 0: a larger k raises P(tie) = (k^2 - 1) / (k + 1)^2 = (k - 1) / (k + 1),
    # so the loss falls as raw rises.
    assert raw.grad is not None and (raw.grad < 0).all()


# ---- BT loss ----


def test_bt_ignores_ties_and_averages_over_valid_entries_only():
    # d = [[1, 5], [2, 0]], y = [[+1, tie], [-1, +1]]. Terms:
    #   (0,0) -log sigmoid(1)  = 0.313262
    #   (1,0) -log sigmoid(-2) = 2.126928
    #   (1,1) -log sigmoid(0)  = 0.693147    (the tie at (0,1) has no term)
    # Mean over the 3 valid entries = 3.133337 / 3 = 1.044446 (over the 4-entry grid: 0.783334).
    rewards_a, rewards_b, labels = pair([[1.0, 5.0], [2.0, 0.0]], [[1, 0], [-1, 1]])
    out = bt_loss(rewards_a, rewards_b, labels)
    total = NEG_LOGSIG_1 + NEG_LOGSIG_MINUS_2 + LN2
    assert out.loss.item() == pytest.approx(total / 3)
    assert out.loss.item() != pytest.approx(total / 4)
    # Per dimension: (0.313262 + 2.126928) / 2 = 1.220095 and 0.693147 / 1.
    torch.testing.assert_close(out.per_dim_loss, torch.tensor([(NEG_LOGSIG_1 + NEG_LOGSIG_MINUS_2) / 2, LN2]))
    assert out.num_valid.tolist() == [2, 1]


def test_bt_per_dim_loss_is_nan_for_a_dimension_of_only_ties():
    rewards_a, rewards_b, labels = pair([[1.0, 3.0], [-1.0, 4.0]], [[1, 0], [-1, 0]])
    out = bt_loss(rewards_a, rewards_b, labels)
    assert out.per_dim_loss[0].item() == pytest.approx(NEG_LOGSIG_1)  # both terms -log sigmoid(1)
    assert math.isnan(out.per_dim_loss[1].item())
    assert out.num_valid.tolist() == [2, 0]
    assert out.loss.item() == pytest.approx(NEG_LOGSIG_1)


def test_bt_gradient_values():
    # d/dd -log sigmoid(y d) = -y (1 - sigmoid(y d)) = -0.5 y at d = 0.
    rewards_a, rewards_b, labels = pair([[0.0, 0.0], [0.0, 7.0]], [[1, -1], [1, 0]])
    bt_loss(rewards_a, rewards_b, labels).loss.backward()
    # Three valid entries: dL/dr_A = y * -0.5 / 3; the tie gets exactly 0.
    expected = torch.tensor([[-0.5, 0.5], [-0.5, 0.0]]) / 3
    torch.testing.assert_close(rewards_a.grad, expected)
    torch.testing.assert_close(rewards_b.grad, -expected)


def test_all_ties_bt_loss_is_a_connected_zero():
    rewards_a, rewards_b, labels = pair([[1.0, -2.0], [3.0, 0.0]], [[0, 0], [0, 0]])
    out = bt_loss(rewards_a, rewards_b, labels)
    assert out.loss.item() == 0.0
    assert out.loss.grad_fn is not None
    out.loss.backward()  # must not raise; every input gets a (zero) gradient, as DDP needs
    assert torch.equal(rewards_a.grad, torch.zeros(2, 2))
    assert torch.equal(rewards_b.grad, torch.zeros(2, 2))
    assert out.num_valid.tolist() == [0, 0]
    assert torch.isnan(out.per_dim_loss).all()


# ---- margin loss ----


def test_margin_loss_scalar_margin():
    # m = 0.5: y=+1, d=1 -> -log sigmoid(1 - 0.5) = log(1 + e^-0.5) = 0.474077;
    #          y=-1, d=-1 -> -log sigmoid(1 - 0.5) = 0.474077;  tie -> no term.
    rewards_a, rewards_b, labels = pair([[1.0], [-1.0], [9.0]], [[1], [-1], [0]])
    out = margin_loss(rewards_a, rewards_b, labels, margin=0.5)
    assert out.loss.item() == pytest.approx(NEG_LOGSIG_HALF)
    assert out.num_valid.tolist() == [2]


def test_margin_loss_zero_margin_is_bt():
    rewards_a, rewards_b, labels = pair([[1.0, -0.3], [2.0, 0.4]], [[1, 0], [-1, 1]])
    assert margin_loss(rewards_a, rewards_b, labels, margin=0.0).loss.item() == pytest.approx(
        bt_loss(rewards_a, rewards_b, labels).loss.item()
    )


def test_margin_loss_per_pair_margin():
    # d = 1, y = +1 in both pairs (D = 2). Margins (B,) = [0.5, 2.0]:
    #   pair 0: -log sigmoid(1 - 0.5) = 0.474077 (both dims)
    #   pair 1: -log sigmoid(1 - 2)   = log(1 + e) = 1.313262 (both dims)
    rewards_a, rewards_b, labels = pair([[1.0, 1.0], [1.0, 1.0]], [[1, 1], [1, 1]])
    out = margin_loss(rewards_a, rewards_b, labels, margin=torch.tensor([0.5, 2.0]))
    assert out.loss.item() == pytest.approx((NEG_LOGSIG_HALF + NEG_LOGSIG_MINUS_1) / 2)
    torch.testing.assert_close(out.per_dim_loss, torch.full((2,), (NEG_LOGSIG_HALF + NEG_LOGSIG_MINUS_1) / 2))


def test_margin_loss_per_entry_margin():
    # Margins (B, D) = [[0, 0.5], [2, 0]] on d = 1, y = +1:
    #   0.313262, 0.474077, 1.313262, 0.313262 -> mean 2.413862 / 4 = 0.603466.
    rewards_a, rewards_b, labels = pair([[1.0, 1.0], [1.0, 1.0]], [[1, 1], [1, 1]])
    out = margin_loss(rewards_a, rewards_b, labels, margin=torch.tensor([[0.0, 0.5], [2.0, 0.0]]))
    expected = (NEG_LOGSIG_1 + NEG_LOGSIG_HALF + NEG_LOGSIG_MINUS_1 + NEG_LOGSIG_1) / 4
    assert out.loss.item() == pytest.approx(expected)


def test_margin_loss_rejects_wrong_margin_shape():
    rewards_a, rewards_b, labels = pair([[1.0, 1.0], [1.0, 1.0]], [[1, 1], [1, 1]])
    with pytest.raises(ValueError, match="margin"):
        margin_loss(rewards_a, rewards_b, labels, margin=torch.zeros(3))


# ---- regression ----


def test_regression_loss_masks_and_survives_nan_targets():
    # Errors on valid entries: (1-0)^2 = 1, (2-2)^2 = 0, (3-5)^2 = 4 -> mean 5/3.
    # Per dim: (1 + 4) / 2 = 2.5 and 0 / 1 = 0. The masked nan target must not poison gradients.
    rewards = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    targets = torch.tensor([[0.0, 2.0], [5.0, math.nan]])
    mask = torch.tensor([[True, True], [True, False]])
    out = regression_loss(rewards, targets, mask)
    assert out.loss.item() == pytest.approx(5 / 3)
    torch.testing.assert_close(out.per_dim_loss, torch.tensor([2.5, 0.0]))
    out.loss.backward()
    # dL/dr = 2 (r - s) / 3 on valid entries, 0 on the masked one.
    torch.testing.assert_close(rewards.grad, torch.tensor([[2 / 3, 0.0], [-4 / 3, 0.0]]))


def test_regression_loss_without_mask_uses_every_entry():
    rewards = torch.tensor([[1.0], [3.0]])
    out = regression_loss(rewards, torch.tensor([[0.0], [0.0]]))
    assert out.loss.item() == pytest.approx((1 + 9) / 2)


# ---- stability, shapes, dispatch ----


@pytest.mark.parametrize("loss_type", PAIR_LOSS_TYPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_losses_are_finite_at_huge_reward_differences(loss_type, dtype):
    rewards_a, rewards_b, labels = pair(
        [[1000.0, -1000.0, 1000.0], [-1000.0, 1000.0, 0.0]], [[1, 1, 0], [-1, -1, 1]], dtype
    )
    out = pair_loss(loss_type, rewards_a, rewards_b, labels)
    assert out.loss.dtype == torch.float32  # bf16 rewards are upcast
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert torch.isfinite(rewards_a.grad).all() and torch.isfinite(rewards_b.grad).all()


def test_huge_difference_values():
    # BT: y=+1, d=1000 -> -log sigmoid(1000) = 0; y=+1, d=-1000 -> log(1 + e^1000) = 1000.
    rewards_a, rewards_b, labels = pair([[1000.0, -1000.0]], [[1, 1]])
    torch.testing.assert_close(
        bt_loss(rewards_a, rewards_b, labels).per_dim_loss, torch.tensor([0.0, 1000.0])
    )
    # BTT tie at d=1000, k=5: -(ln 24 + logsigmoid(1000 - ln 5) + logsigmoid(-1000 - ln 5))
    #   = -(3.178054 + 0 - 1001.609438) = 998.431384.
    rewards_a, rewards_b, labels = pair([[1000.0]], [[0]], torch.float64)
    assert bt_with_ties_loss(rewards_a, rewards_b, labels).loss.item() == pytest.approx(998.431384)


@pytest.mark.parametrize("num_dims", [1, 3, 5])
@pytest.mark.parametrize("loss_type", PAIR_LOSS_TYPES)
def test_shapes_for_any_number_of_dimensions(loss_type, num_dims):
    generator = torch.Generator().manual_seed(num_dims)
    rewards_a = torch.randn(4, num_dims, generator=generator, requires_grad=True)
    rewards_b = torch.randn(4, num_dims, generator=generator)
    labels = torch.randint(-1, 2, (4, num_dims), generator=generator).float()
    tie_k = torch.full((num_dims,), DEFAULT_TIE_K)
    out = pair_loss(loss_type, rewards_a, rewards_b, labels, tie_k=tie_k, margin=torch.zeros(4))
    assert out.loss.shape == ()
    assert out.per_dim_loss.shape == (num_dims,)
    assert out.num_valid.shape == (num_dims,)
    assert not out.per_dim_loss.requires_grad
    out.loss.backward()
    assert rewards_a.grad.shape == (4, num_dims)
    accuracy, counts = preference_accuracy(rewards_a, rewards_b, labels)
    assert accuracy.shape == counts.shape == (num_dims,)


def test_pair_loss_dispatches_to_each_function():
    rewards_a, rewards_b, labels = pair([[0.7, -0.2], [1.5, 0.1]], [[1, 0], [-1, 1]])
    expected = {
        "bt": bt_loss(rewards_a, rewards_b, labels),
        "btt": bt_with_ties_loss(rewards_a, rewards_b, labels, tie_k=3.0),
        "margin": margin_loss(rewards_a, rewards_b, labels, margin=0.25),
    }
    for loss_type, want in expected.items():
        got = pair_loss(loss_type, rewards_a, rewards_b, labels, tie_k=3.0, margin=0.25)
        assert got.loss.item() == pytest.approx(want.loss.item())


def test_pair_loss_rejects_reg_and_unknown_types():
    rewards_a, rewards_b, labels = pair([[0.0]], [[1]])
    with pytest.raises(ValueError, match="regression_loss"):
        pair_loss("reg", rewards_a, rewards_b, labels)
    with pytest.raises(ValueError, match="unknown loss_type"):
        pair_loss("hinge", rewards_a, rewards_b, labels)


def test_pair_inputs_must_share_a_two_dimensional_shape():
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        bt_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        bt_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3))


# ---- learned k ----


def test_learned_tie_k_is_above_one():
    raw = torch.linspace(-10, 10, 41)
    assert (learned_tie_k(raw) > 1).all()
    # k = 1 + softplus(0) = 1 + ln 2 = 1.693147
    assert learned_tie_k(torch.tensor(0.0)).item() == pytest.approx(1 + LN2)


@pytest.mark.parametrize("k", [1.05, 2.0, DEFAULT_TIE_K, 100.0, 1000.0])
def test_initial_tie_k_raw_round_trips(k):
    raw = initial_tie_k_raw(k)
    assert isinstance(raw, float)
    assert learned_tie_k(torch.tensor(raw, dtype=torch.float64)).item() == pytest.approx(k)
    raw_tensor = initial_tie_k_raw(torch.tensor([k], dtype=torch.float64))
    assert raw_tensor.item() == pytest.approx(raw)


def test_initial_tie_k_raw_default_value():
    # softplus^-1(5 - 1) = ln(e^4 - 1) = ln(53.598150) = 3.981515.
    assert initial_tie_k_raw(DEFAULT_TIE_K) == pytest.approx(3.981515, abs=1e-6)
    with pytest.raises(ValueError, match="tie_k"):
        initial_tie_k_raw(1.0)


# ---- accuracy ----


def test_preference_accuracy_counts_zero_margin_wrong_and_excludes_ties():
    # dim 0: (d=1, +1) right, (d=-2, -1) right, (d=0, +1) wrong -> 2/3
    # dim 1: (d=0, +1) wrong, tie excluded, (d=-1, -1) right   -> 1/2
    # dim 2: all ties                                           -> nan, count 0
    rewards_a, rewards_b, labels = pair(
        [[1.0, 0.0, 3.0], [-2.0, 0.5, 0.0], [0.0, -1.0, -4.0]],
        [[1, 1, 0], [-1, 0, 0], [1, -1, 0]],
    )
    accuracy, counts = preference_accuracy(rewards_a, rewards_b, labels)
    assert accuracy[0].item() == pytest.approx(2 / 3)
    assert accuracy[1].item() == pytest.approx(1 / 2)
    assert math.isnan(accuracy[2].item())
    assert counts.tolist() == [3, 2, 0]
    assert not accuracy.requires_grad


def test_resolved_above_ignores_differences_below_bf16_spacing():
    """bf16 keeps 8 significant bits: spacing 2^(e - 7) for |x| in [2^e, 2^(e+1)), so 2^-6 at 2."""
    spacing_at_2 = 2.0 ** (1 - 7)
    higher = torch.tensor([2.0 + spacing_at_2 / 8, 2.0 + spacing_at_2, 0.01, -1.0])
    lower = torch.tensor([2.0, 2.0, 0.0, -1.0 - 2.0**-7])
    assert resolved_above(higher, lower).tolist() == [False, True, True, True]
