"""The client's retries and errors against a plain HTTP server on loopback (no model needed)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vlmrm.serve import Client
from vlmrm.serve.client import RequestRejected, ServerUnavailable

BACKOFF_S = 0.01


class Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next (status, body) of the server's ``script``; records the paths."""

    def do_GET(self):
        status, body = self.server.script.pop(0)
        self.server.seen.append(self.path)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.script, server.seen = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_5xx_is_retried_with_backoff_and_4xx_is_not(scripted):
    url = f"http://127.0.0.1:{scripted.server_address[1]}"
    scripted.script = [(503, {"detail": "busy"}), (500, {"detail": "oops"}), (200, {"status": "ok"})]
    with Client(url, retries=2, backoff=BACKOFF_S) as client:
        assert client.health() == {"status": "ok"}
        assert scripted.seen == ["/health"] * 3
        scripted.script = [(503, {"detail": "busy"})] * 3
        with pytest.raises(ServerUnavailable, match="after 3 attempts: 503: busy"):
            client.health()
        scripted.seen.clear()
        scripted.script = [(422, {"detail": "videos[0]: no such file"})]
        with pytest.raises(RequestRejected, match="videos\\[0\\]: no such file") as rejected:
            client.info()
        assert rejected.value.status == 422 and scripted.seen == ["/info"]


def test_connection_errors_are_retried_then_reported(scripted):
    port = scripted.server_address[1]
    scripted.shutdown()
    scripted.server_close()  # nothing listens on the port any more
    client = Client(f"http://127.0.0.1:{port}", timeout=1, retries=1, backoff=BACKOFF_S)
    with client, pytest.raises(ServerUnavailable, match="after 2 attempts"):
        client.health()


def test_client_side_mistakes_raise_before_sending():
    import numpy as np

    with Client("http://127.0.0.1:9", retries=0) as client:
        with pytest.raises(ValueError, match="frame arrays need their fps"):
            client.score(["red"], videos=[np.zeros((2, 8, 8, 3), np.uint8)])
        with pytest.raises(ValueError, match="fps: 1 values for 2 items"):
            client.score(["a", "b"], videos=np.zeros((2, 2, 8, 8, 3), np.uint8), fps=[8.0])
