"""A real Redis (or Valkey) server for tests: started on loopback in a temporary directory, stopped after."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.processes import free_port

ATTEMPTS = 3


def redis_binary() -> str | None:
    """The redis-server (preferred) or valkey-server on PATH, or None."""
    return shutil.which("redis-server") or shutil.which("valkey-server")


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def running_redis(tmp_dir: Path) -> Iterator[str]:
    """Yield `redis://127.0.0.1:PORT/0` of a fresh server that persists nothing; stop it on exit."""
    binary = redis_binary()
    if binary is None:
        raise RuntimeError("neither redis-server nor valkey-server is installed")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(ATTEMPTS):  # another process may take the free port before the server binds it
        port = free_port()
        command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_dir)]
        command += ["--save", "", "--appendonly", "no", "--protected-mode", "yes", "--logfile", "server.log"]
        server = subprocess.Popen(command, cwd=tmp_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if started(server, port):
                yield f"redis://127.0.0.1:{port}/0"
                return
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    log = tmp_dir / "server.log"
    detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"{binary} did not start after {ATTEMPTS} attempts:\n{detail}")


def started(server: subprocess.Popen[bytes], port: int) -> bool:
    """Wait until the server answers PING (True) or exits or takes more than 10 s (False)."""
    deadline = time.monotonic() + 10
    while not answers_ping(port):
        if server.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
