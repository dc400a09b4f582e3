"""Pieces shared by the nested task YAMLs (``task: vtg_sft`` / ``vtg_grpo`` / ``grm_sft``).

Those YAMLs group their keys in sections (``model``, ``lora``, ``training`` …) that are built with
:func:`vlmrm.vtg.data_config.build_section`, so an unknown key anywhere is an error naming its
dotted path. ``training`` is handed whole to ``HfArgumentParser`` (:func:`training_arguments`),
which rejects unknown keys too.

Command-line overrides: a dotted ``--model.name_or_path X`` goes to that section
(:func:`split_overrides` / :func:`apply_dotted`); any other ``--key value`` goes to ``training``,
which is where the launcher's ``--use_cpu true --ddp_backend gloo`` land.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from vlmrm.config import ConfigError, _opt, read_yaml
from vlmrm.vtg.data_config import build_section


@dataclass
class ModelSection:
    name_or_path: str | None = _opt(None, "Base Qwen-VL checkpoint (hub id or local folder).")
    torch_dtype: Literal["auto", "float32", "bfloat16", "float16"] = _opt("bfloat16", "Weights dtype.")
    attn_implementation: str = _opt("sdpa", "flash_attention_2 | sdpa | eager.")


@dataclass
class LoraSection:
    enabled: bool = _opt(True, "Train LoRA adapters (false: every LLM weight).")
    r: int = _opt(64, "LoRA rank.")
    lora_alpha: int = _opt(128, "LoRA alpha (scale alpha / r).")
    lora_dropout: float = _opt(0.05, "Dropout on the LoRA input.")
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata={"help": "Module names (suffixes) that get adapters."},
    )


def split_overrides(overrides: list[str]) -> tuple[dict, list[str]]:
    """Dotted ``--section.key value`` pairs (parsed as YAML scalars) and the rest (for ``training``)."""
    dotted, rest = {}, []
    tokens = list(overrides)
    while tokens:
        token = tokens.pop(0)
        key = token[2:] if token.startswith("--") else None
        if key and "." in key.split("=")[0]:
            name, _, value = key.partition("=")
            if not value:
                if not tokens:
                    raise ConfigError(f"{token}: needs a value")
                value = tokens.pop(0)
            dotted[name] = yaml.safe_load(value)
        else:
            rest.append(token)
    return dotted, rest


def apply_dotted(values: dict, dotted: dict) -> None:
    """Write each ``section.key: value`` of :func:`split_overrides` into the raw YAML mapping."""
    for name, value in dotted.items():
        section, _, key = name.partition(".")
        target = values.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--{name}: {section} is not a section")
        target[key] = value


def training_arguments(cls: type, values: dict, overrides: list[str], output_hint: str) -> Any:
    """``training`` + flat overrides -> an instance of ``cls`` (``TrainingArguments`` or a subclass
    such as TRL's ``GRPOConfig``), parsed by ``HfArgumentParser`` so its own checks run."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(cls)
    merged = {"output_dir": output_hint, **values}
    if "warmup_ratio" in merged:  # the reference's key; transformers 5 takes a fraction in warmup_steps
        ratio = float(merged.pop("warmup_ratio"))
        if not 0 <= ratio < 1:
            raise ConfigError(f"training.warmup_ratio: must be in [0, 1), got {ratio}")
        merged["warmup_steps"] = ratio
    known = {f for f in cls.__dataclass_fields__}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ConfigError(f"training: unknown key(s) {', '.join(unknown)} for {cls.__name__}")
    args = []
    for key, value in merged.items():
        if isinstance(value, dict):
            raise ConfigError(f"training.{key}: mappings are not supported here")
        args += [f"--{key}", *(map(str, value) if isinstance(value, list) else [str(value)])]
    try:
        (parsed,) = parser.parse_args_into_dataclasses(args=args + overrides)
    except SystemExit as err:
        raise ConfigError(f"training: cannot parse {overrides or merged}: see the message above") from err
    except ValueError as err:  # the arguments' own checks (e.g. GRPO's batch vs num_generations)
        raise ConfigError(f"training: {err}") from err
    return parsed


def read_sections(cls: type, path: str | Path | None, overrides: list[str] | None, values: dict | None):
    """(sections, flat overrides for ``training``, source name): the YAML (or ``values``) with the
    dotted ``--section.key value`` overrides applied, checked key by key into ``cls``."""
    raw = dict(values) if values is not None else read_yaml(path)
    source = str(path) if path is not None else "values"
    dotted, flat = split_overrides(overrides or [])
    apply_dotted(raw, dotted)
    try:
        sections = build_section(cls, raw)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    if not sections.model.name_or_path:
        raise ConfigError(f"{source}: model.name_or_path: required")
    return sections, flat, source
