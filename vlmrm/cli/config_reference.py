"""The configuration reference, generated from the config dataclasses' fields and ``help`` texts.

``docs/configuration.md`` is this module's output (``python -m vlmrm.cli.config_reference --out
docs/configuration.md``); a test fails when the two differ, so the page cannot fall behind the code.
Each task's YAML is one table per dataclass: key (dotted for nested sections), type, default, help.
For ``TrainingArguments`` subclasses only the keys vlmrm adds are listed: every other
``transformers.TrainingArguments`` key is accepted with its HF meaning.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from transformers import TrainingArguments

from vlmrm.core.config import TRAINING_ARGUMENT_BOUNDS
from vlmrm.grm.evaluate import GRMEvalConfig
from vlmrm.grm.sft import GRMSFTSections
from vlmrm.reward.config import DataConfig, ModelConfig, RewardTrainingArguments
from vlmrm.reward.evaluate import EvalConfig
from vlmrm.vtg.config import VTGTaskSections
from vlmrm.vtg.data_config import VTGDataConfig
from vlmrm.vtg.evaluate import VTGEvalConfig

REFERENCE_TASKS: tuple[tuple[str, str, tuple[type, ...]], ...] = (
    (
        "Reward model training (`task: reward_model`, flat keys)",
        "`train_rm.py` / `run_distributed.sh`. One flat mapping; each key belongs to one of these classes.",
        (ModelConfig, DataConfig, RewardTrainingArguments),
    ),
    (
        "Reward model evaluation (`task: reward_model`)",
        "`eval_rm.py` / `run_eval.sh`.",
        (EvalConfig,),
    ),
    (
        "VTG training (`task: vtg_sft` / `vtg_grpo`, nested sections)",
        "`training:` takes `TrainingArguments` keys (SFT) or TRL `GRPOConfig` keys (GRPO).",
        (VTGTaskSections,),
    ),
    (
        "VTG data config (the file `data_config:` names, or its mapping inline)",
        "Relative paths resolve against `dataset.data_root`.",
        (VTGDataConfig,),
    ),
    ("VTG evaluation (`task: vtg`)", "`eval_rm.py` / `run_eval.sh`.", (VTGEvalConfig,)),
    (
        "GRM supervised fine-tuning (`task: grm_sft`, nested sections)",
        "`training:` takes `TrainingArguments` keys.",
        (GRMSFTSections,),
    ),
    ("GRM evaluation (`task: grm`)", "`eval_rm.py` / `run_eval.sh`.", (GRMEvalConfig,)),
)


def type_name(hint: Any) -> str:
    """A field's annotation as a reader writes it: ``int | None``, ``one of: a, b``, ``list[str]``."""
    origin = get_origin(hint)
    if origin is Literal:
        return "one of: " + ", ".join(str(choice) for choice in get_args(hint))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in get_args(hint))
    if origin is list:
        return f"list[{', '.join(type_name(arg) for arg in get_args(hint))}]"
    if hint is type(None):
        return "None"
    if hint is Any:
        return "any"
    return getattr(hint, "__name__", str(hint))


def default_text(spec: dataclasses.Field) -> str:
    if spec.default is not dataclasses.MISSING:
        value = spec.default
    elif spec.default_factory is not dataclasses.MISSING:
        value = spec.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "(section)"
    return "`" + repr(value).replace("|", "\\|") + "`"


def own_fields(cls: type) -> list[dataclasses.Field]:
    """The fields ``cls`` declares beyond ``TrainingArguments`` (all of them for other classes)."""
    inherited = (
        {f.name for f in dataclasses.fields(TrainingArguments)}
        if issubclass(cls, TrainingArguments)
        else set()
    )
    return [f for f in dataclasses.fields(cls) if f.init and f.name not in inherited]


def field_rows(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) rows of ``cls``, recursing into nested section dataclasses."""
    hints = get_type_hints(cls)
    rows = []
    for spec in own_fields(cls):
        key, hint = f"{prefix}{spec.name}", hints[spec.name]
        if dataclasses.is_dataclass(hint):
            rows += field_rows(hint, f"{key}.")
            continue
        item = get_args(hint)[0] if get_origin(hint) is list and get_args(hint) else None
        help_text = spec.metadata.get("help", "")
        aliases = [alias.lstrip("-") for alias in spec.metadata.get("aliases", [])]
        if aliases:
            help_text += f" (also: {', '.join(aliases)})"
        bound = spec.metadata.get("bound")
        kind = type_name(hint) + (f", {bound}" if bound is not None else "")
        rows.append((key, kind, default_text(spec), help_text))
        if item is not None and dataclasses.is_dataclass(item):
            rows += field_rows(item, f"{key}[].")
    return rows


def escape_cell(text: str) -> str:
    """A Markdown table cell: ``|`` would end the cell."""
    return text.replace("|", "\\|")


def summary_line(cls: type) -> str:
    """The first docstring line, or nothing for a dataclass without one (its generated signature)."""
    doc = (cls.__doc__ or "").strip()
    return "" if not doc or doc.startswith(f"{cls.__name__}(") else f" — {doc.splitlines()[0]}"


def class_table(cls: type) -> str:
    lines = [f"**{cls.__name__}**{summary_line(cls)}", ""]
    if issubclass(cls, TrainingArguments):
        checked = ", ".join(f"`{key}` {bound}" for key, bound in TRAINING_ARGUMENT_BOUNDS.items())
        lines += [
            f"Every `transformers.TrainingArguments` key is accepted too (numbers finite; {checked}); vlmrm adds:",
            "",
        ]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, kind, default, help_text in field_rows(cls):
        cells = [f"`{key}`", escape_cell(kind), default, escape_cell(help_text)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_reference() -> str:
    """The whole page, in the order of :data:`REFERENCE_TASKS`."""
    parts = [
        "# Configuration reference",
        "",
        (
            "Generated from the config dataclasses by `python -m vlmrm.cli.config_reference --out "
            "docs/configuration.md`; a test keeps it equal to the code. How files are loaded, the "
            "override grammar and the path rule: `vlmrm/core/config.py`."
        ),
    ]
    for title, note, classes in REFERENCE_TASKS:
        parts += ["", f"## {title}", "", note]
        for cls in classes:
            parts += ["", class_table(cls)]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vlmrm.cli.config_reference", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", help="write the page here (default: print it)")
    args = parser.parse_args(argv)
    text = render_reference()
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
