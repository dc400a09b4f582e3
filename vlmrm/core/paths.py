"""Fail fast on paths: every task's config check calls these before any model or data loads.

A model key (``model_name_or_path``, ``init_from``, ``model_dir`` ...) takes a local folder or a
Hugging Face Hub id. Given one that does not exist, transformers either says "Repo id must be in the
form 'repo_name' or 'namespace/repo_name'" (for a typo'd local path) or, offline, retries the Hub for
minutes before failing. :func:`check_model_source` tells the two apart and answers in one line:

- a *local-looking* value (absolute, starting with ``.`` / ``/`` / ``~``, more than one separator,
  a file suffix, or anything that is not a valid ``org/name``) that does not exist:
  ``directory not found: PATH (key KEY)``;
- a plausible Hub id (``org/name``) that is not in the local Hugging Face cache while the Hub is out
  of reach (``HF_HUB_OFFLINE=1``, or one request with a short timeout gets no answer): one line
  naming ``HF_HUB_OFFLINE`` and ``huggingface-cli download``; a Hub that answers "no such
  repository" is a typo, said in one line too.

Data keys are always local (:func:`check_file`, :func:`check_directory`).
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Literal

from vlmrm.core.problems import ConfigError

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""``org/name`` as the Hub spells repository ids (no ``--`` or ``..``, checked separately)."""
FILE_SUFFIXES = frozenset(
    {
        ".bin", ".ckpt", ".csv", ".gguf", ".gz", ".jpeg", ".jpg", ".json", ".jsonl", ".mkv", ".mov",
        ".mp4", ".png", ".pt", ".pth", ".safetensors", ".tar", ".txt", ".webm", ".yaml", ".yml", ".zip",
    }
)  # fmt: skip
"""Endings that make a value a file path, never a Hub id (``Qwen2.5-VL`` ends in ``.5-VL``: not one)."""
HUB_PROBE_TIMEOUT_S = 5.0
"""How long the one question to the Hub may take: the whole point is an answer in seconds, not the
minutes of transformers' download retries."""
HubStatus = Literal["found", "missing", "unreachable"]
CACHE_PROBE_FILE = "config.json"
"""Every transformers model repository has one: its presence in the cache means the model was fetched."""
OFFLINE_VALUES = frozenset({"1", "on", "yes", "true"})
"""Values of ``HF_HUB_OFFLINE`` huggingface_hub reads as "offline"."""


def looks_local(value: str) -> bool:
    """True when ``value`` can only mean a path on this machine, never a Hub id."""
    text = str(value)
    if text.startswith((".", "/", "~")) or os.path.isabs(text):
        return True
    if os.sep != "/" and os.sep in text:
        return True
    if Path(text).suffix.lower() in FILE_SUFFIXES:
        return True
    return not is_hub_id(text)


def is_hub_id(value: str) -> bool:
    """A plausible ``org/name`` repository id (the form transformers accepts for a download)."""
    return bool(HUB_ID.match(value)) and "--" not in value and ".." not in value


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or transformers' ``TRANSFORMERS_OFFLINE``) says not to touch the network."""
    return any(
        os.environ.get(name, "").strip().lower() in OFFLINE_VALUES
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def in_hub_cache(repo_id: str, cache_dir: str | Path | None = None) -> bool:
    """The model was downloaded before (its ``config.json`` is in the Hugging Face cache, the default
    one unless ``cache_dir``)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, CACHE_PROBE_FILE, cache_dir=cache_dir), str)


def hub_status(repo_id: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> HubStatus:
    """Ask the Hub about ``repo_id`` once (no retries), within ``timeout`` seconds: ``found``,
    ``missing`` (a typo, or a private repository without a login) or ``unreachable``. A bare TCP
    connect is not enough: a proxy may accept it and still not answer. Name resolution has no timeout
    of its own, so the request runs in a daemon thread that is abandoned when it is late."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError

    api = HfApi(endpoint=constants.ENDPOINT)  # read now: the module-level client keeps the import-time one
    result: list[HubStatus] = []

    def ask() -> None:
        try:
            api.model_info(repo_id, timeout=timeout)
            result.append("found")
        except RepositoryNotFoundError:
            result.append("missing")
        except Exception:  # noqa: BLE001 -- any other failure (DNS, refused, TLS, 5xx) means no usable Hub
            result.append("unreachable")

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else "unreachable"


_FOUND_ON_HUB: set[tuple[str, str]] = set()
"""(endpoint, repo id) pairs the Hub confirmed in this process: a run whose paths are checked twice
(by the command before the training stack's imports, then by ``run_training``) asks the Hub once."""


def check_model_source(value: str | None, key: str) -> None:
    """Raise a one-line :class:`ConfigError` unless ``value`` is an existing folder or a Hub id that
    can be fetched (cached, or the Hub is reachable). ``None`` is left to the required-key checks."""
    if value is None or Path(str(value)).expanduser().exists():
        return
    text = str(value)
    if looks_local(text):
        raise ConfigError(f"directory not found: {text} (key {key})", key)
    if in_hub_cache(text):
        return
    if hub_offline():
        raise ConfigError(
            f"{key}: {text} is neither a local folder nor in the Hugging Face cache, and HF_HUB_OFFLINE is "
            f"set; fix the path, or download it first: huggingface-cli download {text}",
            key,
        )
    from huggingface_hub import constants

    asked = (constants.ENDPOINT, text)
    if asked in _FOUND_ON_HUB:
        return
    status = hub_status(text)
    if status == "found":
        _FOUND_ON_HUB.add(asked)
    if status == "missing":
        raise ConfigError(
            f"{key}: {text} is neither a local folder nor a model on the Hub (a typo, or a private one: "
            "huggingface-cli login)",
            key,
        )
    if status == "unreachable":
        raise ConfigError(
            f"{key}: {text} is neither a local folder nor in the Hugging Face cache, and the Hub cannot be "
            f"reached; fix the path, or download it where there is network (huggingface-cli download {text}) "
            "and set HF_HUB_OFFLINE=1",
            key,
        )


def check_file(value: str | None, key: str) -> None:
    """A data file that must exist (``None``: not given, left to the required-key checks)."""
    if value is not None and not Path(str(value)).expanduser().is_file():
        what = "is a directory, not a file" if Path(str(value)).expanduser().is_dir() else "file not found"
        raise ConfigError(f"{what}: {value} (key {key})", key)


def check_directory(value: str | None, key: str) -> None:
    """A local folder that must exist (``None``: not given)."""
    if value is not None and not Path(str(value)).expanduser().is_dir():
        raise ConfigError(f"directory not found: {value} (key {key})", key)
