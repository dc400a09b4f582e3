"""Python client of the reward server: the same calls and results as an in-process ``RewardScorer``.

    client = Client("http://127.0.0.1:8000", timeout=60, retries=3)
    client.score(["red"], videos=["/data/a.mp4"])              # a path the server can read
    client.score(["red"], videos=[frames], fps=8.0)             # frames [T, C, H, W] / [T, H, W, C]
    client.score(["red"], videos=["a.mp4"], upload=True)        # the file's bytes, for a remote server
    client.compare(a, b, "red")                                 # {"VQ": {"A": pA, "B": pB, "tie": pT}, ...}

Frame arrays (numpy or torch, uint8 or float; a ``[B, T, C, H, W]`` batch is B items) travel as
``.npy`` uploads, PIL images as PNG, ``bytes`` as an encoded file. Connection errors, timeouts and
5xx answers are retried ``retries`` times after ``backoff * 2**attempt`` seconds (longer when a 503
says ``Retry-After``): scoring has no side effects, so a repeated request is harmless. A 4xx is
the request's own fault and raises :class:`RequestRejected` at once, with the server's message.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import httpx
import numpy as np

from vlmrm.media.image import open_image
from vlmrm.serve.payload import REQUEST_FIELD

RETRY_STATUSES = frozenset({500, 502, 503, 504})
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 0.5
BATCH_DIMS = {"video": 5, "image": 4}
"""Array dimensions of a batch of items: [B, T, C, H, W] videos, [B, H, W, C] images."""


class RequestRejected(ValueError):
    """The server refused the request (4xx); ``status`` and the server's ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ServerUnavailable(ConnectionError):
    """No answer (or only 5xx answers) after every retry."""


def as_numpy(value) -> np.ndarray | None:
    """A numpy array of a numpy array or torch tensor (bfloat16 widened to float32); None otherwise."""
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch"):
        import torch

        tensor = value.detach().cpu()
        return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    return None


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


class Client:
    def __init__(
        self,
        url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF_S,
    ):
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def health(self) -> dict:
        return self._request("GET", "/health")

    def info(self) -> dict:
        """Dimensions, normalisation, frame sampling, model and limits of the served checkpoint."""
        return self._request("GET", "/info")

    def score(
        self, prompts: list[str], videos=None, images=None, fps=None, responses=None, upload: bool = False
    ) -> list[dict]:
        """Per item ``{"raw": {dim: r}, "normalized": {dim: z} | None, "Overall": x}`` as ``RewardScorer.score``.

        ``fps``: of frame arrays, one number or one per item (None for files). ``upload``: send local
        files' bytes instead of their paths.
        """
        media, items = ("video", videos) if videos is not None else ("image", images)
        if items is None:
            raise ValueError("give videos or images")
        body, files = self._encode(media, items, fps, upload)
        body["prompts"] = list(prompts)
        if responses is not None:
            body["responses"] = list(responses)
        return self._send("/score", body, files)["scores"]

    def compare(self, a, b, prompt: str, media: str = "video", fps=None, upload: bool = False) -> dict:
        """P(A better), P(B better), P(tie) per dimension, as ``RewardScorer.compare``."""
        body, files = self._encode(media, [a, b], fps, upload)
        body["prompt"] = prompt
        return self._send("/compare", body, files)["probabilities"]

    def _encode(self, media: str, items, fps, upload: bool) -> tuple[dict, dict]:
        """The request JSON (without prompts) and its file parts."""
        batch = as_numpy(items)
        if batch is not None:
            if batch.ndim != BATCH_DIMS[media]:
                raise ValueError(f"a {media} batch array needs {BATCH_DIMS[media]} dims, got {batch.shape}")
            items = list(batch)
        per_item = fps if isinstance(fps, (list, tuple)) else [fps] * len(items)
        if len(per_item) != len(items):
            raise ValueError(f"fps: {len(per_item)} values for {len(items)} items")
        encoded, files = [], {}
        for i, (item, item_fps) in enumerate(zip(items, per_item)):
            name, array = f"item{i}", as_numpy(item)
            if array is not None:
                spec = {"upload": name, "format": "npy"}
                if media == "video":
                    if item_fps is None:
                        raise ValueError(f"{media}s[{i}]: frame arrays need their fps")
                    spec["fps"] = float(item_fps)
                encoded.append(spec)
                files[name] = (f"{name}.npy", npy_bytes(array), "application/octet-stream")
                continue
            if item_fps is not None and not isinstance(fps, (int, float)):
                raise ValueError(f"{media}s[{i}]: fps applies to frame arrays only (a file has its own)")
            if isinstance(item, (str, Path)) and not upload:
                encoded.append(str(item))
            else:
                filename, data = self._encoded_bytes(item, name)
                encoded.append({"upload": name, "format": "encoded"})
                files[name] = (filename, data, "application/octet-stream")
        return {f"{media}s": encoded}, files

    @staticmethod
    def _encoded_bytes(item, name: str) -> tuple[str, bytes]:
        if isinstance(item, (str, Path)):
            return Path(item).name, Path(item).read_bytes()
        if isinstance(item, bytes):
            return name, item
        if hasattr(item, "save"):  # a PIL image
            buffer = io.BytesIO()
            open_image(item).save(buffer, format="PNG")
            return f"{name}.png", buffer.getvalue()
        raise TypeError(f"cannot send a {type(item).__name__}: give a path, bytes, an array or a PIL image")

    def _send(self, path: str, body: dict, files: dict) -> dict:
        if files:
            return self._request("POST", path, data={REQUEST_FIELD: json.dumps(body)}, files=files)
        return self._request("POST", path, json=body)

    def _request(self, method: str, path: str, **kwargs) -> dict:
        error: Exception | None = None
        for attempt in range(self.retries + 1):
            delay = self.backoff * 2**attempt
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as err:
                error = err
            else:
                if response.status_code < 400:
                    return response.json()
                message = _detail(response)
                if response.status_code not in RETRY_STATUSES:
                    raise RequestRejected(response.status_code, message)
                error = RuntimeError(f"{response.status_code}: {message}")
                delay = max(delay, _retry_after(response))
            if attempt < self.retries:
                time.sleep(delay)
        raise ServerUnavailable(
            f"{method} {self.url}{path}: no answer after {self.retries + 1} attempts: {error}"
        ) from error


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except (ValueError, AttributeError):
        return response.text


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("retry-after", 0))
    except ValueError:
        return 0.0
