"""Real `purgewarden serve` processes for the operations tests, with their stdout and stderr read as they go
(a pipe nobody reads fills up and blocks the server) and kept for the test to look at."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from purgewarden.sandbox import Sandbox
from tests.processes import free_port, wait_answering

SERVE = [sys.executable, "-m", "purgewarden", "serve"]


def base_env(tmp_path: Path) -> dict[str, str]:
    """No service configured, state in the test's directory."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "PURGEWARDEN_STATE_DIR": str(tmp_path),
        "PURGEWARDEN_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
    }


@pytest.fixture
def server_env(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    """Every service configured against the sandbox."""
    return {**base_env(tmp_path), **sandbox.server_environment()}


class Drain(threading.Thread):
    """Reads a pipe to its end in the background."""

    def __init__(self, pipe: object) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.chunks: list[bytes] = []

    def run(self) -> None:
        fd = self.pipe.fileno()  # type: ignore[attr-defined]
        while chunk := os.read(fd, 65536):
            self.chunks.append(chunk)

    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")


@dataclass
class Served:
    base: str
    proc: subprocess.Popen[bytes]
    out: Drain
    err: Drain
    stopped: bool = field(default=False)

    def stop(self) -> None:
        """Stop the server (SIGTERM) and wait for the last of its output."""
        if not self.stopped:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.out.join(5)
            self.err.join(5)
            self.stopped = True

    def stdout(self) -> str:
        return self.out.text()

    def stderr(self) -> str:
        return self.err.text()


ServeHttp = Callable[..., Served]


@pytest.fixture
def serve_http() -> Iterator[ServeHttp]:
    """`serve_http(env, "streamable-http"|"sse", *flags)`: a real HTTP server on a free loopback port."""
    started: list[Served] = []

    def start(env: dict[str, str], transport: str = "streamable-http", *extra: str) -> Served:
        port = free_port()
        proc = subprocess.Popen(
            [*SERVE, "--transport", transport, "--port", str(port), *extra],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        served = Served(f"http://127.0.0.1:{port}", proc, Drain(proc.stdout), Drain(proc.stderr))
        served.out.start()
        served.err.start()
        started.append(served)

        def last_words() -> str:
            served.stop()  # its drains joined: all it wrote
            return served.stderr()

        wait_answering(proc, served.base + "/healthz", last_words)
        return served

    yield start
    for served in started:
        served.stop()
