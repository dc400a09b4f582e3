"""One reward-model training step of a random-init Qwen2-VL-2B on video pairs, on one GPU.

Times the step vlmrm's trainer runs, with vlmrm's own code: the reward model class
(``reward_model_class`` + ``RewardSpec`` from ``vlmrm.modeling.reward_model``), the pair forward
``RewardTrainer.pair_rewards`` calls (``vlmrm.reward.pair_forward.pair_rewards``), the pair loss
(``vlmrm.reward.losses.pair_loss``, the trainer's default ``btt`` unless ``--loss``), backward,
gradient clipping and AdamW. Four configurations: the merged forward (the A and B rows of the
pair batch in one forward) and one forward per side, each with and without gradient
checkpointing. It prints a table, one JSON line (``{"benchmark": "gpu_step", ...}``) and the
ratio merged / separate of the median step times (below 1: the merged forward is faster).

The model is Qwen2-VL-2B's architecture (``benchmarks/configs/qwen2_vl_2b.json``) with random
weights: nothing is downloaded, and step time does not depend on the weights' values. Everything
imported from vlmrm needs torch + transformers alone (the lent GPU machine has neither TRL,
DeepSpeed, video decoders, qwen-vl-utils nor pandas); ``tests/benchmarks/test_gpu_step.py`` runs
the script with those packages blocked. The script puts the repository root on ``sys.path``, so
``python benchmarks/gpu_step.py`` works from a plain checkout.

Default input, as in the naive baseline ``naive_qwen2vl_step.py``: per video 10 frames of 448x448
-> ViT grid (t, h, w) = (10 / 2, 448 / 14, 448 / 14) = (5, 32, 32) = 5120 patches -> 5120 / 2^2 =
1280 LLM video tokens, plus ``PROMPT_TOKENS_BEFORE + PROMPT_TOKENS_AFTER + 4`` = 104 text and
special tokens: 1384 tokens per sequence, 2 sequences per pair.

MFU (model FLOPs utilisation) counts the ViT and the LLM, forward + backward = 3 x forward:

    FLOPs per step = 6 * N_llm * S * R                               LLM matmuls
                   + 12 * L_llm * d_llm * S^2 * R                    LLM attention (QK^T and AV)
                   + 6 * N_vit * P * R + 6 * N_merger * P / m^2 * R  ViT blocks + patch merger
                   + 12 * L_vit * d_vit * (h * w)^2 * t * R          ViT attention (per frame)
    MFU = FLOPs per step / step time / peak bf16 FLOP/s

R = rows (2 per pair), S = tokens per row, N_llm = LLM parameters without the embedding table
(it is a lookup; with tied weights it is also the unused LM head), L / d = layers / hidden width,
P = t * h * w patches per video, m = spatial merge size (the merger runs once per 2x2 patches),
N_vit = ViT parameters without the merger. Attention: QK^T and AV are 2 * S^2 * d FLOPs each in the
forward; the causal mask is not discounted (PaLM's convention). Qwen2-VL's ViT attends within
each temporal patch (h * w patches), not across the whole video. The reward head (d_llm x D) is
left out: under 1e-5 of the total. Gradient checkpointing's recomputed forward is not counted
(model FLOPs, not hardware FLOPs), so its MFU is lower. Peak bf16 dense FLOP/s comes from
``PEAK_BF16_FLOPS`` by GPU name, or ``--peak_tflops``.

Run it beside the naive baseline on the GPU machine, in one call (the baseline lives outside this
repository: copy it into a git-ignored folder of the repo, e.g. ``.bench/``, and carry that folder):

    python benchmarks/gpu_step.py && python .bench/naive_qwen2vl_step.py \\
        && python .bench/naive_qwen2vl_step.py --ckpt

Smoke test on CPU (small dims, float32): ``python benchmarks/gpu_step.py --tiny --steps 1``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, get_args

import torch
import transformers
from torch import nn
from transformers import Qwen2VLConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python benchmarks/gpu_step.py` puts benchmarks/ first, not the root
    sys.path.insert(0, str(REPO_ROOT))

from vlmrm.modeling.reward_model import DEFAULT_TIE_K, RewardSpec, attach_spec, reward_model_class
from vlmrm.reward.losses import pair_loss
from vlmrm.reward.pair_forward import NON_MODEL_KEYS, pair_rewards

CONFIG_PATH = Path(__file__).parent / "configs" / "qwen2_vl_2b.json"
EVAL_DIMS = ["VQ", "MQ", "TA"]
"""The training config's default ``eval_dim``: a linear head with one output per dimension."""
DEFAULT_LOSS = "btt"
"""The training config's default ``loss_type`` (Bradley-Terry with ties, fixed k = ``DEFAULT_TIE_K``)."""

# Small dims for the CPU smoke test: head_dim 64 / 4 = 16, so mrope_section sums to 16 / 2 = 8.
TINY_TEXT = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
}
TINY_MROPE_SECTION = [2, 3, 3]
TINY_VISION = {"depth": 2, "embed_dim": 32, "num_heads": 4, "hidden_size": 64, "mlp_ratio": 2}
# Default video: 10 frames of 448x448 -> grid (5, 32, 32); --tiny: 2 frames of 56x56 -> grid (1, 4, 4).
FRAMES, FRAME_SIDE = 10, 448
TINY_FRAMES, TINY_FRAME_SIDE = 2, 56

# Prompt around the video, as the "simple" template lays it out: <|im_start|>, text, <|vision_start|>,
# video pads, <|vision_end|>, text, <|im_end|>. The text lengths match the naive baseline.
PROMPT_TOKENS_BEFORE = 40
PROMPT_TOKENS_AFTER = 60
IM_START, IM_END = 151644, 151645
TEXT_TOKEN_RANGE = (100, 150_000)  # ordinary (non-special) token ids for the synthetic prompt text
MM_TOKEN_TYPE_VIDEO = 2  # transformers 5.x builds M-RoPE positions from mm_token_type_ids: 0 text, 2 video

PEAK_BF16_FLOPS = {  # dense bf16 tensor-core peak by GPU name (NVIDIA data sheets); first match wins
    "H100 PCIe": 756e12,
    "H100": 989e12,  # SXM
    "H200": 989e12,
    "A100": 312e12,
}
FORWARD_BACKWARD_FACTOR = 3
"""A training step's model FLOPs are 3x the forward's (backward = 2x forward): evaluation's are a third."""
MAX_GRAD_NORM = 1.0  # HF Trainer's default max_grad_norm: the trainer clips every step
LEARNING_RATE = 1e-6
BYTES_PER_GIB = 2**30


AttnImplementation = Literal["auto", "sdpa", "flash_attention_2", "eager"]
LossType = Literal["bt", "btt", "margin"]  # the pair losses, vlmrm.reward.losses.PAIR_LOSS_TYPES


@dataclass
class StepBenchConfig:
    """Command-line options (each field is one ``--flag``; ``help`` is its description)."""

    tiny: bool = field(default=False, metadata={"help": "Small dims, float32 on CPU: a smoke test only."})
    steps: int = field(default=5, metadata={"help": "Timed steps per configuration (median reported)."})
    warmup: int = field(default=2, metadata={"help": "Untimed steps per configuration before those."})
    pairs: int = field(default=1, metadata={"help": "Pairs per step (2 sequences each)."})
    frames: int | None = field(
        default=None, metadata={"help": f"Frames per video, even (default {FRAMES}, --tiny {TINY_FRAMES})."}
    )
    frame_side: int | None = field(
        default=None,
        metadata={
            "help": f"Frame side, a multiple of 28 pixels (default {FRAME_SIDE}, --tiny {TINY_FRAME_SIDE})."
        },
    )
    attn: AttnImplementation = field(
        default="auto",
        metadata={"help": "auto: flash_attention_2 where flash_attn imports on CUDA, else sdpa."},
    )
    loss: LossType = field(
        default=DEFAULT_LOSS, metadata={"help": f"Pair loss (default {DEFAULT_LOSS}, as in training)."}
    )
    peak_tflops: float | None = field(
        default=None, metadata={"help": "Peak bf16 TFLOP/s for MFU (default: by GPU name)."}
    )
    config: Path = field(default=CONFIG_PATH, metadata={"help": "Qwen2VLConfig JSON of the backbone."})

    def __post_init__(self) -> None:
        if self.frames is None:
            self.frames = TINY_FRAMES if self.tiny else FRAMES
        if self.frame_side is None:
            self.frame_side = TINY_FRAME_SIDE if self.tiny else FRAME_SIDE
        if self.steps < 1 or self.warmup < 0 or self.pairs < 1:
            raise ValueError("--steps and --pairs must be >= 1, --warmup >= 0")


ARG_TYPES = {"int": int, "int | None": int, "float | None": float, "Path": Path}  # by annotation
CHOICES = {"AttnImplementation": AttnImplementation, "LossType": LossType}  # annotation -> its Literal


def parse_args() -> StepBenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in fields(StepBenchConfig):
        if f.type == "bool":
            parser.add_argument(f"--{f.name}", action="store_true", help=f.metadata["help"])
        elif f.type in CHOICES:
            parser.add_argument(
                f"--{f.name}",
                choices=get_args(CHOICES[f.type]),
                default=f.default,
                help=f.metadata["help"],
            )
        else:
            parser.add_argument(
                f"--{f.name}", type=ARG_TYPES[f.type], default=f.default, help=f.metadata["help"]
            )
    return StepBenchConfig(**vars(parser.parse_args()))


def load_config(bench: StepBenchConfig) -> Qwen2VLConfig:
    values = json.loads(bench.config.read_text())
    if bench.tiny:
        values["text_config"].update(TINY_TEXT)
        values["text_config"]["rope_parameters"]["mrope_section"] = TINY_MROPE_SECTION
        values["vision_config"].update(TINY_VISION)
    return Qwen2VLConfig(**values)


def build_model(config: Qwen2VLConfig, dtype: torch.dtype, attn_implementation: str) -> nn.Module:
    """vlmrm's reward model of the config's family with random weights: the family's
    ``...ForConditionalGeneration`` class + ``RewardModelMixin``, a linear head over the last
    attended token with one output per ``EVAL_DIMS`` entry (the defaults of a training run)."""
    attach_spec(config, RewardSpec(eval_dim=list(EVAL_DIMS), output_dim=len(EVAL_DIMS)))
    return reward_model_class(config.model_type)._from_config(
        config, dtype=dtype, attn_implementation=attn_implementation
    )


def pair_batch(config: Qwen2VLConfig, bench: StepBenchConfig, device: torch.device, dtype: torch.dtype):
    """A collated batch in vlmrm's convention (``vlmrm.reward.collator``): rows 0..B-1 video A of each
    pair, rows B..2B-1 video B; flat patches in row order; labels (B, D) = +1 (A better)."""
    vision = config.vision_config
    side_unit = vision.patch_size * vision.spatial_merge_size
    if bench.frames % vision.temporal_patch_size or bench.frame_side % side_unit:
        raise ValueError(
            f"--frames must be a multiple of {vision.temporal_patch_size} and --frame_side of {side_unit}"
        )
    grid = (
        bench.frames // vision.temporal_patch_size,
        bench.frame_side // vision.patch_size,
        bench.frame_side // vision.patch_size,
    )
    rows = 2 * bench.pairs
    video_tokens = grid[0] * grid[1] * grid[2] // vision.spatial_merge_size**2
    input_ids = torch.cat(
        [
            torch.full((rows, 1), IM_START),
            torch.randint(*TEXT_TOKEN_RANGE, (rows, PROMPT_TOKENS_BEFORE)),
            torch.full((rows, 1), config.vision_start_token_id),
            torch.full((rows, video_tokens), config.video_token_id),
            torch.full((rows, 1), config.vision_end_token_id),
            torch.randint(*TEXT_TOKEN_RANGE, (rows, PROMPT_TOKENS_AFTER)),
            torch.full((rows, 1), IM_END),
        ],
        dim=1,
    ).to(device)  # (2B, T)
    patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "mm_token_type_ids": (input_ids == config.video_token_id).long() * MM_TOKEN_TYPE_VIDEO,
        "pixel_values_videos": torch.randn(
            rows * grid[0] * grid[1] * grid[2], patch_dim, device=device, dtype=dtype
        ),
        "video_grid_thw": torch.tensor([grid] * rows, device=device),
        "labels": torch.ones(bench.pairs, len(EVAL_DIMS), device=device),
    }


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def training_flops(model: nn.Module, inputs: dict) -> float:
    """Model FLOPs of one step (forward + backward); the formula is in the module docstring."""
    text, vision = model.config.text_config, model.config.vision_config
    backbone = model.model
    n_llm = parameter_count(backbone.language_model) - parameter_count(backbone.language_model.embed_tokens)
    n_merger = parameter_count(backbone.visual.merger)
    n_vit = parameter_count(backbone.visual) - n_merger
    rows, seq = inputs["input_ids"].shape
    t, h, w = (int(x) for x in inputs["video_grid_thw"][0])
    patches = t * h * w
    llm = 6 * n_llm * seq + 12 * text.num_hidden_layers * text.hidden_size * seq**2
    vit = (
        6 * n_vit * patches
        + 6 * n_merger * patches // vision.spatial_merge_size**2
        + 12 * vision.depth * vision.embed_dim * (h * w) ** 2 * t
    )
    return float(rows * (llm + vit))


def peak_flops(bench: StepBenchConfig, device_name: str) -> float | None:
    if bench.peak_tflops is not None:
        return bench.peak_tflops * 1e12
    return next((flops for name, flops in PEAK_BF16_FLOPS.items() if name in device_name), None)


def set_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Checkpointing as HF Trainer turns it on (non-reentrant, as ``vlmrm.reward.train`` asks):
    ``activation_checkpointing_*`` where transformers has it, else the older ``gradient_*`` names."""
    if hasattr(model, "activation_checkpointing_enable"):
        if enabled:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.activation_checkpointing_disable()
    elif enabled:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()


def pair_step_loss(model: nn.Module, inputs: dict, merged: bool, loss_type: str) -> torch.Tensor:
    """The trainer's loss of one pair batch: ``pair_rewards`` (the function
    ``RewardTrainer.pair_rewards`` calls), then ``pair_loss`` with the model's learned tie k or
    the default k, as ``RewardTrainer.compute_loss`` does."""
    rewards = pair_rewards(model, inputs, merged)
    tie_k = rewards.tie_k if rewards.tie_k is not None else DEFAULT_TIE_K
    labels = inputs["labels"].to(rewards.rewards_a.dtype)
    return pair_loss(loss_type, rewards.rewards_a, rewards.rewards_b, labels, tie_k=tie_k).loss


def timed(work, cuda: bool, bench) -> tuple[float, float | None]:
    """Median seconds of ``work()`` over ``bench.steps`` calls after ``bench.warmup`` untimed ones,
    and the peak GPU memory (GiB) of the timed calls; GPU work is waited for inside each timing."""
    times = []
    for step in range(bench.warmup + bench.steps):
        if step == bench.warmup and cuda:
            torch.cuda.reset_peak_memory_stats()
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        work()
        if cuda:
            torch.cuda.synchronize()
        if step >= bench.warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times), torch.cuda.max_memory_allocated() / BYTES_PER_GIB if cuda else None


def run_config(model, optimizer, inputs, bench, merged: bool, checkpointing: bool) -> dict:
    """Median step time and peak memory of one (forward, checkpointing) configuration."""
    set_checkpointing(model, checkpointing)

    def step() -> None:
        pair_step_loss(model, inputs, merged, bench.loss).backward()
        nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step_s, peak = timed(step, inputs["input_ids"].is_cuda, bench)
    return {
        "forward": "merged" if merged else "separate",
        "gradient_checkpointing": checkpointing,
        "step_s": step_s,
        "peak_mem_gib": peak,
    }


@torch.no_grad()
def run_evaluation(model, inputs, bench) -> dict:
    """Median time and peak memory of what ``eval_rm`` runs per batch
    (``vlmrm.reward.eval_passes.score_pairs``): one forward of the A and B rows in eval mode without
    gradients, from whose rewards both pair orders are read. Model FLOPs: a third of a step's."""
    set_checkpointing(model, False)
    model.eval()
    model_inputs = {k: v for k, v in inputs.items() if k not in NON_MODEL_KEYS}
    step_s, peak = timed(
        lambda: model(**model_inputs).rewards.float().cpu(), inputs["input_ids"].is_cuda, bench
    )
    model.train()
    return {
        "forward": "evaluation",
        "gradient_checkpointing": False,
        "step_s": step_s,
        "peak_mem_gib": peak,
    }


def rounded(value):
    """Four significant digits for the JSON line (None, bools and strings unchanged)."""
    return float(f"{value:.4g}") if isinstance(value, float) else value


def attn_implementation(bench: StepBenchConfig, device: torch.device) -> str:
    if bench.attn != "auto":
        return bench.attn
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def main() -> None:
    bench = parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not bench.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    attn = attn_implementation(bench, device)
    config = load_config(bench)
    torch.manual_seed(0)
    with device:
        model = build_model(config, dtype, attn).train()
        inputs = pair_batch(config, bench, device, dtype)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, fused=device.type == "cuda")
    flops = training_flops(model, inputs)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_flops(bench, device_name)
    pairs, (rows, seq) = bench.pairs, inputs["input_ids"].shape
    results = []
    for checkpointing in (False, True):
        for merged in (True, False):
            row = run_config(model, optimizer, inputs, bench, merged, checkpointing)
            row["s_per_pair"] = row["step_s"] / pairs
            row["tokens_per_s"] = rows * seq / row["step_s"]
            row["mfu"] = flops / row["step_s"] / peak if peak else None
            results.append(row)
    ratios = {
        ("ckpt" if ckpt else "no_ckpt"): results[2 * ckpt]["step_s"] / results[2 * ckpt + 1]["step_s"]
        for ckpt in (False, True)
    }
    evaluation = run_evaluation(model, inputs, bench)
    evaluation["s_per_pair"] = evaluation["step_s"] / pairs
    evaluation["tokens_per_s"] = rows * seq / evaluation["step_s"]
    evaluation["mfu"] = flops / FORWARD_BACKWARD_FACTOR / evaluation["step_s"] / peak if peak else None
    eval_over_train = results[0]["step_s"] / evaluation["step_s"]
    print(
        f"device {device_name}, {dtype}, attn {attn}, loss {bench.loss}, "
        f"{pairs} pair(s) x 2 rows x {seq} tokens"
    )
    print(
        f"{'forward':<9} {'ckpt':<5} {'step s':>8} {'s/pair':>8} {'tokens/s':>10} {'peak GiB':>9} {'MFU':>7}"
    )
    for row in results:
        mem = f"{row['peak_mem_gib']:.2f}" if row["peak_mem_gib"] is not None else "-"
        mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "-"
        print(
            f"{row['forward']:<9} {row['gradient_checkpointing']!s:<5} {row['step_s']:>8.4f} "
            f"{row['s_per_pair']:>8.4f} {row['tokens_per_s']:>10.0f} {mem:>9} {mfu:>7}"
        )
    for name, ratio in ratios.items():
        print(f"ratio merged / separate step time ({name}): {ratio:.3f}")
    eval_mem = evaluation["peak_mem_gib"]
    print(
        f"evaluation forward (eval_rm per batch: both orders, no grad): {evaluation['step_s']:.4f} s, "
        f"peak {f'{eval_mem:.2f} GiB' if eval_mem is not None else '-'}; "
        f"pairs/s vs the merged training step: {eval_over_train:.2f}x"
    )
    text, vision = config.text_config, config.vision_config
    print(
        json.dumps(
            {
                "benchmark": "gpu_step",
                "device": device_name,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "dtype": str(dtype).removeprefix("torch."),
                "attn_implementation": attn,
                "loss_type": bench.loss,
                "eval_dims": len(EVAL_DIMS),
                "tiny": bench.tiny,
                "pairs": pairs,
                "seq_len": seq,
                "vit_patches_per_video": int(inputs["video_grid_thw"][0].prod()),
                "llm_layers": text.num_hidden_layers,
                "vit_depth": vision.depth,
                "flops_per_step": flops,
                "peak_flops": peak,
                "results": [{key: rounded(value) for key, value in row.items()} for row in results],
                "ratio_merged_over_separate": {key: rounded(value) for key, value in ratios.items()},
                "evaluation": {key: rounded(value) for key, value in evaluation.items()},
                "ratio_evaluation_over_training_pairs_per_s": rounded(eval_over_train),
            }
        )
    )


if __name__ == "__main__":
    main()
