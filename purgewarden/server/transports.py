"""Running the server: stdio, Streamable HTTP or SSE, with logging kept off stdout and secrets out of logs.

Over HTTP the server binds loopback unless a bearer token protects the MCP endpoint; Host and Origin
headers are validated (the SDK's DNS-rebinding protection) on every address.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import sys
from collections.abc import Callable
from typing import Literal

from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from purgewarden.config import Settings
from purgewarden.safety.redact import RedactingFilter, Redactor
from purgewarden.server.app import Lifetime, PurgewardenServer, create_app
from purgewarden.server.health import HEALTH_PATHS

Transport = Literal["stdio", "streamable-http", "sse"]


class BindRefused(Exception):
    """Serving HTTP beyond loopback without a bearer token would hand anyone the destructive tools."""


class ServeFailed(Exception):
    """The server could not be prepared to serve calls (its store, say): it stops rather than answer
    every call with an error while looking healthy."""


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
"""The names a loopback-bound server is reached by, whichever loopback address it binds."""


def is_loopback(host: str) -> bool:
    """True for `localhost` and every loopback address (all of 127.0.0.0/8, and ::1, bracketed or not)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """True for the unspecified addresses (0.0.0.0, ::): every interface, so no one name clients use."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def host_name(host: str) -> str:
    """The bind address as it appears in a Host header: IPv6 addresses in brackets."""
    bare = host.strip("[]")
    try:
        return f"[{bare}]" if ipaddress.ip_address(bare).version == 6 else bare
    except ValueError:
        return host.lower()


def transport_security(settings: Settings, host: str, port: int) -> TransportSecuritySettings:
    """The SDK's DNS-rebinding protection, on every bind address (the SDK turns it on by itself only for
    127.0.0.1, localhost and ::1, while every address in 127.0.0.0/8 is loopback).

    Accepted Host headers: `PURGEWARDEN_ALLOWED_HOSTS` when set, loopback or not (a reverse proxy's public
    name); else the bind address with its port, plus 127.0.0.1, localhost and [::1] with that port on a
    loopback bind. Accepted Origins: the same hosts over http and https. A request with another Host gets
    421, with another Origin 403.
    """
    if settings.allowed_hosts:
        hosts = list(dict.fromkeys(settings.allowed_hosts))
    else:
        names = [host_name(host)] + (list(LOOPBACK_NAMES) if is_loopback(host) else [])
        suffixes = [":*"] if port == 0 else [f":{port}"] + ([""] if port == 80 else [])
        hosts = list(dict.fromkeys(name + suffix for name in names for suffix in suffixes))
    origins = [f"{scheme}://{h}" for scheme in ("http", "https") for h in hosts]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def configure_logging(settings: Settings) -> None:
    """Log to stderr only (stdout is the protocol in stdio mode), through the secret redactor, as text or
    as one JSON object per line (`PURGEWARDEN_LOG_FORMAT=json`)."""
    from purgewarden.server.logs import formatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings.log_format))
    handler.addFilter(RedactingFilter(Redactor(settings.secrets())))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())


class BearerAuth:
    """Requires `Authorization: Bearer <token>` on every HTTP request to the MCP server (not on the health
    checks, which come from a balancer and reveal nothing)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in HEALTH_PATHS:
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


class RebindingGuard:
    """Checks Host and Origin on the MCP endpoints before the SDK sees the request, with the same settings
    and the same answers (421, 403). The SDK checks them too, but on the SSE stream it raises after
    answering, which logs a traceback per refused request and may reset the connection."""

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings, paths: tuple[str, ...]) -> None:
        self.app = app
        self.guard = TransportSecurityMiddleware(security)
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith(self.paths):
            refused = await self.guard.validate_request(Request(scope, receive), is_post=False)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


class HoldingLifetime:
    """Keeps the process's lifetime (store, clients, runs) open for the whole life of the ASGI app: SSE
    enters the server's lifespan once per connection, and a run must outlive the connection that started it."""

    def __init__(self, app: ASGIApp, lifetime: Lifetime) -> None:
        self.app = app
        self.lifetime = lifetime
        self.stop: Callable[[], None] = lambda: None
        """Stops the HTTP server: uvicorn goes on answering requests when a lifespan fails after start-up."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        try:
            async with self.lifetime.serving():
                await self.app(scope, receive, send)
        finally:
            if self.lifetime.failure is not None:
                self.stop()


def http_app(
    server: PurgewardenServer, settings: Settings, transport: Transport, host: str, port: int
) -> HoldingLifetime:
    if not is_loopback(host) and settings.http_token is None and settings.oauth_issuer is None:
        raise BindRefused(
            f"refusing to serve on {host}: binding beyond loopback needs PURGEWARDEN_HTTP_TOKEN (clients then "
            "send 'Authorization: Bearer <token>') or OAuth (PURGEWARDEN_OAUTH_ISSUER)"
        )
    if is_wildcard(host) and not settings.allowed_hosts:
        raise BindRefused(
            f"refusing to serve on {host}: on every interface the server cannot tell which Host names are "
            "its own; set PURGEWARDEN_ALLOWED_HOSTS to the host[:port] clients use (e.g. "
            f"purgewarden.example.com:{port})"
        )
    security = transport_security(settings, host, port)
    if transport == "sse":
        app: ASGIApp = server.sse_app(transport_security=security, host=host)
        app = RebindingGuard(app, security, ("/sse", "/messages/"))
    else:
        app = server.streamable_http_app(transport_security=security, host=host)
        app = RebindingGuard(app, security, ("/mcp",))
    if settings.http_token is not None:
        app = BearerAuth(app, settings.http_token.get_secret_value())
    return HoldingLifetime(app, server.lifetime)


async def serve(
    settings: Settings, transport: Transport = "stdio", host: str = "127.0.0.1", port: int = 8000
) -> None:
    server = create_app(settings)
    try:
        await _serve(server, settings, transport, host, port)
    except Exception:
        if server.lifetime.failure is None:
            raise
    failure = server.lifetime.failure
    if failure is not None:
        logging.getLogger("purgewarden").debug("preparing to serve calls failed", exc_info=failure)
        why = Redactor(settings.secrets()).scrub(str(failure) or type(failure).__name__)
        raise ServeFailed(f"stopped: it could not be prepared to serve calls: {why}") from failure


async def _serve(
    server: PurgewardenServer, settings: Settings, transport: Transport, host: str, port: int
) -> None:
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
    http_server = uvicorn.Server(config)
    app.stop = lambda: setattr(http_server, "should_exit", True)
    await http_server.serve()
