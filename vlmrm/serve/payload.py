"""The wire format of the reward server: parse a ``/score`` or ``/compare`` body into scorer inputs.

A body is JSON (``application/json``) when every item is a path the server can read, or
``multipart/form-data`` with that JSON in the form field ``request`` and one file part per upload::

    {"prompts": ["red", "blue"],                      # /score: one prompt per item
     "videos": ["/data/a.mp4",                        # a path visible to the server
                {"upload": "v1", "format": "npy", "fps": 8.0}],   # frames in file part "v1"
     "responses": [...]}                              # optional, one per item
    {"prompt": "red", "videos": [a, b]}               # /compare: exactly two items

``"images"`` instead of ``"videos"`` scores images. An uploaded item names its file part and one
format: ``npy`` (a ``.npy`` array: shape and dtype in its header), ``raw`` (uint8 bytes in C order,
``"shape"`` given), ``encoded`` (an mp4 / webm / png / jpeg file as written to disk). Frames are
``[T, C, H, W]`` or ``[T, H, W, C]`` with C = 3 (images ``[H, W, 3]`` or ``[3, H, W]``, uint8); frame
arrays need their ``fps`` (per item, or a top-level ``"fps"``: one number or one per item).

Every problem is a :class:`BadRequest` naming the field (``videos[1]: ...``) and an HTTP status:
400 unparsable, 403 path outside ``media_root``, 413 too many items, 415 wrong content type, 422
missing / mistyped field, wrong shape, unreadable file.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vlmrm.media.image import ImageLoadError, open_image
from vlmrm.media.video import VideoBackend, VideoDecodeError, probe_video

REQUEST_FIELD = "request"
"""The multipart form field holding the request JSON."""
FORMATS = ("npy", "raw", "encoded")
MEDIA_KEYS = {"video": "videos", "image": "images"}
CHANNELS = 3
FRAME_DIMS = {"video": 4, "image": 3}
"""Array dimensions of one item: [T, C, H, W] / [T, H, W, C] frames, [H, W, C] / [C, H, W] images."""
DEFAULT_ENCODED_SUFFIX = {"video": ".mp4", "image": ".png"}


class BadRequest(ValueError):
    """A request the server refuses, with the HTTP status to answer it with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ParsedRequest:
    """Scorer inputs of one request: ``items`` are paths, frame arrays or PIL images, one per prompt.

    Uploaded encoded videos live in ``workdir`` until :meth:`close` (after scoring).
    """

    prompts: list[str]
    media: str
    items: list
    fps: list[float | None]
    responses: list[str] | None = None
    workdir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def has_arrays(self) -> bool:
        return any(isinstance(item, np.ndarray) for item in self.items)

    def close(self) -> None:
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None


@dataclass(frozen=True)
class Limits:
    """What one request may hold; ``media_root``: where server-side paths must lie (None: anywhere);
    ``video_arrays``: whether the scorer takes frame arrays (else only files are accepted)."""

    max_items: int
    media_root: Path | None = None
    video_arrays: bool = True


def parse_json(raw: bytes | str, where: str = "request") -> dict:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadRequest(400, f"{where}: invalid JSON: {err}") from err
    if not isinstance(body, dict):
        raise BadRequest(422, f"{where}: expected a JSON object, got {type(body).__name__}")
    return body


def string_list(body: dict, key: str) -> list[str]:
    values = body.get(key)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise BadRequest(422, f"{key}: missing or not a list of strings")
    return values


def media_of(body: dict) -> str:
    present = [media for media, key in MEDIA_KEYS.items() if key in body]
    if len(present) != 1:
        raise BadRequest(422, "give exactly one of 'videos' or 'images'")
    return present[0]


def fps_list(body: dict, count: int) -> list[float | None]:
    """Top-level ``fps``: absent, one number for every item, or one (number or null) per item."""
    value = body.get("fps")
    values = value if isinstance(value, list) else [value] * count
    if len(values) != count:
        raise BadRequest(422, f"fps: {len(values)} values for {count} items")
    for i, fps in enumerate(values):
        if fps is not None and not (
            isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0
        ):
            raise BadRequest(422, f"fps[{i}]: expected a positive number, got {fps!r}")
    return [None if fps is None else float(fps) for fps in values]


def checked_array(array: np.ndarray, media: str, where: str) -> np.ndarray:
    """Frames of one item with a channel axis of 3 where the layout puts it; images must be uint8."""
    ndim = FRAME_DIMS[media]
    layouts = "[T, C, H, W] or [T, H, W, C]" if media == "video" else "[H, W, C] or [C, H, W]"
    if array.ndim != ndim or CHANNELS not in (array.shape[-ndim + 1], array.shape[-1]):
        raise BadRequest(422, f"{where}: shape {list(array.shape)}: expected {layouts} with C = {CHANNELS}")
    if 0 in array.shape:
        raise BadRequest(422, f"{where}: shape {list(array.shape)} has an empty axis")
    if array.dtype != np.uint8 and (media == "image" or not np.issubdtype(array.dtype, np.floating)):
        allowed = "uint8" if media == "image" else "uint8 or float"
        raise BadRequest(422, f"{where}: dtype {array.dtype}: expected {allowed}")
    return array


def image_from_array(array: np.ndarray) -> Image.Image:
    hwc = array if array.shape[-1] == CHANNELS else array.transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(hwc), "RGB")


def decoded_upload(spec: dict, data: bytes, media: str, where: str) -> np.ndarray:
    """The array of an ``npy`` or ``raw`` upload."""
    if spec["format"] == "npy":
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise BadRequest(422, f"{where}: not a readable .npy array: {err}") from err
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise BadRequest(422, f"{where}: format 'raw' needs 'shape', a list of sizes")
    if math.prod(shape) != len(data):
        raise BadRequest(
            422, f"{where}: {len(data)} bytes do not fill shape {shape} of uint8 ({math.prod(shape)} bytes)"
        )
    return np.frombuffer(data, np.uint8).reshape(shape)


class RequestParser:
    """Turns one request body (+ its uploaded parts) into a :class:`ParsedRequest`, checking every item."""

    def __init__(self, limits: Limits, backend: VideoBackend):
        self.limits = limits
        self.backend = backend

    def score_request(self, body: dict, uploads: dict[str, tuple[str, bytes]]) -> ParsedRequest:
        media = media_of(body)
        prompts = string_list(body, "prompts")
        items = body[MEDIA_KEYS[media]]
        if not isinstance(items, list) or len(items) != len(prompts) or not items:
            raise BadRequest(422, f"{MEDIA_KEYS[media]}: expected a non-empty list with one item per prompt")
        responses = string_list(body, "responses") if "responses" in body else None
        if responses is not None and len(responses) != len(prompts):
            raise BadRequest(422, f"responses: {len(responses)} for {len(prompts)} prompts")
        return self._parsed(prompts, media, items, fps_list(body, len(items)), responses, uploads)

    def compare_request(self, body: dict, uploads: dict[str, tuple[str, bytes]]) -> ParsedRequest:
        media = media_of(body)
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequest(422, "prompt: missing or not a string")
        items = body[MEDIA_KEYS[media]]
        if not isinstance(items, list) or len(items) != 2:
            raise BadRequest(422, f"{MEDIA_KEYS[media]}: compare needs exactly two items (A, B)")
        return self._parsed([prompt, prompt], media, items, fps_list(body, 2), None, uploads)

    def _parsed(self, prompts, media, items, fps, responses, uploads) -> ParsedRequest:
        if len(items) > self.limits.max_items:
            raise BadRequest(413, f"{len(items)} items: at most {self.limits.max_items} per request")
        request = ParsedRequest(prompts, media, [], fps, responses)
        try:
            for i, item in enumerate(items):
                request.items.append(self._item(request, i, item, uploads))
        except BaseException:
            request.close()
            raise
        return request

    def _item(self, request: ParsedRequest, i: int, item, uploads):
        where, fps = f"{MEDIA_KEYS[request.media]}[{i}]", request.fps[i]
        frames = isinstance(item, dict) and item.get("format") in ("npy", "raw") and request.media == "video"
        if not frames and (fps is not None or (isinstance(item, dict) and "fps" in item)):
            raise BadRequest(422, f"{where}: fps applies to video frame arrays only (a file has its own)")
        if isinstance(item, str):
            return self._checked_file(self._server_path(item, where), request.media, where)
        if not isinstance(item, dict) or not isinstance(item.get("upload"), str):
            raise BadRequest(422, f"{where}: expected a path or {{'upload': part name, 'format': ...}}")
        if item.get("format") not in FORMATS:
            raise BadRequest(422, f"{where}: format {item.get('format')!r}: choose one of {list(FORMATS)}")
        if item["upload"] not in uploads:
            raise BadRequest(422, f"{where}: no file part named {item['upload']!r} in the request")
        filename, data = uploads[item["upload"]]
        if item["format"] == "encoded":
            return self._encoded(request, filename, data, where)
        array = checked_array(decoded_upload(item, data, request.media, where), request.media, where)
        if request.media == "image":
            return image_from_array(array)
        if not self.limits.video_arrays:
            raise BadRequest(422, f"{where}: this server's scorer takes video files only: upload 'encoded'")
        (request.fps[i],) = fps_list({"fps": [item.get("fps", fps)]}, 1)
        if request.fps[i] is None:
            raise BadRequest(422, f"{where}: frame arrays need their fps")
        return array

    def _server_path(self, value: str, where: str) -> Path:
        path = Path(value)
        root = self.limits.media_root
        if root is not None and not path.resolve().is_relative_to(root.resolve()):
            raise BadRequest(403, f"{where}: {value} lies outside the server's media root")
        if not path.is_file():
            raise BadRequest(422, f"{where}: {value}: no such file on the server")
        return path

    def _encoded(self, request: ParsedRequest, filename: str, data: bytes, where: str):
        if request.media == "image":
            try:
                return open_image(data)
            except ImageLoadError as err:
                raise BadRequest(422, f"{where}: not a readable image: {err}") from err
        if request.workdir is None:
            request.workdir = tempfile.TemporaryDirectory(prefix="vlmrm-serve-")
        suffix = Path(filename or "").suffix or DEFAULT_ENCODED_SUFFIX["video"]
        path = Path(request.workdir.name) / f"upload_{len(request.items)}{suffix}"
        path.write_bytes(data)
        return self._checked_file(path, "video", where)

    def _checked_file(self, path: Path, media: str, where: str) -> Path:
        """Refuse what the scorer could not read, before it joins a batch of other requests."""
        try:
            if media == "video":
                probe_video(path, self.backend)
            else:
                open_image(path)
        except (VideoDecodeError, ImageLoadError, OSError, ValueError) as err:
            raise BadRequest(422, f"{where}: unreadable {media}: {err}") from err
        return path
