"""The server over its three real transports, as separate processes, through the SDK's MCP client."""

from __future__ import annotations

import subprocess
import sys

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from purgewarden.sandbox import Sandbox, cocoon
from tests.transports.conftest import SERVER_SECRETS_ENV, HttpServer

ALL_TOOLS = 20


def demo_bin_size(sandbox: Sandbox) -> int:
    user = sandbox.cocoon.resolve_user(cocoon.DEMO_ACCESS_TOKEN)
    return len(sandbox.cocoon.bin_of(user.id, cocoon.DEMO_ORGANISATION_ID).entries)


async def preview_and_empty(client: Client, sandbox: Sandbox) -> None:
    """The whole safety flow on Cocoon: list, preview, refusal without a token, confirmed empty."""
    tools = (await client.list_tools()).tools
    assert len(tools) == ALL_TOOLS
    plan = await client.call_tool("cocoon_preview_empty_recycle_bin", {})
    assert not plan.is_error
    assert plan.structured_content is not None
    planned = plan.structured_content["totals"]["items"]
    assert planned > 0
    refused = await client.call_tool("cocoon_empty_recycle_bin", {"confirm": "not-a-token"})
    assert refused.is_error
    assert demo_bin_size(sandbox) == planned
    done = await client.call_tool(
        "cocoon_empty_recycle_bin", {"confirm": plan.structured_content["confirmation_token"]}
    )
    assert not done.is_error, done.content
    assert done.structured_content is not None
    assert done.structured_content["totals"]["items"] == planned
    assert demo_bin_size(sandbox) == 0


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_stdio_subprocess(sandbox: Sandbox, server_env: dict[str, str], mode: str) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "purgewarden", "serve"], env=server_env
    )
    async with Client(params, mode=mode) as client:
        await preview_and_empty(client, sandbox)
    audit = await anyio.Path(server_env["PURGEWARDEN_AUDIT_LOG"]).read_text()
    assert '"event":"outcome"' in audit
    for name in SERVER_SECRETS_ENV:
        assert server_env[name] not in audit


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_streamable_http(sandbox: Sandbox, http_server: HttpServer, mode: str) -> None:
    base = http_server("streamable-http")
    async with Client(base + "/mcp", mode=mode) as client:
        await preview_and_empty(client, sandbox)


async def test_sse(sandbox: Sandbox, http_server: HttpServer) -> None:
    base = http_server("sse")
    async with Client(sse_client(base + "/sse"), mode="legacy") as client:
        await preview_and_empty(client, sandbox)


async def test_http_bearer_token_is_required_when_configured(
    sandbox: Sandbox, http_server: HttpServer
) -> None:
    base = http_server("streamable-http", env={"PURGEWARDEN_HTTP_TOKEN": "s3cret-mcp-endpoint-token"})
    anonymous = httpx2.post(base + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    headers = {"Authorization": "Bearer s3cret-mcp-endpoint-token"}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(base + "/mcp", http_client=http)) as client,
    ):
        assert len((await client.list_tools()).tools) == ALL_TOOLS


def test_http_refuses_non_loopback_bind_without_token(server_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "purgewarden", "serve", "--transport", "streamable-http", "--host", "0.0.0.0"],
        env=server_env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert b"PURGEWARDEN_HTTP_TOKEN" in proc.stderr
    assert proc.stdout == b""


async def test_http_rejects_foreign_host_header(sandbox: Sandbox, http_server: HttpServer) -> None:
    base = http_server("streamable-http")
    response = httpx2.post(
        base + "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"Host": "evil.example:80", "Accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 421


async def test_read_only_flag_hides_destructive_tools_over_stdio(server_env: dict[str, str]) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "purgewarden", "serve", "--read-only"], env=server_env
    )
    async with Client(params) as client:
        tools = (await client.list_tools()).tools
    assert len(tools) == 13
    assert all(t.annotations is not None and t.annotations.read_only_hint for t in tools)


def test_the_server_reads_the_documented_variable_not_a_guessed_one(server_env: dict[str, str]) -> None:
    # The README documents PURGEWARDEN_KATAPULT_PAGE_CONCURRENCY; the server once read a name guessed
    # from the setting's field name instead. A bad value proves which name the real entry point reads.
    documented = subprocess.run(
        [sys.executable, "-m", "purgewarden", "serve"],
        env={**server_env, "PURGEWARDEN_KATAPULT_PAGE_CONCURRENCY": "0"},
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert documented.returncode != 0
    assert b"PURGEWARDEN_KATAPULT_PAGE_CONCURRENCY" in documented.stderr
    guessed = subprocess.run(
        [sys.executable, "-m", "purgewarden", "serve"],
        env={**server_env, "KATAPULT_PAGE_CONCURRENCY": "0"},
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert guessed.returncode == 0, guessed.stderr  # ignored: stdin closed at once, the server just ends
    assert b"KATAPULT_PAGE_CONCURRENCY" not in guessed.stderr
