"""The audit log's sinks on real processes: a file (reopened on SIGHUP), stdout, stderr, pipes; and a log
that cannot be written stopping a deletion before anything is touched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from purgewarden.sandbox import Sandbox, cocoon
from tests.ops.conftest import SERVE, ServeHttp

PREVIEW, EMPTY = "cocoon_preview_empty_recycle_bin", "cocoon_empty_recycle_bin"


def bin_size(sandbox: Sandbox) -> int:
    user = sandbox.cocoon.resolve_user(cocoon.DEMO_ACCESS_TOKEN)
    return len(sandbox.cocoon.bin_of(user.id, cocoon.DEMO_ORGANISATION_ID).entries)


async def empty_the_bin(client: Client, sandbox: Sandbox) -> None:
    """Preview, then the confirmed (durably audited) deletion, which must succeed."""
    plan = await client.call_tool(PREVIEW, {})
    assert plan.structured_content is not None, plan.content
    done = await client.call_tool(EMPTY, {"confirm": plan.structured_content["confirmation_token"]})
    assert not done.is_error, done.content
    assert bin_size(sandbox) == 0


def audit_events(text: str) -> list[str]:
    """The events of the audit lines among other output (log lines are not JSON objects with `event`)."""
    events = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "event" in entry:
            events.append(entry["event"])
    return events


@pytest.mark.parametrize("sink", ["stderr", "/dev/stderr"])
async def test_audit_on_stderr_that_is_a_pipe_over_stdio(
    sandbox: Sandbox, server_env: dict[str, str], sink: str
) -> None:
    """As in a container: stderr is a pipe, where fsync fails with EINVAL; the deletion goes through."""
    read_end, write_end = os.pipe()
    chunks: list[bytes] = []

    def drain() -> None:
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    env = {**server_env, "PURGEWARDEN_AUDIT_LOG": sink}
    params = StdioServerParameters(command=sys.executable, args=["-m", "purgewarden", "serve"], env=env)
    with os.fdopen(write_end, "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            await empty_the_bin(client, sandbox)
    reader.join(10)
    os.close(read_end)
    events = audit_events(b"".join(chunks).decode())
    assert events[-3:] == ["preview", "confirmed", "outcome"], events


async def test_audit_on_stdout_over_http(
    sandbox: Sandbox, server_env: dict[str, str], serve_http: ServeHttp
) -> None:
    served = serve_http({**server_env, "PURGEWARDEN_AUDIT_LOG": "stdout"})
    async with Client(served.base + "/mcp") as client:
        await empty_the_bin(client, sandbox)
    served.stop()
    assert audit_events(served.stdout())[-3:] == ["preview", "confirmed", "outcome"]
    assert audit_events(served.stderr()) == []


@pytest.mark.parametrize("sink", ["stdout", "/dev/stdout"])
def test_stdout_is_refused_as_audit_sink_with_stdio(server_env: dict[str, str], sink: str) -> None:
    proc = subprocess.run(
        [*SERVE], env={**server_env, "PURGEWARDEN_AUDIT_LOG": sink}, capture_output=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert f"PURGEWARDEN_AUDIT_LOG={sink}" in proc.stderr.decode()
    assert "stdio transport" in proc.stderr.decode()


async def test_sighup_reopens_the_audit_file(
    sandbox: Sandbox, server_env: dict[str, str], serve_http: ServeHttp, tmp_path: Path
) -> None:
    """logrotate's way: move the file away, SIGHUP, and the next line goes to a new file at the path."""
    audit = tmp_path / "audit.jsonl"
    served = serve_http({**server_env, "PURGEWARDEN_AUDIT_LOG": str(audit)})
    async with Client(served.base + "/mcp") as client:
        assert not (await client.call_tool(PREVIEW, {})).is_error
        rotated = audit.rename(tmp_path / "audit.jsonl.1")
        served.proc.send_signal(signal.SIGHUP)
        await anyio.sleep(0.3)
        assert served.proc.poll() is None, "SIGHUP stopped the server"
        await empty_the_bin(client, sandbox)
    assert audit_events(rotated.read_text()) == ["preview"]
    assert audit_events(audit.read_text()) == ["preview", "confirmed", "outcome"]


async def test_unwritable_audit_log_refuses_the_deletion(
    sandbox: Sandbox, tmp_path: Path, connect: Callable[..., AbstractAsyncContextManager[Client]]
) -> None:
    """The confirmation's record cannot be written (the path is a directory): nothing is deleted."""
    blocked = tmp_path / "audit-is-a-directory"
    blocked.mkdir()
    before = bin_size(sandbox)
    async with connect(audit_log=blocked) as client:
        plan = await client.call_tool(PREVIEW, {})
        assert plan.structured_content is not None, plan.content
        refused = await client.call_tool(EMPTY, {"confirm": plan.structured_content["confirmation_token"]})
    assert refused.is_error
    text: Any = refused.content[0]
    assert "the audit log could not be written" in text.text, text.text
    assert "Nothing was deleted" in text.text
    assert bin_size(sandbox) == before > 0
