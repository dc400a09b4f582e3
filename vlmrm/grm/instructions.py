"""Task instructions for generative reward models: what the GRM is asked before it judges a pair.

The defaults are the usual GRM rejection-sampling instructions for T2I and T2V pairs: score both
items from 1 to 10 on each dimension with a rationale, sum the scores, reason inside
``<think>...</think>``, and put exactly one verdict string inside ``<answer>...</answer>``. The
verdict strings (``Image 1 is better`` / ``Video 2 is better``) are the ones the answer parser and
the SFT conversion read, so they are built from the same constants here.

An instruction is a template with one ``{prompt}`` placeholder for the generation prompt. It is
filled with ``str.replace``, not ``str.format``, so a user instruction may contain other braces
(JSON examples, LaTeX) unchanged. ``--task_instruction`` takes the text itself or ``@FILE``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Media = Literal["image", "video"]

PROMPT_PLACEHOLDER = "{prompt}"
"""Where the generation prompt goes in an instruction template."""

INSTRUCTION_FILE_PREFIX = "@"
"""``--task_instruction @path/to/file.txt`` reads the template from that file."""

SCORE_MIN, SCORE_MAX = 1, 10
"""The per-dimension score range the instructions ask for."""

ITEM_NOUN: dict[str, str] = {"image": "Image", "video": "Video"}
"""How the two items are named in the instruction and in the verdict ("Image 1 is better")."""

DIMENSIONS: dict[str, tuple[str, ...]] = {
    "image": (
        "semantic consistency (how closely the image content matches the caption)",
        "aesthetics (composition, colour, lighting, artistic expression)",
        "authenticity (realism, anatomy, fine detail, absence of artefacts)",
    ),
    "video": (
        "semantic consistency (how closely the video content matches the caption)",
        "temporal coherence (smooth, physically plausible motion; no flicker or sudden changes)",
        "authenticity (realism, visual quality, fine detail, absence of artefacts)",
    ),
}
"""Evaluation dimensions named by the default T2I and T2V instructions."""


def verdict_text(media: Media, winner: int) -> str:
    """The exact ``<answer>`` string for ``winner`` (1 or 2, in the order the items were shown)."""
    return f"{ITEM_NOUN[media]} {winner} is better"


def _cot_instruction(media: Media) -> str:
    noun = ITEM_NOUN[media]
    lower = noun.lower()
    dimensions = "; ".join(DIMENSIONS[media])
    scored_lines = "\n".join(
        f"{i}. {name.split(' (')[0].capitalize()}: {noun} 1 (x/{SCORE_MAX}) - ...; {noun} 2 (x/{SCORE_MAX}) - ..."
        for i, name in enumerate(DIMENSIONS[media], start=1)
    )
    return (
        f"You are given a text caption and two {lower}s generated from it, {noun} 1 and {noun} 2, "
        f"shown in that order. Analyse both {lower}s in detail and evaluate them on these dimensions: "
        f"{dimensions}; add any other dimension you find relevant. For each dimension give each "
        f"{lower} a score from {SCORE_MIN} to {SCORE_MAX} with a short rationale, then compute each "
        f"{lower}'s total score by summing its dimension scores. Reason step by step and put all of "
        f"your reasoning inside <think> and </think> tags. Then, inside <answer> and </answer> tags, "
        f"output exactly one of '{verdict_text(media, 1)}' or '{verdict_text(media, 2)}', according "
        f"to the total scores, and nothing else.\n\n"
        f"Output format (the scores are placeholders):\n"
        f"<think>\n{scored_lines}\nTotal score:\n{noun} 1: x+x+x=total\n{noun} 2: x+x+x=total\n</think>\n"
        f"<answer>{verdict_text(media, 1)}</answer>\n\n"
        f"Text caption: **{PROMPT_PLACEHOLDER}**"
    )


def _direct_instruction(media: Media) -> str:
    noun = ITEM_NOUN[media]
    lower = noun.lower()
    dimensions = "; ".join(DIMENSIONS[media])
    return (
        f"You are given a text caption and two {lower}s generated from it, {noun} 1 and {noun} 2, "
        f"shown in that order. Judge which {lower} is better overall, considering {dimensions}. "
        f"Inside <answer> and </answer> tags, output exactly one of '{verdict_text(media, 1)}' or "
        f"'{verdict_text(media, 2)}', and nothing else.\n\n"
        f"Text caption: **{PROMPT_PLACEHOLDER}**"
    )


DEFAULT_COT_INSTRUCTIONS: dict[str, str] = {media: _cot_instruction(media) for media in ITEM_NOUN}
"""``--use_cot`` defaults: per-dimension scores and totals in ``<think>``, verdict in ``<answer>``."""

DEFAULT_DIRECT_INSTRUCTIONS: dict[str, str] = {media: _direct_instruction(media) for media in ITEM_NOUN}
"""Defaults without ``--use_cot``: the verdict in ``<answer>`` only (no reasoning to filter on)."""


def default_instruction(media: Media, use_cot: bool) -> str:
    """The T2I (``media="image"``) or T2V (``"video"``) default template."""
    return (DEFAULT_COT_INSTRUCTIONS if use_cot else DEFAULT_DIRECT_INSTRUCTIONS)[media]


def load_instruction(value: str) -> str:
    """A ``--task_instruction`` value as a template: the text itself, or the contents of ``@FILE``.

    Raises:
        FileNotFoundError: ``@FILE`` does not exist.
        ValueError: the template has no ``{prompt}`` placeholder (every pair would get the same
            text and the model could not see the caption it is judging against).
    """
    if value.startswith(INSTRUCTION_FILE_PREFIX):
        path = Path(value[len(INSTRUCTION_FILE_PREFIX) :]).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--task_instruction {value}: no such file {path}")
        value = path.read_text(encoding="utf-8")
    if PROMPT_PLACEHOLDER not in value:
        raise ValueError(
            f"--task_instruction has no {PROMPT_PLACEHOLDER} placeholder; add it where the caption "
            f"should go, e.g. 'Text caption: **{PROMPT_PLACEHOLDER}**'"
        )
    return value


def fill_instruction(template: str, prompt: str) -> str:
    """The template with the generation prompt in place of ``{prompt}`` (other braces untouched)."""
    return template.replace(PROMPT_PLACEHOLDER, prompt)
