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
import time
from pathlib import Path

import numpy as np

CALIBRATION_BINS = 10
HISTOGRAM_BINS = 30
"""Bins of each margin histogram, the same edges for every label so bar heights compare."""
LABEL_NAMES = {1: "A better", -1: "B better", 0: "tie"}


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


LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
STEP_OFFSET_FRACTION = 0.015
"""Each line of the accuracy plot is shifted right by this fraction of the step range times its
index, so lines with equal values sit side by side instead of hiding each other."""


def _shown(results: list[dict]) -> list[dict]:
    """Evaluated results that are not copies of an earlier checkpoint (``identical_to``)."""
    return [r for r in _ok(results) if not r.get("identical_to")]


def accuracy_plot(results: list[dict], out: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    shown = _shown(results)
    all_steps = [r["step"] or 0 for r in shown]
    offset = STEP_OFFSET_FRACTION * max(max(all_steps, default=0) - min(all_steps, default=0), 1)
    line = 0
    for model_dir in dict.fromkeys(r["model_dir"] for r in shown):
        runs = sorted((r for r in shown if r["model_dir"] == model_dir), key=lambda r: r["step"] or 0)
        for dim in runs[-1]["dimensions"]:
            ax.plot(
                [(r["step"] or 0) + line * offset for r in runs],
                [r["metrics"][f"accuracy_{dim}"] for r in runs],
                marker=MARKERS[line % len(MARKERS)],
                linestyle=LINE_STYLES[line % len(LINE_STYLES)],
                markersize=6,
                alpha=0.85,
                label=f"{Path(model_dir).name} {dim}",
            )
            line += 1
    ax.set_xlabel("checkpoint step (lines offset slightly so equal values stay visible)")
    ax.set_ylabel("accuracy (ties excluded)")
    ax.set_ylim(0, 1.05)
    ax.xaxis.set_major_locator(_plt().MaxNLocator(integer=True))
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
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
    ax_c.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    for index, (ax, dim) in enumerate(zip(axes_h[0], dims)):
        margins, labels = _pair_arrays(result, dim)
        edges = np.histogram_bin_edges(
            margins[~np.isnan(labels)], bins=HISTOGRAM_BINS
        )  # shared by all labels
        for value, label in LABEL_NAMES.items():
            if (labels == value).any():
                ax.hist(margins[labels == value], bins=edges, alpha=0.5, label=label, histtype="stepfilled")
        ax.set_title(f"{dim}")
        ax.set_xlabel("margin r_A - r_B")
        ax.set_ylabel("pairs")
        ax.legend(fontsize=7)
        points = calibration_points(margins, labels)
        if points:
            ax_c.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                marker=MARKERS[index % len(MARKERS)],
                linestyle=LINE_STYLES[index % len(LINE_STYLES)],
                alpha=0.85,
                label=dim,
            )
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


TABLE_COLUMNS = {
    "accuracy": ("accuracy", "{:.4f}"),
    "accuracy_with_ties": ("with ties", "{:.4f}"),
    "tie_eps": ("tie eps", "{:.4g}"),
    "margin_mean": ("margin mean", "{:.4f}"),
    "margin_std": ("margin std", "{:.4f}"),
    "swap_consistency": ("swap consistency", "{:.4f}"),
    "kendall_tau": ("Kendall tau", "{:.4f}"),
    "spearman_rho": ("Spearman rho", "{:.4f}"),
    "count": ("pairs", "{}"),
    "count_A": ("A better", "{}"),
    "count_B": ("B better", "{}"),
    "count_tie": ("ties", "{}"),
}
"""Per-dimension metrics in the results table: every metric column of the CSV, in this order."""
GLOSSARY = {
    "accuracy": "fraction of non-tie pairs whose margin m = r_A - r_B has the sign of the label.",
    "with ties": "tie-calibrated accuracy: |m| <= eps counts as a predicted tie, eps (tie eps) chosen "
    "to maximise it over all labelled pairs, ties included.",
    "margin mean / std": "mean and standard deviation of the oriented margin (preferred minus other "
    "reward) over non-tie pairs; larger mean = more confident, correct preferences.",
    "swap consistency": "fraction of pairs whose preference flips when A and B are exchanged "
    "(a pair with m = 0 counts as inconsistent). vlmrm's reward models score each video in its own "
    "sequence, so for them it is the fraction of pairs with a non-zero margin.",
    "Kendall tau / Spearman rho": "rank correlation of the rewards with the data's absolute scores "
    "(only with score_<dim>_A / _B columns).",
    "pairs / A better / B better / ties": "labelled pairs of the dimension and how the labels split.",
    "calibration": "pairs binned by predicted P(A > B | not tied) = sigmoid(m); a calibrated model "
    "lies on the diagonal.",
}
STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.8em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td.text { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
.header td { text-align: left; border: none; padding: 1px 12px 1px 0; background: none !important; }
.note { color: #666; white-space: normal; min-width: 14em; } .error { color: #b00020; }
img { max-width: 100%; margin: 0.5em 1em 0.5em 0; border: 1px solid #eee; vertical-align: top; }
dt { font-weight: bold; } dd { margin: 0 0 0.5em 1.5em; }
"""


def _cell(value, fmt: str) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "<td>–</td>"
    return f"<td>{fmt.format(value)}</td>"


def _header(results: list[dict], config: dict | None, created: str) -> list[str]:
    """Dataset, pair counts, date, models and checkpoints, and the evaluation settings."""
    config = config or {}
    ok = _ok(results)
    pairs = max((len(r["pairs"]) for r in ok), default=0)
    skipped = max((len(r["skipped"]) for r in ok), default=0)
    rows = {
        "dataset": config.get("dataset_path", ""),
        "pairs": f"{pairs} evaluated, {skipped} skipped",
        "date": created,
        "models": ", ".join(dict.fromkeys(str(r["model_dir"]) for r in results)),
        "checkpoints": ", ".join(Path(str(r.get("checkpoint", ""))).name for r in results),
        "settings": ", ".join(
            f"{key}={config[key]}"
            for key in ("eval_batch_size", "swap_check", "max_eval_samples", "checkpoint_pattern")
            if key in config
        ),
    }
    cells = "".join(
        f"<tr><td><b>{name}</b></td><td>{html.escape(str(value))}</td></tr>" for name, value in rows.items()
    )
    return [f"<table class='header'>{cells}</table>"]


def _results_table(results: list[dict]) -> list[str]:
    heads = ["model", "checkpoint", "step", "dimension", *(h for h, _ in TABLE_COLUMNS.values()), "note"]
    parts = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>"]
    width = len(heads) - 4
    for r in results:
        model = f"<td class='text'>{html.escape(Path(str(r['model_dir'])).name)}</td>"
        name = f"<td class='text'>{html.escape(Path(str(r.get('checkpoint', ''))).name)}</td>"
        if "metrics" not in r:
            error = html.escape(r.get("error", ""))
            parts.append(
                f"<tr>{model}{name}<td></td><td></td><td colspan='{width}' class='text error'>{error}</td></tr>"
            )
            continue
        note = f"{len(r['skipped'])} skipped"
        if r.get("identical_to"):
            note += f"; weights identical to {r['identical_to']} (scores reused)"
        for dim in r["dimensions"]:
            values = "".join(
                _cell(r["metrics"].get(f"{key}_{dim}"), fmt) for key, (_, fmt) in TABLE_COLUMNS.items()
            )
            parts.append(
                f"<tr>{model}{name}<td>{r['step']}</td><td class='text'>{html.escape(dim)}</td>{values}"
                f"<td class='text note'>{html.escape(note)}</td></tr>"
            )
    parts.append("</table>")
    return parts


def write_report(results: list[dict], out: Path, config: dict | None = None) -> Path:
    """Write ``report.html`` + PNGs (and TensorBoard scalars) for the evaluation ``results``;
    ``config``: the evaluation config (as a dict) for the header."""
    out.mkdir(parents=True, exist_ok=True)
    created = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>vlmrm evaluation</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>vlmrm evaluation report</h1>",
        *_header(results, config, created),
    ]
    if _shown(results):
        parts.append(
            "<h2>Accuracy per checkpoint</h2>"
            f"<img alt='accuracy per checkpoint' src='data:image/png;base64,{accuracy_plot(results, out)}'>"
        )
    parts.append("<h2>Results</h2>")
    parts += _results_table(results)
    for i, r in enumerate(_shown(results)):
        if not r["pairs"]:
            continue
        margins_png, calibration_png = margin_and_calibration_plots(r, out, f"{i:03d}")
        title = f"{Path(str(r['model_dir'])).name} / {Path(str(r['checkpoint'])).name}"
        parts.append(f"<h2>{html.escape(title)}: margins and calibration</h2>")
        parts.append(
            f"<img alt='margin histograms' src='data:image/png;base64,{margins_png}'>"
            f"<img alt='calibration' src='data:image/png;base64,{calibration_png}'>"
        )
    parts.append("<h2>Glossary</h2><dl>")
    parts += [f"<dt>{html.escape(term)}</dt><dd>{html.escape(text)}</dd>" for term, text in GLOSSARY.items()]
    parts.append("</dl></body></html>")
    report = out / "report.html"
    report.write_text("\n".join(parts))
    write_tensorboard(results, out)
    return report
