"""A real `purgewarden serve` subprocess per test, pointed at the sandbox, over each transport."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx2
import pytest

from purgewarden.sandbox import Sandbox
from tests.processes import free_port

SERVER_SECRETS_ENV = ("KATAPULT_API_TOKEN", "PVAULT_API_KEY", "COCOON_ACCESS_TOKEN")


@pytest.fixture
def server_env(sandbox: Sandbox, tmp_path: os.PathLike[str]) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        **sandbox.server_environment(),
        "PURGEWARDEN_AUDIT_LOG": str(tmp_path) + "/audit.jsonl",
        "PURGEWARDEN_STATE_DIR": str(tmp_path),
        "PURGEWARDEN_LOG_LEVEL": "INFO",
    }


HttpServer = Callable[..., str]


@pytest.fixture
def http_server(server_env: dict[str, str]) -> Iterator[HttpServer]:
    """Starts `purgewarden serve --transport T` on a free loopback port; returns its base URL."""
    started: list[subprocess.Popen[bytes]] = []

    def start(transport: str, *extra: str, env: dict[str, str] | None = None) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "purgewarden",
                "serve",
                "--transport",
                transport,
                "--port",
                str(port),
                *extra,
            ],
            env={**server_env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(
                    f"server exited early: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            try:
                httpx2.get(base + "/", timeout=0.5)
                return base
            except httpx2.TransportError:
                time.sleep(0.1)
        raise AssertionError("server did not start listening within 30 s")

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
