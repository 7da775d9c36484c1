"""The sandbox emulators in a process of their own, driven over a pipe.

A figure is only fair when the emulators do not share a CPU budget (or a GIL) with the server or the
baseline client being measured, so they run in a child process; the suite builds datasets, resets
state and injects latency through a small command set.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from purgewarden.sandbox import Capacity, Fault, Sandbox, Service
from purgewarden.sandbox.control import Backend

ROOT = Path(__file__).resolve().parent.parent


def _commands(sandbox: Sandbox) -> dict[str, Callable[..., Any]]:
    def reset(service: Service) -> None:
        backends: dict[Service, Backend] = {
            "katapult": sandbox.katapult,
            "vault": sandbox.vault,
            "cocoon": sandbox.cocoon,
        }
        backends[service].reset()
        sandbox.faults[service].clear()
        if service in sandbox.throttles:
            sandbox.throttles[service].reset()

    def vault_build(collection: str, n: int) -> int:
        return len(sandbox.vault.build_large(collection, n))

    def vault_count(collection: str) -> int:
        store = sandbox.vault.stores.get(collection)
        return 0 if store is None else len(store.objects)

    def katapult_build(organization: str, n: int) -> None:
        sandbox.katapult.build_large_trash(organization, n)

    def katapult_rate_limit(per_minute: int) -> int:
        previous, sandbox.katapult.rate_limit = sandbox.katapult.rate_limit, per_minute
        return previous

    def cocoon_build(n: int) -> int:
        return len(sandbox.cocoon.build_large_bin(sandbox.endpoints["cocoon"].credential, n))

    def vault_capacity(fields: dict[str, Any] | None) -> dict[str, int]:
        capacity = None if fields is None else Capacity.model_validate(fields)
        return asdict(sandbox.set_capacity("vault", capacity))

    def vault_capacity_stats() -> dict[str, int]:
        return asdict(sandbox.capacity_stats("vault"))

    def vault_capacity_window() -> dict[str, float]:
        window = sandbox.capacity_window("vault")
        seconds = sorted(window.delete_seconds)
        return {
            "served": window.served,
            "rejected": window.rejected,
            "p50": statistics.median(seconds) if seconds else 0.0,
            "p99": seconds[min(len(seconds) - 1, math.ceil(0.99 * len(seconds)) - 1)] if seconds else 0.0,
        }

    def latency(service: Service, seconds: float, path: str | None) -> None:
        sandbox.faults[service].clear()
        if seconds:
            sandbox.inject(service, Fault(path=path, times=None, latency=seconds))

    return {
        "reset": reset,
        "vault_build": vault_build,
        "vault_count": vault_count,
        "katapult_build": katapult_build,
        "katapult_rate_limit": katapult_rate_limit,
        "cocoon_build": cocoon_build,
        "vault_capacity": vault_capacity,
        "vault_capacity_stats": vault_capacity_stats,
        "vault_capacity_window": vault_capacity_window,
        "latency": latency,
    }


def main() -> None:
    """Serve until stdin closes: one JSON command per line in, one JSON answer per line out."""
    with Sandbox() as sandbox:
        commands = _commands(sandbox)
        print(json.dumps(sandbox.server_environment()), flush=True)
        for line in sys.stdin:
            name, args = json.loads(line)
            try:
                answer = {"ok": commands[name](*args)}
            except Exception as exc:  # reported to the suite, which fails loudly
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)


class Emulators:
    """All three emulators with demo data, served by a child process on loopback ports."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self.environment: dict[str, str] = {}

    def __enter__(self) -> Emulators:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.emulators"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.environment = json.loads(self._read())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is None:
            return
        self._pipes()[0].close()  # the child stops at the end of its input
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        if self._process is None or self._process.stdin is None or self._process.stdout is None:
            raise RuntimeError("the emulator process is not running")
        return self._process.stdin, self._process.stdout

    def _read(self) -> str:
        line = self._pipes()[1].readline()
        if not line:
            status = self._process.poll() if self._process else None
            raise RuntimeError(f"the emulator process exited (status {status})")
        return line

    def call(self, name: str, *args: Any) -> Any:
        stdin = self._pipes()[0]
        stdin.write(json.dumps([name, args]) + "\n")
        stdin.flush()
        answer = json.loads(self._read())
        if "error" in answer:
            raise RuntimeError(f"emulator command {name} failed: {answer['error']}")
        return answer["ok"]

    # Named wrappers, so figures read as what they do.

    def reset(self, service: Service) -> None:
        self.call("reset", service)

    def vault_build(self, collection: str, n: int) -> int:
        return int(self.call("vault_build", collection, n))

    def vault_count(self, collection: str) -> int:
        return int(self.call("vault_count", collection))

    def katapult_build(self, organization: str, n: int) -> None:
        self.call("katapult_build", organization, n)

    def katapult_rate_limit(self, per_minute: int) -> int:
        """Set the per-token limit; returns the one it replaces."""
        return int(self.call("katapult_rate_limit", per_minute))

    def cocoon_build(self, n: int) -> int:
        return int(self.call("cocoon_build", n))

    def vault_capacity(self, off: None = None, /, **fields: float) -> dict[str, int]:
        """Give the Vault emulator a database's limits (`Capacity` fields, e.g. `workers=4`), or none with
        `vault_capacity(None)`; returns its counters: served, rejected (429), max_queue, busy, waiting."""
        return dict(self.call("vault_capacity", fields or None))

    def vault_capacity_stats(self) -> dict[str, int]:
        return dict(self.call("vault_capacity_stats"))

    def vault_capacity_window(self) -> dict[str, float]:
        """Served and refused (429) requests since the last window, and the median and 99th percentile of
        each delete's time in the database (waiting + served); then a new window starts."""
        return dict(self.call("vault_capacity_window"))

    def latency(self, service: Service, seconds: float, path: str | None = None) -> None:
        """Delay every matching request by `seconds` (0 clears): a network round trip the loopback lacks."""
        self.call("latency", service, seconds, path)


if __name__ == "__main__":
    main()
