"""`purgewarden serve` as a real subprocess on a chosen bind address, for the Host/Origin tests.

`serve_on(transport, host, env=...)` starts the server on `host` (any loopback address, `localhost`, a
non-loopback address of this machine, or a wildcard) and a free port, and returns a `Served`: where to
connect, and the Host header that names the bind address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from purgewarden.sandbox import Sandbox
from tests.processes import free_port, stop

TOKEN = "rebinding-test-bearer-token-0123456789"


def bracketed(address: str) -> str:
    """An address as it appears in a URL or a Host header: IPv6 in brackets."""
    try:
        return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:
        return address


def can_bind(address: str) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
        return True
    except OSError:
        return False


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback and can be bound, or None."""
    candidates: list[str] = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        candidates.append(probe.getsockname()[0])
    with contextlib.suppress(OSError):
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_STREAM)
        candidates += [str(info[4][0]) for info in infos]
    for candidate in candidates:
        address = ipaddress.ip_address(candidate)
        if not (address.is_loopback or address.is_unspecified) and can_bind(candidate):
            return candidate
    return None


@dataclass(frozen=True)
class Served:
    transport: str
    bind: str
    port: int
    connect: str
    """The address a client connects to (the bind address, or 127.0.0.1 for `localhost` and wildcards)."""
    token: str | None
    log: Path

    @property
    def base(self) -> str:
        return f"http://{bracketed(self.connect)}:{self.port}"

    @property
    def own_host(self) -> str:
        """The Host header naming the bind address and port."""
        return f"{bracketed(self.bind)}:{self.port}"

    def headers(self, **extra: str) -> dict[str, str]:
        auth = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**auth, **extra}


ServeOn = Callable[..., Served]


@pytest.fixture
def serve_on(running_sandbox: Sandbox, tmp_path: Path) -> Iterator[ServeOn]:
    started: list[subprocess.Popen[bytes]] = []

    def start(transport: str, host: str, *, env: dict[str, str] | None = None) -> Served:
        extra = env or {}
        address = _ip(host)
        connect = "127.0.0.1" if address is None or address.is_unspecified else str(address)
        port = free_port(connect)
        log = tmp_path / f"server-{len(started)}.log"
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", ""),
            **running_sandbox.server_environment(),
            "PURGEWARDEN_STATE_DIR": str(tmp_path),
            "PURGEWARDEN_LOG_LEVEL": "WARNING",
            **extra,
        }
        command = [sys.executable, "-m", "purgewarden", "serve", "--transport", transport]
        with log.open("wb") as output:
            process = subprocess.Popen(
                [*command, "--host", host, "--port", str(port)],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        wait_listening(process, connect, port, log)
        return Served(transport, host, port, connect, extra.get("PURGEWARDEN_HTTP_TOKEN"), log)

    yield start
    for process in started:
        stop(process)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def wait_listening(process: subprocess.Popen[bytes], address: str, port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            if process.poll() is not None:
                raise AssertionError(
                    f"the server exited at start-up:\n{log.read_text(errors='replace')}"
                ) from None
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the server did not listen within 30 s:\n{log.read_text(errors='replace')}"
                ) from None
            time.sleep(0.05)
