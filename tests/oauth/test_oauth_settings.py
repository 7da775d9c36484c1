"""OAuth settings, scopes and the per-caller view, without an authorization server: the settings that make
no sense together, the secret kept out of sight, the scope rules, and tools/list and tools/call as a
caller with a given token sees them (in memory)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.types import TextContent

from purgewarden.config import ConfigError, Settings
from purgewarden.safety.scopes import (
    DELETE,
    READ,
    missing_scope,
    principal_of,
    scopes_supported,
    service_scope,
)
from purgewarden.server import app as app_module
from purgewarden.server.app import create_app
from purgewarden.server.auth import IntrospectionVerifier, JwtVerifier, access_token, metadata_urls, oauth_of

ISSUER = "https://login.example.com"
AUDIENCE = "https://purgewarden.example.com/mcp"
CLIENT_SECRET = "introspection-client-secret-41f0c2"
OAUTH = {"PURGEWARDEN_OAUTH_ISSUER": ISSUER, "PURGEWARDEN_OAUTH_AUDIENCE": AUDIENCE}
INTROSPECTION = {
    **OAUTH,
    "PURGEWARDEN_OAUTH_INTROSPECTION_URL": ISSUER + "/oauth2/introspect",
    "PURGEWARDEN_OAUTH_CLIENT_ID": "purgewarden",
    "PURGEWARDEN_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
}


def problem(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(environ)
    return str(raised.value)


def test_jwt_verification_is_the_default_and_introspection_an_alternative() -> None:
    jwt = oauth_of(Settings.from_env(OAUTH))
    assert jwt is not None
    auth, verifier = jwt
    assert isinstance(verifier, JwtVerifier)
    assert str(auth.issuer_url) == ISSUER  # exactly as tokens name it: no trailing slash added
    assert str(auth.resource_server_url) == AUDIENCE
    assert auth.required_scopes == [READ]
    assert auth.validate_token_resource
    introspecting = oauth_of(Settings.from_env(INTROSPECTION))
    assert introspecting is not None
    assert isinstance(introspecting[1], IntrospectionVerifier)
    assert oauth_of(Settings.from_env({})) is None


def test_a_static_token_and_oauth_together_are_refused() -> None:
    message = problem({**OAUTH, "PURGEWARDEN_HTTP_TOKEN": "static-token-7781"})
    assert "PURGEWARDEN_HTTP_TOKEN and PURGEWARDEN_OAUTH_ISSUER are both set" in message
    assert "static-token-7781" not in message


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"PURGEWARDEN_OAUTH_ISSUER": ISSUER}, "needs PURGEWARDEN_OAUTH_AUDIENCE"),
        (
            {"PURGEWARDEN_OAUTH_AUDIENCE": AUDIENCE},
            "PURGEWARDEN_OAUTH_AUDIENCE need PURGEWARDEN_OAUTH_ISSUER",
        ),
        (
            {k: v for k, v in INTROSPECTION.items() if k != "PURGEWARDEN_OAUTH_CLIENT_SECRET"},
            "PURGEWARDEN_OAUTH_INTROSPECTION_URL needs PURGEWARDEN_OAUTH_CLIENT_ID and PURGEWARDEN_OAUTH_CLIENT_SECRET",
        ),
        (
            {k: v for k, v in INTROSPECTION.items() if k != "PURGEWARDEN_OAUTH_INTROSPECTION_URL"},
            "are only used with PURGEWARDEN_OAUTH_INTROSPECTION_URL",
        ),
        ({**OAUTH, "PURGEWARDEN_OAUTH_ISSUER": "http://login.example.com"}, "must use https"),
        ({**OAUTH, "PURGEWARDEN_OAUTH_AUDIENCE": "purgewarden/mcp"}, "not an absolute http(s) URL"),
    ],
)
def test_oauth_settings_that_make_no_sense_are_refused_by_name(
    environ: dict[str, str], expected: str
) -> None:
    message = problem(environ)
    assert expected in message
    assert CLIENT_SECRET not in message


def test_plain_http_is_accepted_on_loopback() -> None:
    settings = Settings.from_env(
        {
            "PURGEWARDEN_OAUTH_ISSUER": "http://127.0.0.1:9000",
            "PURGEWARDEN_OAUTH_AUDIENCE": "http://localhost:8000/mcp",
        }
    )
    assert settings.oauth_issuer == "http://127.0.0.1:9000"


def test_the_client_secret_is_secret_and_redacted() -> None:
    settings = Settings.from_env(INTROSPECTION)
    assert CLIENT_SECRET not in repr(settings)
    assert CLIENT_SECRET not in str(settings.model_dump())
    assert CLIENT_SECRET in settings.secrets()  # what the redactor scrubs from logs and results


def test_scopes() -> None:
    assert missing_scope("read", "vault", [READ]) is None
    assert missing_scope("preview", "vault", []) == READ
    assert missing_scope("destructive", "vault", [READ]) == f"{DELETE} (or {service_scope('vault')})"
    assert missing_scope("destructive", "vault", [service_scope("vault")]) is None
    assert missing_scope("destructive", "cocoon", [service_scope("vault")]) is not None
    assert missing_scope("destructive", "cocoon", [DELETE]) is None
    assert missing_scope("control", "purgewarden", [service_scope("vault")]) == DELETE
    assert missing_scope("control", "purgewarden", [DELETE]) is None
    assert scopes_supported(["vault", "cocoon", "vault"]) == [
        READ,
        DELETE,
        service_scope("vault"),
        service_scope("cocoon"),
    ]
    assert scopes_supported([]) == [READ]


def test_the_principal_is_the_subject_else_the_client() -> None:
    assert principal_of(AccessToken(token="t", client_id="app", scopes=[], subject="alice")) == "alice"
    assert principal_of(AccessToken(token="t", client_id="app", scopes=[])) == "app"
    assert principal_of(None) is None


def test_a_token_is_for_this_server_only_when_its_audience_says_so() -> None:
    claims: dict[str, Any] = {"sub": "alice", "client_id": "app", "scope": f"{READ} {DELETE}", "exp": 1}
    token = access_token("t", {**claims, "aud": ["https://other.example", AUDIENCE + "/"]}, AUDIENCE)
    assert token is not None
    assert token.scopes == [READ, DELETE]
    assert token.resource == AUDIENCE + "/"
    assert access_token("t", {**claims, "aud": "https://other.example/mcp"}, AUDIENCE) is None
    assert access_token("t", {k: v for k, v in claims.items() if k != "aud"}, AUDIENCE) is None
    scp = access_token("t", {"sub": "bob", "aud": AUDIENCE, "scp": [READ]}, AUDIENCE)
    assert scp is not None
    assert (scp.client_id, scp.scopes) == ("bob", [READ])


def test_issuer_metadata_is_looked_for_where_rfc_8414_then_openid_put_it() -> None:
    assert metadata_urls("https://login.example.com/tenant/a") == [
        "https://login.example.com/.well-known/oauth-authorization-server/tenant/a",
        "https://login.example.com/tenant/a/.well-known/openid-configuration",
    ]


# --- the per-caller view, in memory (the HTTP tests go through the real authorization server) --------


@contextmanager
def caller(scopes: list[str], subject: str = "carol") -> Iterator[None]:
    """The requests made inside carry an access token with these scopes, as the SDK's middleware sets it."""
    token = AccessToken(token="t", client_id="app", scopes=scopes, subject=subject, resource=AUDIENCE)
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        yield
    finally:
        auth_context_var.reset(reset)


@asynccontextmanager
async def oauth_session(settings: Settings) -> AsyncIterator[Client]:
    server = create_app(settings.model_copy(update={"oauth_issuer": ISSUER, "oauth_audience": AUDIENCE}))
    async with Client(server) as client:
        yield client


async def test_each_caller_lists_the_tools_its_scopes_allow(settings: Settings) -> None:
    async with oauth_session(settings) as client:
        everything = {tool.name for tool in (await client.list_tools()).tools}  # no token: not over OAuth
    with caller([READ]):
        async with oauth_session(settings) as client:
            listed = (await client.list_tools()).tools
    assert all(tool.annotations and tool.annotations.read_only_hint for tool in listed)
    read = {tool.name for tool in listed}
    assert read < everything
    assert "purgewarden_get_run" in read
    with caller([READ, DELETE]):
        async with oauth_session(settings) as client:
            assert {tool.name for tool in (await client.list_tools()).tools} == everything


async def test_the_tool_wrapper_refuses_a_call_that_gets_past_the_server(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server refuses before resolving arguments; the wrapper every tool has refuses as well.
    monkeypatch.setattr(app_module.PurgewardenServer, "_lacks", lambda self, name: None)
    with caller([], subject="dave"):
        async with oauth_session(settings) as client:
            result = await client.call_tool("vault_list_collections", {})
    assert result.is_error
    message = " ".join(block.text for block in result.content if isinstance(block, TextContent))
    assert f"needs the OAuth scope {READ}" in message
    audit = settings.audit_log.read_text()
    assert '"reason":"missing_scope"' in audit
    assert '"principal":"dave"' in audit


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_both_http_transports_challenge_and_advertise_every_scope(
    settings: Settings, transport: str
) -> None:
    server = create_app(settings.model_copy(update={"oauth_issuer": ISSUER, "oauth_audience": AUDIENCE}))
    app = server.sse_app() if transport == "sse" else server.streamable_http_app()
    endpoint = "/sse" if transport == "sse" else "/mcp"
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="https://purgewarden.example.com"
    ) as http:
        metadata = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
        refused = await http.get(endpoint, headers={"Authorization": "Bearer not-a-token"})
    assert metadata["resource"] == AUDIENCE
    assert metadata["authorization_servers"] == [ISSUER]
    assert metadata["scopes_supported"] == [
        READ,
        DELETE,
        *(service_scope(s) for s in ("katapult", "vault", "cocoon")),
    ]
    assert refused.status_code == 401
    assert (
        'resource_metadata="https://purgewarden.example.com/.well-known/oauth-protected-resource/mcp"'
        in (refused.headers["www-authenticate"])
    )


def test_serve_stops_with_a_clear_message_when_both_are_set(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "PURGEWARDEN_STATE_DIR": str(tmp_path),
        "PURGEWARDEN_HTTP_TOKEN": "static-token-7781",
        **INTROSPECTION,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "purgewarden", "serve", "--transport", "streamable-http"],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "PURGEWARDEN_HTTP_TOKEN and PURGEWARDEN_OAUTH_ISSUER are both set" in proc.stderr
    assert "static-token-7781" not in proc.stderr
    assert CLIENT_SECRET not in proc.stderr
