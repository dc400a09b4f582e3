"""The one YAML reader of every config (files and command-line values): PyYAML's safe loader with
three changes, and every problem as one line ``file:line:column: message``.

- Scientific notation without a dot (``1e-5``, ``-1e1``, ``2E+3``) is a float, as in YAML 1.2;
  PyYAML's YAML 1.1 resolver reads it as a string (only ``1.0e-5`` is a float there).
- A key given twice in one mapping is an error naming the key and both lines (PyYAML keeps the
  last value without a word).
- Bytes that are not UTF-8 are an error at their line and column (PyYAML raises a reader error
  whose position counts characters of the whole stream); a leading BOM is allowed.

Tabs used for indentation, two documents in one file, a tag (``!!python/...``) and any other
parser error keep PyYAML's own wording, reduced to its first line, at the position PyYAML marks
(1-based, as editors count).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from vlmrm.core.problems import ConfigError

YAML12_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$""",
    re.VERBOSE,
)
"""Floats PyYAML 1.1 misses: mantissa without a dot, or starting with a dot, and an exponent."""
FLOAT_TAG = "tag:yaml.org,2002:float"
MERGE_TAG = "tag:yaml.org,2002:merge"
UTF8_BOM = "\ufeff"
TAB_HINT = "; indent with spaces, YAML does not allow tabs there"


class DuplicateKeyError(ConfigError):
    """A mapping that gives one key twice (a command-line value included: never read as text)."""


class _DuplicateKey(yaml.constructor.ConstructorError):
    pass


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the YAML 1.2 float rule and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                continue  # unhashable: PyYAML's own error follows
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise _DuplicateKey(
                    None, None, f"key '{key}' is given twice (first on line {first})", key_node.start_mark
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep)


ConfigLoader.add_implicit_resolver(FLOAT_TAG, YAML12_FLOAT, list("-+0123456789."))


def _one_line(err: yaml.YAMLError) -> tuple[int | None, int | None, str]:
    """(line, column) from 1 and the first line of a PyYAML error's own message."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    message = f"{context}: {problem}" if context else problem
    if "'\\t'" in message:
        message += TAB_HINT
    if mark is None:
        return None, None, message
    return mark.line + 1, mark.column + 1, message


def _position(origin: str, line: int | None, column: int | None) -> str:
    return origin if line is None else f"{origin}:{line}:{column}"


def _not_utf8(raw: bytes, err: UnicodeDecodeError, origin: str) -> ConfigError:
    """The line and column (from 1, in bytes) of the first byte that is not UTF-8."""
    line = raw.count(b"\n", 0, err.start) + 1
    column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
    byte = raw[err.start]
    return ConfigError(f"{origin}:{line}:{column}: byte 0x{byte:02x} is not UTF-8; save the file as UTF-8")


def load_yaml(text: str, origin: str) -> Any:
    """One YAML document of ``text`` (None when empty); ``origin`` names it in errors."""
    loader = ConfigLoader(text.removeprefix(UTF8_BOM))
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        line, column, message = _one_line(err)
        error = DuplicateKeyError if isinstance(err, _DuplicateKey) else ConfigError
        raise error(f"{_position(origin, line, column)}: {message}") from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's top-level mapping (never executes tags); errors say ``file:line:column``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(raw, err, str(path)) from None
    values = load_yaml(text, str(path)) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: top level must be a mapping of key: value, got {type(values).__name__}")
    return values
