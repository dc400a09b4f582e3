"""Configuration loading shared by every task: typed dataclasses from YAML, checked key by key.

Two layouts exist, both built from dataclasses whose fields carry ``help`` metadata:

- flat (the reward model, HF Trainer style): every key is a field of one of a few dataclasses,
  parsed by ``HfArgumentParser`` (:func:`parse_dataclasses`), so ``learning_rate: 1e-5`` (a
  string to PyYAML) arrives as a float and every ``TrainingArguments`` key keeps its meaning;
- nested (VTG, GRM): sections of dataclasses (:func:`build_section`), whose errors name the
  dotted key path (``video.resolution.hieght``).

Unknown keys are errors that name the key and suggest the closest valid one: a typo must never
be silently ignored.
"""

from __future__ import annotations

import ast
import difflib
import json
import types
from dataclasses import field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml
from transformers import HfArgumentParser


class ConfigError(ValueError):
    """A configuration problem found before any model or data is loaded."""


def option(default: Any = None, help: str = "", aliases: list[str] | None = None, **kwargs) -> Any:
    metadata: dict[str, Any] = {"help": help}
    if aliases:
        metadata["aliases"] = [f"--{a}" for a in aliases]
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


def as_str_list(value: Any, name: str) -> list[str]:
    """Accept a YAML list, one string, or the string form VideoAlign uses ("['a', 'b']")."""
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], str):
        value = value[0] if value[0].strip().startswith("[") else value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError) as err:
                raise ConfigError(f"{name}: cannot read {value!r} as a list of strings") from err
        else:
            value = [text]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name}: expected a list of strings, got {value!r}")
    return list(value)


def _key_table(classes: tuple[type, ...]) -> dict[str, str]:
    """Every accepted key (field names and their aliases) -> the field it sets."""
    table: dict[str, str] = {}
    for cls in classes:
        for f in fields(cls):
            if not f.init:
                continue
            table[f.name] = f.name
            for alias in f.metadata.get("aliases", []):
                table[alias.lstrip("-")] = f.name
    return table


def _check_key(key: str, table: dict[str, str], source: str) -> str:
    if key in table:
        return table[key]
    close = difflib.get_close_matches(key, list(table), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"{source}: unknown key '{key}'{hint}")


def _yaml_to_argv(values: dict[str, Any], table: dict[str, str], source: str) -> list[str]:
    """Turn YAML key/values into argparse tokens, so both sources share one type conversion."""
    argv: list[str] = []
    for key, value in values.items():
        name = _check_key(str(key), table, source)
        if value is None:
            continue
        argv.append(f"--{name}")
        if isinstance(value, bool):
            argv.append(str(value).lower())
        elif isinstance(value, dict):
            argv.append(json.dumps(value))
        elif isinstance(value, (list, tuple)):
            if not value:
                raise ConfigError(f"{source}: '{key}' is an empty list")
            argv.extend(json.dumps(v) if isinstance(v, dict) else str(v) for v in value)
        else:
            argv.append(str(value))
    return argv


def _check_cli_keys(argv: list[str], table: dict[str, str]) -> None:
    bool_negations = {f"no_{name}" for name in table}
    for token in argv:
        if token.startswith("--"):
            key = token[2:].split("=", 1)[0].replace("-", "_")
            if key not in bool_negations:
                _check_key(key, table, "command line")


class _RaisingArgumentParser(HfArgumentParser):
    """argparse prints usage and exits on a bad value; we want one clear exception instead."""

    def error(self, message: str):
        raise ConfigError(message)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load`` (never executes tags)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with path.open() as fh:
        values = yaml.safe_load(fh) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: top level must be a mapping of key: value")
    return values


def parse_dataclasses(
    classes: tuple[type, ...],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    values: dict | None = None,
) -> tuple:
    """Parse a YAML file (or a dict) plus ``--key value`` overrides into instances of ``classes``.

    Args:
        path: YAML file; its keys are the dataclass field names (or their aliases).
        overrides: command-line tokens, applied after the YAML (last one wins).
        values: a mapping used instead of / on top of the file (tests, programmatic use).
    """
    table = _key_table(classes)
    merged: dict[str, Any] = read_yaml(path) if path is not None else {}
    merged.update(values or {})
    source = str(path) if path is not None else "config"
    argv = _yaml_to_argv(merged, table, source)
    overrides = list(overrides or [])
    _check_cli_keys(overrides, table)
    parser = _RaisingArgumentParser(classes, allow_abbrev=False)
    try:
        return tuple(parser.parse_args_into_dataclasses(args=argv + overrides, look_for_args_file=False))
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def resolve_under(path: str, root: str | Path | None) -> str:
    """``path`` joined onto ``root``, unless absolute or already spelled from ``root``.

    Data YAMLs commonly write ``data_root: ./data`` next to ``annotation_file:
    ./data/annotations/train.jsonl`` (and video paths ``./data/videos/...`` next to ``video_dir:
    ./data/videos``): such a path already starts with the root's components and is kept as is;
    ``annotations/train.jsonl`` becomes ``data/annotations/train.jsonl``. Idempotent.
    """
    candidate = Path(path)
    if root is None or candidate.is_absolute():
        return str(candidate)
    base = Path(root)
    if candidate.parts[: len(base.parts)] == base.parts:
        return str(candidate)
    return str(base / candidate)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the field's annotation; int -> float is the only silent conversion.

    PyYAML reads ``1e3`` (no dot) as a string: for float fields a numeric string is converted, as
    the rule for every typed value here is "convert or reject, never pass a string on".
    """
    if hint is Any:
        return value
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return value
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [arg for arg in get_args(hint) if arg is not type(None)]
        return _coerce(value, inner, key)
    if origin is list:
        (item,) = get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        if is_dataclass(item):
            return [build_section(item, entry, f"{key}[{i}]") for i, entry in enumerate(value)]
        return [_coerce(entry, item, f"{key}[{i}]") for i, entry in enumerate(value)]
    if origin is Literal:
        if value not in get_args(hint):
            choices = ", ".join(repr(c) for c in get_args(hint))
            raise ConfigError(f"{key}: must be one of {choices}, got {value!r}")
        return value
    if hint is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (bool, str) and isinstance(value, hint):
        return value
    raise ConfigError(f"{key}: expected {_type_name(hint)}, got {type(value).__name__} {value!r}")


def build_section(cls: type, values: Any, prefix: str = "") -> Any:
    """One section from its mapping, recursing into nested sections; errors carry the dotted path."""
    where = prefix or "the top level"
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of key: value, got {type(values).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown key '{dotted}'{hint} (valid keys in {where}: {', '.join(names)})")
        if is_dataclass(hints[key]):
            kwargs[key] = build_section(hints[key], value, dotted)
        else:
            kwargs[key] = _coerce(value, hints[key], dotted)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{prefix}.{err}" if prefix else str(err)) from None


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
    if (
        "warmup_ratio" in merged
    ):  # the shipped configs' key (transformers < 5); transformers 5 takes a fraction in warmup_steps
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


def flat_overrides(tokens: list[str]) -> dict:
    """``--key value`` / ``--key=value`` pairs, values read as YAML scalars."""
    values, rest = {}, list(tokens)
    while rest:
        token = rest.pop(0)
        if not token.startswith("--"):
            raise ConfigError(f"unexpected argument {token!r} (expected --key value)")
        key, _, value = token[2:].partition("=")
        if not value:
            if not rest:
                raise ConfigError(f"{token}: needs a value")
            value = rest.pop(0)
        values[key] = yaml.safe_load(value)
    return values
