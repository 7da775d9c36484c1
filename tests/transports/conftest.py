"""A real `purgewarden serve` subprocess per test, pointed at the sandbox, over each transport."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from purgewarden.sandbox import Sandbox
from tests.processes import free_port, stop, wait_answering

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
        wait_answering(proc, base + "/", lambda: proc.stderr.read().decode() if proc.stderr else "")
        return base

    yield start
    for proc in started:
        stop(proc)
