"""Health checks for a load balancer or an orchestrator, beside the MCP endpoint on the HTTP transports.

- `GET /healthz`: the process answers HTTP (200 `ok`). Nothing else is looked at: a liveness probe that
  failed on a store outage would have every replica restarted for someone else's fault.
- `GET /readyz`: the process can serve: its lifetime is open, the store answers `ping()` within
  `STORE_TIMEOUT` seconds and at least one service is configured. 200 with the configured services, else 503
  with the reason, as JSON.

They are plain routes (`MCPServer.custom_route`): no bearer token or OAuth, since the checks come from the
balancer. So they say nothing a stranger should not learn: no credential, no URL with a password (store
errors are written without credentials, and through the redactor), no audit or run content.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from purgewarden.store import StoreError

if TYPE_CHECKING:
    from mcp.server import MCPServer

    from purgewarden.server.app import Lifetime

logger = logging.getLogger(__name__)

HEALTH_PATHS = ("/healthz", "/readyz")
"""The routes that answer without authentication."""

STORE_TIMEOUT = 5.0
"""Seconds `/readyz` waits for the store: a balancer's probe must get an answer, not a hung request."""

NO_CACHE = {"Cache-Control": "no-store"}


async def readiness(lifetime: Lifetime, services: Sequence[str]) -> tuple[bool, dict[str, Any]]:
    """Whether the process can serve, and the body `/readyz` answers with."""
    if not services:
        return False, {
            "status": "unavailable",
            "reason": "no service is configured: set the credentials of at least one of Katapult, "
            "Piiano Vault or Cocoon Data",
        }
    state = lifetime.state
    if state is None:
        return False, {"status": "unavailable", "reason": "the server is starting or stopping"}
    try:
        with anyio.fail_after(STORE_TIMEOUT):
            await state.runs.store.ping()
    except (StoreError, TimeoutError) as error:
        detail = str(error) if isinstance(error, StoreError) else f"no answer within {STORE_TIMEOUT:g} s"
        reason = state.redactor.scrub(f"the store does not answer: {detail}")
        logger.warning("not ready: %s", reason)
        return False, {"status": "unavailable", "reason": reason}
    return True, {"status": "ready", "services": list(services)}


def add_health_routes(server: MCPServer[Any], lifetime: Lifetime, services: Sequence[str]) -> None:
    """`/healthz` and `/readyz` on the server's HTTP apps (Streamable HTTP and SSE alike)."""

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok", headers=NO_CACHE)

    async def readyz(request: Request) -> Response:
        ready, body = await readiness(lifetime, services)
        return JSONResponse(body, status_code=200 if ready else 503, headers=NO_CACHE)

    for path, endpoint in (("/healthz", healthz), ("/readyz", readyz)):
        server.custom_route(path, methods=["GET", "HEAD"], include_in_schema=False)(endpoint)
