"""benchmarks/gpu_step.py: runs on CPU (--tiny), counts FLOPs as documented, times vlmrm's forward.

The script re-creates the reward model's forward because ``vlmrm.models`` cannot be imported on
the GPU machine (no qwen_vl_utils there); these tests pin that re-creation to vlmrm's own class.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch

from vlmrm.modeling.reward_model import RewardSpec, attach_spec, reward_model_class
from vlmrm.reward.collator import split_rows

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "gpu_step.py"
ROW_KEYS = {
    "forward",
    "gradient_checkpointing",
    "step_s",
    "s_per_pair",
    "tokens_per_s",
    "peak_mem_gib",
    "mfu",
}
# Packages the lent GPU machine lacks: importing the script must not need them.
ABSENT_ON_GPU_MACHINE = ("qwen_vl_utils", "trl", "deepspeed", "decord", "av")


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_step"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_tiny_run_prints_table_and_json_line():
    # --peak_tflops: a CPU has no entry in the peak table, and MFU should still be computed here.
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--steps", "1", "--peak_tflops", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert any(line.startswith("ratio merged / separate step time (no_ckpt)") for line in lines)
    result = json.loads(lines[-1])
    assert result["benchmark"] == "gpu_step" and result["device"] == "cpu" and result["tiny"]
    assert result["seq_len"] == 1 + 40 + 1 + 4 + 1 + 60 + 1  # 2 frames of 56x56 -> grid (1, 4, 4) -> 4 tokens
    assert result["vit_patches_per_video"] == 16
    assert result["flops_per_step"] > 0 and result["peak_flops"] == 1e12
    rows = result["results"]
    assert [(row["forward"], row["gradient_checkpointing"]) for row in rows] == [
        ("merged", False),
        ("separate", False),
        ("merged", True),
        ("separate", True),
    ]
    for row in rows:
        assert set(row) == ROW_KEYS
        assert all(row[key] > 0 for key in ("step_s", "s_per_pair", "tokens_per_s", "mfu"))
        assert row["peak_mem_gib"] is None  # CUDA-only reading
    assert set(result["ratio_merged_over_separate"]) == {"no_ckpt", "ckpt"}
    assert all(ratio > 0 for ratio in result["ratio_merged_over_separate"].values())


def test_script_imports_nothing_the_gpu_machine_lacks():
    # A fresh interpreter: this test file itself imports vlmrm.models, which does need qwen_vl_utils.
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        f"print([m for m in {ABSENT_ON_GPU_MACHINE!r} if m in sys.modules])"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(SCRIPT)],
        capture_output=True,
        text=True,
        cwd=SCRIPT.parents[1],
        check=True,
    )
    assert run.stdout.strip() == "[]"


def test_flops_of_qwen2_vl_2b_match_a_hand_count():
    """Parameter counts of Qwen2-VL-2B written out layer by layer, then the docstring's formula."""
    gpu_step = load_script()
    bench = gpu_step.StepBenchConfig()
    config = gpu_step.load_config(bench)
    with torch.device("meta"):  # shapes only: 2.2B parameters, no memory
        model = gpu_step.PairRewardModel(config, torch.bfloat16, "sdpa")
    inputs = gpu_step.pair_batch(config, bench, torch.device("cpu"), torch.bfloat16)
    hidden, mlp, kv, vocab = 1536, 8960, 2 * 128, 151936  # 2 kv heads of head_dim 1536 / 12
    llm_layer = (
        (hidden * hidden + hidden) + 2 * (hidden * kv + kv) + hidden * hidden + 3 * hidden * mlp + 2 * hidden
    )
    n_llm = 28 * llm_layer + hidden  # + final norm
    width = 1280
    vit_block = (
        3 * width * width + 3 * width + width * width + width + 8 * width * width + 5 * width + 4 * width
    )
    n_vit = 32 * vit_block + 3 * 2 * 14 * 14 * width  # + patch embedding (no bias)
    n_merger = 2 * width + (4 * width) ** 2 + 4 * width + 4 * width * hidden + hidden
    assert (
        sum(p.numel() for p in model.parameters()) == n_llm + n_vit + n_merger + vocab * hidden + 1 + hidden
    )
    seq, patches = 1384, 5 * 32 * 32
    expected = 2 * (
        6 * n_llm * seq
        + 12 * 28 * hidden * seq**2
        + 6 * n_vit * patches
        + 6 * n_merger * patches // 4
        + 12 * 32 * width * (32 * 32) ** 2 * 5
    )
    assert inputs["input_ids"].shape == (2, seq)
    assert gpu_step.training_flops(model, inputs) == expected == 68_196_712_267_776


def test_rewards_equal_vlmrm_reward_model_merged_and_separate():
    gpu_step = load_script()
    bench = gpu_step.StepBenchConfig(tiny=True, pairs=2)
    config = gpu_step.load_config(bench)
    torch.manual_seed(0)
    bench_model = gpu_step.PairRewardModel(config, torch.float32, "sdpa").eval()
    attach_spec(config, RewardSpec(eval_dim=["overall"], output_dim=1))
    vlmrm_model = reward_model_class(config.model_type)(config).eval()
    head = {f"rm_head.layers.0.{name}": value for name, value in bench_model.head.state_dict().items()}
    vlmrm_model.load_state_dict({**bench_model.backbone.state_dict(), **head}, strict=True)
    inputs = gpu_step.pair_batch(config, bench, torch.device("cpu"), torch.float32)
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        expected = vlmrm_model(**model_inputs).rewards  # (2B, 1)
        per_side = [vlmrm_model(**part).rewards for part in split_rows(model_inputs, [2, 2])]
        for merged in (True, False):
            rewards_a, rewards_b = gpu_step.pair_rewards(bench_model, inputs, merged)
            torch.testing.assert_close(torch.cat([rewards_a, rewards_b]), expected)
            torch.testing.assert_close(torch.cat([rewards_a, rewards_b]), torch.cat(per_side))
    assert expected[0].ne(expected[2]).any()  # different random videos, different rewards


def test_checkpointing_recomputes_llm_and_vit_layers():
    """The ``ckpt`` rows really checkpoint: with it on, backward re-runs each LLM and ViT layer."""
    gpu_step = load_script()
    bench = gpu_step.StepBenchConfig(tiny=True)
    config = gpu_step.load_config(bench)
    model = gpu_step.PairRewardModel(config, torch.float32, "sdpa").train()
    inputs = gpu_step.pair_batch(config, bench, torch.device("cpu"), torch.float32)
    calls = {"llm": 0, "vit": 0}

    def counter(name):
        return lambda *_: calls.__setitem__(name, calls[name] + 1)

    # Pre-hooks on a layer's first matmul: the recompute stops early, after the layer's last saved tensor.
    model.backbone.model.language_model.layers[0].mlp.gate_proj.register_forward_pre_hook(counter("llm"))
    model.backbone.model.visual.blocks[0].attn.qkv.register_forward_pre_hook(counter("vit"))
    for enabled, runs in ((True, 2), (False, 1)):
        gpu_step.set_checkpointing(model.backbone, enabled)
        calls.update(llm=0, vit=0)
        rewards_a, rewards_b = gpu_step.pair_rewards(model, inputs, merged=True)
        (rewards_a - rewards_b).sum().backward()
        assert calls == {"llm": runs, "vit": runs}
