"""Helpers every tool test uses: reading a tool result, the audit log, and a tampered token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.types import CallToolResult, ResourceLink, TextContent


def text(result: CallToolResult) -> str:
    """The result's one text block (a destructive tool's result also links to its run)."""
    texts = [c for c in result.content if isinstance(c, TextContent)]
    assert len(texts) == 1, result.content
    assert all(isinstance(c, (TextContent, ResourceLink)) for c in result.content), result.content
    return texts[0].text


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful call (failing with the error text otherwise)."""
    assert not result.is_error, text(result)
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


def error(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    return text(result)


def audit_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def flip(token: str, at: int) -> str:
    """The token with its character at `at` (counted from the end of its random part) changed."""
    i = len(token) - at
    return token[:i] + ("B" if token[i] == "A" else "A") + token[i + 1 :]


RUN_TOOLS = {"purgewarden_get_run", "purgewarden_cancel_run"}
"""Served beside any destructive tool: following and stopping runs."""
GET_RUN = "purgewarden_get_run"
CANCEL_RUN = "purgewarden_cancel_run"


async def run_of(client: Client, run_id: str) -> dict[str, Any]:
    """A run as purgewarden_get_run shows it."""
    result = await client.call_tool(GET_RUN, {"run_id": run_id})
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    run: dict[str, Any] = result.structured_content["runs"][0]
    return run


async def ended_run(client: Client, run_id: str, within: float = 20) -> dict[str, Any]:
    """The run once it is no longer running (it goes on in the server after its call returned)."""
    with anyio.fail_after(within):
        while (run := await run_of(client, run_id))["state"] == "running":  # noqa: ASYNC110 (another process may hold it)
            await anyio.sleep(0.05)
    return run
