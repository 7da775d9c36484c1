"""Three real purgewarden replicas sharing one real Redis, behind a real HAProxy: started once per module.

Each replica is `python -m purgewarden serve --transport streamable-http` in its own process with its own
state directory (so its own audit log), the same PURGEWARDEN_SECRET and the same PURGEWARDEN_STORE_URL.
Two balancers stand in front of them: `sticky` (round robin, but a request carrying an MCP session
header goes where that session was issued: what the README tells operators to deploy) and `plain`
(round robin only). The emulators are the session's sandbox, reset before each test.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from purgewarden.sandbox import Sandbox
from tests.conftest import Elicitation
from tests.haproxy import SERVED_BY, Balancer, haproxy_binary, running_haproxy
from tests.processes import stop, wait_answering
from tests.redis_server import redis_binary, running_redis

NAMES = ("r1", "r2", "r3")
SECRET = "replicas-test-shared-secret-0123456789"


def missing_servers() -> str | None:
    """Why this module cannot run here, or None."""
    missing = [
        name
        for name, found in (("redis-server", redis_binary()), ("haproxy", haproxy_binary()))
        if found is None
    ]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} not installed: the replica tests start a real Redis and a real HAProxy. "
        "Install them with `apt-get install redis-server haproxy` (`bash .ci/run` does)."
    )


@dataclass
class Replica:
    name: str
    port: int
    state_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.jsonl"

    def audit_lines(self) -> list[dict[str, Any]]:
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text(encoding="utf-8").splitlines()]


@dataclass
class Replicas:
    members: list[Replica]
    sticky: Balancer
    plain: Balancer
    redis_url: str

    def __getitem__(self, name: str) -> Replica:
        return next(replica for replica in self.members if replica.name == name)


def replica_environment(
    sandbox: Sandbox, redis_url: str, state_dir: Path, hosts: list[str]
) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        **sandbox.server_environment(),
        "PURGEWARDEN_STORE_URL": redis_url,
        "PURGEWARDEN_SECRET": SECRET,
        "PURGEWARDEN_STATE_DIR": str(state_dir),
        "PURGEWARDEN_LOG_LEVEL": "WARNING",
        "PURGEWARDEN_WATCH_INTERVAL": "0.2",
        # The Host headers clients send: the replica's own address, and each balancer's (HAProxy passes
        # the client's Host header on, as a reverse proxy does).
        "PURGEWARDEN_ALLOWED_HOSTS": ",".join(hosts),
    }


def distinct_free_ports(count: int) -> list[int]:
    """Free loopback ports, all different (held open together while they are picked)."""
    with ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def launch(
    name: str, port: int, sandbox: Sandbox, redis_url: str, root: Path, balancers: list[int]
) -> Replica:
    state_dir = root / name
    state_dir.mkdir(parents=True)
    hosts = [f"127.0.0.1:{p}" for p in [port, *balancers]]
    with (state_dir / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "purgewarden",
                "serve",
                "--transport",
                "streamable-http",
                "--port",
                str(port),
            ],
            env=replica_environment(sandbox, redis_url, state_dir, hosts),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Replica(name, port, state_dir, process)


def wait_until_serving(replica: Replica) -> None:
    def log_tail() -> str:
        log = (replica.state_dir / "server.log").read_text(errors="replace")
        return f"replica {replica.name}:\n{log[-3000:]}"

    wait_answering(replica.process, f"http://127.0.0.1:{replica.port}/", log_tail)


@pytest.fixture(scope="module")
def replicas(running_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """Redis, three replicas and both balancers, for the whole module."""
    reason = missing_servers()
    if reason is not None:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("replicas")
    with ExitStack() as stack:
        redis_url = stack.enter_context(running_redis(root / "redis"))
        # The balancers' ports are chosen first: the replicas must accept them in Host headers.
        sticky_port, plain_port, *own = distinct_free_ports(2 + len(NAMES))
        members = [
            launch(name, port, running_sandbox, redis_url, root, [sticky_port, plain_port])
            for name, port in zip(NAMES, own, strict=True)
        ]
        for member in members:
            stack.callback(stop, member.process)
        for member in members:  # started side by side, waited for one by one
            wait_until_serving(member)
        ports = {member.name: member.port for member in members}
        sticky = stack.enter_context(
            running_haproxy(root / "haproxy-sticky", ports, sticky=True, port=sticky_port)
        )
        plain = stack.enter_context(
            running_haproxy(root / "haproxy-plain", ports, sticky=False, port=plain_port)
        )
        yield Replicas(members, sticky, plain, redis_url)


@dataclass
class Cluster:
    """The module's replicas as one test sees them: audit lines written since the test began."""

    replicas: Replicas
    sandbox: Sandbox
    marks: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.marks = {replica.name: len(replica.audit_lines()) for replica in self.replicas.members}

    def audit(self, name: str) -> list[dict[str, Any]]:
        return self.replicas[name].audit_lines()[self.marks[name] :]

    def events(self, event: str) -> dict[str, list[dict[str, Any]]]:
        """Audit lines of this event since the test began, by replica (replicas without any left out)."""
        found = {name: [line for line in self.audit(name) if line["event"] == event] for name in self.marks}
        return {name: lines for name, lines in found.items() if lines}


@pytest.fixture
def cluster(replicas: Replicas, sandbox: Sandbox) -> Cluster:
    """The replicas, with the emulators back at their demo data. Redis is not emptied: it holds the
    replicas' heartbeats, and a replica whose heartbeat vanished looks dead to the others."""
    return Cluster(replicas, sandbox)


@dataclass(frozen=True)
class Exchange:
    """One HTTP request the client sent and who answered it."""

    http_method: str
    rpc_method: str | None
    tool: str | None
    answers_a_question: bool
    """A 2026-07-28 tool call's later round: it carries the answer and the sealed request state."""
    session: str | None
    served_by: str | None
    status: int


@asynccontextmanager
async def connected(
    url: str, *, mode: str, elicitation: Elicitation | None = None, log: list[Exchange] | None = None
) -> AsyncIterator[Client]:
    """An MCP client over streamable HTTP at `url`. Each HTTP exchange it has is appended to `log`, with
    the server that answered it as HAProxy names it (when it went through a balancer)."""
    exchanges = log if log is not None else []

    async def record(response: httpx2.Response) -> None:
        request = response.request
        body: Any = json.loads(request.content) if request.method == "POST" and request.content else None
        message = body if isinstance(body, dict) else {}
        params = message.get("params") or {}
        exchanges.append(
            Exchange(
                http_method=request.method,
                rpc_method=message.get("method"),
                tool=params.get("name"),
                answers_a_question="requestState" in params,
                session=request.headers.get("mcp-session-id"),
                served_by=response.headers.get(SERVED_BY),
                status=response.status_code,
            )
        )

    timeout = httpx2.Timeout(30.0, read=120.0)
    async with (
        httpx2.AsyncClient(timeout=timeout, event_hooks={"response": [record]}) as http,
        Client(
            streamable_http_client(url, http_client=http),
            mode=mode,
            elicitation_callback=elicitation,  # type: ignore[arg-type]
        ) as client,
    ):
        yield client
