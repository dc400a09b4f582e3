"""The real server (``python -m vlmrm.serve`` subprocess) over HTTP on 127.0.0.1.

One server serves the module; the last test stops it with SIGTERM while a request is in flight.
Slow tier: starting the server loads torch, transformers and the model in a second process.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from tests.serve.conftest import NORMALIZATION, start_server
from vlmrm.reward.inference import RewardScorer
from vlmrm.serve import Client
from vlmrm.serve.client import RequestRejected, npy_bytes

MAX_REQUEST_MB = 16
MAX_WAIT_MS = 300
"""Long enough that requests sent together on a busy 2-core machine land in one batch."""
HUGE_BODY_MB = 200
CHUNK = bytes(1 << 20)
pytestmark = pytest.mark.slow

CLIENTS = 8
JSON = {"content-type": "application/json"}
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def server(reward_checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    options = ["--max_batch", "8", "--max_wait_ms", str(MAX_WAIT_MS), "--max_request_mb", str(MAX_REQUEST_MB)]
    server = start_server(reward_checkpoint, log, *options)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def scorer(reward_checkpoint):
    return RewardScorer.from_pretrained(reward_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def videos(synthetic_pairs):
    return sorted((synthetic_pairs / "videos").glob("test_*.mp4"))[:CLIENTS]


def assert_scores_equal(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g["raw"] == pytest.approx(e["raw"], abs=TOLERANCE)
        assert g["normalized"] == pytest.approx(e["normalized"], abs=TOLERANCE)
        assert g["Overall"] == pytest.approx(e["Overall"], abs=TOLERANCE)


def test_concurrent_clients_get_the_in_process_scores(server, scorer, videos, tmp_path):
    prompts = [f"a {colour} ball" for colour in ("red", "blue", "green", "white")] * 2
    expected = scorer.score(prompts, videos=videos)
    barrier = threading.Barrier(CLIENTS)
    results: dict[int, list[dict]] = {}

    def one_client(i: int) -> None:
        with Client(server.url, timeout=120, retries=2) as client:
            barrier.wait()
            # half send a path the server reads, half upload the mp4's bytes
            results[i] = client.score([prompts[i]], videos=[videos[i]], upload=i % 2 == 1)

    threads = [threading.Thread(target=one_client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(CLIENTS)), server.output()
    assert_scores_equal([results[i][0] for i in range(CLIENTS)], expected)
    health = httpx.get(f"{server.url}/health").json()
    assert health["requests"] == CLIENTS and health["batches"] < CLIENTS  # requests shared batches

    with Client(server.url) as client:
        compared = client.compare(videos[0], videos[1], "red")
        in_process = scorer.compare(videos[0], videos[1], "red")
        for dim, probabilities in in_process.items():
            assert compared[dim] == pytest.approx(probabilities, abs=TOLERANCE)
        info = client.info()
        assert info["dimensions"] == ["VQ", "MQ", "TA"] and info["normalization"] == NORMALIZATION
        assert info["frame_sampling"] == scorer.spec.sampling
        assert info["batching"] == {"max_batch": 8, "max_wait_ms": MAX_WAIT_MS}

        image = Image.fromarray(np.tile(np.arange(56, dtype=np.uint8)[:, None, None] * 4, (1, 56, 3)))
        image.save(tmp_path / "ramp.png")
        images = [image, tmp_path / "ramp.png", np.asarray(image)]
        question = ["What is shown?"] * 3
        served = client.score(question, images=images, responses=["a ramp", "a ramp", "grey"])
        direct = scorer.score(question, images=[image, image, image], responses=["a ramp", "a ramp", "grey"])
        assert_scores_equal(served, direct)


def decoded_frames(path) -> tuple[np.ndarray, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        return frames, float(stream.average_rate)


@pytest.mark.skipif(
    not getattr(RewardScorer, "accepts_arrays", False), reason="RewardScorer does not score frame arrays yet"
)
def test_uploaded_frames_score_like_the_decoded_file(server, scorer, videos):
    import torch

    frames, fps = decoded_frames(videos[0])  # (T, H, W, C) uint8
    as_tensor = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, C, H, W)
    expected = scorer.score(["red", "red"], videos=[videos[0], videos[0]])
    with Client(server.url) as client:
        served = client.score(["red", "red"], videos=[frames, as_tensor], fps=fps)
        assert_scores_equal(served, expected)
        batch = torch.stack([as_tensor, as_tensor])  # (B, T, C, H, W): B items
        assert_scores_equal(client.score(["red", "red"], videos=batch, fps=fps), expected)


def multipart(request: dict, **parts: bytes) -> dict:
    return {"data": {"request": json.dumps(request)}, "files": {k: (k, v) for k, v in parts.items()}}


def huge_body():
    for _ in range(HUGE_BODY_MB):
        yield CHUNK


def test_malformed_requests_get_4xx_and_the_server_keeps_answering(server, videos, tmp_path):
    path = str(videos[0])
    (tmp_path / "notes.mp4").write_text("not a video")
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    cases = {
        "invalid JSON": (400, {"content": b"{prompts", "headers": JSON}),
        "wrong content type": (415, {"content": b"prompts=red", "headers": {"content-type": "text/plain"}}),
        "missing prompts": (422, {"json": {"videos": [path]}}),
        "missing videos": (422, {"json": {"prompts": ["red"]}}),
        "videos and images": (422, {"json": {"prompts": ["red"], "videos": [path], "images": [path]}}),
        "prompt count": (422, {"json": {"prompts": ["red", "blue"], "videos": [path]}}),
        "no such file": (422, {"json": {"prompts": ["red"], "videos": [str(tmp_path / "gone.mp4")]}}),
        "unreadable video path": (
            422,
            {"json": {"prompts": ["red"], "videos": [str(tmp_path / "notes.mp4")]}},
        ),
        "unreadable uploaded video": (
            422,
            multipart({"prompts": ["red"], "videos": [{"upload": "v", "format": "encoded"}]}, v=b"\0" * 4096),
        ),
        "frames of 2 dims": (
            422,
            multipart(
                {"prompts": ["red"], "videos": [{"upload": "v", "format": "npy", "fps": 8}]},
                v=npy_bytes(np.zeros((4, 5), np.uint8)),
            ),
        ),
        "frames with 5 channels": (
            422,
            multipart(
                {"prompts": ["red"], "videos": [{"upload": "v", "format": "npy", "fps": 8}]},
                v=npy_bytes(np.zeros((4, 8, 8, 5), np.uint8)),
            ),
        ),
        "frames without fps": (
            422,
            multipart(
                {"prompts": ["red"], "videos": [{"upload": "v", "format": "npy"}]}, v=npy_bytes(frames)
            ),
        ),
        "raw bytes short of the shape": (
            422,
            multipart(
                {
                    "prompts": ["red"],
                    "videos": [{"upload": "v", "format": "raw", "shape": [4, 16, 16, 3], "fps": 8}],
                },
                v=frames.tobytes()[:-1],
            ),
        ),
        "missing file part": (
            422,
            multipart({"prompts": ["red"], "videos": [{"upload": "w", "format": "npy", "fps": 8}]}, v=b""),
        ),
        "200 MB declared": (
            413,
            {"content": huge_body(), "headers": {**JSON, "content-length": str(HUGE_BODY_MB << 20)}},
        ),
        "200 MB streamed without a length": (413, {"content": huge_body(), "headers": JSON}),
    }
    with httpx.Client(base_url=server.url, timeout=120) as http:
        for name, (status, request) in cases.items():
            response = http.post("/score", **request)
            assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
            assert response.json()["detail"], name
            assert http.get("/health").status_code == 200, name
    with Client(server.url) as client:
        with pytest.raises(RequestRejected, match="no such file"):
            client.score(["red"], videos=[str(tmp_path / "gone.mp4")])
        with pytest.raises(RequestRejected, match="compare needs exactly two"):
            client._send("/compare", {"prompt": "red", "videos": [path]}, {})
        assert len(client.score(["red"], videos=[path])) == 1


def test_sigterm_lets_the_request_in_flight_finish(server, scorer, videos):
    """Runs last: it stops the module's server."""
    many = [videos[i % len(videos)] for i in range(16)]
    outcome = {}

    def send() -> None:
        with Client(server.url, timeout=120, retries=0) as client:
            outcome["scores"] = client.score(["red"] * len(many), videos=many)

    thread = threading.Thread(target=send)
    thread.start()
    deadline = time.monotonic() + 60
    while httpx.get(f"{server.url}/health").json()["in_flight"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    # uvicorn re-raises the signal once shut down: killed by SIGTERM after a clean exit of the app
    assert server.stop() in (0, -signal.SIGTERM), server.output()
    assert "Application shutdown complete" in server.output()
    thread.join()
    assert_scores_equal(outcome["scores"], scorer.score(["red"] * len(many), videos=many))
