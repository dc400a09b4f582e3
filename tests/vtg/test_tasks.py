"""VTG jobs: the task YAML, the SFT batch (loss on the answer only), GRPO rewards, task dispatch, and
end to end on the tiny Qwen3-VL: SFT beats the best constant segment, GRPO from the SFT adapter
under torchrun, evaluation through eval_rm.py."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import AutoProcessor

from tests.reward.test_e2e_training import launch
from vlmrm.cli.tasks import run_eval_task, task_of
from vlmrm.core.config import ConfigError
from vlmrm.media.processor import image_factor
from vlmrm.testing.synthetic_vtg import SyntheticVTGConfig, constant_baseline_miou, generate_vtg_dataset
from vlmrm.testing.tiny import tiny_checkpoint
from vlmrm.training.sft import IGNORE_INDEX
from vlmrm.vtg.config import RewardEntry, load_vtg_task_config
from vlmrm.vtg.grpo import reward_function
from vlmrm.vtg.policy import load_trained
from vlmrm.vtg.sft import VTGSFTCollator, run_vtg_sft, vtg_datasets
from vlmrm.vtg.time_encoding import SecondsEncoding

ROOT = Path(__file__).resolve().parents[2]
SFT_CONFIG = ROOT / "training_configs" / "vtg_sft_tiny.yaml"
GRPO_CONFIG = ROOT / "training_configs" / "vtg_grpo_tiny.yaml"


@pytest.fixture(scope="module")
def vtg_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("vtg")
    generate_vtg_dataset(SyntheticVTGConfig(out_dir=out, num_train=300, num_test=60, seed=0))
    return out


def task_values(data: Path, checkpoint: Path, output: Path, **training) -> dict:
    """The shipped tiny SFT YAML pointed at test data (the data config inline)."""
    values = yaml.safe_load(SFT_CONFIG.read_text())
    data_config = yaml.safe_load((ROOT / values["data_config"]).read_text())
    data_config["dataset"].update(
        data_root=None, annotation_file=str(data / "train.jsonl"), video_dir=str(data)
    )
    data_config["validation"]["annotation_file"] = str(data / "test.jsonl")
    values["data_config"] = data_config
    values["model"]["name_or_path"] = str(checkpoint)
    values["training"].update(output_dir=str(output), use_cpu=True, disable_tqdm=True, **training)
    return values


def test_task_yaml_errors_name_the_dotted_key(vtg_data, tiny_cache, tmp_path):
    values = task_values(vtg_data, tiny_checkpoint("qwen3_vl", cache_dir=tiny_cache), tmp_path)
    with pytest.raises(ConfigError, match=r"unknown key 'lora.rank' \(valid keys in lora: enabled, r, "):
        load_vtg_task_config(values={**values, "lora": {"rank": 8}})
    with pytest.raises(ConfigError, match="r1.*use algorithm: grpo"):
        load_vtg_task_config(values={**values, "rl": {"algorithm": "r1"}})
    with pytest.raises(ConfigError, match="training: unknown key.*learning_rat"):
        load_vtg_task_config(values={**values, "training": {"learning_rat": 1.0}})
    config = load_vtg_task_config(values=values, overrides=["--max_steps", "7", "--lora.r", "4"])
    assert (config.training.max_steps, config.sections.lora.r) == (7, 4)
    assert config.training.warmup_steps == 0.05  # warmup_ratio (transformers < 5), as transformers 5 takes it
    assert config.training.per_device_train_batch_size == config.data.dataloader.batch_size == 8


def test_sft_batch_trains_on_the_answer_tokens_only(vtg_data, tiny_cache, tmp_path):
    checkpoint = tiny_checkpoint("qwen3_vl", cache_dir=tiny_cache)
    config = load_vtg_task_config(values=task_values(vtg_data, checkpoint, tmp_path))
    processor = AutoProcessor.from_pretrained(checkpoint)
    train, _ = vtg_datasets(config.data, image_factor(processor), seed=0)
    encoding = SecondsEncoding()
    items = [train[0], train[1]]
    batch = VTGSFTCollator(processor, encoding)(items)
    for row, item in enumerate(items):
        labels = batch["labels"][row]
        answer = processor.tokenizer.decode(labels[labels != IGNORE_INDEX])
        start, end = item["timestamp"]
        assert answer == f"from {start:.1f} to {end:.1f} seconds<|im_end|>"
        kept = batch["attention_mask"][row].bool()
        # the answer is the last attended tokens; everything before it (frames, question) is masked
        assert (labels[kept][: -len(labels[labels != IGNORE_INDEX])] == IGNORE_INDEX).all()
    assert batch["image_grid_thw"].shape[0] == sum(len(item["clip"].frame_times) for item in items)
    with pytest.raises(ValueError, match=rf"line {items[0]['line']} .* > max_length 50"):
        VTGSFTCollator(processor, encoding, max_length=50)(items)


def test_grpo_rewards_score_the_parsed_answer():
    truth, duration = [[2.0, 6.0]], [10.0]
    iou = reward_function(RewardEntry("temporal_iou"), SecondsEncoding())
    recall = reward_function(RewardEntry("segment_overlap", mode="recall"), SecondsEncoding())
    precision = reward_function(RewardEntry("segment_overlap", mode="precision"), SecondsEncoding())
    answer = [[{"role": "assistant", "content": "from 4.0 to 8.0 seconds"}]]
    # pred [4, 8] vs gt [2, 6]: intersection 2, union 6, |gt| 4, |pred| 4
    assert iou([None], answer, truth, duration) == [pytest.approx(2 / 6)]
    assert recall([None], answer, truth, duration) == [pytest.approx(2 / 4)]
    assert precision([None], answer, truth, duration) == [pytest.approx(2 / 4)]
    assert iou([None], [[{"role": "assistant", "content": "no idea"}]], truth, duration) == [0.0]
    assert recall.__name__ == "segment_overlap_recall"


def test_task_key_picks_the_job(tmp_path):
    assert task_of(SFT_CONFIG, "reward_model") == "vtg_sft"
    assert task_of(ROOT / "training_configs" / "quickstart_cpu.yaml", "reward_model") == "reward_model"
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: vtg_dance\n")
    with pytest.raises(ConfigError, match="task 'vtg_dance' is not one of reward_model, vtg_sft, vtg_grpo"):
        subprocess_free_dispatch(bad)


def subprocess_free_dispatch(path):
    from vlmrm.cli.tasks import run_train_task

    return run_train_task(str(path), [])


@pytest.mark.slow
def test_eval_rm_scores_the_pred_field_without_a_model(tmp_path):
    rows = [
        {"video": "a.mp4", "duration": 10, "timestamp": [2, 6], "sentence": "s", "qid": "a", "pred": [4, 8]},
        {"video": "b.mp4", "duration": 10, "timestamp": [0, 5], "sentence": "s", "qid": "b", "pred": [0, 5]},
    ]
    data = tmp_path / "preds.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = tmp_path / "eval.yaml"
    config.write_text(
        yaml.safe_dump({"task": "vtg", "annotation_file": str(data), "output_dir": str(tmp_path / "o")})
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "eval_rm.py"), str(config)], capture_output=True, text=True, check=True
    )
    # IoUs 1/3 and 1: R@0.5 = 1/2, mIoU = (1/3 + 1) / 2 = 2/3
    assert "R@0.5 0.5000" in done.stdout and f"mIoU {2 / 3:.4f}" in done.stdout
    assert json.loads((tmp_path / "o" / "vtg_metrics.json").read_text())["count"] == 2


@pytest.mark.slow
def test_sft_beats_the_best_constant_segment_then_grpo_runs_under_torchrun(vtg_data, tiny_cache, tmp_path):
    """The acceptance: held-out mIoU of the tiny SFT model >= the best constant segment (chosen on the
    training split) + 0.10; then 2 GRPO steps from its adapter on 2 torchrun processes."""
    checkpoint = tiny_checkpoint("qwen3_vl", cache_dir=tiny_cache)
    sft_dir = tmp_path / "sft"
    run_vtg_sft(
        load_vtg_task_config(
            values=task_values(vtg_data, checkpoint, sft_dir, save_strategy="no", eval_strategy="no")
        )
    )
    rows = lambda name: [json.loads(line) for line in (vtg_data / name).read_text().splitlines()]
    baseline = constant_baseline_miou(rows("train.jsonl"), rows("test.jsonl"))
    eval_config = tmp_path / "eval.yaml"
    eval_config.write_text(
        yaml.safe_dump(
            {
                "task": "vtg",
                "model_dir": str(sft_dir),
                "annotation_file": str(vtg_data / "test.jsonl"),
                "video_dir": str(vtg_data),
                "output_dir": str(tmp_path / "eval"),
                "batch_size": 16,
            }
        )
    )
    run_eval_task(str(eval_config), [])
    metrics = json.loads((tmp_path / "eval" / "vtg_metrics.json").read_text())
    print(f"VTG SFT held-out mIoU {metrics['mIoU']:.3f} vs best constant segment {baseline:.3f}")
    assert metrics["mIoU"] >= baseline + 0.10, (metrics["mIoU"], baseline)
    assert metrics["count"] == 60 and math.isfinite(metrics["R@0.5"])

    grpo = yaml.safe_load(GRPO_CONFIG.read_text())
    grpo["data_config"] = task_values(vtg_data, checkpoint, tmp_path)["data_config"]
    grpo["model"]["name_or_path"] = str(checkpoint)
    grpo["rl"]["sft_checkpoint"] = str(sft_dir)
    grpo["training"].update(output_dir=str(tmp_path / "grpo"), max_steps=2, disable_tqdm=True)
    config = tmp_path / "grpo.yaml"
    config.write_text(yaml.safe_dump(grpo))
    result = launch(config, port=29561)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rewards/temporal_iou/mean" in result.stdout + result.stderr
    run = json.loads((tmp_path / "grpo" / "vtg_run.json").read_text())
    assert run["temporal"] == json.loads((sft_dir / "vtg_run.json").read_text())["temporal"]
    policy, processor, _ = load_trained(tmp_path / "grpo")  # merged: full weights, the SFT's tokens
    assert len(processor.tokenizer) == policy.get_input_embeddings().weight.shape[0]
    assert processor.tokenizer.convert_tokens_to_ids("<99>") != processor.tokenizer.unk_token_id


@pytest.mark.slow
def test_duration_batched_sft_under_torchrun_logs_its_batches(vtg_data, tiny_cache, tmp_path):
    """2 processes: the sampler gives each rank its own batches (equal counts, so neither waits on
    the other at a step), logs its init lines and the batch sizes per logging interval, from rank 0."""
    values = task_values(
        vtg_data,
        tiny_checkpoint("qwen3_vl", cache_dir=tiny_cache),
        tmp_path / "sft",
        max_steps=4,
        logging_steps=2,
    )
    values["training"].update(save_strategy="no", eval_strategy="no")
    values["data_config"]["duration_batching"] = {
        "enabled": True,
        "target_batch_duration": 30.0,
        "max_batch_size": 6,
    }
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump(values))
    result = launch(config, port=29562)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "DurationBasedBatchSampler initialized: samples=300, target_duration=30.0s" in log
    assert "Distributed training: 2 GPUs, rank 0" in log
    assert "2 GPUs, rank 1" not in log  # info lines come from rank 0 only (rank 1: warnings, errors)
    sizes = [int(n) for n in re.findall(r"Step \d+: batch_size avg=[\d.]+, min=\d+, max=(\d+)", log)]
    assert sizes and max(sizes) <= 6
    assert (tmp_path / "sft" / "vtg_run.json").is_file()


def test_both_vtg_jobs_take_the_run_keys(tmp_path):
    """SFT and GRPO training sections carry the run keys shared with the reward model; GRPO's
    arguments are still TRL's GRPOConfig and its trainer TRL's, under the run management."""
    from trl import GRPOConfig, GRPOTrainer

    from vlmrm.training.run import ManagedRunMixin
    from vlmrm.training.sft import SFTTrainingArguments
    from vlmrm.vtg.grpo_trainer import ManagedGRPOTrainer

    run_keys = {"experiment_name": "exp", "skip_nonfinite_loss": True, "resume_from_checkpoint": "latest"}
    for config_path, expected in ((SFT_CONFIG, SFTTrainingArguments), (GRPO_CONFIG, GRPOConfig)):
        values = yaml.safe_load(config_path.read_text())
        values["data_config"] = str(ROOT / values["data_config"])
        values["training"].update(output_dir=str(tmp_path), use_cpu=True, **run_keys)
        args = load_vtg_task_config(values=values).training
        assert isinstance(args, expected), config_path.name
        assert (args.experiment_name, args.skip_nonfinite_loss, args.resume_from_checkpoint) == (
            "exp",
            True,
            "latest",
        )
    mro = ManagedGRPOTrainer.__mro__
    assert mro.index(ManagedRunMixin) < mro.index(GRPOTrainer)
