"""``report.html`` of an evaluation: accuracy across checkpoints, margin histograms, calibration.

Self-contained (PNGs embedded as base64, also written beside the HTML) so it can be mailed or
attached to an experiment tracker. Also writes the same scalars to TensorBoard under
``tensorboard/<model>/`` (step = checkpoint step).

Calibration: under the trained Rao-Kupper model P(A > B | not tied) = sigmoid(m) for margin
m = r_A - r_B (the ``ln k`` terms cancel: docs/reward_math.md, "Bradley-Terry with ties"), so a calibrated model's non-tie pairs with
predicted probability p are won by A with frequency p. Pairs are grouped in ``CALIBRATION_BINS``
equal-width bins of p; each point is (mean p, observed frequency of A) of one bin.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np

CALIBRATION_BINS = 10
HISTOGRAM_BINS = 30


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return base64.b64encode(path.read_bytes()).decode()


def _ok(results: list[dict]) -> list[dict]:
    return [r for r in results if "metrics" in r]


def accuracy_plot(results: list[dict], out: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for model_dir in dict.fromkeys(r["model_dir"] for r in _ok(results)):
        runs = sorted((r for r in _ok(results) if r["model_dir"] == model_dir), key=lambda r: r["step"] or 0)
        for dim in runs[-1]["dimensions"]:
            steps = [r["step"] or 0 for r in runs]
            ax.plot(
                steps,
                [r["metrics"][f"accuracy_{dim}"] for r in runs],
                marker="o",
                label=f"{Path(model_dir).name} {dim}",
            )
    ax.set_xlabel("checkpoint step")
    ax.set_ylabel("accuracy (ties excluded)")
    ax.set_ylim(0, 1.02)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.legend(fontsize=7)
    return _save(fig, out / "accuracy_by_checkpoint.png")


def calibration_points(
    margins: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS
) -> list[tuple[float, float, int]]:
    """(mean predicted P(A > B), observed frequency of A, count) per non-empty bin, non-tie pairs only."""
    decided = (labels != 0) & ~np.isnan(labels)  # a missing (NaN) label is no pair here
    p = 1 / (1 + np.exp(-margins[decided]))
    won = labels[decided] == 1
    index = np.minimum((p * bins).astype(int), bins - 1)
    return [
        (float(p[index == b].mean()), float(won[index == b].mean()), int((index == b).sum()))
        for b in range(bins)
        if (index == b).any()
    ]


def _pair_arrays(result: dict, dim: str) -> tuple[np.ndarray, np.ndarray]:
    margins = np.array([p["rewards_A"][dim] - p["rewards_B"][dim] for p in result["pairs"]])
    labels = np.array(
        [np.nan if p["labels"][dim] is None else p["labels"][dim] for p in result["pairs"]], dtype=np.float64
    )
    return margins, labels


def margin_and_calibration_plots(result: dict, out: Path, name: str) -> tuple[str, str]:
    plt = _plt()
    dims = [d for d in result["dimensions"] if result["pairs"] and d in result["pairs"][0]["labels"]]
    fig_h, axes_h = plt.subplots(1, max(1, len(dims)), figsize=(3.2 * max(1, len(dims)), 3), squeeze=False)
    fig_c, ax_c = plt.subplots(figsize=(4, 4))
    ax_c.plot([0, 1], [0, 1], color="grey", linestyle=":")
    for ax, dim in zip(axes_h[0], dims):
        margins, labels = _pair_arrays(result, dim)
        for value, label in ((1, "A better"), (-1, "B better"), (0, "tie")):
            if (labels == value).any():
                ax.hist(margins[labels == value], bins=HISTOGRAM_BINS, alpha=0.5, label=label)
        ax.set_title(f"{dim}: r_A - r_B")
        ax.legend(fontsize=7)
        points = calibration_points(margins, labels)
        if points:
            ax_c.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=dim)
    ax_c.set_xlabel("predicted P(A > B | not tied)")
    ax_c.set_ylabel("observed frequency of A")
    ax_c.legend(fontsize=7)
    return _save(fig_h, out / f"margins_{name}.png"), _save(fig_c, out / f"calibration_{name}.png")


def write_tensorboard(results: list[dict], out: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    for model_dir in dict.fromkeys(r["model_dir"] for r in _ok(results)):
        with SummaryWriter(str(out / "tensorboard" / Path(model_dir).name)) as writer:
            for r in _ok(results):
                if r["model_dir"] != model_dir:
                    continue
                for key, value in r["metrics"].items():
                    if isinstance(value, (int, float)) and math.isfinite(value):
                        writer.add_scalar(f"eval/{key}", value, r["step"] or 0)


def write_report(results: list[dict], out: Path) -> Path:
    """Write ``report.html`` + PNGs (and TensorBoard scalars) for the evaluation ``results``."""
    out.mkdir(parents=True, exist_ok=True)
    parts = [
        "<html><head><meta charset='utf-8'><title>vlmrm evaluation</title></head><body>",
        "<h1>vlmrm evaluation</h1>",
    ]
    ok = _ok(results)
    if ok:
        parts.append(
            f"<h2>Accuracy per checkpoint</h2><img src='data:image/png;base64,{accuracy_plot(results, out)}'>"
        )
    parts.append("<h2>Results</h2><table border='1' cellspacing='0' cellpadding='3'>")
    parts.append(
        "<tr><th>model</th><th>checkpoint</th><th>step</th><th>dimension</th><th>accuracy</th><th>with ties</th><th>margin mean</th><th>count</th><th>note</th></tr>"
    )
    for r in results:
        name = html.escape(str(r.get("checkpoint", "")))
        if "metrics" not in r:
            parts.append(
                f"<tr><td>{html.escape(r['model_dir'])}</td><td>{name}</td><td></td><td></td><td colspan='4'></td><td>{html.escape(r.get('error', ''))}</td></tr>"
            )
            continue
        m = r["metrics"]
        for dim in r["dimensions"]:
            parts.append(
                f"<tr><td>{html.escape(r['model_dir'])}</td><td>{name}</td><td>{r['step']}</td><td>{dim}</td>"
                f"<td>{m[f'accuracy_{dim}']:.4f}</td><td>{m[f'accuracy_with_ties_{dim}']:.4f}</td>"
                f"<td>{m[f'margin_mean_{dim}']:.4f}</td><td>{m[f'count_{dim}']}</td><td>{len(r['skipped'])} skipped</td></tr>"
            )
    parts.append("</table>")
    for i, r in enumerate(ok):
        if not r["pairs"]:
            continue
        margins_png, calibration_png = margin_and_calibration_plots(r, out, f"{i:03d}")
        parts.append(f"<h2>{html.escape(str(r['checkpoint']))}</h2>")
        parts.append(
            f"<img src='data:image/png;base64,{margins_png}'><img src='data:image/png;base64,{calibration_png}'>"
        )
    parts.append("</body></html>")
    report = out / "report.html"
    report.write_text("\n".join(parts))
    write_tensorboard(results, out)
    return report
