"""What every test that starts real processes needs: a free port, a wait until it answers, a clean stop,
a raw MCP request."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx2

INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw-http", "version": "1"},
    },
}
"""An `initialize` request as raw JSON-RPC, for tests of what the HTTP layer does with it."""
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def free_port(address: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_answering(
    process: subprocess.Popen[bytes], url: str, output: Callable[[], str], seconds: float = 30
) -> None:
    """Until `url` answers (whatever its status); a server that exits first, or never answers, fails the
    test with `output()` (what it wrote), which is read only then."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the server exited at start-up:\n{output()}")
        try:
            httpx2.get(url, timeout=0.5)
            return
        except httpx2.TransportError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not answer within {seconds:g} s:\n{output()}") from None
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds: no test leaves a process behind."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
