"""The GRM closed loop on the tiny model, CPU: synthetic CoT data -> cold-start ``grm_sft`` ->
rejection sampling -> conversion -> second ``grm_sft``, with ``task: grm`` evaluation on held-out
pairs after each SFT.

    python -m vlmrm.grm.closed_loop --out DIR [--num_train 1600 --num_pool 64 --num_test 64 --seed 0 --gpus 2]

Thin: every stage is an existing CLI or task run as a subprocess (``python -m vlmrm.tiny``,
``./run_distributed.sh --config`` with ``task: grm_sft``, ``python -m vlmrm.grm.rejection_sampling``,
``python -m vlmrm.grm.convert``, ``eval_rm.py`` with ``task: grm``); only the cold-start data is
written here. Each stage prints its counts; ``DIR/closed_loop.json`` gathers them.

**Data.** :mod:`vlmrm.testing.synthetic_images` ``image_preference`` pairs without ties: the prompt names a
colour and shape ("a red square"), the image drawn in that colour is better. Three disjoint sets
(separate seeds): ``train`` (cold start), ``pool`` (rejection sampling; its labels are used only by
the judge, as for a real source) and ``test`` (held out). The cold-start answer is templated from
the pixels: the colour of each image is read back from its object pixels (:func:`drawn_colour`)
and named in the order shown, e.g. ``<think>\\na blue square is in Image 1; a red square is in
Image 2. The caption asks for a red square; a red square is in Image 2.\\n</think>\\n<answer>Image 2
is better</answer>``. The shown order is the sampler's seeded one (:func:`vlmrm.grm.rejection_sampling.shown_order`), so both orders occur, and
the human turn is :data:`INSTRUCTION`, the ``--task_instruction`` the sampler and the evaluation
also get: SFT, sampling and evaluation see the same text.

**Measured** (2 CPU cores, ``--gpus 2`` gloo, defaults: 1600 train / 64 pool / 64 test pairs, seed 0):
cold start, 10 epochs (1000 steps) -> held-out accuracy 1.0 (64/64), parse rate 1.0; rejection
sampling kept 64 of 64 pool pairs (parse rate 1.0); conversion 64 examples; second SFT (1 epoch) ->
held-out accuracy 1.0, parse rate 1.0; whole loop 164 s wall. With 6 epochs the copy was learned in
one run (1.0) but not in another (0.56: the shown orders hash the sample ids, which contain the
output folder, so runs differ): hence 10. With the first template (``Image 1 shows a red square,
as asked; ...``) the colours were named right 128/128 but the verdict stayed at chance (accuracy
0.45-0.5, parse rate 1.0): hence the copy template of :func:`templated_reasoning`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from vlmrm.grm.convert import to_sft_example
from vlmrm.grm.records import FilteredSample
from vlmrm.grm.rejection_sampling import shown_order
from vlmrm.grm.sources import load_sources
from vlmrm.testing.synthetic import BACKGROUND_RGB, PALETTE
from vlmrm.testing.synthetic_images import SyntheticImageConfig, generate_image_pairs

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ("image_preference",)
SPLIT_SEED_OFFSETS = {"train": 0, "pool": 1, "test": 2}
"""Each set is its own ``synthetic_images`` run with ``seed + offset``: independent draws."""
INSTRUCTION = (
    "Which image shows {prompt}? Say what colour each image shows inside <think> and </think>, "
    "then output 'Image 1 is better' or 'Image 2 is better' inside <answer> and </answer>."
)
TINY_FAMILY = "qwen2_vl"
MAX_NEW_TOKENS = 96
"""The templated answer is about 60 tokens of the tiny tokenizer."""
EVAL_BATCH_SIZE = 16
SFT_SETTINGS = {
    "cold_start": {"num_train_epochs": 10, "learning_rate": 2.0e-3},
    "second": {"num_train_epochs": 1, "learning_rate": 5.0e-4},
}
"""Full fine-tune of the tiny model (hidden size 128): enough steps for the colour rule on CPU."""
PER_DEVICE_BATCH_SIZE = 8
IMAGE_MAX_PIXELS = 12544
"""As training_configs/grm_sft_tiny.yaml; the 56 px synthetic images stay 4 merged tokens."""
MAX_LENGTH = 512
"""Tokens per example: instruction, two images and the answer come to about 200."""


def drawn_colour(path: str | Path) -> str:
    """Palette name nearest to the mean colour of the pixels that are not background."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64).reshape(-1, 3)
    mask = np.any(pixels != np.array(BACKGROUND_RGB), axis=1)
    if not mask.any():
        raise ValueError(f"{path}: no object pixels")
    mean = pixels[mask].mean(axis=0)
    return min(PALETTE, key=lambda name: float(np.linalg.norm(mean - np.array(PALETTE[name]))))


def templated_reasoning(prompt: str, shown: tuple[str, str]) -> str:
    """The colour drawn in each image, in the order shown, then the asked one looked up by copying.

    ``a blue square is in Image 1; a red square is in Image 2. The caption asks for a red square;
    a red square is in Image 2.`` The last clause repeats the earlier one word for word, so the
    verdict is a copy (what a two-layer model's induction heads do) rather than a colour comparison,
    which the tiny model did not learn (held-out accuracy 0.45-0.5 with "…, as asked").
    """
    shape = prompt.split()[-1]
    asked = next(word for word in prompt.split() if word in PALETTE)
    colours = [drawn_colour(path) for path in shown]
    seen = "; ".join(f"a {colour} {shape} is in Image {k}" for k, colour in enumerate(colours, start=1))
    return f"{seen}. The caption asks for {prompt}; a {asked} {shape} is in Image {colours.index(asked) + 1}."


def cold_start_examples(pairs_file: Path, seed: int) -> list[dict]:
    """SFT conversations for every pair of ``pairs_file`` (the sampler's shown order and instruction)."""
    examples = []
    for sample in load_sources(f"image-pairs:{pairs_file}").samples:
        order = shown_order(seed, sample.sample_id)
        shown = tuple(str(sample.items[k - 1]) for k in order)
        reasoning = templated_reasoning(sample.prompt, shown)
        record = FilteredSample(
            sample_id=sample.sample_id,
            source=sample.source,
            media="image",
            prompt=sample.prompt,
            instruction=INSTRUCTION.replace("{prompt}", sample.prompt),
            items_shown=shown,
            shown_order=order,
            ground_truth=sample.ground_truth,
            generated_text=reasoning,
            predicted=sample.ground_truth,
            reasoning=reasoning,
        )
        examples.append(to_sft_example(record))
    return examples


def run(command: list[str], env: dict | None = None) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True, env=env)


def sft_config(path: Path, model: Path, data: Path, output: Path, stage: str, seed: int) -> Path:
    config = {
        "task": "grm_sft",
        "model": {"name_or_path": str(model), "torch_dtype": "float32", "attn_implementation": "sdpa"},
        "lora": {"enabled": False},
        "data": [{"path": str(data), "weight": 1.0}],
        "max_length": MAX_LENGTH,
        "image_max_pixels": IMAGE_MAX_PIXELS,
        "training": {
            "output_dir": str(output),
            "per_device_train_batch_size": PER_DEVICE_BATCH_SIZE,
            "lr_scheduler_type": "cosine",
            "warmup_ratio": 0.05,
            "logging_steps": 10,
            "save_strategy": "no",
            "report_to": "none",
            "seed": seed,
            **SFT_SETTINGS[stage],
        },
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def evaluate(out: Path, model: Path, test_file: Path, name: str, seed: int) -> dict:
    config = {
        "task": "grm",
        "model_dir": str(model),
        "data_path": f"image-pairs:{test_file}",
        "output_dir": str(out / f"eval_{name}"),
        "batch_size": EVAL_BATCH_SIZE,
        "max_new_tokens": MAX_NEW_TOKENS,
        "task_instruction": f"@{out / 'instruction.txt'}",
        "seed": seed,
    }
    path = out / f"eval_{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run([sys.executable, "eval_rm.py", str(path)])
    results = json.loads((out / f"eval_{name}" / "grm_eval.json").read_text())
    print(f"[{name} eval] {summary(results)}", flush=True)
    return results


def summary(stats: dict) -> str:
    keys = ("total", "parsed", "kept", "accuracy", "parse_rate")
    return ", ".join(f"{key}={stats[key]}" for key in keys if key in stats)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m vlmrm.grm.closed_loop", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--num_train", type=int, default=1600, help="cold-start pairs")
    parser.add_argument("--num_pool", type=int, default=64, help="rejection-sampling pool pairs")
    parser.add_argument("--num_test", type=int, default=64, help="held-out evaluation pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpus", type=int, default=2, help="processes for run_distributed.sh")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    python = sys.executable
    env = {**os.environ, "PYTHON": python}

    files = {}
    for split, count in (("train", args.num_train), ("pool", args.num_pool), ("test", args.num_test)):
        folder = out / "pairs" / split
        config = SyntheticImageConfig(
            folder, count, 0, 0.0, args.seed + SPLIT_SEED_OFFSETS[split], schemas=SCHEMAS
        )
        files[split] = generate_image_pairs(config) / "train.jsonl"
    (out / "instruction.txt").write_text(INSTRUCTION)
    cold_data = out / "cold_start_sft.json"
    examples = cold_start_examples(files["train"], args.seed)
    cold_data.write_text(json.dumps(examples, indent=1))
    counts = {"cold_start_examples": len(examples), "pool": args.num_pool, "test": args.num_test}
    print(
        f"[data] {len(examples)} cold-start examples, {args.num_pool} pool pairs, {args.num_test} test pairs"
    )

    tiny = out / "tiny-qwen2_vl"
    run(
        [
            python,
            "-m",
            "vlmrm.testing.tiny",
            "--family",
            TINY_FAMILY,
            "--out",
            str(tiny),
            "--seed",
            str(args.seed),
        ]
    )
    cold = out / "cold_start"
    launcher = ["./run_distributed.sh", "--gpus", str(args.gpus), "--config"]
    run(
        [*launcher, str(sft_config(out / "cold_start.yaml", tiny, cold_data, cold, "cold_start", args.seed))],
        env,
    )
    print(f"[cold-start sft] trained on {len(examples)} examples -> {cold}")
    counts["cold_start_eval"] = evaluate(out, cold, files["test"], "cold_start", args.seed)

    kept = out / "sampled" / "filtered.jsonl"
    kept.parent.mkdir(exist_ok=True)
    for path in (kept, kept.with_suffix(".processed.jsonl"), kept.with_suffix(".stats.json")):
        path.unlink(missing_ok=True)
    run(
        [
            python, "-m", "vlmrm.grm.rejection_sampling", "--model_path", str(cold),
            "--data_path", f"image-pairs:{files['pool']}", "--output_path", str(kept),
            "--task_instruction", f"@{out / 'instruction.txt'}", "--max_new_tokens", str(MAX_NEW_TOKENS),
            "--batch_size", str(EVAL_BATCH_SIZE), "--seed", str(args.seed),
        ]
    )  # fmt: skip
    sampling = json.loads(kept.with_suffix(".stats.json").read_text())
    counts["rejection_sampling"] = sampling
    print(f"[rejection sampling] {summary(sampling)}")

    second_data = out / "second_sft.json"
    run([python, "-m", "vlmrm.grm.convert", "--input", str(kept), "--output", str(second_data)])
    converted = len(json.loads(second_data.read_text()))
    counts["converted"] = converted
    print(f"[convert] {converted} SFT examples")
    if not converted:
        raise SystemExit(f"closed loop: rejection sampling kept no sample of {args.num_pool}; no second SFT")

    second = out / "second"
    run(
        [*launcher, str(sft_config(out / "second.yaml", cold, second_data, second, "second", args.seed))], env
    )
    print(f"[second sft] trained on {converted} examples -> {second}")
    counts["second_eval"] = evaluate(out, second, files["test"], "second", args.seed)
    counts["wall_s"] = round(time.monotonic() - start, 1)
    (out / "closed_loop.json").write_text(json.dumps(counts, indent=2) + "\n")
    print(f"[closed loop] done in {counts['wall_s']} s; counts in {out / 'closed_loop.json'}")
    return counts


if __name__ == "__main__":
    main()
