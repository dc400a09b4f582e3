"""The raw mapping before anything is built: reading YAML, the command-line override grammar
(:func:`parse_overrides`, :func:`set_override`) and the input-path rule (:func:`resolve_path`,
:func:`resolve_paths`), which :func:`vlmrm.core.config.load_config` applies to every task's config.
Both rules are stated, with examples, in :mod:`vlmrm.core.config`'s docstring.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable
from dataclasses import Field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from vlmrm.core.problems import ConfigError
from vlmrm.core.yaml_reader import DuplicateKeyError, load_yaml, read_yaml

NEGATION = "no_"
"""Prefix that turns a boolean flag off: ``--no_use_tied_data``."""
FLOW_COLLECTION_STARTS = ("[", "{")
"""A command-line value is a YAML list / mapping only when written in flow style."""
BOOLEAN_WORDS = ("true", "false")
"""The only booleans on the command line (YAML 1.1 also reads yes / no / on / off as booleans)."""
COMMAND_LINE = "command line"
"""The origin errors name for a key given as an override."""
TRAINING_SECTION = "training"
"""The section of a nested layout parsed into the task's TrainingArguments class."""
INHERITED_PATH_FIELDS = frozenset({"deepspeed"})
"""Input-file fields of transformers' ``TrainingArguments``, whose dataclass carries no path metadata."""

PathForm = Callable[[str, Callable[[str], str]], str]
"""A field whose value embeds paths (``src:path,src:path``): rewrites it, resolving each path."""


def parse_scalar(text: str, key: str = "value") -> Any:
    """One command-line value, read as YAML with the two exceptions of the module docstring; a
    mapping giving a key twice is an error (``--key:1:column`` names it), never text."""
    try:
        value = load_yaml(text, f"--{key}")
    except DuplicateKeyError:
        raise
    except ConfigError:
        return text
    if isinstance(value, bool) and text.strip().lower() not in BOOLEAN_WORDS:
        return text
    if isinstance(value, (list, dict)) and not text.lstrip().startswith(FLOW_COLLECTION_STARTS):
        return text
    return value


def parse_overrides(tokens: list[str]) -> list[tuple[str, Any]]:
    """``(dotted key, value)`` pairs in command-line order (a later pair wins); see the grammar above."""
    pairs: list[tuple[str, Any]] = []
    rest = list(tokens)
    while rest:
        token = rest.pop(0)
        if not token.startswith("--") or len(token) == len("--"):
            raise ConfigError(f"unexpected argument {token!r} (expected --key value)")
        key, equals, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if equals:
            pairs.append((key, parse_scalar(value, key)))
            continue
        values = []
        while rest and not rest[0].startswith("--"):
            values.append(parse_scalar(rest.pop(0), key))
        pairs.append((key, True if not values else values[0] if len(values) == 1 else values))
    return pairs


def negated(key: str, is_bool: Callable[[str], bool], is_key: Callable[[str], bool]) -> str | None:
    """The boolean ``no_<key>`` turns off, or None when ``key`` is not such a negation."""
    if key.startswith(NEGATION) and not is_key(key) and is_bool(key[len(NEGATION) :]):
        return key[len(NEGATION) :]
    return None


def off(key: str, value: Any) -> bool:
    """The value a ``--no_flag`` sets (false); it takes no value of its own."""
    if value is not True:
        raise ConfigError(f"--{key}: takes no value (it sets a boolean to false)", key=key)
    return False


def resolve_path(value: str, folder: Path | None) -> str:
    """The path rule of the module docstring for one path written in a config file in ``folder``."""
    candidate = Path(value)
    if candidate.is_absolute() or candidate.exists() or folder is None:
        return value
    beside = folder / candidate
    return str(beside) if beside.exists() else value


def resolve_value(value: Any, form: bool | PathForm, folder: Path | None) -> Any:
    """A path field's value (one string or a list of them) with the path rule applied."""
    if isinstance(value, list):
        return [resolve_value(item, form, folder) for item in value]
    if not isinstance(value, str):
        return value
    if callable(form):
        return form(value, lambda path: resolve_path(path, folder))
    return resolve_path(value, folder)


def set_dotted(mapping: dict, key: str, value: Any) -> None:
    """Write ``value`` at ``a.b.c`` of the raw mapping, creating the sections on the way."""
    *sections, name = key.split(".")
    target = mapping
    for depth, section in enumerate(sections):
        target = target.setdefault(section, {})
        if not isinstance(target, dict):
            where = ".".join(sections[: depth + 1])
            raise ConfigError(f"--{key}: '{where}' is not a section of key: value", key=key)
    target[name] = value


def merge(base: dict, over: dict) -> dict:
    """``over`` written into ``base`` key by key, recursing where both hold a mapping."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def section_class(hint: Any) -> type | None:
    """The dataclass of a section field (``Section`` or ``Section | None``), else None."""
    if get_origin(hint) in (Union, types.UnionType):
        inner = [arg for arg in get_args(hint) if arg is not type(None)]
        hint = inner[0] if len(inner) == 1 else None
    return hint if isinstance(hint, type) and is_dataclass(hint) else None


def fields_by_key(classes: tuple[type, ...]) -> dict[str, Field]:
    """Every accepted key (field names, their aliases) -> its field."""
    table: dict[str, Field] = {}
    for cls in classes:
        for f in fields(cls):
            if f.init:
                table[f.name] = f
                table.update({alias.lstrip("-"): f for alias in f.metadata.get("aliases", [])})
    return table


def is_bool(f: Field | None) -> bool:
    """Whether a field holds a boolean (what ``--no_<name>`` may turn off)."""
    hint = f.type if f is not None else None
    if isinstance(hint, str):
        return hint.replace(" ", "") in ("bool", "bool|None", "Optional[bool]")
    return hint is bool or (get_origin(hint) in (Union, types.UnionType) and bool in get_args(hint))


def origin_of(key: str | None, origins: dict[str, str], default: str) -> str:
    """Where ``key`` was written: the longest recorded prefix of it, else the config file."""
    best = ""
    for prefix in origins:
        if (
            key
            and (key == prefix or key.startswith((f"{prefix}.", f"{prefix}[")))
            and len(prefix) > len(best)
        ):
            best = prefix
    return origins[best] if best else default


def resolve_paths(layout, raw: dict, folder: Path | None, origins: dict) -> None:
    """The path rule on the values of a config file in ``folder`` (in place), for a
    :class:`vlmrm.core.config.Layout`; a section given as a path is read here, and ``origins``
    records its file for the errors about its keys."""
    if layout.flat:
        table = fields_by_key(layout.classes)
        for key, value in raw.items():
            f = table.get(key)
            if f is not None:
                form = f.metadata.get("path") or f.name in INHERITED_PATH_FIELDS
                raw[key] = resolve_value(value, form, folder) if form else value
        return
    (cls,) = layout.classes
    resolve_section(cls, raw, folder, "", origins, copy.deepcopy(raw))
    training = raw.get(TRAINING_SECTION) if layout.training is not None else None
    if isinstance(training, dict):
        for key in INHERITED_PATH_FIELDS & set(training):
            training[key] = resolve_value(training[key], True, folder)


def _written(document: dict, dotted: str) -> Any:
    """The value at ``a.b`` of a document as written (None when absent)."""
    value: Any = document
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def resolve_section(
    cls: type, raw: dict, folder: Path | None, prefix: str, origins: dict, document: dict
) -> None:
    """:func:`resolve_paths` of one nested section; ``document`` is its file as written, for the
    fields marked ``under=`` a root folder key of that file (joined onto it before the rule)."""
    hints = get_type_hints(cls)
    for f in fields(cls):
        value, dotted = raw.get(f.name), f"{prefix}{f.name}"
        section = section_class(hints[f.name])
        form = f.metadata.get("path")
        if section is not None and form and isinstance(value, str):
            file = Path(resolve_path(value, folder))
            raw[f.name] = value = read_yaml(file)
            origins[dotted] = str(file)
            resolve_section(section, value, file.parent, f"{dotted}.", origins, copy.deepcopy(value))
        elif section is not None and isinstance(value, dict):
            resolve_section(section, value, folder, f"{dotted}.", origins, document)
        elif get_origin(hints[f.name]) is list and isinstance(value, list):
            (item,) = get_args(hints[f.name])
            for i, entry in enumerate(value):
                if is_dataclass(item) and isinstance(entry, dict):
                    resolve_section(item, entry, folder, f"{dotted}[{i}].", origins, document)
                elif form:
                    value[i] = resolve_value(entry, form, folder)
        elif form and isinstance(value, str) and "under" in f.metadata:
            root = _written(document, f.metadata["under"])
            joined = resolve_under(value, root if isinstance(root, str) else None)
            found = resolve_path(joined, folder)
            # not found either way: as written, for the section to join onto its (resolved) root
            raw[f.name] = value if found == joined and not Path(joined).exists() else found
        elif form and value is not None:
            raw[f.name] = resolve_value(value, form, folder)


def resolve_under(path: str, root: str | Path | None) -> str:
    """``path`` joined onto ``root``, unless absolute or already spelled from ``root``.

    The reference writes ``data_root: ./data`` next to ``annotation_file:
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


def section_at(cls: type, dotted: list[str]) -> type | None:
    """The dataclass at ``a.b`` under ``cls`` (None: not a section path)."""
    for part in dotted:
        hints = get_type_hints(cls)
        cls = section_class(hints[part]) if part in hints else None
        if cls is None:
            return None
    return cls


def set_override(cls: type, mapping: dict, key: str, value: Any, origins: dict) -> None:
    """``key = value`` into the raw mapping; ``[...].no_flag`` as ``flag = false`` when ``flag`` is a
    boolean of its section."""
    *sections, last = key.split(".")
    owner = section_at(cls, sections)
    table = {f.name: f for f in fields(owner)} if owner is not None else {}
    target = negated(last, lambda k: is_bool(table.get(k)), lambda k: k in table)
    origins[key] = COMMAND_LINE
    if target is not None:
        value, key = off(key, value), ".".join([*sections, target])
        origins[key] = COMMAND_LINE
    set_dotted(mapping, key, value)
