"""Helpers every tool test uses: reading a tool result, the audit log, and a tampered token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcp.types import CallToolResult, TextContent


def text(result: CallToolResult) -> str:
    assert len(result.content) == 1
    content = result.content[0]
    assert isinstance(content, TextContent)
    return content.text


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


def flip(token: str, part: int) -> str:
    """The token with one character of its payload (1) or signature (2) changed."""
    parts = token.split(".")
    chars = parts[part]
    i = len(chars) // 2
    parts[part] = chars[:i] + ("B" if chars[i] == "A" else "A") + chars[i + 1 :]
    return ".".join(parts)
