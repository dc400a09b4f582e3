"""JSONL image-pair preference data: three schemas, one pair type, every bad line named.

One JSON object per line; the schema is detected per line (or forced with ``data_format``):

``chosen_rejected`` (TRL style)
    ``{"prompt" | "query": str, "chosen": str, "rejected": str, "images": [ref, ...]}`` — two text
    responses about the same images; A = chosen, B = rejected, so y = +1.
``ranking`` (the layout of Chinese image-ranking scorer data)
    ``{"id", "query", "image": ref, "response": [r1, r2], "human_ranking": [0, 1]}`` — rank 0 is
    best: ``[0, 1]`` -> the first response is better (y = +1), ``[1, 0]`` -> the second (y = -1),
    equal ranks -> tie (y = 0). Ranks must be dense (their distinct values are 0..k-1).
``image_preference`` (text-to-image)
    ``{"prompt", "image_A" and "image_B" | "images": [a, b], "label": "A" | "B" | "same"}`` — one
    prompt, two images, scored like a video pair (no response text).

An image ``ref`` is a path (relative to ``image_dir``, else to the JSONL's folder) or inline base64
(``data:image/...;base64,...``). Labels follow docs/reward_math.md, "Labels": one preference per pair, read
as the single dimension of ``eval_dim``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vlmrm.core.problems import (
    DuplicateJsonKey,
    Problem,
    encoding_message,
    loads_unique,
    path_escape,
    skip_bad_lines,
)
from vlmrm.pairs.labels import LABEL_VALUES

SCHEMAS = ("chosen_rejected", "ranking", "image_preference")
DATA_URL_PREFIX = "data:image/"
BASE64_MIN_LENGTH = 64
"""A string this long without a path separator or image suffix is read as raw base64."""
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class ImageRef:
    """A path or inline image bytes (base64 decoded)."""

    path: Path | None = None
    data: bytes | None = None

    def open(self) -> Image.Image:
        source = self.path if self.path is not None else io.BytesIO(self.data)
        with Image.open(source) as image:
            return image.convert("RGB")

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else f"<inline image, {len(self.data)} bytes>"


@dataclass(frozen=True)
class ImageSide:
    images: tuple[ImageRef, ...]
    response: str | None = None


@dataclass(frozen=True)
class ImagePair:
    """One preference: the prompt, side A and side B, y in {+1 A better, -1 B better, 0 tie}."""

    line: int
    schema: str
    prompt: str
    side_a: ImageSide
    side_b: ImageSide
    label: int
    sample_id: str | None = None


@dataclass
class ImagePairTable:
    source: Path
    pairs: list[ImagePair]
    total_lines: int
    problems: list[Problem] = field(default_factory=list)


def detect_schema(record: dict) -> str | None:
    if "human_ranking" in record or "response" in record:
        return "ranking"
    if "chosen" in record or "rejected" in record:
        return "chosen_rejected"
    if "label" in record or "image_A" in record or "image_B" in record:
        return "image_preference"
    return None


class _LineProblems(Exception):
    def __init__(self, problems: list[tuple[str | None, str, str]]):
        self.problems = problems


def _text(record: dict, names: tuple[str, ...], problems: list) -> str:
    for name in names:
        if name in record:
            value = record[name]
            if not isinstance(value, str):
                problems.append((name, f"must be a string, got {type(value).__name__}", "bad_type"))
                return ""
            return value
    problems.append(("/".join(names), "missing field", "missing_field"))
    return ""


def _image_ref(value, field_name: str, root: Path, problems: list, restrict: bool = False) -> ImageRef | None:
    if not isinstance(value, str) or not value:
        problems.append((field_name, f"image must be a path or base64 string, got {value!r:.40}", "bad_type"))
        return None
    payload = None
    if value.startswith(DATA_URL_PREFIX):
        payload = value.split(",", 1)[1] if "," in value else ""
    elif (
        len(value) >= BASE64_MIN_LENGTH
        and "/" not in value[:64]
        and Path(value).suffix.lower() not in IMAGE_SUFFIXES
    ):
        payload = value
    if payload is not None:
        try:
            return ImageRef(data=base64.b64decode(payload, validate=True))
        except (binascii.Error, ValueError):
            problems.append((field_name, "invalid base64 image data", "bad_image"))
            return None
    path = Path(value)
    path = path if path.is_absolute() else root / path
    escape = path_escape("", 0, field_name, path, root) if restrict else None
    if escape is not None:
        problems.append((field_name, escape.message, escape.kind))
        return None
    return ImageRef(path=path)


def _image_list(
    record: dict, name: str, root: Path, problems: list, expected: int | None = None, restrict: bool = False
) -> tuple:
    value = record.get(name)
    if value is None:
        problems.append((name, "missing field", "missing_field"))
        return ()
    if not isinstance(value, list) or not value:
        problems.append((name, "must be a non-empty list of images", "bad_type"))
        return ()
    if expected is not None and len(value) != expected:
        problems.append((name, f"must hold exactly {expected} images, got {len(value)}", "bad_type"))
        return ()
    refs = [_image_ref(v, f"{name}[{i}]", root, problems, restrict) for i, v in enumerate(value)]
    return tuple(r for r in refs if r is not None)


def ranking_label(ranking, num_responses: int) -> int:
    """y from a dense ranking (0 = best): +1 first better, -1 second better, 0 tie."""
    if (
        not isinstance(ranking, list)
        or len(ranking) != num_responses
        or not all(isinstance(r, int) and not isinstance(r, bool) for r in ranking)
        or sorted(set(ranking)) != list(range(len(set(ranking))))
    ):
        raise ValueError(
            f"ranking not a permutation of 0..{num_responses - 1} (equal ranks = tie): {ranking!r}"
        )
    first, second = ranking
    return 0 if first == second else (1 if first < second else -1)


def _parse_record(record: dict, schema: str, root: Path, line: int, restrict: bool = False) -> ImagePair:
    problems: list = []
    sample_id = record.get("id")
    if schema == "chosen_rejected":
        prompt = _text(record, ("prompt", "query"), problems)
        chosen, rejected = _text(record, ("chosen",), problems), _text(record, ("rejected",), problems)
        images = _image_list(record, "images", root, problems, restrict=restrict)
        if problems:
            raise _LineProblems(problems)
        return ImagePair(
            line, schema, prompt, ImageSide(images, chosen), ImageSide(images, rejected), 1, sample_id
        )
    if schema == "ranking":
        prompt = _text(record, ("query", "prompt"), problems)
        image = _image_ref(record["image"], "image", root, problems, restrict) if "image" in record else None
        if "image" not in record:
            problems.append(("image", "missing field", "missing_field"))
        responses = record.get("response")
        if (
            not isinstance(responses, list)
            or len(responses) != 2
            or not all(isinstance(r, str) for r in responses)
        ):
            problems.append(("response", "must be a list of 2 strings", "bad_type"))
        label = 0
        if "human_ranking" not in record:
            problems.append(("human_ranking", "missing field", "missing_field"))
        else:
            try:
                label = ranking_label(record["human_ranking"], 2)
            except ValueError as err:
                problems.append(("human_ranking", str(err), "bad_ranking"))
        if problems:
            raise _LineProblems(problems)
        images = (image,)
        return ImagePair(
            line,
            schema,
            prompt,
            ImageSide(images, responses[0]),
            ImageSide(images, responses[1]),
            label,
            sample_id,
        )
    prompt = _text(record, ("prompt", "query"), problems)
    if "images" in record:
        images = _image_list(record, "images", root, problems, 2, restrict)
        image_a, image_b = (images[:1], images[1:]) if len(images) == 2 else ((), ())
    else:
        image_a = tuple(
            r for r in [_image_ref(record.get("image_A"), "image_A", root, problems, restrict)] if r
        )
        image_b = tuple(
            r for r in [_image_ref(record.get("image_B"), "image_B", root, problems, restrict)] if r
        )
    label_text = record.get("label")
    if not isinstance(label_text, str) or label_text not in LABEL_VALUES:
        problems.append(
            ("label", f"must be one of {', '.join(LABEL_VALUES)}, got {label_text!r}", "bad_label")
        )
    if problems:
        raise _LineProblems(problems)
    return ImagePair(
        line, schema, prompt, ImageSide(image_a), ImageSide(image_b), LABEL_VALUES[label_text], sample_id
    )


def parse_image_pair_jsonl(
    path: str | Path,
    image_dir: str | Path | None = None,
    data_format: str = "auto",
    restrict_paths: bool = False,
) -> ImagePairTable:
    """Parse every line; collect each problem with file:line and field (never raises).

    ``restrict_paths``: an image path resolving outside ``image_dir`` (else the file's folder) is a
    problem of its line, and the file is never opened."""
    path = Path(path)
    file = str(path)
    root = Path(image_dir) if image_dir else path.parent
    if not path.is_file():
        return ImagePairTable(
            path, [], 0, [Problem(file, None, None, "JSONL file not found", kind="missing_file")]
        )
    pairs, problems, total = [], [], 0
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            total += 1
            try:
                text = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                problems.append(Problem(file, line_number, None, encoding_message(err), kind="bad_encoding"))
                continue
            try:
                record = loads_unique(text)
            except DuplicateJsonKey as err:
                problems.append(Problem(file, line_number, err.key, str(err), kind="bad_json"))
                continue
            except json.JSONDecodeError as err:
                problems.append(
                    Problem(
                        file,
                        line_number,
                        None,
                        f"invalid JSON: {err.msg} (column {err.colno})",
                        kind="bad_json",
                    )
                )
                continue
            except RecursionError:
                problems.append(Problem(file, line_number, None, "JSON nested too deeply", kind="bad_json"))
                continue
            if not isinstance(record, dict):
                problems.append(
                    Problem(file, line_number, None, "a line must be a JSON object", kind="bad_json")
                )
                continue
            schema = detect_schema(record) if data_format == "auto" else data_format
            if schema not in SCHEMAS:
                problems.append(
                    Problem(
                        file,
                        line_number,
                        None,
                        f"unknown record layout (keys {sorted(record)}); expected one of {', '.join(SCHEMAS)}",
                        kind="unknown_schema",
                    )
                )
                continue
            try:
                pairs.append(_parse_record(record, schema, root, line_number, restrict_paths))
            except _LineProblems as err:
                problems += [
                    Problem(file, line_number, name, message, kind=kind)
                    for name, message, kind in err.problems
                ]
    return ImagePairTable(path, pairs, total, problems)


def image_pair_problems(table: ImagePairTable) -> list[Problem]:
    """Every problem of a parsed file: its line problems, then each missing or undecodable image."""
    return table.problems + check_images(table)


def check_images(table: ImagePairTable) -> list[Problem]:
    """Open every referenced image once; a missing or corrupt one is a problem on each line using it."""
    status: dict[ImageRef, str | None] = {}
    problems = []
    for pair in table.pairs:
        refs = dict.fromkeys(
            [*pair.side_a.images, *pair.side_b.images]
        )  # shared images checked once per line
        for ref in refs:
            if ref not in status:
                status[ref] = _image_error(ref)
            if status[ref] is not None:
                problems.append(Problem(str(table.source), pair.line, "image", status[ref], kind="bad_image"))
    return problems


def _image_error(ref: ImageRef) -> str | None:
    if ref.path is not None and not ref.path.is_file():
        return f"image file not found: {ref.path}"
    try:
        ref.open()
    except (UnidentifiedImageError, OSError, ValueError) as err:
        return f"cannot decode image {ref}: {type(err).__name__}"
    return None


def matched_side(pair: ImagePair) -> ImageSide:
    """The side that fits its prompt best: the preferred one (A for a tie)."""
    return pair.side_b if pair.label < 0 else pair.side_a


def matched_text(pair: ImagePair) -> tuple[str, str | None]:
    side = matched_side(pair)
    return pair.prompt, side.response


def image_description(pair: ImagePair) -> str:
    """What the matched image is said to show: its response when the pair judges responses, else the
    prompt (text-to-image pairs). Case and spacing are ignored, so the same description given as a
    response in one schema and as a prompt in another counts as one."""
    prompt, response = matched_text(pair)
    return " ".join((response if response is not None else prompt).split()).lower()


class ImagePairDataset(torch.utils.data.Dataset):
    """Opens the images of a pair in ``__getitem__`` (DataLoader workers do the decoding).

    Item: ``{"images_A": [PIL], "images_B": [PIL], "response_A": str | None, "response_B": ...,
    "prompt": str, "labels": float tensor (1,), "pair_id": int (the JSONL line)}``, plus
    ``"irrelevant": [{"matched": [PIL], "unrelated": [PIL], "prompt", "response"}, ...]`` with
    ``irrelevant_pairs`` > 0.

    Irrelevant-query pairs (the rule): for pair i, take its matched side (the preferred one; A for a
    tie) with its prompt and response, and draw ``irrelevant_pairs`` other pairs j uniformly, without
    replacement, among those whose :func:`image_description` differs from i's (a pair describing the
    same content would not be unrelated: "a red square" as a T2I prompt and as an answer); each gives one
    pair "i's images" vs "j's matched images", both under i's text, where i's images must score
    higher. Draws come from ``numpy.random.default_rng([seed, epoch, i])``: the same for a seed on any
    number of ranks or workers, new each epoch.
    """

    def __init__(self, table: ImagePairTable, irrelevant_pairs: int = 0, seed: int = 0):
        self.table = table
        self.irrelevant_pairs = irrelevant_pairs
        self.seed = seed
        self.epoch = 0
        descriptions = [image_description(p) for p in table.pairs]
        self._description_ids = (
            np.unique(descriptions, return_inverse=True)[1] if descriptions else np.array([])
        )

    def __len__(self) -> int:
        return len(self.table.pairs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _irrelevant(self, index: int) -> list[dict]:
        others = np.flatnonzero(self._description_ids != self._description_ids[index])
        if not self.irrelevant_pairs or others.size == 0:
            return []
        rng = np.random.default_rng([self.seed, self.epoch, index])
        chosen = rng.choice(others, size=min(self.irrelevant_pairs, others.size), replace=False)
        pair = self.table.pairs[index]
        prompt, response = matched_text(pair)
        mine = [ref.open() for ref in matched_side(pair).images]
        return [
            {
                "matched": mine,
                "unrelated": [ref.open() for ref in matched_side(self.table.pairs[j]).images],
                "prompt": prompt,
                "response": response,
            }
            for j in chosen
        ]

    def __getitem__(self, index: int) -> dict:
        pair = self.table.pairs[index]
        item = {
            "images_A": [ref.open() for ref in pair.side_a.images],
            "images_B": [ref.open() for ref in pair.side_b.images],
            "response_A": pair.side_a.response,
            "response_B": pair.side_b.response,
            "prompt": pair.prompt,
            "labels": torch.tensor([pair.label], dtype=torch.float32),
            "pair_id": pair.line,
        }
        if self.irrelevant_pairs:
            item["irrelevant"] = self._irrelevant(index)
        return item


def load_image_pairs(
    path: str | Path,
    image_dir: str | Path | None = None,
    data_format: str = "auto",
    on_bad_sample: str = "error",
    max_samples: int | None = None,
    problems: list[Problem] | None = None,
    restrict_paths: bool = False,
) -> tuple[ImagePairTable, list[Problem]]:
    """Parse + check every image. ``on_bad_sample: error`` raises with every problem before training;
    ``skip`` drops the bad lines and returns them (counted and reported by the caller).

    ``problems``: what validation already found in this file, so a run opens every image once.
    """
    table = parse_image_pair_jsonl(path, image_dir, data_format, restrict_paths)
    if problems is None:
        problems = image_pair_problems(table)
    table.pairs = skip_bad_lines(table.pairs, problems, on_bad_sample)
    if max_samples is not None:
        table.pairs = table.pairs[:max_samples]
    return table, problems
