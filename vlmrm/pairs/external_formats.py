"""Preference records of TRL and LLaMA-Factory, read as they are: each becomes vlmrm's
``chosen_rejected`` record ``{"prompt", "chosen", "rejected", "images", "margin"?}`` — two responses
judged against the same images (A = chosen, y = +1), so the pair differs in the response text.

Formats (``data_format``, or detected per record):

``trl`` — TRL's preference type, standard or conversational, explicit or implicit prompt:
    ``{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}``;
    ``{"chosen": "The sky is blue.", "rejected": "The sky is green."}`` (implicit: the prompt is the
    longest common prefix, TRL's ``extract_prompt`` rule, a space before the split going to the
    responses); conversational: ``prompt`` a list of one ``{"role": "user", "content": ...}`` and
    ``chosen`` / ``rejected`` lists of one assistant message (or, implicit, user + assistant). A
    content may be a list of parts ``{"type": "image"}`` / ``{"type": "text", "text": ...}``; the
    image parts must number ``len(images)``. A ``margin`` column is the per-pair margin m of the
    margin loss, -log sigmoid(r_chosen - r_rejected - m), as in TRL (needs ``loss_type: margin``).
``llamafactory_sharegpt`` — ``{"conversations": [{"from": "human", "value": "<image>..."}],
    "chosen": {"from": "gpt", "value": ...}, "rejected": {...}, "images": [...], "system"?}``;
``llamafactory_alpaca`` — ``{"instruction", "input"?, "chosen": str, "rejected": str, "images"?}``
    (prompt = instruction + "\\n" + input, LLaMA-Factory's join).
    Column names and sharegpt tags come from a ``dataset_info.json`` beside the file whose entry's
    ``file_name`` is the file (LLaMA-Factory's ``columns`` / ``tags``; ``ranking`` must be true),
    else LLaMA-Factory's defaults, with ``images`` read from the ``images`` column.

``<image>`` placeholders are counted against ``images`` and removed from the text: vlmrm places the
images by ``video_position`` (before the text by default). One user turn and one response per
pair: multi-turn histories, system prompts and tools are refused with the record's line, not
dropped. Files: JSON Lines, or one JSON array (``.json``); a record of an array is named by the
line it starts on and its index.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmrm.core.problems import DuplicateJsonKey, Problem, encoding_message, json_line, loads_unique

EXTERNAL_FORMATS = ("trl", "llamafactory_sharegpt", "llamafactory_alpaca")
IMAGE_PLACEHOLDER = "<image>"
DATASET_INFO = "dataset_info.json"
JSON_ARRAY_SUFFIX = ".json"
SHAREGPT_COLUMNS = {
    "messages": "conversations",
    "chosen": "chosen",
    "rejected": "rejected",
    "images": "images",
    "system": "system",
    "tools": "tools",
}
ALPACA_COLUMNS = {
    "prompt": "instruction",
    "query": "input",
    "chosen": "chosen",
    "rejected": "rejected",
    "images": "images",
    "system": "system",
    "history": "history",
}
SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "system_tag": "system",
}
"""LLaMA-Factory's defaults (its ``DatasetAttr``), overridden by a dataset_info.json entry."""
FORMAT_COLUMNS = {"llamafactory_sharegpt": SHAREGPT_COLUMNS, "llamafactory_alpaca": ALPACA_COLUMNS}
LLAMAFACTORY_FORMATTING = {"sharegpt": "llamafactory_sharegpt", "alpaca": "llamafactory_alpaca"}


class RecordProblems(Exception):
    """Every ``(field, message, kind)`` problem of one record."""

    def __init__(self, problems: list[tuple[str | None, str, str]]):
        self.problems = problems


@dataclass
class Record:
    """One JSON object of a data file: its line (where it starts) and, in a JSON array, its index."""

    line: int
    value: Any
    index: int | None = None


@dataclass
class RecordFile:
    records: list[Record]
    problems: list[Problem] = field(default_factory=list)


def read_records(path: Path) -> RecordFile:
    """JSON Lines, or (a ``.json`` file starting with ``[``) one JSON array; every undecodable line
    is a problem of its line. A broken array cannot be resynchronised, so it is one file-level
    problem naming the line of the error."""
    file = str(path)
    raw = path.read_bytes()
    head = raw.removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
    if path.suffix.lower() == JSON_ARRAY_SUFFIX and head == b"[":
        return _read_array(file, raw)
    records, problems = [], []
    for line_number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        value, problem = json_line(file, line_number, line)
        if problem is not None:
            problems.append(problem)
        else:
            records.append(Record(line_number, value))
    return RecordFile(records, problems)


def _read_array(file: str, raw: bytes) -> RecordFile:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return RecordFile([], [Problem(file, None, None, encoding_message(err), kind="bad_encoding")])
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    records: list[Record] = []
    problems: list[Problem] = []
    index = 0
    while True:
        position = _skip_space(text, position)
        if position < len(text) and text[position] == "]" and not index:
            break
        try:
            value, end = decoder.raw_decode(text, position)
        except (json.JSONDecodeError, RecursionError) as err:
            line = text.count("\n", 0, position) + 1
            message = f"invalid JSON array at record {index}: {getattr(err, 'msg', 'nested too deeply')}"
            return RecordFile([], [Problem(file, None, None, f"line {line}: {message}", kind="bad_json")])
        line = text.count("\n", 0, position) + 1
        try:
            loads_unique(text[position:end])
        except DuplicateJsonKey as err:
            problems.append(Problem(file, line, err.key, f"{err} (record {index})", kind="bad_json"))
        else:
            records.append(Record(line, value, index))
        index += 1
        position = _skip_space(text, end)
        if position < len(text) and text[position] == ",":
            position += 1
            continue
        if position < len(text) and text[position] == "]" and not text[position + 1 :].strip():
            break
        line = text.count("\n", 0, position) + 1
        message = f"line {line}: invalid JSON array after record {index - 1}: expected ',' or a final ']'"
        return RecordFile([], [Problem(file, None, None, message, kind="bad_json")])
    return RecordFile(records, problems)


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def dataset_info_entry(path: Path) -> tuple[dict | None, list[Problem]]:
    """The LLaMA-Factory ``dataset_info.json`` entry of ``path`` (its ``file_name``), if one exists."""
    info_path = path.parent / DATASET_INFO
    if not info_path.is_file():
        return None, []
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return None, [Problem(str(info_path), None, None, f"unreadable: {err}", kind="bad_json")]
    entries = [
        (name, entry)
        for name, entry in (info.items() if isinstance(info, dict) else [])
        if isinstance(entry, dict) and entry.get("file_name") == path.name
    ]
    if not entries:
        return None, []
    name, entry = entries[0]
    if not entry.get("ranking"):
        message = f"entry '{name}' for {path.name} has no \"ranking\": true: not a preference data set"
        return None, [Problem(str(info_path), None, name, message, kind="missing_file")]
    formatting = entry.get("formatting", "alpaca")
    if formatting not in LLAMAFACTORY_FORMATTING:
        message = f"entry '{name}': formatting {formatting!r} is not read (sharegpt or alpaca)"
        return None, [Problem(str(info_path), None, name, message, kind="missing_file")]
    return entry, []


@dataclass(frozen=True)
class Columns:
    """Column names and sharegpt tags of one file (LLaMA-Factory's defaults or its entry)."""

    data_format: str | None = None
    columns: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)

    @classmethod
    def from_entry(cls, entry: dict | None) -> Columns:
        if entry is None:
            return cls()
        data_format = LLAMAFACTORY_FORMATTING[entry.get("formatting", "alpaca")]
        return cls(
            data_format,
            {**FORMAT_COLUMNS[data_format], **entry.get("columns", {})},
            {**SHAREGPT_TAGS, **entry.get("tags", {})},
        )

    def name(self, data_format: str, column: str) -> str:
        return self.columns.get(column) or FORMAT_COLUMNS[data_format][column]

    def tag(self, tag: str) -> str:
        return self.tags.get(tag) or SHAREGPT_TAGS[tag]


def detect_external(record: dict, columns: Columns) -> str | None:
    """The external format of a record, None when it is one of vlmrm's own schemas."""
    if columns.data_format is not None:
        return columns.data_format
    chosen = record.get("chosen")
    if isinstance(chosen, dict):
        return "llamafactory_sharegpt"
    if "instruction" in record and "chosen" in record:
        return "llamafactory_alpaca"
    if isinstance(chosen, list) or ("chosen" in record and "prompt" not in record and "query" not in record):
        return "trl"
    return None


def convert_record(record: dict, data_format: str, columns: Columns) -> dict:
    """A record of ``data_format`` as vlmrm's ``chosen_rejected`` record; :class:`RecordProblems`
    with every problem of it otherwise."""
    problems: list = []
    converter = {
        "trl": _from_trl,
        "llamafactory_sharegpt": _from_sharegpt,
        "llamafactory_alpaca": _from_alpaca,
    }
    out = converter[data_format](record, columns, problems)
    if problems:
        raise RecordProblems(problems)
    return out


def read_margin(record: dict, out: dict, problems: list) -> None:
    """TRL's optional ``margin`` column into ``out`` (a finite number, else a problem)."""
    if "margin" not in record:
        return
    value = record["margin"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problems.append(("margin", f"must be a finite number, got {value!r}", "bad_type"))
        return
    out["margin"] = float(value)


def _strip_placeholders(text: str, images: list, name: str, problems: list) -> str:
    count = text.count(IMAGE_PLACEHOLDER)
    if count and count != len(images):
        problems.append(
            (name, f"{count} {IMAGE_PLACEHOLDER} placeholder(s) for {len(images)} image(s)", "bad_images")
        )
    return text.replace(IMAGE_PLACEHOLDER, "").strip() if count else text


def _content_text(content: Any, name: str, images: list, problems: list) -> str:
    """A message content: text, or TRL's list of parts (image parts counted against ``images``)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
        problems.append((name, f"content must be text or a list of parts, got {content!r:.60}", "bad_type"))
        return ""
    image_parts = sum(part.get("type") == "image" for part in content)
    if image_parts != len(images) and image_parts:
        problems.append((name, f"{image_parts} image part(s) for {len(images)} image(s)", "bad_images"))
    texts = [part.get("text") for part in content if part.get("type") == "text"]
    if not all(isinstance(t, str) for t in texts):
        problems.append((name, "a text part without a string 'text'", "bad_type"))
        return ""
    return "".join(texts)


def _one_message(messages: Any, role: str, name: str, images: list, problems: list) -> str:
    if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict):
        count = len(messages) if isinstance(messages, list) else type(messages).__name__
        problems.append(
            (name, f"must hold exactly one {role} message (one turn per pair), got {count}", "bad_type")
        )
        return ""
    message = messages[0]
    if message.get("role") != role:
        problems.append((name, f"expected a {role} message, got role {message.get('role')!r}", "bad_type"))
        return ""
    return _content_text(message.get("content"), name, images, problems)


def extract_prompt(chosen, rejected) -> tuple:
    """TRL's implicit-prompt rule: the longest common prefix of chosen and rejected is the prompt (a
    space just before the split stays with the responses). Works on strings and message lists."""
    index = min(len(chosen), len(rejected))
    for i in range(index):
        if chosen[i] != rejected[i]:
            index = i - 1 if i > 0 and chosen[i - 1] == " " else i
            break
    return chosen[:index], chosen[index:], rejected[index:]


def _from_trl(record: dict, columns: Columns, problems: list) -> dict:
    images = record.get("images", [])
    images = images if isinstance(images, list) else [images]
    chosen, rejected = record.get("chosen"), record.get("rejected")
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, (str, list)):
            problems.append((name, f"missing or not text / a message list: {value!r:.60}", "missing_field"))
    if problems:
        return {}
    prompt = record.get("prompt")
    if prompt is None:
        if type(chosen) is not type(rejected):
            problems.append(
                ("chosen", "chosen and rejected must both be text or both message lists", "bad_type")
            )
            return {}
        prompt, chosen, rejected = extract_prompt(chosen, rejected)
    out = {"images": images}
    if isinstance(chosen, list):
        if isinstance(prompt, list) and any(
            isinstance(m, dict) and m.get("role") == "system" for m in prompt
        ):
            problems.append(
                ("prompt", "a system message: vlmrm renders one user turn, no system prompt", "unsupported")
            )
            return {}
        out["prompt"] = _one_message(prompt, "user", "prompt", images, problems)
        out["chosen"] = _one_message(chosen, "assistant", "chosen", images, problems)
        out["rejected"] = _one_message(rejected, "assistant", "rejected", images, problems)
    else:
        for name, value in (("prompt", prompt), ("rejected", rejected)):
            if not isinstance(value, str):
                problems.append((name, f"must be text like chosen, got {type(value).__name__}", "bad_type"))
        out.update(prompt=prompt, chosen=chosen, rejected=rejected)
    if isinstance(out.get("prompt"), str):
        out["prompt"] = _strip_placeholders(out["prompt"], images, "prompt", problems)
    read_margin(record, out, problems)
    return out


def _no_extra_turns(record: dict, columns: Columns, data_format: str, keys: tuple, problems: list) -> None:
    for key in keys:
        value = record.get(columns.name(data_format, key))
        if value:
            what = {"system": "a system prompt", "tools": "tools", "history": "a multi-turn history"}[key]
            problems.append(
                (
                    columns.name(data_format, key),
                    f"{what}: vlmrm judges one user turn and one response",
                    "unsupported",
                )
            )


def _images(record: dict, columns: Columns, data_format: str) -> list:
    images = record.get(columns.name(data_format, "images"), [])
    return images if isinstance(images, list) else [images]


def _from_sharegpt(record: dict, columns: Columns, problems: list) -> dict:
    fmt = "llamafactory_sharegpt"
    role, content = columns.tag("role_tag"), columns.tag("content_tag")
    messages_name = columns.name(fmt, "messages")
    messages = record.get(messages_name)
    images = _images(record, columns, fmt)
    _no_extra_turns(record, columns, fmt, ("system", "tools"), problems)
    first = messages[0] if isinstance(messages, list) and messages else None
    if isinstance(first, dict) and first.get(role) == columns.tag("system_tag"):
        message = "a system message: vlmrm judges one user turn and one response"
        problems.append((messages_name, message, "unsupported"))
    if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict):
        count = len(messages) if isinstance(messages, list) else "none"
        problems.append(
            (
                messages_name,
                f"must hold exactly one user message (one turn per pair), got {count}",
                "bad_type",
            )
        )
        return {}
    if messages[0].get(role) != columns.tag("user_tag"):
        problems.append(
            (
                messages_name,
                f"expected {role} {columns.tag('user_tag')!r}, got {messages[0].get(role)!r}",
                "bad_type",
            )
        )
    out = {"images": images}
    for side in ("chosen", "rejected"):
        name = columns.name(fmt, side)
        message = record.get(name)
        if not isinstance(message, dict) or message.get(role) != columns.tag("assistant_tag"):
            problems.append(
                (
                    name,
                    f"must be one {{{role}: {columns.tag('assistant_tag')!r}, {content}: ...}} message",
                    "bad_type",
                )
            )
        elif not isinstance(message.get(content), str):
            problems.append((name, f"{content} must be text", "bad_type"))
        else:
            out[side] = message[content]
    text = messages[0].get(content)
    if not isinstance(text, str):
        problems.append((messages_name, f"{content} must be text", "bad_type"))
        return out
    out["prompt"] = _strip_placeholders(text, images, messages_name, problems)
    return out


def _from_alpaca(record: dict, columns: Columns, problems: list) -> dict:
    fmt = "llamafactory_alpaca"
    images = _images(record, columns, fmt)
    _no_extra_turns(record, columns, fmt, ("system", "history"), problems)
    parts = []
    for key in ("prompt", "query"):
        value = record.get(columns.name(fmt, key))
        if value is not None and not isinstance(value, str):
            problems.append((columns.name(fmt, key), "must be text", "bad_type"))
        elif value:
            parts.append(value)
    out = {
        "images": images,
        "prompt": _strip_placeholders("\n".join(parts), images, columns.name(fmt, "prompt"), problems),
    }
    for side in ("chosen", "rejected"):
        name = columns.name(fmt, side)
        if not isinstance(record.get(name), str):
            problems.append((name, "missing or not text", "missing_field"))
        else:
            out[side] = record[name]
    return out
