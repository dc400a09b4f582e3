"""RewardScorer, `python -m vlmrm.score` and the TRL reward function on tiny-model checkpoints."""

import json
import logging
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vlmrm.reward.inference import RewardScorer, rao_kupper_probabilities

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("margin, k", [(0.0, 5.0), (1.3, 5.0), (-2.0, 1.5), (40.0, 5.0)])
def test_rao_kupper_probabilities_sum_to_one(margin, k):
    p = rao_kupper_probabilities(margin, k)
    assert sum(p.values()) == pytest.approx(1.0)
    if margin == 0.0 and k == 5.0:  # docs/reward_math.md, "Bradley-Terry with ties": 1/6, 1/6, 2/3
        assert (p["A"], p["B"], p["tie"]) == (
            pytest.approx(1 / 6),
            pytest.approx(1 / 6),
            pytest.approx(2 / 3),
        )


def test_score_and_compare_follow_the_stored_spec(trained_runs, synthetic_pairs):
    root, _, _ = trained_runs
    scorer = RewardScorer.from_pretrained(root / "full", device="cpu")
    videos = [synthetic_pairs / "videos" / "test_0000_A.mp4", synthetic_pairs / "videos" / "test_0000_B.mp4"]
    scores = scorer.score(["red", "red"], videos=videos)
    stats = scorer.spec.normalization
    for s in scores:
        for dim, raw in s["raw"].items():  # z = (r - mean) / std with the stored training statistics
            assert s["normalized"][dim] == pytest.approx((raw - stats[dim]["mean"]) / stats[dim]["std"])
        assert s["Overall"] == pytest.approx(sum(s["normalized"].values()))
    compared = scorer.compare(videos[0], videos[1], "red")
    for dim, probabilities in compared.items():
        margin = scores[0]["raw"][dim] - scores[1]["raw"][dim]
        expected = rao_kupper_probabilities(margin, scorer.spec.tie_k)
        assert probabilities == pytest.approx(expected, abs=1e-6)
    # batching does not change a score
    single = scorer.score(["red"], videos=videos[1:])
    assert single[0]["raw"] == pytest.approx(scores[1]["raw"], abs=1e-5)


def test_adapter_checkpoint_scores_images_with_responses(trained_runs, tmp_path):
    root, _, _ = trained_runs
    scorer = RewardScorer.from_pretrained(root / "lora", device="cpu")
    image = Image.fromarray(np.full((56, 56, 3), (220, 40, 40), np.uint8))
    path = tmp_path / "red.png"
    image.save(path)
    scores = scorer.score(["What colour?", "What colour?"], images=[image, path], responses=["red", "red"])
    assert scores[0]["raw"] == pytest.approx(scores[1]["raw"], abs=1e-5)  # the same pixels, loaded or given
    assert set(scores[0]["raw"]) == {"VQ", "MQ", "TA"} and all(
        math.isfinite(v) for v in scores[0]["raw"].values()
    )


def test_unlike_videos_are_warned_about(trained_runs, make_video, caplog):
    root, _, _ = trained_runs
    scorer = RewardScorer.from_pretrained(root / "full", device="cpu")
    fast = make_video("fast.mp4", num_frames=48, fps=24)  # training clips: 8 fps
    with caplog.at_level(logging.WARNING, logger="vlmrm.reward.inference"):
        scorer.score(["red"], videos=[fast])
    assert "fps 24" in caplog.text and "outside the training range [8.0, 8.0]" in caplog.text


def test_score_cli_prints_json(trained_runs, synthetic_pairs):
    root, _, _ = trained_runs
    video = str(synthetic_pairs / "videos" / "test_0001_A.mp4")
    command = [
        sys.executable,
        "-m",
        "vlmrm.score",
        "--checkpoint",
        str(root / "full"),
        "--video",
        video,
    ]
    result = subprocess.run([*command, "--prompt", "red"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    (item,) = json.loads(result.stdout)
    assert item["item"] == video and set(item["raw"]) == {"VQ", "MQ", "TA"}
    compared = subprocess.run(
        [*command, "--video", video, "--prompt", "red", "--compare"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert compared.returncode == 0, compared.stderr[-2000:]
    # the same video on both sides: no preference, P(A) = P(B)
    for p in json.loads(compared.stdout).values():
        assert p["A"] == pytest.approx(p["B"], abs=1e-6)


def tiny_text_policy(tokenizer, out_dir):
    """A one-layer random Qwen2 causal LM sharing the tiny VL tokenizer: a GRPO policy for tests."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def test_reward_fn_drives_trl_grpo(trained_runs, synthetic_pairs, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    root, _, _ = trained_runs
    scorer = RewardScorer.from_pretrained(root / "full", device="cpu")
    reward_fn = scorer.as_reward_fn("TA")
    videos = [str(synthetic_pairs / "videos" / f"train_000{i}_A.mp4") for i in range(2)]
    direct = reward_fn(["p", "p"], ["red", "blue"], video=videos)
    expected = [s["normalized"]["TA"] for s in scorer.score(["red", "blue"], videos=videos)]
    assert direct == pytest.approx(expected)

    policy = tiny_text_policy(scorer.processor.tokenizer, tmp_path / "policy")
    data = Dataset.from_dict({"prompt": ["Name the colour:", "The object is"], "video": videos})
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=4,
        max_steps=2,
        use_cpu=True,
        report_to="none",
        logging_steps=1,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=str(policy),
        reward_funcs=[reward_fn],
        args=args,
        train_dataset=data,
        processing_class=scorer.processor.tokenizer,
    )
    trainer.train()
    logged = [e for e in trainer.state.log_history if "reward" in e]
    assert len(logged) == 2 and all(math.isfinite(e["reward"]) for e in logged)
    assert "rewards/vlmrm_TA/mean" in logged[0]
