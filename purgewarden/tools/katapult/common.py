"""What the Katapult tools share: the toolset, the client, argument types and small formatters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from purgewarden.clients.katapult import KatapultClient
from purgewarden.safety.registry import Toolset
from purgewarden.safety.state import AppState

toolset = Toolset("katapult")


OrganizationRef = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", description="Id (org_...) or sub-domain"),
]


def katapult_client(state: AppState) -> KatapultClient:
    if state.katapult is None:
        raise ToolError("Katapult is not configured on this server (KATAPULT_API_TOKEN).")
    return state.katapult


def iso(timestamp: int | float | None) -> str:
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
