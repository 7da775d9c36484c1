"""What real clients see: the tools as listed over MCP, and server processes launched the way clients do."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import Tool

from purgewarden.sandbox import Sandbox
from tests.hosts.support import FIGURES


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: builds a wheel or starts server processes (seconds each, not milliseconds)"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.write_sep("-", "purgewarden figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
async def listed_tools(mcp: Client) -> list[Tool]:
    """Every tool, as `tools/list` gives them with all three services configured."""
    return (await mcp.list_tools()).tools


@pytest.fixture
def server_env(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    """The environment a client config would give `purgewarden serve`: the vendors' variables, no more.

    Stdio clients pass only a few variables to the child, so what uv needs to reach the package index
    (its own settings, the CA bundle) is passed on for the launchers that install.
    """
    env = {**sandbox.server_environment(), "PURGEWARDEN_STATE_DIR": str(tmp_path)}
    passed_on = {"SSL_CERT_FILE", "SSL_CERT_DIR", "XDG_CACHE_HOME"}
    env.update({k: v for k, v in os.environ.items() if k in passed_on or k.startswith("UV_")})
    return env
