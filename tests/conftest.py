"""Shared fixtures: real mp4 files and a small video-pair CSV written per test; every test offline."""

from __future__ import annotations

import csv
import ipaddress
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from vlmrm.testing.synthetic import write_mp4

FRAME_SIZE = 64

# ---- no traffic beyond this machine --------------------------------------------------------------

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _loopback_only(address) -> None:
    """Refuse an IP address outside 127.0.0.0/8 and ::1 (Unix sockets and named hosts resolved to
    loopback pass): a test that would reach the Hub, or any other host, fails on the spot."""
    if isinstance(address, tuple):
        host = address[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = ipaddress.ip_address(socket.gethostbyname(host)) if host == "localhost" else None
        if ip is None or not ip.is_loopback:
            raise ConnectionRefusedError(f"tests may only reach loopback addresses, not {address!r}")


def _guarded_connect(self, address):
    _loopback_only(address)
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    _loopback_only(address)
    return _connect_ex(self, address)


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch):
    """Every test runs with the Hugging Face Hub offline (``HF_HUB_OFFLINE=1``, inherited by the
    subprocesses a test starts) and with Python sockets limited to loopback. A test that needs a Hub
    uses :func:`loopback_hub`, a server on 127.0.0.1."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


LOOPBACK_HUB_MODELS = frozenset({"vlmrm-tests/known-model"})
"""Repositories the loopback Hub says exist; any other id gets the Hub's "RepoNotFound" answer."""


class _HubHandler(BaseHTTPRequestHandler):
    """``GET /api/models/ORG/NAME`` as the Hub answers it: 200 with the model's info, or 404 with the
    ``X-Error-Code: RepoNotFound`` header that huggingface_hub turns into RepositoryNotFoundError."""

    def do_GET(self) -> None:
        repo_id = "/".join(self.path.split("?")[0].split("/")[3:5])
        if self.path.startswith("/api/models/") and repo_id in LOOPBACK_HUB_MODELS:
            body = json.dumps({"id": repo_id, "modelId": repo_id, "sha": "0" * 40}).encode()
            self.send_response(200)
        else:
            body = b'{"error": "Repository not found"}'
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        """Quiet: the test asserts on what the client reports."""


def point_hub_at(monkeypatch, endpoint: str) -> None:
    """Hub calls go to ``endpoint`` (a loopback URL) and are allowed: ``HF_HUB_OFFLINE`` lifted."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)


@pytest.fixture
def loopback_hub(monkeypatch):
    """A tiny Hub on 127.0.0.1 (:class:`_HubHandler`), online mode pointed at it; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    point_hub_at(monkeypatch, endpoint)
    yield endpoint
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_hub(monkeypatch):
    """A loopback port that accepts connections (the kernel's backlog) and never answers, like a proxy
    that swallows requests: a client's only way out is its own timeout. Yields its URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    point_hub_at(monkeypatch, endpoint)
    yield endpoint
    listener.close()


@pytest.fixture
def closed_hub(monkeypatch):
    """A loopback port with nothing listening (bound, then closed): connections are refused at once."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.bind(("127.0.0.1", 0))
    endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    probe.close()
    point_hub_at(monkeypatch, endpoint)
    return endpoint


def ramp_frames(num_frames: int, size: int = FRAME_SIZE) -> np.ndarray:
    """Frame i is a flat grey of level 8*i: decoded frames reveal which index they came from."""
    levels = (np.arange(num_frames) * 8) % 256
    return np.broadcast_to(levels[:, None, None, None], (num_frames, size, size, 3)).astype(np.uint8).copy()


@pytest.fixture
def make_video(tmp_path):
    """Write a real mp4 with ``num_frames`` frames at ``fps``; returns its path."""

    def make(name: str, num_frames: int = 16, fps: int = 8) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mp4(path, ramp_frames(num_frames), fps, "mpeg4")
        return path

    return make


CSV_HEADER = [
    "path_A",
    "path_B",
    "prompt",
    "VQ",
    "MQ",
    "TA",
    "fps_A",
    "num_frames_A",
    "fps_B",
    "num_frames_B",
]


@pytest.fixture
def make_csv(tmp_path):
    """Write rows (dicts; missing declared columns filled from defaults) to a CSV in tmp_path."""

    def make(rows: list[dict], name: str = "pairs.csv", header: list[str] | None = None) -> Path:
        header = header or CSV_HEADER
        path = tmp_path / name
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                filled = {"fps_A": 8, "num_frames_A": 16, "fps_B": 8, "num_frames_B": 16, **row}
                writer.writerow({k: filled.get(k, "") for k in header})
        return path

    return make


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """One tiny-checkpoint cache per test session (each family is built at most once)."""
    return tmp_path_factory.mktemp("tiny_cache")


@pytest.fixture(scope="session")
def synthetic_pairs(tmp_path_factory):
    """A small synthetic video-pair set (real mp4s), shared by the training tests."""
    from vlmrm.testing.synthetic import SyntheticVideoConfig, generate_video_pairs

    out = tmp_path_factory.mktemp("synthetic")
    return generate_video_pairs(SyntheticVideoConfig(out_dir=out, num_train=16, num_test=8, seed=0)).out_dir


LORA_SPECIAL_TOKENS = {
    "lora_enable": True,
    "lora_r": 4,
    "lora_alpha": 8,
    "use_special_tokens": True,
    "reward_token": "special",
    "prompt_template_type": "simple_special",
}
"""A LoRA run whose reward tokens train through PEFT's trainable tokens."""


def tiny_run_values(checkpoint, data_dir, output_dir, **overrides) -> dict:
    """Config values of a short CPU run on the tiny model (override any key)."""
    values = {
        "model_name_or_path": str(checkpoint),
        "torch_dtype": "float32",
        "meta_data": str(data_dir / "train.csv"),
        "meta_data_test": str(data_dir / "test.csv"),
        "data_dir": str(data_dir),
        "eval_dim": ["VQ", "MQ", "TA"],
        "num_frames": 4,
        "min_frame_pixels": 56 * 56,
        "max_frame_pixels": 56 * 56,
        "prompt_template_type": "none",
        "video_backend": "pyav",
        "output_dir": str(output_dir),
        "use_cpu": True,
        "report_to": "none",
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "learning_rate": 1e-3,
        "max_steps": 3,
        "logging_steps": 1,
        "save_strategy": "no",
        "eval_strategy": "no",
        "seed": 0,
        "disable_tqdm": True,
    }
    values.update(overrides)
    return values


@pytest.fixture(scope="session")
def trained_runs(tiny_cache, synthetic_pairs, tmp_path_factory):
    """A full-model run and a LoRA + special-token run, each with checkpoints at steps 2 and 4.

    Returns (root, final in-training eval metrics per run, config values per run)."""
    from vlmrm.reward.config import parse_config
    from vlmrm.reward.train import run_training
    from vlmrm.testing.tiny import tiny_checkpoint

    root = tmp_path_factory.mktemp("runs")
    common = {
        "max_steps": 4,
        "save_strategy": "steps",
        "save_steps": 2,
        "eval_strategy": "steps",
        "eval_steps": 4,
    }
    checkpoint = tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache)
    full = tiny_run_values(checkpoint, synthetic_pairs, root / "full", **common)
    lora = tiny_run_values(checkpoint, synthetic_pairs, root / "lora", **LORA_SPECIAL_TOKENS, **common)
    metrics = {
        name: run_training(parse_config(values=values)) for name, values in (("full", full), ("lora", lora))
    }
    return root, metrics, {"full": full, "lora": lora}


@pytest.fixture(scope="session")
def reward_checkpoint(tiny_cache, tmp_path_factory):
    """An untrained tiny Qwen2-VL reward checkpoint as training saves one (special reward tokens,
    4 frames of 56x56, pyav): what the scoring tests load, in seconds. No data is read to build it."""
    from vlmrm.modeling.loading import build_reward_model
    from vlmrm.reward.config import parse_config
    from vlmrm.testing.tiny import tiny_checkpoint

    out = tmp_path_factory.mktemp("reward_checkpoint")
    values = tiny_run_values(
        tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache),
        out,
        out,
        meta_data_test=None,
        use_special_tokens=True,
        reward_token="special",
        output_dim=3,
        prompt_template_type="simple_special",
    )
    cfg = parse_config(values=values)
    model, processor = build_reward_model(cfg.model, cfg.data, cfg.training)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
