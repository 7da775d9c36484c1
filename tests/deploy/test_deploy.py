"""The deployment recipe in `deploy/`, run as a team would run it: `deploy/run.sh` starts a real Redis,
three real replicas (`purgewarden serve --transport streamable-http`, from this checkout through `uv run`)
and a real nginx in front of them, with the sandbox's credentials in its environment. Through nginx, the
SDK's Streamable HTTP client (bearer token in its header) previews and empties a Cocoon recycle bin; the
emulator sees exactly one deletion per confirmation. With the default balance (each client address on one
replica) on both protocol versions, and with round robin on 2026-07-28, where one cycle spans replicas.
Then SIGTERM stops the recipe, and nothing it started is left running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from purgewarden.sandbox import Fault, Sandbox
from tests.processes import free_port, stop
from tests.rebinding.nginx import nginx_binary
from tests.redis_server import redis_binary
from tests.transports.test_transports import demo_bin_size

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "deploy" / "run.sh"
TOKEN = "deploy-test-bearer-token-0123456789"
SECRET = "deploy-test-shared-secret-0123456789abcdef"
REPLICAS = 3
DELETE_PATH = r"/organisations/[^/]+/recycle-bin/items$"


def missing() -> str | None:
    absent = [
        name for name, found in (("nginx", nginx_binary()), ("redis-server", redis_binary())) if found is None
    ]
    if not absent:
        return None
    return (
        f"{' and '.join(absent)} not installed: the deployment recipe starts a real nginx and a real Redis. "
        "Install them with `apt-get install nginx-light redis-server` (`bash .ci/run` does)."
    )


pytestmark = [pytest.mark.anyio, pytest.mark.skipif(missing() is not None, reason=str(missing()))]


def session_members(session: int) -> list[tuple[int, str]]:
    """Live processes of the session `session` (pid and command line): what the recipe started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, _ppid, _pgrp, sid = stat.rsplit(")", 1)[1].split()[:4]
        if int(sid) == session and state != "Z":
            found.append((int(entry.name), cmdline.strip()))
    return found


@contextmanager
def recipe(sandbox: Sandbox, root: Path, **settings: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """deploy/run.sh in its own session, its output in a log; stopped (SIGTERM) on exit."""
    inherited = ("PURGEWARDEN_", "DEPLOY_", "KATAPULT_", "PVAULT_", "COCOON_")
    environment = {name: value for name, value in os.environ.items() if not name.startswith(inherited)}
    environment.update(sandbox.server_environment())
    environment.update(settings)
    if shutil.which("uv") is None:  # not started through uv: the recipe uses this interpreter instead
        environment["PURGEWARDEN_PYTHON"] = sys.executable
    log = root / "run.log"
    with log.open("ab") as output:  # appending: several processes write to it
        process = subprocess.Popen(
            ["bash", str(RUN)],
            env=environment,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its session holds everything it starts: checked empty afterwards
        )
    try:
        yield process, log
    finally:
        stop(process, timeout=60)
        for pid, _ in session_members(process.pid):  # only if the recipe failed to stop what it started
            os.kill(pid, signal.SIGKILL)


def wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until nginx answers with a replica behind it (not 502/503/504), or the recipe exits, or 90 s pass."""
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise AssertionError(
                f"deploy/run.sh exited ({process.returncode}):\n{log.read_text(errors='replace')}"
            )
        try:
            if httpx2.get(url, timeout=2).status_code not in (502, 503, 504):
                return
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(
                f"nginx did not answer within 90 s:\n{log.read_text(errors='replace')[-5000:]}"
            )
        time.sleep(0.1)


def deletions(sandbox: Sandbox) -> Callable[[], int]:
    """How many recycle-bin DELETEs reach the emulator from now on (a fault rule that fires on each and
    changes nothing)."""
    sandbox.inject("cocoon", Fault(method="DELETE", path=DELETE_PATH, times=None))
    return lambda: sum(
        rule["fired"] for rule in sandbox.faults["cocoon"].active() if rule["path"] == DELETE_PATH
    )


def audit_events(state: Path, event: str) -> list[dict[str, Any]]:
    lines = []
    for audit in sorted(state.glob("replica-*/audit.jsonl")):
        lines += [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line.get("event") == event]


async def preview_confirm_run(url: str, mode: str, sandbox: Sandbox, state: Path) -> None:
    """One cycle through nginx: preview, confirm with the token, the run done; the token then refused."""
    sandbox.reset()
    deleted = deletions(sandbox)
    confirmed_before = len(audit_events(state, "confirmed"))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=120.0)) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        plan = await client.call_tool("cocoon_preview_empty_recycle_bin", {})
        assert not plan.is_error, plan.content
        assert plan.structured_content is not None
        planned = plan.structured_content["totals"]["items"]
        assert planned > 0
        assert demo_bin_size(sandbox) == planned
        assert deleted() == 0
        token = plan.structured_content["confirmation_token"]
        done = await client.call_tool("cocoon_empty_recycle_bin", {"confirm": token})
        assert not done.is_error, done.content
        assert done.structured_content is not None
        assert done.structured_content["totals"]["items"] == planned
        again = await client.call_tool("cocoon_empty_recycle_bin", {"confirm": token})
        assert again.is_error
    assert demo_bin_size(sandbox) == 0
    assert deleted() == 1
    assert len(audit_events(state, "confirmed")) == confirmed_before + 1


def replicas_audited(state: Path) -> set[str]:
    """The replicas (state directory names) that wrote any audit line: those that served a tool call."""
    return {audit.parent.name for audit in state.glob("replica-*/audit.jsonl") if audit.read_text().strip()}


BALANCES = [
    # Each client address on one replica: 2025-11-25 sessions work, and 2026-07-28 clients too.
    pytest.param("client", ("legacy", "auto"), id="client-hash"),
    # Every request to the next replica: 2026-07-28 only (no session); a cycle spans several replicas.
    pytest.param("round-robin", ("auto",), id="round-robin"),
]


@pytest.mark.parametrize(("balance", "modes"), BALANCES)
async def test_the_recipe_runs_a_full_cycle_through_nginx_and_stops_cleanly(
    sandbox: Sandbox, tmp_path: Path, balance: str, modes: tuple[str, ...]
) -> None:
    listen = free_port()
    replica_ports = [free_port() for _ in range(REPLICAS)]
    state = tmp_path / "state"
    public = f"http://127.0.0.1:{listen}"
    with recipe(
        sandbox,
        tmp_path,
        PURGEWARDEN_SECRET=SECRET,
        PURGEWARDEN_HTTP_TOKEN=TOKEN,
        PURGEWARDEN_LOG_LEVEL="WARNING",
        DEPLOY_LISTEN=f"127.0.0.1:{listen}",
        DEPLOY_REPLICA_PORTS=" ".join(map(str, replica_ports)),
        DEPLOY_STATE_DIR=str(state),
        DEPLOY_BALANCE=balance,
    ) as (process, log):
        wait_until_answering(public + "/mcp", process, log)
        started = session_members(process.pid)
        commands = " ".join(command for _, command in started)
        assert commands.count("purgewarden serve --transport streamable-http") == REPLICAS, started
        assert "redis-server" in commands
        assert "nginx: master process" in commands

        # Through nginx: no token → 401; a Host nginx passes on that is not the public one → 421.
        assert httpx2.post(public + "/mcp", json={}).status_code == 401
        foreign = httpx2.post(
            public + "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Authorization": f"Bearer {TOKEN}", "Host": "evil.example"},
        )
        assert foreign.status_code == 421
        healthz = httpx2.get(public + "/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
        assert healthz.status_code == 200, healthz.text

        for mode in modes:  # "legacy": 2025-11-25, a session kept on one replica; "auto": 2026-07-28
            await preview_confirm_run(public + "/mcp", mode, sandbox, state)
        assert len(audit_events(state, "outcome")) == len(modes)
        served = replicas_audited(state)
        if balance == "client":
            assert len(served) == 1, served  # one client address, one replica
        else:
            assert len(served) >= 2, served  # preview, confirmation and retry spread over the replicas

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text(errors="replace")[-5000:]
    assert session_members(process.pid) == [], "the recipe left processes running"
    for port in [listen, *replica_ports]:
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    assert "purgewarden deploy: stopping" in log.read_text(errors="replace")


def test_the_recipe_refuses_to_start_without_a_secret_or_a_token(tmp_path: Path) -> None:
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DEPLOY_STATE_DIR": str(tmp_path),
    }
    no_secret = subprocess.run(
        ["bash", str(RUN)], env=environment, capture_output=True, text=True, timeout=30
    )
    assert no_secret.returncode == 2
    assert "PURGEWARDEN_SECRET" in no_secret.stderr
    no_token = subprocess.run(
        ["bash", str(RUN)],
        env={**environment, "PURGEWARDEN_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert no_token.returncode == 2
    assert "PURGEWARDEN_HTTP_TOKEN" in no_token.stderr
