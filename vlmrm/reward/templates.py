"""Prompt templates: the text the reward model reads next to the video.

All templates live in the one table :data:`PROMPT_TEMPLATES` (name -> function of the generation
prompt and the evaluated dimensions). A user adds one with :func:`register_template` from their
own code; the dataset and collator only ever call :func:`build_prompt`.

Template names follow VideoAlign's (``none``, ``simple``, ``video_score``, ``detailed``,
``detailed_special``), plus ``simple_special``: the prompt and one short rating line per dimension
ending in its reward token (a short sequence for small models and long videos). Only ``none`` has
VideoAlign's text; the others are vlmrm's own wording, so a model trained with VideoAlign's
``detailed_special`` does not see the same text under vlmrm's ``detailed_special`` (docs/videoalign_checkpoints.md). Unlike
VideoAlign's, none of them assumes the three dimensions VQ/MQ/TA: any ``eval_dim`` list works, with a
generic description for names not in :data:`DIMENSION_DESCRIPTIONS`.

A template can also be plain text (``prompt_template_file``, and VideoAlign's texts imported by
``python -m vlmrm.convert videoalign``), stored in the checkpoint (``RewardSpec.prompt_template_text``);
:func:`render_template_text` fills its placeholders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vlmrm.modeling.reward_model import reward_token

TemplateFn = Callable[[str, list[str]], str]

DIMENSION_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "VQ": ("visual quality", "clarity, noise, resolution, brightness and colour of the frames"),
    "MQ": ("motion quality", "smoothness, stability and physical plausibility of the motion"),
    "TA": ("text alignment", "how well the content and motion match the text prompt"),
    "Overall": ("overall quality", "visual quality, motion quality and text alignment together"),
}
"""Name and description per known dimension; other dimension names get a generic wording."""


def describe(dimension: str) -> tuple[str, str]:
    return DIMENSION_DESCRIPTIONS.get(dimension, (dimension, f"the {dimension} of the video"))


def _joined_name(dimensions: list[str]) -> tuple[str, str]:
    if len(dimensions) == 1:
        return describe(dimensions[0])
    names = ", ".join(describe(d)[0] for d in dimensions)
    return f"overall performance ({names})", "the overall performance of the video"


def _none(prompt: str, dimensions: list[str]) -> str:
    return prompt


def _simple(prompt: str, dimensions: list[str]) -> str:
    name, description = _joined_name(dimensions)
    return (
        f"Please evaluate the {name} of a generated video. Consider {description}.\n"
        f'The text prompt used for generation is "{prompt}".'
    )


def _video_score(prompt: str, dimensions: list[str]) -> str:
    name, description = _joined_name(dimensions)
    return (
        "You are an expert judge of AI-generated videos. Watch the frames of the video and read the "
        f"text prompt, then score its {name}, i.e. {description}, from 1.0 (bad) to 5.0 (perfect).\n"
        f'The text prompt used for generation is "{prompt}".'
    )


def _detailed_sections(dimensions: list[str], with_tokens: bool) -> str:
    sections = []
    for dim in dimensions:
        name, description = describe(dim)
        line = f"**{name.capitalize()}:** judge {description}."
        if with_tokens:
            line += f"\nPlease provide the rating of {name}: {reward_token(dim)}"
        sections.append(line)
    return "\n\n".join(sections)


def _detailed(prompt: str, dimensions: list[str]) -> str:
    names = ", ".join(describe(d)[0] for d in dimensions)
    return (
        f"You are evaluating a generated video on {len(dimensions)} independent criteria: {names}. "
        "Rate each from 0 (worst) to 10 (best).\n\n"
        f"{_detailed_sections(dimensions, with_tokens=False)}\n\n"
        f"Textual prompt - {prompt}\nPlease provide the ratings of {names}."
    )


def _simple_special(prompt: str, dimensions: list[str]) -> str:
    """No quotes around the prompt: after a space a word is one BPE token more often than after ``"``."""
    ratings = "\n".join(f"{describe(dim)[0]}: {reward_token(dim)}" for dim in dimensions)
    return f"Prompt: {prompt}\n{ratings}"


def _detailed_special(prompt: str, dimensions: list[str]) -> str:
    names = ", ".join(describe(d)[0] for d in dimensions)
    return (
        f"You are evaluating a generated video on {len(dimensions)} independent criteria: {names}. "
        "Rate each from 0 (worst) to 10 (best).\n\n"
        f"Textual prompt - {prompt}\n\n{_detailed_sections(dimensions, with_tokens=True)}"
    )


PROMPT_TEMPLATES: dict[str, TemplateFn] = {
    "none": _none,
    "simple": _simple,
    "video_score": _video_score,
    "detailed": _detailed,
    "detailed_special": _detailed_special,
    "simple_special": _simple_special,
}


PROMPT_PLACEHOLDER = "{prompt}"
"""Where a text template takes the generation prompt (required)."""
DIMENSIONS_PLACEHOLDER = "{dimensions}"
"""Replaced by the evaluated dimensions' names joined with ", " (e.g. "visual quality, motion quality")."""
REWARD_TOKEN_PLACEHOLDER = "{reward_token:%s}"
"""``{reward_token:VQ}`` is replaced by the reward token of dimension VQ, ``<|VQ_reward|>``; the token
itself may also be written literally."""


def check_template_text(text: str, source: str) -> str:
    """``text`` if it is a usable template; an error naming ``source`` (file or checkpoint) otherwise."""
    if PROMPT_PLACEHOLDER not in text:
        raise ValueError(f"{source}: prompt template has no {PROMPT_PLACEHOLDER} placeholder for the prompt")
    return text


def read_template_file(path: str | Path) -> str:
    """The text of a ``prompt_template_file``, checked (read as UTF-8, kept byte for byte)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt_template_file: {path} does not exist")
    return check_template_text(path.read_text(encoding="utf-8"), str(path))


def render_template_text(text: str, prompt: str, dimensions: list[str]) -> str:
    """Fill a text template by plain replacement (other braces stay as written): the dimension
    placeholders first, ``{prompt}`` last, so a prompt that contains a placeholder is not expanded."""
    for dim in dimensions:
        text = text.replace(REWARD_TOKEN_PLACEHOLDER % dim, reward_token(dim))
    text = text.replace(DIMENSIONS_PLACEHOLDER, ", ".join(describe(d)[0] for d in dimensions))
    return text.replace(PROMPT_PLACEHOLDER, prompt)


def register_template(name: str, fn: TemplateFn, overwrite: bool = False) -> None:
    """Add a template usable as ``prompt_template_type: name``."""
    if name in PROMPT_TEMPLATES and not overwrite:
        raise ValueError(f"prompt template {name!r} already exists; pass overwrite=True to replace it")
    PROMPT_TEMPLATES[name] = fn


def check_template(name: str) -> TemplateFn:
    if name not in PROMPT_TEMPLATES:
        raise ValueError(f"prompt_template_type: unknown {name!r}; available: {', '.join(PROMPT_TEMPLATES)}")
    return PROMPT_TEMPLATES[name]


def build_prompt(
    prompt: str, dimensions: list[str], template_type: str, template_text: str | None = None
) -> str:
    """Render the text shown to the model for one video: ``template_text`` when given (a text
    template), else the named template."""
    if template_text is not None:
        return render_template_text(template_text, prompt, list(dimensions))
    return check_template(template_type)(prompt, list(dimensions))
