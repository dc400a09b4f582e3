"""Preference metrics on reward margins (numpy, pure): the same code for training and evaluation.

m_i = r_A - r_B of pair i, g_i in {+1, -1, 0} (docs/reward_math.md, "Accuracy without ties" and
the sections after it). ``RewardTrainer``'s
``compute_metrics`` and ``eval_rm.py`` both call :func:`preference_metrics`, so the numbers of an
in-training evaluation and of a later ``eval_rm.py`` run on the same checkpoint and data agree.
"""

from __future__ import annotations

import math

import numpy as np

from vlmrm.pairs.labels import OVERALL


def accuracy_without_ties(margins: np.ndarray, labels: np.ndarray) -> float:
    """Over pairs with g != 0: correct iff sign(m) == g; m == 0 counts as wrong. nan if none."""
    valid = labels != 0
    if not valid.any():
        return float("nan")
    return float(np.mean(np.sign(margins[valid]) == labels[valid]))


def tie_calibrated_accuracy(margins: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Best accuracy over eps when a tie is predicted iff |m| <= eps (Deutsch et al. 2023).

    Candidates: eps in {0} U {|m_i|}. Returns (accuracy over all pairs, the eps that achieves it;
    the smallest such eps). nan, nan for no pairs. O(n log n): with pairs sorted by |m|, the first
    k(eps) are predicted ties, so correct(eps) = ties among them + sign-correct non-ties after them.
    """
    margins, labels = np.asarray(margins, np.float64), np.asarray(labels)
    if margins.size == 0:
        return float("nan"), float("nan")
    order = np.argsort(np.abs(margins), kind="stable")
    sorted_abs, sorted_labels = np.abs(margins)[order], labels[order]
    tie_prefix = np.concatenate([[0], np.cumsum(sorted_labels == 0)])
    right_prefix = np.concatenate(
        [[0], np.cumsum((np.sign(margins[order]) == sorted_labels) & (sorted_labels != 0))]
    )
    candidates = np.unique(np.concatenate([[0.0], sorted_abs]))
    predicted_ties = np.searchsorted(sorted_abs, candidates, side="right")
    correct = tie_prefix[predicted_ties] + right_prefix[-1] - right_prefix[predicted_ties]
    best = int(np.argmax(correct))  # first maximum = smallest eps
    return float(correct[best] / margins.size), float(candidates[best])


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of the ranks they span (as scipy.stats.rankdata 'average')."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + 1 + end) / 2
    return ranks


def spearman_rho(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of average ranks; nan for fewer than 2 points or a constant input."""
    if len(x) < 2:
        return float("nan")
    rx, ry = average_ranks(np.asarray(x, float)), average_ranks(np.asarray(y, float))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denominator) if denominator else float("nan")


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2)), n0 = n(n-1)/2, n1 / n2 = pairs tied in x / y.

    O(n^2) over all pairs, vectorised per row: fine for evaluation sets of a few thousand items.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 2:
        return float("nan")
    concordant_minus_discordant, tied_x, tied_y = 0.0, 0, 0
    for i in range(n - 1):
        dx, dy = np.sign(x[i + 1 :] - x[i]), np.sign(y[i + 1 :] - y[i])
        concordant_minus_discordant += float((dx * dy).sum())
        tied_x += int((dx == 0).sum())
        tied_y += int((dy == 0).sum())
    n0 = n * (n - 1) / 2
    denominator = math.sqrt((n0 - tied_x) * (n0 - tied_y))
    return concordant_minus_discordant / denominator if denominator else float("nan")


def dimension_metrics(margins: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Metrics of one dimension: accuracy (no ties), tie-calibrated accuracy and its eps, mean and std
    of the oriented margin g * m over non-tie pairs (preferred minus other), and label counts.
    Pairs whose label is missing (NaN) are left out of everything but ``count_missing``."""
    margins, labels = np.asarray(margins, np.float64), np.asarray(labels, np.float64)
    labelled = ~np.isnan(labels)
    missing = int((~labelled).sum())
    margins, labels = margins[labelled], labels[labelled]
    accuracy_ties, eps = tie_calibrated_accuracy(margins, labels)
    decided = labels != 0
    oriented = margins[decided] * labels[decided]
    return {
        "accuracy": accuracy_without_ties(margins, labels),
        "accuracy_with_ties": accuracy_ties,
        "tie_eps": eps,
        "margin_mean": float(oriented.mean()) if oriented.size else float("nan"),
        "margin_std": float(oriented.std()) if oriented.size else float("nan"),
        "count": int(labels.size),
        "count_A": int((labels == 1).sum()),
        "count_B": int((labels == -1).sum()),
        "count_tie": int((labels == 0).sum()),
        "count_missing": missing,
    }


def normalize_rewards(rewards: np.ndarray, eval_dim: list[str], normalization: dict | None) -> np.ndarray:
    """(r_d - mean_d) / std_d with the training-set statistics ``{dim: {"mean", "std"}}`` of the
    checkpoint (``RewardSpec.normalization``); unchanged when there are none. std 0 divides by 1."""
    rewards = np.asarray(rewards, np.float64)
    if not normalization:
        return rewards
    mean = np.array([normalization[dim]["mean"] for dim in eval_dim])
    std = np.array([normalization[dim]["std"] for dim in eval_dim])
    return (rewards - mean) / np.where(std > 0, std, 1.0)


def overall_rewards(
    rewards: np.ndarray, eval_dim: list[str], normalization: dict | None = None
) -> np.ndarray:
    """Overall reward = sum over dimensions of the normalised rewards (raw when no statistics)."""
    return normalize_rewards(rewards, eval_dim, normalization).sum(axis=-1)


def preference_metrics(
    rewards_a: np.ndarray,
    rewards_b: np.ndarray,
    labels: np.ndarray,
    eval_dim: list[str],
    overall_labels: np.ndarray | None = None,
    normalization: dict | None = None,
) -> dict[str, float]:
    """Per-dimension metrics, keys ``<metric>_<dim>`` (see :func:`dimension_metrics`), plus the same
    for ``Overall`` when the data has an Overall label per pair, and ``accuracy_mean`` (mean accuracy
    over the dimensions: the default metric for the best model and early stopping).

    Args:
        rewards_a, rewards_b, labels: (N, D) arrays, D = len(eval_dim); labels in {+1, -1, 0}.
        overall_labels: (N,) labels of an ``Overall`` column, if the data has one.
        normalization: ``{dim: {"mean", "std"}}`` of the training rewards, for Overall.
    """
    rewards_a, rewards_b = np.asarray(rewards_a, np.float64), np.asarray(rewards_b, np.float64)
    margins = rewards_a - rewards_b
    labels = np.asarray(labels)
    columns = {dim: (margins[:, d], labels[:, d]) for d, dim in enumerate(eval_dim)}
    if overall_labels is not None:
        overall_margin = overall_rewards(rewards_a, eval_dim, normalization) - overall_rewards(
            rewards_b, eval_dim, normalization
        )
        columns[OVERALL] = (overall_margin, np.asarray(overall_labels))
    metrics: dict[str, float] = {}
    for dim, (margin, label) in columns.items():
        for name, value in dimension_metrics(margin, label).items():
            metrics[f"{name}_{dim}"] = value
    accuracies = [
        metrics[f"accuracy_{dim}"] for dim in eval_dim if not math.isnan(metrics[f"accuracy_{dim}"])
    ]
    metrics["accuracy_mean"] = float(np.mean(accuracies)) if accuracies else float("nan")
    return metrics


def swap_consistency(margins: np.ndarray, swapped_margins: np.ndarray) -> float:
    """Fraction of pairs whose preference flips, as it must, when A and B are exchanged.

    A pair counts when sign(m_swapped) == -sign(m) and m != 0; an evaluator that ignores the order
    of its inputs (or a pipeline that mixes the sides up) scores well below 1.
    """
    margins, swapped_margins = np.asarray(margins, np.float64), np.asarray(swapped_margins, np.float64)
    if margins.size == 0:
        return float("nan")
    return float(np.mean((np.sign(swapped_margins) == -np.sign(margins)) & (margins != 0)))
