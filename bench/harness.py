"""What every figure shares: the run's sizes, server processes, timing, result sizes and the figure record.

Figures are ratios against a baseline measured in the same run, with the two arms interleaved and the
median taken over several repetitions, because this machine (2 cores) is shared and noisy.
"""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.shared.dispatcher import ProgressFnT
from mcp.types import CallToolResult, TextContent

ROOT = Path(__file__).resolve().parent.parent
TOKEN_LIMIT = 25_000
LISTING_TOKEN_LIMIT = 4_000


@dataclass(frozen=True)
class Scale:
    """How big and how often: the full suite is run by hand, the smoke suite in CI."""

    smoke: bool
    vault_objects: int
    katapult_trash: int
    cocoon_items: int
    reps: int
    calls: int
    cold_starts: int
    concurrency_levels: tuple[int, ...]
    """The hand-written client's fixed levels of batches in flight (P2 loopback and network)."""
    capacity_levels: tuple[int, ...]
    """Its levels against the capacity-limited Vault (1 would take minutes there; 12 is its worker count)."""
    simultaneous_calls: int
    rps_seconds: float
    latency: float
    """Seconds added to every request to an emulator in the 'network' condition."""

    @classmethod
    def full(cls) -> Scale:
        return cls(
            smoke=False,
            vault_objects=100_000,
            katapult_trash=20_000,
            cocoon_items=10_000,
            reps=3,
            calls=200,
            cold_starts=9,
            concurrency_levels=(1, 2, 4, 8, 16, 32),
            capacity_levels=(4, 8, 12, 16, 24, 32),
            simultaneous_calls=50,
            rps_seconds=3.0,
            latency=0.025,
        )

    @classmethod
    def smoke_test(cls) -> Scale:
        return cls(
            smoke=True,
            vault_objects=3_000,
            katapult_trash=2_000,
            cocoon_items=1_000,
            reps=1,
            calls=20,
            cold_starts=1,
            concurrency_levels=(1, 8),
            capacity_levels=(4, 12),
            simultaneous_calls=50,
            rps_seconds=0.5,
            latency=0.025,
        )


@dataclass
class Figure:
    """One measured figure and its target; `met` is None for a figure without a numeric target."""

    key: str
    name: str
    target: str
    value: float
    unit: str
    met: bool | None
    detail: str
    miss: str = ""
    """For an unmet target: why, and what would close it."""
    display: str = ""
    """How the table shows the figure, when the value alone does not say enough."""

    def shown(self) -> str:
        if self.display:
            return self.display
        if self.unit == "×":
            return f"{self.value:.2f}×"
        if self.unit in ("/s", "objects/s"):
            return f"{self.value:,.0f}{'' if self.unit == '/s' else ' '}{self.unit}"
        if self.unit == "s":
            return f"{self.value:.2f} s"
        if self.unit == "ms":
            return f"{self.value:.1f} ms"
        return f"{self.value:,.0f} {self.unit}"

    def check(self) -> None:
        """A figure that is not a positive finite number means the suite is broken, whatever the target
        (a share, such as of requests refused, may be 0)."""
        if not (math.isfinite(self.value) and (self.value > 0 or (self.unit == "%" and self.value == 0))):
            raise AssertionError(f"{self.key} {self.name}: not a sane figure ({self.value!r})")


@dataclass
class Sizes:
    """The largest result each tool gave, in estimated tokens (characters / 4), text and structured apart."""

    largest: dict[str, tuple[int, int, str]] = field(default_factory=dict)

    def record(self, tool: str, result: CallToolResult, dataset: str) -> None:
        text = sum(len(c.text) for c in result.content if isinstance(c, TextContent))
        structured = len(json.dumps(result.structured_content)) if result.structured_content else 0
        tokens = (math.ceil(text / 4), math.ceil(structured / 4))
        seen = self.largest.get(tool)
        if seen is None or max(tokens) > max(seen[:2]):
            self.largest[tool] = (*tokens, dataset)


def median(values: list[float]) -> float:
    return statistics.median(values)


def server_environment(emulators: dict[str, str], workdir: Path, **extra: str) -> dict[str, str]:
    """Everything `purgewarden serve` needs (stdio children inherit only a few variables)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        **emulators,
        "PURGEWARDEN_STATE_DIR": str(workdir),
        **extra,
    }


def purgewarden_stdio(environment: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "purgewarden", "serve"], env=environment, cwd=str(ROOT)
    )


def bare_stdio(environment: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "bench.bare_server"], env=environment, cwd=str(ROOT)
    )


async def call(
    client: Client,
    tool: str,
    arguments: dict[str, Any],
    sizes: Sizes,
    dataset: str,
    progress: ProgressFnT | None = None,
) -> Any:
    """Call a tool, record its result size, and fail loudly on an error result."""
    result = await client.call_tool(tool, arguments, progress_callback=progress)
    if result.is_error:
        text = " ".join(c.text for c in result.content if isinstance(c, TextContent))
        raise AssertionError(f"{tool} failed: {text[:500]}")
    sizes.record(tool, result, dataset)
    return result.structured_content


def children_named(word: str) -> list[int]:
    """Pids of this process's children whose command line contains `word` (the SDK hides stdio pids)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and word in cmdline:
            found.append(int(entry.name))
    return found


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set since it started."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def http_server(environment: dict[str, str]) -> Iterator[tuple[str, int]]:
    """`purgewarden serve --transport streamable-http` as a subprocess; yields its MCP endpoint URL and pid."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "purgewarden", "serve", "--transport", "streamable-http", "--port", str(port)],
        env=environment,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                error = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"the HTTP server exited early: {error[-2000:]}")
            try:
                httpx2.get(base + "/", timeout=0.5)
                break
            except httpx2.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the HTTP server did not listen within 60 s") from None
                time.sleep(0.05)
        yield base + "/mcp", process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@asynccontextmanager
async def vault_http(environment: dict[str, str], connections: int = 16) -> AsyncIterator[httpx2.AsyncClient]:
    """The hand-written baseline's client: one pooled httpx2 client, as a careful user would write it."""
    async with httpx2.AsyncClient(
        base_url=environment["PVAULT_URL"] + "/api/pvlt/1.0",
        headers={"Authorization": f"Bearer {environment['PVAULT_API_KEY']}"},
        limits=httpx2.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=60,
    ) as http:
        yield http


@contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="purgewarden-bench-") as path:
        yield Path(path)


def default_delete_concurrency() -> int:
    """The server's default batches in flight, so the smoke run always measures what ships."""
    from purgewarden.config import Settings

    return int(Settings.model_fields["vault_delete_concurrency"].default)
