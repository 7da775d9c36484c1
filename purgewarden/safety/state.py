"""What a purgewarden process holds for its lifetime (whatever its sessions), handed to tools through the
lifespan context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from purgewarden.config import Settings
from purgewarden.safety.audit import AuditLog
from purgewarden.safety.plans import Confirmations
from purgewarden.safety.redact import Redactor
from purgewarden.safety.runs import Runs

if TYPE_CHECKING:
    from purgewarden.clients.base import ServiceClient
    from purgewarden.clients.cocoon import CocoonClient
    from purgewarden.clients.katapult import KatapultClient
    from purgewarden.clients.vault import VaultClient


@dataclass
class AppState:
    settings: Settings
    redactor: Redactor
    audit: AuditLog
    confirmations: Confirmations
    runs: Runs
    katapult: KatapultClient | None = None
    vault: VaultClient | None = None
    cocoon: CocoonClient | None = None

    def client(self, service: str) -> ServiceClient:
        """The service's client; a tool of a service without credentials is never served, so this is a guard."""
        client: ServiceClient | None = getattr(self, service, None)
        if client is None:
            raise ToolError(f"{service} is not configured on this server (its credentials are missing).")
        return client


def app_state(ctx: Context) -> AppState:
    """The server's state, as a tool's context carries it."""
    return cast(AppState, ctx.request_context.lifespan_context)
