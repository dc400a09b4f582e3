"""One configuration loader for every task: :func:`load_config` turns a YAML file (or a mapping) and
command-line override tokens into typed dataclasses whose fields carry ``help`` metadata.

Layouts (:class:`Layout`):

- flat (the reward model and its evaluation, HF Trainer style): every top-level key is a field (or
  an alias, ``option(..., aliases=[...])``) of one of a few dataclasses, parsed together by
  ``HfArgumentParser``, so ``learning_rate: 1e-5`` (a string to PyYAML) arrives as a float and every
  ``TrainingArguments`` key keeps its meaning and its own checks;
- nested (VTG, GRM, their evaluations): one dataclass whose fields are sections (dataclasses, lists
  of them) built key by key (:func:`build_section`); a ``training:`` section, when the layout has
  one, goes through the same ``HfArgumentParser`` function as the flat layout, into the class the
  task picks (``TrainingArguments`` or a subclass such as TRL's ``GRPOConfig``), over the task's
  defaults. A section field marked ``path=True`` may be given as the path of its own YAML file
  (VTG's ``data_config``). ``warmup_ratio`` (VideoAlign's and transformers 4's key, dropped by transformers 5) is
  accepted by every ``TrainingArguments`` class and converted here, once, into ``warmup_steps``.

Order: read the file, merge ``values`` over it, apply the path rule to the file's paths, apply the
command-line overrides to the raw mapping, build: overrides get exactly the checks the YAML gets.
Override grammar (the tokens after the config, for ``train_rm.py`` and ``eval_rm.py``)::

    --key value   --key=value     one value, read as a YAML scalar (5e-6, 3, true, null, [VQ, MQ])
    --key v1 v2                   several values: a list (--eval_dim VQ MQ)
    --flag        --no_flag       a bare key: true; no_ before a boolean's name: false
    --section.key value           a key of a (nested) section, e.g. --lora.r 8, --data_config.video.fps 2

Only ``true`` / ``false`` are booleans (``--save_strategy no`` stays ``no``); text that is not a
``[...]`` / ``{...}`` collection stays text; a value starting with ``--`` needs ``=``. In a nested
layout a key without a dot that is not a top-level field goes to ``training``, so the launcher's
``--use_cpu true --ddp_backend gloo`` works for every task (``--training.key`` says so explicitly).
List items are not addressed by dots: give the whole list (``--data "[{path: a.json}]"``).

Path rule (fields marked ``option(..., path=True)``, and ``TrainingArguments.deepspeed``): a relative
path written in a config file is taken from the working directory when it exists there, else from
the file's folder when it exists there, else left as written, so hub ids and outputs not created yet
are untouched; a file included by path follows the rule from its own folder. Command-line values
are left as typed (relative to the working directory). A field marked ``under="a.b"`` is first
joined onto that root folder key of its file (VTG's ``data_root``, :func:`resolve_under`).

Errors are :class:`ConfigError` ``"<origin>: <message>"``: the origin is the file (an included
file for its keys; ``values`` or the caller's name for a mapping) or ``command line``; the message
names the dotted key and, for an unknown key, the closest valid one::

    cfg.yaml: unknown key 'learnin_rate'; did you mean 'learning_rate'?
    cfg.yaml: unknown key 'lora.rnak' (valid keys in lora: enabled, r, lora_alpha, ...)
    command line: training: unknown key 'training.learnin_rate'; did you mean 'learning_rate'?

Every unknown key of a mapping is listed in one error, each with its suggestion::

    cfg.yaml: 2 unknown keys: 'learnin_rate' (did you mean 'learning_rate'?), 'fpss' (did you mean 'fps'?)
"""

from __future__ import annotations

import ast
import copy
import difflib
import json
import math
import re
import types
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from transformers import HfArgumentParser

from vlmrm.core.overrides import (
    COMMAND_LINE,
    TRAINING_SECTION,
    PathForm,
    fields_by_key,
    is_bool,
    merge,
    negated,
    off,
    origin_of,
    parse_overrides,
    resolve_paths,
    resolve_under,
    set_override,
)
from vlmrm.core.problems import ConfigError
from vlmrm.core.yaml_reader import read_yaml

__all__ = [
    "AT_LEAST_ONE",
    "AT_LEAST_TWO",
    "NON_NEGATIVE",
    "POSITIVE",
    "PROBABILITY_BELOW_ONE",
    "Bound",
    "ConfigError",
    "Layout",
    "as_str_list",
    "build_section",
    "load_config",
    "option",
    "read_yaml",
    "resolve_under",
]

SUGGESTION_CUTOFF = 0.6
"""difflib similarity a known key needs to be offered as "did you mean"."""
TRAINING = TRAINING_SECTION
ARGPARSE_KEY = re.compile(r"argument --(\w+)")
"""How argparse names the key of a bad value ("argument --fps: invalid float value: 'fast'")."""
LOADER_METADATA = frozenset({"path", "under", "bound"})
"""Field metadata of :func:`option` that only the loader reads."""
COLLECTION_TYPE_WORDS = {list: ("list", "tuple"), dict: ("dict",)}
"""Words in a field's annotation that make a YAML list (or mapping) a fitting value."""
RATIO_KEYS = {"warmup_ratio": "warmup_steps"}
"""Reference keys transformers 5 dropped: warm-up as a fraction of all steps is a float warmup_steps < 1."""


@dataclass(frozen=True)
class Bound:
    """The values a numeric option accepts: ``low`` / ``high`` (None: unbounded), each end closed
    unless ``*_open``. Any number given in a config must also be finite: NaN and infinity are
    refused for every numeric key, bounded or not, before a model or data is loaded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        opening, closing = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {opening}{self.low:g}, {self.high:g}{closing}"

    def holds(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below


POSITIVE = Bound(0, low_open=True)
NON_NEGATIVE = Bound(0)
AT_LEAST_ONE = Bound(1)
AT_LEAST_TWO = Bound(2)
"""Frame counts (Qwen-VL merges frames in pairs, its temporal patch) and quantisation bins."""
PROBABILITY_BELOW_ONE = Bound(0, 1, high_open=True)
"""Dropout rates, Adam betas: 1 would drop (or remember) everything."""
TRAINING_ARGUMENT_BOUNDS = {
    "learning_rate": POSITIVE,
    "per_device_train_batch_size": AT_LEAST_ONE,
    "per_device_eval_batch_size": AT_LEAST_ONE,
    "gradient_accumulation_steps": AT_LEAST_ONE,
    "num_train_epochs": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "max_grad_norm": NON_NEGATIVE,
    "adam_beta1": PROBABILITY_BELOW_ONE,
    "adam_beta2": PROBABILITY_BELOW_ONE,
    "adam_epsilon": POSITIVE,
    "warmup_steps": NON_NEGATIVE,
    "logging_steps": POSITIVE,
    "eval_steps": POSITIVE,
    "save_steps": POSITIVE,
    "dataloader_num_workers": NON_NEGATIVE,
}
"""Bounds of transformers' ``TrainingArguments`` keys, whose fields carry no :func:`option` metadata."""


def bound_of(f: Field) -> Bound | None:
    """The :class:`Bound` of a config field (its ``option(bound=...)``, else the table above)."""
    return f.metadata.get("bound") or TRAINING_ARGUMENT_BOUNDS.get(f.name)


def check_number(value: Any, bound: Bound | None, key: str) -> None:
    """Refuse NaN, infinity and a number outside ``bound``, naming the dotted ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value}", key)
    if bound is not None and not bound.holds(value):
        raise ConfigError(f"{key}: must be {bound}, got {value:g}", key)


def option(
    default: Any = None,
    help: str = "",
    aliases: list[str] | None = None,
    path: bool | PathForm = False,
    under: str | None = None,
    bound: Bound | None = None,
    **kwargs,
) -> Any:
    """A dataclass field with its ``help``; ``aliases`` are other accepted key names; ``path``
    marks an input path (True) or a value embedding paths (a :data:`PathForm`) for the path rule;
    ``under`` names the root-folder key of the same file a relative path is joined onto first
    (:func:`resolve_under`, VTG's ``data_root``); ``bound`` the numbers it accepts (:class:`Bound`,
    checked when a config is loaded, shown in docs/configuration.md)."""
    metadata: dict[str, Any] = {"help": help}
    if bound is not None:
        metadata["bound"] = bound
    if aliases:
        metadata["aliases"] = [f"--{a}" for a in aliases]
    if path:
        metadata["path"] = path
    if under:
        metadata["under"] = under
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


# ---- nested sections -------------------------------------------------------------------------


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the field's annotation; int -> float and one value -> a one-item list
    are the only silent conversions. PyYAML reads ``1e3`` (no dot) as a string: for float fields a
    numeric string is converted ("convert or reject, never pass a string on")."""
    if hint is Any:
        return value
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}", key)
        return value
    if is_dataclass(hint):
        return build_section(hint, value, key)
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [arg for arg in get_args(hint) if arg is not type(None)]
        return _coerce(value, inner, key)
    if origin is list:
        (item,) = get_args(hint)
        items = value if isinstance(value, list) else [value]
        return [_coerce(entry, item, f"{key}[{i}]") for i, entry in enumerate(items)]
    if origin is Literal:
        if value not in get_args(hint):
            choices = ", ".join(repr(c) for c in get_args(hint))
            raise ConfigError(f"{key}: must be one of {choices}, got {value!r}", key)
        return value
    if hint is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}", key) from None
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (bool, str) and isinstance(value, hint):
        return value
    raise ConfigError(f"{key}: expected {_type_name(hint)}, got {type(value).__name__} {value!r}", key)


def build_section(cls: type, values: Any, prefix: str = "") -> Any:
    """One section from its mapping, recursing into nested sections; errors carry the dotted path."""
    where = prefix or "the top level"
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of key: value, got {type(values).__name__}", prefix)
    hints = get_type_hints(cls)
    by_name = {f.name: f for f in fields(cls)}
    names = list(by_name)
    unknown = [key for key in values if key not in names]
    if unknown:
        dotted = [f"{prefix}.{key}" if prefix else str(key) for key in unknown]
        found = unknown_keys([(str(key), d) for key, d in zip(unknown, dotted)], names)
        raise ConfigError(f"{found} (valid keys in {where}: {', '.join(names)})", dotted[0])
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        kwargs[key] = _coerce(value, hints[key], dotted)
        check_number(kwargs[key], bound_of(by_name[key]), dotted)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{prefix}.{err}" if prefix else str(err), err.key or prefix or None) from None


# ---- flat classes through HfArgumentParser ---------------------------------------------------


def unknown_keys(keys: list[tuple[str, str]], known: list[str]) -> str:
    """One message for every unknown key (``(key, dotted)`` pairs), each with its closest known key:
    a user fixes a config once, not once per typo. One key reads "unknown key 'x'; did you mean 'y'?",
    several "3 unknown keys: 'x' (did you mean 'y'?), 'z', ..."."""
    named = []
    for key, dotted in keys:
        close = difflib.get_close_matches(key, known, n=1, cutoff=SUGGESTION_CUTOFF)
        named.append((dotted, close[0] if close else None))
    if len(named) == 1:
        ((dotted, close),) = named
        return f"unknown key '{dotted}'" + (f"; did you mean '{close}'?" if close else "")
    listed = ", ".join(f"'{d}'" + (f" (did you mean '{c}'?)" if c else "") for d, c in named)
    return f"{len(named)} unknown keys: {listed}"


def canonical_keys(classes: tuple[type, ...], values: dict, section: str = "") -> dict:
    """``values`` with every key checked and aliases replaced by the field name they set."""
    table = fields_by_key(classes)
    ratios = {k: v for k, v in RATIO_KEYS.items() if v in table and k not in table}
    unknown = [(str(key), f"{section}.{key}" if section else str(key)) for key in values]
    unknown = [(key, dotted) for key, dotted in unknown if key not in ratios and key not in table]
    if unknown:
        message = unknown_keys(unknown, [*table, *ratios])
        raise ConfigError(f"{section + ': ' if section else ''}{message}", unknown[0][1])
    out: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{section}.{key}" if section else str(key)
        name = key if key in ratios else table[key].name
        if name in out:
            raise ConfigError(f"'{dotted}': '{name}' is given twice (under two of its names)", dotted)
        out[name] = value
    for ratio, steps in ratios.items():
        if ratio in out:
            value = out.pop(ratio)
            where = f"{section}.{ratio}" if section else ratio
            if out.get(steps) is not None:
                raise ConfigError(f"{where}: give {ratio} or {steps}, not both", where)
            try:
                fraction = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: expected a number, got {value!r}", where) from None
            if not 0 <= fraction < 1:
                raise ConfigError(f"{where}: must be in [0, 1), got {fraction}", where)
            out[steps] = fraction
    return out


def _argv(values: dict, section: str) -> list[str]:
    """Key/values as argparse tokens, so YAML and command-line values share one type conversion; a
    single value is joined to its key (``--fps=-inf``)."""
    argv: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(f"--{key}={str(value).lower()}")
        elif isinstance(value, dict):
            argv.append(f"--{key}={json.dumps(value)}")
        elif isinstance(value, (list, tuple)):
            if not value:
                where = f"{section}.{key}" if section else key
                raise ConfigError(f"{where}: is an empty list", where)
            argv.append(f"--{key}")
            argv.extend(json.dumps(v) if isinstance(v, dict) else str(v) for v in value)
        else:
            argv.append(f"--{key}={value}")  # one token: argparse would take "-inf" for an option
    return argv


class _RaisingArgumentParser(HfArgumentParser):
    """argparse prints usage and exits on a bad value; we want one clear exception instead."""

    def error(self, message: str):
        raise ConfigError(message)

    @staticmethod
    def _parse_dataclass_field(parser, f: Field) -> None:
        """HfArgumentParser passes a field's metadata to ``add_argument``: not the loader's keys."""
        if LOADER_METADATA & set(f.metadata):
            f = copy.copy(f)
            f.metadata = types.MappingProxyType(
                {k: v for k, v in f.metadata.items() if k not in LOADER_METADATA}
            )
        HfArgumentParser._parse_dataclass_field(parser, f)


def takes(f: Field, collection: type) -> bool:
    """Whether a field's annotation admits a list (or a mapping); else a YAML list or mapping
    given for it would reach argparse as several tokens, or as JSON text read as one string."""
    return any(word in str(f.type).lower() for word in COLLECTION_TYPE_WORDS[collection])


def parse_flat(classes: tuple[type, ...], values: dict, section: str = "") -> tuple:
    """Instances of ``classes`` from one flat mapping, by ``HfArgumentParser`` (the flat layout, and
    the ``training`` section of a nested one: ``section`` then prefixes keys in errors)."""
    given = canonical_keys(classes, values, section)
    table = fields_by_key(classes)
    for name, value in given.items():
        if isinstance(value, (list, dict)) and not takes(table[name], type(value)):
            key = f"{section}.{name}" if section else name
            hint = table[name].type
            expected = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            raise ConfigError(f"{key}: expected {expected}, got a {type(value).__name__} {value!r}", key)
    argv = _argv(given, section)
    parser = _RaisingArgumentParser(classes, allow_abbrev=False)
    try:
        instances = tuple(parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False))
    except ValueError as err:  # ConfigError included; and the classes' own checks (GRPO batch sizes)
        named = ARGPARSE_KEY.match(str(err))
        key = err.key if isinstance(err, ConfigError) else None
        if named and key is None:
            key = f"{section}.{named.group(1)}" if section else named.group(1)
        raise ConfigError(f"{section}: {err}" if section else str(err), key) from None
    for instance in instances:
        for f in fields(instance):
            if f.name in given:
                check_number(
                    getattr(instance, f.name), bound_of(f), f"{section}.{f.name}" if section else f.name
                )
    return instances


# ---- the loader ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """How one task's YAML maps onto dataclasses.

    ``classes``: flat: the dataclasses sharing the top level; nested: one top-level dataclass.
    ``training`` (nested only): given the built sections, the class of the ``training:`` section and
    the defaults its YAML values go over; None: the layout has no training section.
    """

    classes: tuple[type, ...]
    flat: bool = False
    training: Callable[[Any], tuple[type, dict]] | None = None
    translate: Callable[[dict, dict], dict] | None = None
    """Keys of another framework (the reward task: VideoAlign's ``train.sh`` flags) rewritten into
    this layout's keys or refused with a :class:`ConfigError`, before anything is built: called as
    ``translate(mapping, context)`` on the file's mapping (context: itself) and on the command-line
    values (context: the file's mapping)."""


def load_config(
    layout: Layout,
    source: str | Path | dict | None = None,
    overrides: list[str] | None = None,
    values: dict | None = None,
    name: str = "values",
) -> tuple:
    """The layout's instances (flat: one per class; nested: the sections, then the training
    arguments when the layout has them) from a YAML file or mapping, ``values`` merged over it
    (treated as file content), then the command-line ``overrides``. ``name`` is what errors call a
    mapping given without a file."""
    path = None if source is None or isinstance(source, dict) else Path(source)
    raw = read_yaml(path) if path is not None else copy.deepcopy(source or {})
    merge(raw, copy.deepcopy(values or {}))
    origin = str(path) if path is not None else name
    try:
        pairs = parse_overrides(list(overrides or []))
    except ConfigError as err:
        raise ConfigError(f"{COMMAND_LINE}: {err}") from None
    origins: dict[str, str] = {}  # dotted key prefix -> the file it came from (includes, command line)
    try:
        if layout.translate is not None:
            raw = layout.translate(raw, raw)
            pairs = _translate_pairs(layout.translate, pairs, raw, origins)
        resolve_paths(layout, raw, path.parent if path is not None else None, origins)
        if layout.flat:
            return _load_flat(layout.classes, raw, pairs, origins)
        return _load_nested(layout, raw, pairs, origins)
    except ConfigError as err:
        raise ConfigError(f"{origin_of(err.key, origins, origin)}: {err}", err.key) from None


def _translate_pairs(translate: Callable, pairs: list, context: dict, origins: dict) -> list:
    """Command-line pairs through the layout's ``translate``; its refusals are the command line's."""
    try:
        return list(translate(dict(pairs), context).items()) if pairs else pairs
    except ConfigError as err:
        origins[err.key or ""] = COMMAND_LINE
        raise


def _apply_flat(
    classes: tuple[type, ...], mapping: dict, pairs: list, origins: dict, section: str = ""
) -> None:
    """Command-line pairs into a canonical flat mapping (``--no_flag``, aliases, ratio keys)."""
    table = fields_by_key(classes)
    prefix = f"{section}." if section else ""
    for key, value in pairs:
        origins[prefix + key] = COMMAND_LINE
        target = negated(key, lambda k: is_bool(table.get(k)), lambda k: k in table)
        if target is not None:
            origins[prefix + target] = COMMAND_LINE
            key, value = target, off(prefix + key, value)
        mapping.update(canonical_keys(classes, {key: value}, section))


def _load_flat(classes: tuple[type, ...], raw: dict, pairs: list, origins: dict) -> tuple:
    mapping = canonical_keys(classes, raw)
    _apply_flat(classes, mapping, pairs, origins)
    return parse_flat(classes, mapping)


def _load_nested(layout: Layout, raw: dict, pairs: list, origins: dict) -> tuple:
    (cls,) = layout.classes
    top = {f.name: f for f in fields(cls)}
    training_pairs = []
    for key, value in pairs:
        head = key.split(".", 1)[0]
        negation = negated(head, lambda k: is_bool(top.get(k)), lambda k: k in top)
        if layout.training is not None and head == TRAINING and "." in key:
            training_pairs.append((key.split(".", 1)[1], value))
        elif layout.training is not None and "." not in key and head not in top and negation is None:
            training_pairs.append((key, value))
        else:
            set_override(cls, raw, key, value, origins)
    sections = build_section(cls, raw)
    if layout.training is None:
        return (sections,)
    training_class, defaults = layout.training(sections)
    mapping = canonical_keys((training_class,), {**defaults, **getattr(sections, TRAINING)}, TRAINING)
    _apply_flat((training_class,), mapping, training_pairs, origins, TRAINING)
    (args,) = parse_flat((training_class,), mapping, TRAINING)
    return sections, args
