"""TRL and LLaMA-Factory preference files, built here with small PIL images, validate and train on the
tiny Qwen2.5-VL; TRL's margin column reaches the margin loss."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.reward.test_missing_labels import LogRecorder
from vlmrm.core.config import ConfigError
from vlmrm.pairs.validate import validate_image_pairs
from vlmrm.reward.config import parse_config
from vlmrm.reward.train import run_training
from vlmrm.testing.tiny import tiny_checkpoint

IMAGE_CONFIG = Path(__file__).resolve().parents[2] / "training_configs" / "image_quickstart_cpu.yaml"
COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 180, 60), "yellow": (230, 210, 40)}
FIXED_MARGIN = 0.5


def draw_images(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, colour in COLOURS.items():
        Image.fromarray(np.full((56, 56, 3), colour, np.uint8)).save(folder / f"{name}.png")
    return list(COLOURS)


def trl_conversational(folder: Path, margin: float | None = None) -> Path:
    """Eight pairs: the response naming the drawn colour is chosen."""
    names = draw_images(folder)
    lines = []
    for i in range(8):
        drawn, other = names[i % 4], names[(i + 1) % 4]
        record = {
            "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]}],
            "chosen": [{"role": "assistant", "content": drawn}],
            "rejected": [{"role": "assistant", "content": other}],
            "images": [f"{drawn}.png"],
        }
        if margin is not None:
            record["margin"] = margin
        lines.append(json.dumps(record))
    path = folder / "trl.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def llamafactory_sharegpt(folder: Path) -> Path:
    names = draw_images(folder)
    records = [
        {
            "conversations": [{"from": "human", "value": "<image>Which colour is shown?"}],
            "chosen": {"from": "gpt", "value": names[i % 4]},
            "rejected": {"from": "gpt", "value": names[(i + 2) % 4]},
            "images": [f"{names[i % 4]}.png"],
        }
        for i in range(8)
    ]
    (folder / "rm_pairs.json").write_text(json.dumps(records, indent=2))
    info = {"rm_pairs": {"file_name": "rm_pairs.json", "formatting": "sharegpt", "ranking": True}}
    (folder / "dataset_info.json").write_text(json.dumps(info))
    return folder / "rm_pairs.json"


def run(data: Path, out: Path, tiny_cache, max_steps: int, **overrides):
    values = {
        "model_name_or_path": str(tiny_checkpoint("qwen2_5_vl", cache_dir=tiny_cache)),
        "meta_data": str(data),
        "meta_data_test": None,
        "output_dir": str(out),
        "use_cpu": True,
        "max_steps": max_steps,
        "save_epochs": None,
        "eval_epochs": None,
        "save_strategy": "no",
        "normalization_pairs": 0,
        "disable_tqdm": True,
        **overrides,
    }
    recorder = LogRecorder()
    metrics = run_training(parse_config(IMAGE_CONFIG, values=values), callbacks=[recorder])
    return metrics, [log["loss"] for log in recorder.logs if "loss" in log]


def test_trl_conversational_file_validates_and_trains_two_steps(tiny_cache, tmp_path):
    data = trl_conversational(tmp_path / "trl", margin=FIXED_MARGIN)
    report = validate_image_pairs(data)
    assert (
        report.problems == [] and report.summary["schemas"] == {"trl": 8} and report.summary["margins"] == 8
    )
    _, losses = run(data, tmp_path / "out", tiny_cache, 2, loss_type="margin")
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)


def test_llamafactory_sharegpt_file_validates_and_trains_two_steps(tiny_cache, tmp_path):
    data = llamafactory_sharegpt(tmp_path / "lf")
    report = validate_image_pairs(data)
    assert report.problems == [] and report.summary["schemas"] == {"llamafactory_sharegpt": 8}
    metrics, losses = run(data, tmp_path / "out", tiny_cache, 2, eval_split_ratio=0.25)
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert metrics["eval_split_train_pairs"] == 6 and metrics["eval_split_held_out_pairs"] == 2
    assert "eval_accuracy_mean" in metrics


def test_margin_column_changes_the_margin_loss(tiny_cache, tmp_path):
    """First-step loss, before any update: a column equal to the fixed margin gives the fixed-margin
    loss; a larger margin a larger loss (-log sigmoid(d - m) grows with m)."""
    first = {}
    for name, margin in (("none", None), ("fixed", FIXED_MARGIN), ("large", 3.0)):
        data = trl_conversational(tmp_path / name, margin)
        _, losses = run(
            data, tmp_path / f"out_{name}", tiny_cache, 1, loss_type="margin", margin=FIXED_MARGIN
        )
        first[name] = losses[0]
    assert first["fixed"] == pytest.approx(first["none"], rel=1e-5)
    assert first["large"] > first["none"] + 1.0


def test_margin_column_needs_the_margin_loss(tmp_path):
    data = trl_conversational(tmp_path / "trl", margin=1.0)
    (tmp_path / "unused").mkdir()  # exists (the path check passes) but is never loaded
    values = {"model_name_or_path": str(tmp_path / "unused"), "meta_data": str(data), "meta_data_test": None}
    values |= {"output_dir": str(tmp_path / "out"), "use_cpu": True, "loss_type": "btt"}
    with pytest.raises(ConfigError, match="8 pair\\(s\\) carry a margin .* got loss_type 'btt'"):
        run_training(parse_config(IMAGE_CONFIG, values=values))
