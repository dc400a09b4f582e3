"""End-to-end training on CPU with real mp4s: torchrun (DDP, DeepSpeed ZeRO-2/3), every family, resume.

These launch real processes and train the tiny model; they are marked slow and run in CI.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import tiny_run_values
from vlmrm.modeling.loading import load_reward_model
from vlmrm.reward.collator import PairCollator
from vlmrm.reward.config import parse_config
from vlmrm.reward.train import build_datasets, build_trainer, run_training
from vlmrm.reward.validate import DATA_SUMMARY_FILE
from vlmrm.testing.tiny import tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def write_config(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def launch(
    config: Path, gpus: int = 2, extra: tuple[str, ...] = (), port: int = 29531
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    command = [
        "bash",
        str(ROOT / "run_distributed.sh"),
        "--gpus",
        str(gpus),
        "--port",
        str(port),
        "--config",
        str(config),
        "--",
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)


def rewards_on_test_batch(checkpoint: Path, values: dict) -> torch.Tensor:
    model, processor = load_reward_model(checkpoint)
    cfg = parse_config(values=values)
    _, test = build_datasets(cfg, processor)
    batch = PairCollator(processor, cfg.data.eval_dim, cfg.data.prompt_template_type)([test[0], test[1]])
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k not in ("labels", "pair_ids")}).rewards


SPECIAL_TOKENS = {
    "use_special_tokens": True,
    "reward_token": "special",
    "prompt_template_type": "simple_special",
}


@pytest.mark.parametrize(
    "name, deepspeed, port, extra_values",
    [
        ("ddp", None, 29531, {}),
        ("zero2", "ds_config/zero2.json", 29532, {}),
        # ZeRO-3 partitions the embedding while the reward-token rows are initialised
        ("zero3", "ds_config/zero3.json", 29533, SPECIAL_TOKENS),
    ],
)
def test_two_process_training_writes_a_loadable_checkpoint(
    name, deepspeed, port, extra_values, tiny_cache, synthetic_pairs, tmp_path
):
    out = tmp_path / name
    values = tiny_run_values(
        tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache),
        synthetic_pairs,
        out,
        max_steps=4,
        per_device_train_batch_size=2,
        save_strategy="steps",
        save_steps=2,
        eval_strategy="steps",
        eval_steps=4,
        **extra_values,
    )
    if deepspeed:
        values["deepspeed"] = str(ROOT / deepspeed)
    result = launch(write_config(tmp_path / "cfg.yaml", values), port=port)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--nproc_per_node 2" in result.stderr
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    metrics = json.loads((out / "eval_results.json").read_text())
    assert set(metrics) >= {"eval_loss", "eval_accuracy_VQ", "eval_loss_TA"}
    final = rewards_on_test_batch(out, values)
    assert torch.equal(final, rewards_on_test_batch(out / "checkpoint-4", values))
    assert torch.isfinite(final).all()
    if name == "ddp":
        assert_one_rank_speaks(result, out)


def assert_one_rank_speaks(result: subprocess.CompletedProcess, out: Path) -> None:
    """Issue 19: rank 0 prints the summaries once; rank 1 only warnings / errors, prefixed; no DDP
    unused-parameter warning (``ddp_find_unused_parameters`` is False for the reward model)."""
    log = result.stderr.splitlines()
    data_titles = [line for line in log if " vlmrm.reward.validate: data: " in line]
    assert len(data_titles) == 2  # train.csv and test.csv, once each
    assert sum("vlmrm.reward.train: parameters:" in line for line in log) == 1
    assert sum("reward normalisation (training pairs)" in line for line in log) == 1
    for line in log:
        if line.startswith("[rank 1]"):
            assert " WARNING " in line or " ERROR " in line, line
        assert " INFO " not in line or not line.startswith("[rank "), line
    assert "find_unused_parameters=True" not in result.stderr
    summary = json.loads((out / DATA_SUMMARY_FILE).read_text())
    assert len(summary) == 2 and all("pairs" in value for value in summary.values())
    printed = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == len(set(printed))  # no line twice: one copy, not one per rank
    finals = [line for line in printed if re.match(r"\{'eval_loss': \d", line)]  # train_rm's rounded floats
    assert len(finals) == 1  # the final metrics, from rank 0 only (Trainer's own log lines quote values)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_each_family_trains_and_reloads_bit_identical(family, tiny_cache, synthetic_pairs, tmp_path):
    values = tiny_run_values(
        tiny_checkpoint(family, cache_dir=tiny_cache), synthetic_pairs, tmp_path / "out", max_steps=3
    )
    metrics = run_training(parse_config(values=values))
    model, processor = load_reward_model(tmp_path / "out")
    cfg = parse_config(values=values)
    _, test = build_datasets(cfg, processor)
    reloaded = build_trainer(cfg, model, processor, eval_dataset=test).evaluate()
    # the reloaded checkpoint reproduces the in-training final evaluation exactly
    for key in ("eval_loss", "eval_accuracy_VQ", "eval_margin_mean_MQ", "eval_margin_mean_TA"):
        assert reloaded[key] == metrics[key], key
    assert metrics["eval_margin_mean_VQ"] != 0  # the head is trained, not a constant


def test_resume_reproduces_the_uninterrupted_losses(tiny_cache, synthetic_pairs, tmp_path):
    checkpoint = tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache)
    common = {"max_steps": 6, "save_strategy": "steps", "save_steps": 3, "per_device_train_batch_size": 2}
    full = tiny_run_values(checkpoint, synthetic_pairs, tmp_path / "full", **common)
    run_training(parse_config(values=full))
    # a run that stopped after its step-3 checkpoint, restarted with resume_from_checkpoint: latest
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full" / "checkpoint-3", resumed_dir / "checkpoint-3")
    resumed = tiny_run_values(
        checkpoint, synthetic_pairs, resumed_dir, resume_from_checkpoint="latest", **common
    )
    run_training(parse_config(values=resumed))

    def losses(folder):
        state = json.loads((folder / "checkpoint-6" / "trainer_state.json").read_text())
        return [(e["step"], e["loss"]) for e in state["log_history"] if "loss" in e]

    assert len(losses(tmp_path / "full")) == 6
    assert losses(resumed_dir) == losses(tmp_path / "full")


def test_bad_config_fails_before_any_model_is_loaded(synthetic_pairs, tmp_path):
    empty_model = tmp_path / "empty-model-folder"  # passes the path check; loading it would fail naming it
    empty_model.mkdir()
    base = tiny_run_values(empty_model, synthetic_pairs, tmp_path / "out")
    cases = {
        "unknown key": (
            {**base, "learning_rat": 1e-3},
            "unknown key 'learning_rat'; did you mean 'learning_rate'?",
        ),
        "eval_dim not in CSV": ({**base, "eval_dim": ["VQ", "Aesthetics"]}, "[Aesthetics]: missing column"),
        "special without tokens": ({**base, "reward_token": "special"}, "needs use_special_tokens: true"),
    }
    for name, (values, message) in cases.items():
        config = write_config(tmp_path / f"{name.replace(' ', '_')}.yaml", values)
        result = subprocess.run(
            [sys.executable, str(ROOT / "train_rm.py"), str(config)],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert result.returncode == 2, (name, result.stderr[-2000:])
        assert message in result.stderr, (name, result.stderr[-2000:])
        assert "empty-model-folder" not in result.stderr  # the model was never loaded
    result = launch(write_config(tmp_path / "ok.yaml", base), gpus=0)
    assert result.returncode == 2 and "--gpus" in result.stderr
