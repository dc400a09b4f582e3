"""Preference metrics on reward margins (numpy, pure): the same code for training and evaluation.

m_i = r_A - r_B of pair i, g_i in {+1, -1, 0} (reward_math.md, "Accuracy").
"""

from __future__ import annotations

import numpy as np


def accuracy_without_ties(margins: np.ndarray, labels: np.ndarray) -> float:
    """Over pairs with g != 0: correct iff sign(m) == g; m == 0 counts as wrong. nan if none."""
    valid = labels != 0
    if not valid.any():
        return float("nan")
    return float(np.mean(np.sign(margins[valid]) == labels[valid]))


def tie_calibrated_accuracy(margins: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Best accuracy over eps when a tie is predicted iff |m| <= eps (Deutsch et al. 2023).

    Candidates: eps in {0} U {|m_i|}. Returns (accuracy over all pairs, the eps that achieves it;
    the smallest such eps). nan, nan for no pairs.
    """
    if margins.size == 0:
        return float("nan"), float("nan")
    best_accuracy, best_eps = -1.0, 0.0
    for eps in np.unique(np.concatenate([[0.0], np.abs(margins)])):
        predicted = np.where(np.abs(margins) <= eps, 0, np.sign(margins))
        accuracy = float(np.mean(predicted == labels))
        if accuracy > best_accuracy:
            best_accuracy, best_eps = accuracy, float(eps)
    return best_accuracy, best_eps


def preference_metrics(
    rewards_a: np.ndarray, rewards_b: np.ndarray, labels: np.ndarray, eval_dim: list[str]
) -> dict:
    """Per-dimension metrics; keys ``accuracy_<dim>``, ``accuracy_with_ties_<dim>``, ``tie_eps_<dim>``,
    ``margin_mean_<dim>`` (mean of g * m over non-tie pairs: preferred minus other), ``count_<dim>``.

    Args:
        rewards_a, rewards_b, labels: (N, D) arrays, D = len(eval_dim).
    """
    margins = np.asarray(rewards_a, dtype=np.float64) - np.asarray(rewards_b, dtype=np.float64)
    labels = np.asarray(labels)
    metrics: dict[str, float] = {}
    for d, dim in enumerate(eval_dim):
        accuracy_ties, eps = tie_calibrated_accuracy(margins[:, d], labels[:, d])
        metrics[f"accuracy_{dim}"] = accuracy_without_ties(margins[:, d], labels[:, d])
        metrics[f"accuracy_with_ties_{dim}"] = accuracy_ties
        metrics[f"tie_eps_{dim}"] = eps
        oriented = margins[:, d][labels[:, d] != 0] * labels[:, d][labels[:, d] != 0]
        metrics[f"margin_mean_{dim}"] = float(oriented.mean()) if oriented.size else float("nan")
        metrics[f"count_{dim}"] = int(labels.shape[0])
    return metrics
