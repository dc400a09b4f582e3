"""``--help`` and ``--print_config`` of ``train_rm.py`` / ``eval_rm.py``: answers without loading anything.

``--help`` (alone or after the config) lists every config key of the entry's tasks, grouped by task
and class, with type, default and help text: the rows of ``docs/configuration.md``
(:func:`vlmrm.cli.config_reference.field_rows`) laid out for a terminal, plus the
``transformers.TrainingArguments`` keys training accepts, which the page only links to.
``CONFIG --print_config [--key value ...]`` prints the resolved config as YAML: every key with its
default, the file's values and the overrides applied, exactly what the job would run with.
"""

from __future__ import annotations

import dataclasses
import enum
import shutil
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from vlmrm.cli.tasks import DEFAULT_EVAL_TASK, DEFAULT_TRAIN_TASK, pick

HELP_FLAGS = frozenset({"-h", "--help"})
PRINT_CONFIG_FLAG = "--print_config"
EVAL_ENTRY = "eval_rm.py"
"""Reference tasks whose note names this script are evaluations; the others are training."""
HELP_INDENT = 8
"""Where help text starts under its key: deep enough to scan the keys, shallow enough to read."""
DEFAULT_WIDTH = 100
"""Line width when the terminal's is unknown (output piped to a file or a pager)."""


def plain(text: str) -> str:
    """Reference text without Markdown: backticks and the ``\\|`` escape of table cells."""
    return text.replace("`", "").replace("\\|", "|")


def key_block(key: str, kind: str, default: str, help_text: str, width: int) -> list[str]:
    """``key  (type; default: value)`` then the help text wrapped and indented under it."""
    lines = [f"    {key}  ({plain(kind)}; default: {plain(default)})"]
    if help_text:
        indent = " " * HELP_INDENT
        lines += textwrap.wrap(plain(help_text), width, initial_indent=indent, subsequent_indent=indent)
    return lines


def inherited_rows() -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) of every ``transformers.TrainingArguments`` key."""
    from transformers import TrainingArguments

    from vlmrm.cli.config_reference import default_text, type_name

    hints = get_type_hints(TrainingArguments)
    return [
        (spec.name, type_name(hints[spec.name]), default_text(spec), spec.metadata.get("help", ""))
        for spec in dataclasses.fields(TrainingArguments)
        if spec.init and not spec.name.startswith("_")
    ]


def render_help(usage: str, evaluation: bool, width: int | None = None) -> str:
    """The entry's usage, then every key of its tasks (evaluation: the eval tasks; else training).
    The reference imports every task's config classes: only here, so a plain run starts faster."""
    from vlmrm.cli.config_reference import REFERENCE_TASKS, field_rows, summary_line

    width = width or shutil.get_terminal_size((DEFAULT_WIDTH, 0)).columns
    parts = [plain(usage.strip()), "", "Config keys (YAML, or --key value after the config):"]
    for title, note, classes in REFERENCE_TASKS:
        if (EVAL_ENTRY in note) != evaluation:
            continue
        parts += ["", f"== {plain(title)} ==", *textwrap.wrap(plain(note), width)]
        for cls in classes:
            header = f"{cls.__name__}{plain(summary_line(cls))}"
            parts += ["", *textwrap.wrap(header, width, initial_indent="  ", subsequent_indent="    ")]
            for row in field_rows(cls):
                parts += key_block(*row, width)
    if not evaluation:
        parts += [
            "",
            "== transformers.TrainingArguments (flat keys of reward_model, under training: in VTG / GRM) ==",
        ]
        for row in inherited_rows():
            parts += key_block(*row, width)
    return "\n".join(parts) + "\n"


def yaml_ready(value: Any) -> Any:
    """Plain YAML values: dataclasses and mappings recursed, enums by value, paths and others as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: yaml_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): yaml_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [yaml_ready(v) for v in value]
    if isinstance(value, enum.Enum):
        return yaml_ready(value.value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def training_dict(args) -> dict:
    """Every training argument as set (``to_dict`` turns enums into values and hides tokens)."""
    return yaml_ready(args.to_dict())


def _reward_model_config(path: str, overrides: list[str]) -> dict:
    from vlmrm.reward.config import parse_config

    cfg = parse_config(path, overrides)
    return {**yaml_ready(cfg.model), **yaml_ready(cfg.data), **training_dict(cfg.training)}


def _vtg_config(path: str, overrides: list[str]) -> dict:
    from vlmrm.vtg.config import load_vtg_task_config

    cfg = load_vtg_task_config(path, overrides)
    return {**yaml_ready(cfg.sections), "training": training_dict(cfg.training)}


def _grm_sft_config(path: str, overrides: list[str]) -> dict:
    from vlmrm.grm.sft import load_grm_sft_config

    cfg = load_grm_sft_config(path, overrides)
    return {**yaml_ready(cfg.sections), "training": training_dict(cfg.training)}


def _reward_eval_config(path: str, overrides: list[str]) -> dict:
    from vlmrm.reward.evaluate import parse_eval_config

    return yaml_ready(parse_eval_config(path, overrides))


def _vtg_eval_config(path: str, overrides: list[str]) -> dict:
    from vlmrm.vtg.evaluate import parse_vtg_eval_config

    return yaml_ready(parse_vtg_eval_config(path, overrides))


def _grm_eval_config(path: str, overrides: list[str]) -> dict:
    from vlmrm.grm.evaluate import parse_grm_eval_config

    return yaml_ready(parse_grm_eval_config(path, overrides))


TRAIN_CONFIGS: dict[str, Callable[[str, list[str]], dict]] = {
    "reward_model": _reward_model_config,
    "vtg_sft": _vtg_config,
    "vtg_grpo": _vtg_config,
    "grm_sft": _grm_sft_config,
}
"""The resolved config of each training task of :data:`vlmrm.cli.tasks.TRAIN_TASKS`, by the loader
the job itself uses (a test keeps the two tables' keys equal)."""
EVAL_CONFIGS: dict[str, Callable[[str, list[str]], dict]] = {
    "reward_model": _reward_eval_config,
    "vtg": _vtg_eval_config,
    "grm": _grm_eval_config,
}


def render_config(path: str | Path, overrides: list[str], evaluation: bool) -> str:
    """``--print_config``: the resolved config as YAML, keys in the order of their classes."""
    table, default = (EVAL_CONFIGS, DEFAULT_EVAL_TASK) if evaluation else (TRAIN_CONFIGS, DEFAULT_TRAIN_TASK)
    resolved = pick(table, path, default)(str(path), overrides)
    return yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True)


USAGE_ERROR = 2
"""Exit status of a usage or config error, as the entry scripts use it."""


def answer_without_running(argv: list[str], usage: str, evaluation: bool) -> int | None:
    """What ``train_rm.py`` / ``eval_rm.py`` answer before running a job: ``--help`` (anywhere) prints
    the keys and 0; no config prints the usage and :data:`USAGE_ERROR`; ``CONFIG ... --print_config``
    prints the resolved config and 0 (a config error: one line and :data:`USAGE_ERROR`). None: run."""
    if HELP_FLAGS & set(argv):
        print(render_help(usage, evaluation))
        return 0
    if not argv or argv[0].startswith("-"):
        print(usage, file=sys.stderr)
        return USAGE_ERROR
    if PRINT_CONFIG_FLAG not in argv[1:]:
        return None
    from vlmrm.core.config import ConfigError

    overrides = [token for token in argv[1:] if token != PRINT_CONFIG_FLAG]
    try:
        print(render_config(argv[0], overrides, evaluation), end="")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE_ERROR
    return 0
