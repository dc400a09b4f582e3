"""Run ``python -m vlmrm.serve`` as a child process: start it on a free loopback port, wait until it
answers, stop it with SIGTERM (graceful: in-flight requests finish).

For programs that own their reward server (an RL trainer, the benchmark, the tests).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 180.0
"""Importing torch + transformers and loading the model; generous for busy CPU machines."""
STOP_TIMEOUT_S = 60.0
POLL_S = 0.2
LOG_TAIL_CHARS = 4000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str
    log: Path

    @classmethod
    def start(
        cls,
        checkpoint: str | Path,
        log: Path,
        *options: str,
        env: dict | None = None,
        timeout: float = START_TIMEOUT_S,
    ) -> ServerProcess:
        """The server on a free port of 127.0.0.1, its output in ``log``; returns once /health answers."""
        port = free_port()
        command = [sys.executable, "-m", "vlmrm.serve", "--checkpoint", str(checkpoint)]
        with Path(log).open("w") as sink:
            process = subprocess.Popen(
                [*command, "--host", LOOPBACK, "--port", str(port), *options],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        server = cls(process, f"http://{LOOPBACK}:{port}", Path(log))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{server.output()}")
            try:
                if httpx.get(f"{server.url}/health", timeout=POLL_S * 10).status_code == httpx.codes.OK:
                    return server
            except httpx.TransportError:
                time.sleep(POLL_S)
        server.stop()
        raise RuntimeError(f"server not up after {timeout} s:\n{server.output()}")

    def output(self) -> str:
        return self.log.read_text()[-LOG_TAIL_CHARS:]

    def stop(self) -> int:
        """SIGTERM, then wait; the exit status (uvicorn re-raises the signal: -SIGTERM after a clean stop)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_TIMEOUT_S)
