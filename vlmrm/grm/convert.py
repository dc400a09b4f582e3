"""Filtered samples (``filtered.jsonl``) -> GRM SFT conversations (a JSON array).

One example per kept sample::

    {"conversations": [{"from": "human", "value": instruction},
                       {"from": "gpt", "value": "<think>\\n…\\n</think>\\n<answer>Image 1 is better</answer>"}],
     "images": [first shown, second shown]}

plus ``"video_fps"`` for videos (whose paths also go in ``"images"``). The media are listed **in the
order they were shown** at inference, because the reasoning talks about them that way, and the
answer names the better item **in that listed order** (the ground truth mapped through
``shown_order``). Public versions of this pipeline wrote the answer in the source's order while
listing the media as shown, which inverts the label of every swapped sample.

A record whose prediction is not its ground truth, or whose ground truth is a tie, is not a kept
sample: conversion refuses it, naming file:line.

    python -m vlmrm.grm.convert --input filtered.jsonl --output sft.json \\
        [--task_instruction TEXT|@FILE] [--video_fps 2.0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlmrm.grm.records import TIE, FilteredSample, read_filtered_jsonl

PROMPT_PLACEHOLDER = "{prompt}"
"""Where ``--task_instruction`` takes the generation prompt."""
MEDIA_WORD = {"image": "Image", "video": "Video"}


def answer_text(sample: FilteredSample) -> str:
    """``"Image 1 is better"``: the better item numbered as listed (= as shown)."""
    return f"{MEDIA_WORD[sample.media]} {sample.ground_truth_shown} is better"


def assistant_turn(sample: FilteredSample) -> str:
    answer = f"<answer>{answer_text(sample)}</answer>"
    if not sample.reasoning:
        return answer
    return f"<think>\n{sample.reasoning}\n</think>\n{answer}"


def render_instruction(template: str, prompt: str) -> str:
    """``template`` with ``{prompt}`` replaced (plain replace: other braces are left alone)."""
    if PROMPT_PLACEHOLDER not in template:
        raise ValueError(f"task instruction has no {PROMPT_PLACEHOLDER} placeholder for the prompt")
    return template.replace(PROMPT_PLACEHOLDER, prompt)


def to_sft_example(
    sample: FilteredSample, instruction_template: str | None = None, video_fps: float | None = None
) -> dict:
    """One SFT example (format: the module docstring).

    Args:
        sample: a kept sample (prediction == ground truth, not a tie).
        instruction_template: replaces the recorded instruction (``{prompt}`` filled in).
        video_fps: for videos; default the fps recorded at inference.
    """
    if sample.ground_truth == TIE:
        raise ValueError(f"sample {sample.sample_id}: ground truth is a tie; rejection sampling skips ties")
    if sample.predicted != sample.ground_truth:
        raise ValueError(
            f"sample {sample.sample_id}: predicted {sample.predicted!r} but ground truth is "
            f"{sample.ground_truth!r}; only correctly judged samples are converted"
        )
    instruction = (
        sample.instruction
        if instruction_template is None
        else render_instruction(instruction_template, sample.prompt)
    )
    example = {
        "conversations": [
            {"from": "human", "value": instruction},
            {"from": "gpt", "value": assistant_turn(sample)},
        ],
        "images": list(sample.items_shown),
    }
    if sample.media == "video":
        fps = video_fps if video_fps is not None else sample.video_fps
        if fps is None:
            raise ValueError(f"sample {sample.sample_id}: a video needs video_fps (record or --video_fps)")
        example["video_fps"] = fps
    return example


def convert_file(
    input_path: str | Path,
    output_path: str | Path,
    instruction_template: str | None = None,
    video_fps: float | None = None,
) -> dict[str, int]:
    """Convert every record of ``input_path``; returns counts by media. A bad record raises
    ``ValueError`` naming file:line."""
    examples, counts = [], {"image": 0, "video": 0}
    for line, sample in read_filtered_jsonl(input_path, with_lines=True):
        try:
            examples.append(to_sft_example(sample, instruction_template, video_fps))
        except ValueError as err:
            raise ValueError(f"{input_path}:{line}: {err}") from err
        counts[sample.media] += 1
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(json.dumps(examples, ensure_ascii=False, indent=1), encoding="utf-8")
    return counts


def read_instruction(value: str | None) -> str | None:
    """``--task_instruction``: the text itself, or ``@path`` to read it from a file."""
    if value is None or not value.startswith("@"):
        return value
    return Path(value[1:]).read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vlmrm.grm.convert", description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, type=Path, help="filtered.jsonl from rejection sampling")
    parser.add_argument("--output", required=True, type=Path, help="SFT data (JSON array) to write")
    parser.add_argument(
        "--task_instruction",
        default=None,
        help="human turn template with {prompt} (text or @file); default: the instruction recorded "
        "at inference",
    )
    parser.add_argument(
        "--video_fps", type=float, default=None, help="fps for videos; default: recorded at inference"
    )
    args = parser.parse_args(argv)
    counts = convert_file(args.input, args.output, read_instruction(args.task_instruction), args.video_fps)
    print(json.dumps({"output": str(args.output), **counts}))


if __name__ == "__main__":
    main()
