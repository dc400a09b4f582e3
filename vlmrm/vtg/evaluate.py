"""Segments from a trained VTG model: greedy generation on each clip, parsed by the run's encoding.

``task: vtg`` in an eval YAML (``eval_rm.py`` / ``run_eval.sh``)::

    task: vtg
    model_dir: outputs/vtg_sft_tiny      # a vtg_sft / vtg_grpo output; unset: score the file's `pred`
    annotation_file: data/test.jsonl
    video_dir: data                        # optional, as in the data config
    output_dir: outputs/vtg_eval
    batch_size: 8
    max_new_tokens: 32

Writes `vtg_metrics.json` (R@0.3/0.5/0.7, mIoU overall and by difficulty tercile, parse rate) and
`vtg_predictions.jsonl` (per sample: line, qid, timestamp, pred, generated text, IoU).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vlmrm.core.config import AT_LEAST_ONE, Layout, load_config, option
from vlmrm.core.paths import check_directory
from vlmrm.media.processor import image_factor
from vlmrm.media.video import resolve_backend
from vlmrm.vtg.annotations import VTGDataset
from vlmrm.vtg.policy import load_trained
from vlmrm.vtg.prompting import frame_images, grounding_prompt
from vlmrm.vtg.score_predictions import evaluate_predictions, write_results
from vlmrm.vtg.time_encoding import ParseStats, build_encoding


@dataclass
class VTGEvalConfig:
    task: str = option("vtg", "Always vtg here.")
    annotation_file: str | None = option(
        None, "VTG JSONL to evaluate (with `pred` when there is no model).", path=True
    )
    model_dir: str | None = option(
        None, "A vtg_sft / vtg_grpo output folder; unset = score the file's pred.", path=True
    )
    video_dir: str | None = option(
        None, "Folder relative video paths resolve against (default: the file's).", path=True
    )
    output_dir: str = option("outputs/vtg_eval", "Where vtg_metrics.json and vtg_predictions.jsonl go.")
    batch_size: int = option(8, "Clips per generate call.", bound=AT_LEAST_ONE)
    max_new_tokens: int = option(32, "Most tokens generated per answer.", bound=AT_LEAST_ONE)
    max_samples: int | None = option(None, "Evaluate the first N samples only.", bound=AT_LEAST_ONE)
    repair_pred: bool = option(
        False,
        "Scoring a file's pred (no model_dir): swap reversed windows and clamp to [0, duration] first. "
        "Default: scored as written (moment_detr); recorded as pred_repair in vtg_metrics.json.",
    )


@torch.no_grad()
def predict_segments(model, processor, dataset, encoding, batch_size: int, max_new_tokens: int):
    """(records for :func:`write_results`, ParseStats): greedy answers, left-padded batches."""
    model.eval()
    tokenizer = processor.tokenizer
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    stats, records = ParseStats(), []
    try:
        for first in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(first, min(first + batch_size, len(dataset)))]
            prompts = [grounding_prompt(it["clip"], it["sentence"], it["duration"], encoding) for it in items]
            texts = [
                processor.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts
            ]
            images = [image for it in items for image in frame_images(it["clip"])]
            inputs = processor(text=texts, images=images, padding=True, return_tensors="pt").to(model.device)
            generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            answers = tokenizer.batch_decode(
                generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
            )
            for item, answer in zip(items, answers):
                records.append(
                    {
                        "line": item["line"],
                        "qid": item["qid"],
                        "timestamp": list(item["timestamp"]),
                        "pred": stats.record(encoding.parse(answer, item["duration"])),
                        "difficulty": item["difficulty"],
                        "text": answer,
                    }
                )
    finally:
        tokenizer.padding_side = side
    return records, stats


def run_vtg_evaluation(config: VTGEvalConfig) -> dict:
    from vlmrm.vtg.sft import checked_samples

    if config.model_dir is None:
        return evaluate_predictions(config.annotation_file, config.output_dir, config.repair_pred)
    check_directory(config.model_dir, "model_dir")  # a vtg_sft / vtg_grpo output: local, with vtg_run.json
    model, processor, run = load_trained(config.model_dir)
    backend = resolve_backend("auto")
    samples = checked_samples(config.annotation_file, config.video_dir, backend)[: config.max_samples]
    dataset = VTGDataset(samples, run["video"], backend, image_factor(processor))
    records, stats = predict_segments(
        model, processor, dataset, build_encoding(run["temporal"]), config.batch_size, config.max_new_tokens
    )
    extra = {
        "parsed": stats.parsed,
        "unparsed_rate": stats.unparsed_rate,
        "model_dir": str(Path(config.model_dir)),
    }
    return write_results(records, config.output_dir, config.annotation_file, extra)


def parse_vtg_eval_config(
    source: str | Path | dict | None = None, overrides=None, values=None
) -> VTGEvalConfig:
    """The ``task: vtg`` eval YAML (or its mapping) with command-line overrides."""
    (config,) = load_config(Layout((VTGEvalConfig,)), source, overrides, values)
    return config
