"""Running the server: stdio, Streamable HTTP or SSE, with logging kept off stdout and secrets out of logs.

Over HTTP the server binds loopback unless a bearer token protects the MCP endpoint; Host and Origin
headers are validated (the SDK's DNS-rebinding protection) on every address.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import sys
from typing import Literal

from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from purgewarden.config import Settings
from purgewarden.safety.redact import RedactingFilter, Redactor
from purgewarden.server.app import Lifetime, PurgewardenServer, create_app

Transport = Literal["stdio", "streamable-http", "sse"]


class BindRefused(Exception):
    """Serving HTTP beyond loopback without a bearer token would hand anyone the destructive tools."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def configure_logging(settings: Settings) -> None:
    """Log to stderr only (stdout is the protocol in stdio mode), through the secret redactor."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(Redactor(settings.secrets())))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())


class BearerAuth:
    """Requires `Authorization: Bearer <token>` on every HTTP request to the MCP server."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            sent = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(sent, self.expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")],
                    }
                )
                await send({"type": "http.response.body", "body": b"missing or wrong bearer token"})
                return
        await self.app(scope, receive, send)


class HoldingLifetime:
    """Keeps the process's lifetime (store, clients, runs) open for the whole life of the ASGI app: SSE
    enters the server's lifespan once per connection, and a run must outlive the connection that started it."""

    def __init__(self, app: ASGIApp, lifetime: Lifetime) -> None:
        self.app = app
        self.lifetime = lifetime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        async with self.lifetime.serving():
            await self.app(scope, receive, send)


def http_app(
    server: PurgewardenServer, settings: Settings, transport: Transport, host: str, port: int
) -> ASGIApp:
    if not is_loopback(host) and settings.http_token is None:
        raise BindRefused(
            f"refusing to serve on {host}: binding beyond loopback needs PURGEWARDEN_HTTP_TOKEN "
            "(clients then send 'Authorization: Bearer <token>')"
        )
    security = None
    if not is_loopback(host):
        hosts = list(settings.allowed_hosts) or [f"{host}:{port}", f"{host}:*"]
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=hosts,
            allowed_origins=[f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts],
        )
    if transport == "sse":
        app: ASGIApp = server.sse_app(transport_security=security, host=host)
    else:
        app = server.streamable_http_app(transport_security=security, host=host)
    if settings.http_token is not None:
        app = BearerAuth(app, settings.http_token.get_secret_value())
    return HoldingLifetime(app, server.lifetime)


async def serve(
    settings: Settings, transport: Transport = "stdio", host: str = "127.0.0.1", port: int = 8000
) -> None:
    server = create_app(settings)
    if transport == "stdio":
        await server.run_stdio_async()
        return
    import uvicorn  # only HTTP needs it: stdio start-up stays lean

    app = http_app(server, settings, transport, host, port)
    logging.getLogger("purgewarden").warning(
        "serving MCP over %s at http://%s:%d%s",
        transport,
        host,
        port,
        "/sse" if transport == "sse" else "/mcp",
    )
    config = uvicorn.Config(app, host=host, port=port, log_config=None, log_level=settings.log_level.lower())
    await uvicorn.Server(config).serve()
