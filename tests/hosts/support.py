"""Shared by the client-facing tests: the project's files, figures for the run summary, a stdio check."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())

FIGURES: list[str] = []
"""Measured figures, printed after the run (conftest's terminal summary) so CI logs show them."""


async def tool_names_over_stdio(params: StdioServerParameters) -> list[str]:
    """Start the server as a stdio client does, list its tools and read one page of a recycle bin."""
    async with Client(params) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        result = await client.call_tool("cocoon_list_recycle_bin", {})
        assert not result.is_error, result.content
        assert result.structured_content is not None
        return names
