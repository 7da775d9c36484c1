"""What the Katapult tools share: the toolset, the client, argument types and small formatters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from purgewarden.clients.katapult import KatapultClient
from purgewarden.safety.registry import Toolset, app_state

toolset = Toolset("katapult")

SAMPLE_SIZE = 20

OrganizationRef = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", description="Id (org_...) or sub-domain"),
]


def katapult_client(ctx: Context) -> KatapultClient:
    client = app_state(ctx).katapult
    if client is None:
        raise ToolError("Katapult is not configured on this server (KATAPULT_API_TOKEN).")
    return client


def iso(timestamp: int | float | None) -> str:
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


@contextmanager
def cancellation_audited(ctx: Context, tool: str, **fields: Any) -> Iterator[None]:
    """Record a cancelled destructive call, with what was already done, before the cancellation goes on."""
    try:
        yield
    except anyio.get_cancelled_exc_class():
        app_state(ctx).audit.record("cancelled", durable=True, tool=tool, **fields)
        raise
