"""Preference metrics against hand-computed values (docs/reward_math.md, "Accuracy without ties" and after)."""

import math

import numpy as np
import pytest

from vlmrm.reward.metrics import (
    accuracy_without_ties,
    average_ranks,
    dimension_metrics,
    kendall_tau_b,
    overall_rewards,
    preference_metrics,
    spearman_rho,
    swap_consistency,
    tie_calibrated_accuracy,
)

# margins m = r_A - r_B and labels g of five pairs, two of them ties
MARGINS = np.array([2.0, -1.5, 0.3, -0.2, 1.0])
LABELS = np.array([1, -1, 0, 0, -1])


def test_tie_calibrated_accuracy_picks_the_best_positive_eps():
    # eps = 0: predictions sign(m) = [1, -1, 1, -1, 1] -> 2 of 5 right
    # eps = 0.2: pair 3 becomes a tie -> 3 of 5; eps = 0.3: pairs 2, 3 -> 4 of 5 (best, smallest)
    # eps = 1.0: pair 4 too -> still 4 of 5 (a larger eps does not replace the smaller)
    assert tie_calibrated_accuracy(MARGINS, LABELS) == (pytest.approx(0.8), pytest.approx(0.3))


def test_accuracy_without_ties_ignores_ties_and_counts_zero_margin_wrong():
    # non-tie pairs 0, 1, 4: right, right, wrong
    assert accuracy_without_ties(MARGINS, LABELS) == pytest.approx(2 / 3)
    assert accuracy_without_ties(np.array([0.0, 1.0]), np.array([1, 1])) == 0.5


def test_dimension_metrics_margins_and_counts():
    metrics = dimension_metrics(MARGINS, LABELS)
    oriented = [2.0, 1.5, -1.0]  # g * m over the non-tie pairs
    mean = sum(oriented) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in oriented) / 3)
    assert metrics["margin_mean"] == pytest.approx(mean)
    assert metrics["margin_std"] == pytest.approx(std)
    assert (metrics["count"], metrics["count_A"], metrics["count_B"], metrics["count_tie"]) == (5, 1, 2, 2)


def test_empty_dimensions_give_nan_not_errors():
    only_ties = dimension_metrics(np.array([0.5, -0.5]), np.array([0, 0]))
    assert math.isnan(only_ties["accuracy"]) and math.isnan(only_ties["margin_mean"])
    assert only_ties["accuracy_with_ties"] == 1.0  # eps = 0.5 predicts both ties
    nothing = dimension_metrics(np.array([]), np.array([], dtype=int))
    assert math.isnan(nothing["accuracy"]) and math.isnan(nothing["accuracy_with_ties"])
    assert nothing["count"] == 0


def test_overall_sums_normalised_rewards_and_is_scored_against_its_label():
    rewards_a = np.array([[1.0, 10.0], [3.0, 20.0]])
    rewards_b = np.array([[2.0, 30.0], [1.0, 10.0]])
    normalization = {"VQ": {"mean": 2.0, "std": 1.0}, "MQ": {"mean": 20.0, "std": 10.0}}
    # normalised A: [-1, -1] and [1, 0] -> Overall -2, 1; B: [0, 1] and [-1, -1] -> Overall 1, -2
    assert overall_rewards(rewards_a, ["VQ", "MQ"], normalization).tolist() == [-2.0, 1.0]
    assert overall_rewards(rewards_b, ["VQ", "MQ"], normalization).tolist() == [1.0, -2.0]
    labels = np.array([[-1, -1], [1, 1]])
    metrics = preference_metrics(
        rewards_a,
        rewards_b,
        labels,
        ["VQ", "MQ"],
        overall_labels=np.array([-1, -1]),
        normalization=normalization,
    )
    # Overall margins -3 and +3 against labels -1 and -1: one right
    assert metrics["accuracy_Overall"] == 0.5
    assert metrics["margin_mean_Overall"] == 0.0
    assert metrics["accuracy_VQ"] == 1.0 and metrics["accuracy_MQ"] == 1.0
    assert "accuracy_Overall" not in preference_metrics(rewards_a, rewards_b, labels, ["VQ", "MQ"])


def test_rank_correlations():
    # one discordant pair (1, 2) of 6: tau = (5 - 1) / 6; rank differences [0, 1, -1, 0]: rho = 1 - 6 * 2 / (4 * 15)
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # tau-b with a tie in x: C - D = 2, n0 = 3, one pair tied in x: 2 / sqrt((3 - 1) * 3)
    assert kendall_tau_b([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert average_ranks(np.array([10.0, 20.0, 10.0])).tolist() == [1.5, 3.0, 1.5]
    assert math.isnan(spearman_rho([1, 1, 1], [1, 2, 3]))


def test_swap_consistency_counts_flipped_preferences():
    # pair 0 and 1 flip; pair 2 keeps its sign; pair 3 has no preference to flip
    assert swap_consistency(np.array([1.0, -2.0, 0.5, 0.0]), np.array([-1.0, 2.0, 0.3, 0.0])) == 0.5


def test_tie_calibration_equals_the_definition_on_random_cases():
    """The sorted O(n log n) search against the definition: try every eps in {0} U {|m_i|}."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        margins = np.round(rng.normal(size=n), 1)  # rounding makes equal |m| and m = 0 common
        labels = rng.integers(-1, 2, size=n)
        best, best_eps = -1.0, 0.0
        for eps in np.unique(np.concatenate([[0.0], np.abs(margins)])):
            accuracy = np.mean(np.where(np.abs(margins) <= eps, 0, np.sign(margins)) == labels)
            if accuracy > best:
                best, best_eps = accuracy, eps
        assert tie_calibrated_accuracy(margins, labels) == (pytest.approx(best), pytest.approx(best_eps))
