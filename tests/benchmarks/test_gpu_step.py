"""benchmarks/gpu_step.py: runs on CPU (--tiny) without the packages the GPU machine lacks, counts
FLOPs as documented, and times vlmrm's own reward model, pair forward and loss."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
import torch

from vlmrm.modeling.reward_model import reward_model_class
from vlmrm.reward.config import DataConfig, RewardTrainingArguments
from vlmrm.reward.losses import PAIR_LOSS_TYPES

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
# Packages the lent GPU machine lacks (it has torch, transformers, accelerate and peft): the script must
# run without them.
ABSENT_ON_GPU_MACHINE = ("qwen_vl_utils", "pandas", "trl", "deepspeed", "decord", "av")


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_step"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_run_without_the_packages_the_gpu_machine_lacks_prints_table_and_json_line():
    """One ``--tiny --steps 1`` run in a fresh interpreter where importing any of
    ``ABSENT_ON_GPU_MACHINE`` fails, from the repository root as on the GPU machine, without
    PYTHONPATH: the script itself puts this checkout first on ``sys.path``."""
    # --peak_tflops: a CPU has no entry in the peak table, and MFU should still be computed here.
    argv = [str(SCRIPT), "--tiny", "--steps", "1", "--warmup", "0", "--peak_tflops", "1"]
    code = (
        "import runpy, sys\n"
        + "".join(f"sys.modules[{name!r}] = None\n" for name in ABSENT_ON_GPU_MACHINE)
        + f"sys.argv = {argv!r}\n"
        + "runpy.run_path(sys.argv[0], run_name='__main__')\n"
        + "print(sys.modules['vlmrm'].__file__, file=sys.stderr)\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=SCRIPT.parents[1],
        env=env,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip().splitlines()[-1] == str(SCRIPT.parents[1] / "vlmrm" / "__init__.py")
    lines = run.stdout.strip().splitlines()
    assert any(line.startswith("ratio merged / separate step time (no_ckpt)") for line in lines)
    result = json.loads(lines[-1])
    assert result["benchmark"] == "gpu_step" and result["device"] == "cpu" and result["tiny"]
    assert result["loss_type"] == "btt" and result["eval_dims"] == 3
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
    evaluation = result["evaluation"]  # eval_rm's per-batch forward: eval mode, no gradients
    assert set(evaluation) == ROW_KEYS and evaluation["forward"] == "evaluation"
    assert not evaluation["gradient_checkpointing"] and evaluation["step_s"] > 0
    assert evaluation["mfu"] > 0 and evaluation["peak_mem_gib"] is None
    assert result["ratio_evaluation_over_training_pairs_per_s"] == pytest.approx(
        rows[0]["step_s"] / evaluation["step_s"], rel=1e-2
    )
    assert any(line.startswith("evaluation forward (eval_rm per batch") for line in lines)


def test_blocked_packages_really_fail_to_import():
    """The blocking above (``sys.modules[name] = None``) makes an import of that name fail."""
    code = "import sys\nsys.modules['pandas'] = None\nimport pandas\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode != 0 and "ModuleNotFoundError" in run.stderr


def test_benchmark_runs_a_training_run_defaults():
    """Dimensions, loss and tie k are those a run gets when the YAML does not set them."""
    gpu_step = load_script()
    defaults = {f.name: f.default for f in dataclasses.fields(RewardTrainingArguments)}
    eval_dim = next(f for f in dataclasses.fields(DataConfig) if f.name == "eval_dim")
    assert gpu_step.EVAL_DIMS == eval_dim.default_factory()
    assert gpu_step.DEFAULT_LOSS == defaults["loss_type"]
    assert gpu_step.DEFAULT_TIE_K == defaults["tie_k"]
    assert get_args(gpu_step.LossType) == PAIR_LOSS_TYPES


def test_flops_of_qwen2_vl_2b_match_a_hand_count():
    """Parameter counts of Qwen2-VL-2B written out layer by layer, then the docstring's formula."""
    gpu_step = load_script()
    bench = gpu_step.StepBenchConfig()
    config = gpu_step.load_config(bench)
    with torch.device("meta"):  # shapes only: 2.2B parameters, no memory
        model = gpu_step.build_model(config, torch.bfloat16, "sdpa")
    assert type(model) is reward_model_class("qwen2_vl")
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
        sum(p.numel() for p in model.parameters())
        == n_llm + n_vit + n_merger + vocab * hidden + len(gpu_step.EVAL_DIMS) * (hidden + 1)  # + head
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


def test_checkpointing_recomputes_llm_and_vit_layers():
    """The ``ckpt`` rows really checkpoint: with it on, backward re-runs each LLM and ViT layer."""
    gpu_step = load_script()
    bench = gpu_step.StepBenchConfig(tiny=True)
    config = gpu_step.load_config(bench)
    model = gpu_step.build_model(config, torch.float32, "sdpa").train()
    inputs = gpu_step.pair_batch(config, bench, torch.device("cpu"), torch.float32)
    calls = {"llm": 0, "vit": 0}

    def counter(name):
        return lambda *_: calls.__setitem__(name, calls[name] + 1)

    # Pre-hooks on a layer's first matmul: the recompute stops early, after the layer's last saved tensor.
    model.model.language_model.layers[0].mlp.gate_proj.register_forward_pre_hook(counter("llm"))
    model.model.visual.blocks[0].attn.qkv.register_forward_pre_hook(counter("vit"))
    for enabled, runs in ((True, 2), (False, 1)):
        gpu_step.set_checkpointing(model, enabled)
        calls.update(llm=0, vit=0)
        gpu_step.pair_step_loss(model, inputs, merged=True, loss_type=gpu_step.DEFAULT_LOSS).backward()
        assert calls == {"llm": runs, "vit": runs}
