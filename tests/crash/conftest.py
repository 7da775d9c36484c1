"""The crash campaign's machinery: its own sandbox, a real Redis, and `purgewarden serve` processes that a
test SIGKILLs and starts again on the same store.

The servers of one store form a chain: the server started after a kill, once the test has checked what it
tells, is the next test's victim, so every kill costs one server start-up; and each server is started
warm (see `WARM`), so that start-up is the server's own, not the interpreter's imports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from purgewarden.sandbox import Sandbox
from purgewarden.store import Store
from purgewarden.store.redis import RedisStore
from purgewarden.store.sqlite import SqliteStore
from tests.processes import free_port
from tests.redis_server import redis_binary, running_redis

TASK_SECONDS = 1.0
"""How long a Katapult purge task of the campaign's sandbox takes: long enough to be killed during."""
REDIS_MISSING = (
    "redis-server is not installed: apt-get install redis-server (bash .ci/run does) to run the crash "
    "campaign on Redis"
)
SERVER_ENV = {
    "PURGEWARDEN_LOG_LEVEL": "WARNING",
    "PVAULT_MAX_PAGE_SIZE": "100",  # many all-or-nothing batches out of a modest collection
    "PURGEWARDEN_VAULT_DELETE_CONCURRENCY": "2",
}
START_SECONDS = 30.0
START_ATTEMPTS = 3


WARM = """
import sys

import anyio, uvicorn  # noqa: F401
import purgewarden.cli, purgewarden.server.app, purgewarden.server.transports  # noqa: F401

argv = sys.stdin.readline().split()
raise SystemExit(purgewarden.cli.main(argv) if argv else 0)
"""
"""A process that has imported the server and waits for its command line: `python -m purgewarden` with
the imports (a second and more of CPU) done ahead. It opens nothing before it is told to serve."""


class ServerExited(AssertionError):
    pass


class Server:
    """One `purgewarden serve --transport streamable-http` process; its output goes to `log`.

    It is started warm: the interpreter imports the server while the previous server still runs, and runs `purgewarden.cli.main(["serve", ...])` (what `python -m purgewarden serve` runs) once `serve`
    is called, so a restart costs the server's own start-up, not the interpreter's imports.
    """

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = 0
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", WARM],
                env=env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.killed_at: float | None = None

    def serve(self) -> Server:
        self.port = free_port()
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"serve --transport streamable-http --port {self.port}\n".encode())
        self.proc.stdin.close()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    async def ready(self) -> Server:
        """Once it accepts connections (after its start-up, which takes over the runs of dead servers)."""
        with anyio.fail_after(START_SECONDS):
            while True:
                if self.proc.poll() is not None:
                    raise ServerExited(f"server exited with {self.proc.returncode}:\n{self.output()}")
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", self.port)
                except OSError:
                    await anyio.sleep(0.02)
                    continue
                await stream.aclose()
                return self

    def kill(self) -> None:
        """SIGKILL, and reap it: a zombie's pid still answers `kill(pid, 0)`, as if it were alive."""
        self.proc.kill()
        self.proc.wait()
        assert self.proc.returncode == -signal.SIGKILL, f"it had exited: {self.output()}"
        self.killed_at = time.monotonic()

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()  # a spare never told to serve exits
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Chain:
    """The servers of one store, one after the other: state directory (audit log, SQLite file) and store."""

    store: str
    state_dir: Path
    env: dict[str, str]
    store_url: str | None = None
    server: Server | None = None
    spare: Server | None = None
    starts: int = 0

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.jsonl"

    async def start(self) -> Server:
        """A new server on the chain's store (the spare, told to serve), once it accepts connections; and
        a new spare. Another process may take the free port first: then the next spare tries."""
        for attempt in range(1, START_ATTEMPTS + 1):
            server = self.spare or self._spawn()
            self.spare = self._spawn()
            self.starts += 1
            try:
                return await server.serve().ready()
            except ServerExited:
                if attempt == START_ATTEMPTS or "address already in use" not in server.output():
                    raise
        raise AssertionError("unreachable")

    def _spawn(self) -> Server:
        return Server(self.env, self.state_dir / f"server-{self.starts}-{time.monotonic_ns()}.log")

    async def victim(self) -> Server:
        """The server the next destructive call goes to: the last one started, or a new one."""
        if self.server is None or self.server.proc.poll() is not None:
            self.server = await self.start()
        return self.server

    def open_store(self) -> Store:
        """The chain's store, as the test process reads it (its own connection)."""
        if self.store_url is not None:
            return RedisStore(self.store_url)
        return SqliteStore(self.state_dir / "purgewarden.db")


@dataclass(frozen=True)
class Kill:
    """One SIGKILL of the campaign, and where it landed in the run."""

    operation: str
    store: str
    seed: int
    aimed_at: str
    """The kill point the seed chose (before the run, during request n, after an answer, after the end)."""
    landed: str
    """Where the journal says it landed."""
    in_flight: int
    """Items whose fate the journal could not tell at the kill."""
    after_seconds: float
    """From the destructive call to the kill."""
    resumed: bool = False
    confirmed: bool | None = None
    """Whether the audit log has the run's confirmation (None: no run was recorded)."""


@dataclass
class Campaign:
    """Every kill of the session, and the chains of servers per store."""

    root: Path
    env: dict[str, str]
    redis_url: str | None = None
    chains: dict[str, Chain] = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)
    cases_run: int = 0
    started: float = field(default_factory=time.monotonic)

    def chain(self, store: str) -> Chain:
        """The chain of servers on `store` (skipping the test when that is Redis and it is missing)."""
        if store not in self.chains:
            state_dir = self.root / store
            state_dir.mkdir(parents=True, exist_ok=True)
            env = {**self.env, "PURGEWARDEN_STATE_DIR": str(state_dir)}
            url = None
            if store == "redis":
                if self.redis_url is None:
                    pytest.skip(REDIS_MISSING)
                url = env["PURGEWARDEN_STORE_URL"] = self.redis_url
                with redis.from_url(url) as client:
                    client.flushdb()
            self.chains[store] = Chain(store, state_dir, env, url)
        return self.chains[store]

    def stop(self) -> None:
        for chain in self.chains.values():
            for server in (chain.server, chain.spare):
                if server is not None:
                    server.stop()

    def report(self) -> list[str]:
        kills = self.kills
        lines = [
            f"{len(kills)} SIGKILLs in {time.monotonic() - self.started:.0f} s; "
            f"{sum(c.starts for c in self.chains.values())} server starts",
        ]
        for title, counter in (
            ("per store", Counter(k.store for k in kills)),
            ("per operation", Counter(k.operation for k in kills)),
            ("aimed at", Counter(k.aimed_at.split(" ")[0] for k in kills)),
            ("landed", Counter(k.landed for k in kills)),
        ):
            lines.append(f"{title}: " + ", ".join(f"{n} {what}" for what, n in sorted(counter.items())))
        for operation in sorted({k.operation for k in kills}):
            counter = Counter(k.landed for k in kills if k.operation == operation)
            lines.append(f"  {operation}: " + ", ".join(f"{n} {what}" for what, n in sorted(counter.items())))
        lines.append(
            f"resumed after the restart: {sum(k.resumed for k in kills)}; "
            f"items in flight at the kill: {sum(k.in_flight for k in kills)}; "
            f"runs without an audited confirmation: {sum(k.confirmed is False for k in kills)}"
        )
        stuck = Counter(
            k.operation for k in kills if k.landed.startswith("after an answer") and not k.resumed
        )
        if stuck:
            lines.append(
                "answered before the kill, yet left unknown: "
                + ", ".join(f"{n} {op}" for op, n in sorted(stuck.items()))
            )
        return lines


CAMPAIGN = pytest.StashKey[Campaign]()


@pytest.fixture(scope="session")
def crash_sandbox() -> Iterator[Sandbox]:
    """The campaign's own emulators (purge tasks that last `TASK_SECONDS`), reset by every case."""
    sandbox = Sandbox(seed=0, task_seconds=TASK_SECONDS)
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="session")
def crash_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A real Redis server on loopback for the whole campaign (None when none is installed)."""
    if redis_binary() is None:
        yield None
        return
    with running_redis(tmp_path_factory.mktemp("crash-redis")) as url:
        yield url


@pytest.fixture(scope="session")
def campaign(
    crash_sandbox: Sandbox,
    crash_redis_url: str | None,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[Campaign]:
    """The servers (stopped before Redis and the sandbox are) and the record of every kill."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        **crash_sandbox.server_environment(),
        **SERVER_ENV,
    }
    found = Campaign(tmp_path_factory.mktemp("crash"), env, crash_redis_url)
    pytestconfig.stash[CAMPAIGN] = found
    yield found
    found.stop()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    found = config.stash.get(CAMPAIGN, None)
    if found is not None and found.kills:
        terminalreporter.write_sep("-", "crash campaign")
        for line in found.report():
            terminalreporter.write_line(line)
