"""OAuth through a real HTTP client, a real authorization server (oidc-provider) and real purgewarden
processes: the challenge and the metadata, each bad token, what each scope sees and may do, and who is
named in the audit log and may confirm a plan."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult, TextContent

from purgewarden.safety.scopes import DELETE, READ, service_scope
from purgewarden.sandbox import Sandbox, cocoon
from tests.oauth.conftest import Purgewarden, World
from tests.processes import INITIALIZE, MCP_HEADERS

PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
PREVIEW, EMPTY = "cocoon_preview_empty_recycle_bin", "cocoon_empty_recycle_bin"
CANCEL_RUN, GET_RUN = "purgewarden_cancel_run", "purgewarden_get_run"


def bin_size(sandbox: Sandbox) -> int:
    user = sandbox.cocoon.resolve_user(cocoon.DEMO_ACCESS_TOKEN)
    return len(sandbox.cocoon.bin_of(user.id, cocoon.DEMO_ORGANISATION_ID).entries)


def text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def post(server: Purgewarden, token: str | None, body: dict[str, Any] = INITIALIZE) -> httpx2.Response:
    headers = dict(MCP_HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx2.post(server.url, json=body, headers=headers)


class Questions:
    """An elicitation callback that approves, and records every question it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, ctx: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params.message)
        return ElicitResult(action="accept", content={"approve": True})


@asynccontextmanager
async def session(
    server: Purgewarden, token: str, questions: Questions | None = None
) -> AsyncIterator[Client]:
    """An MCP session over streamable HTTP, as the caller the token speaks for."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
        Client(
            streamable_http_client(server.url, http_client=http), elicitation_callback=questions
        ) as client,
    ):
        yield client


def audited(server: Purgewarden, **match: Any) -> list[dict[str, Any]]:
    return [line for line in server.audit() if all(line.get(k) == v for k, v in match.items())]


async def tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


# --- the challenge and the metadata ------------------------------------------------------------------


def test_no_token_gets_401_with_the_resource_metadata_challenge(world: World) -> None:
    server = world.jwt
    response = post(server, None)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    metadata_url = f"{server.base}/.well-known/oauth-protected-resource/mcp"
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{metadata_url}"' in challenge

    # What a client does next: read the metadata, then the authorization server's own.
    metadata = httpx2.get(metadata_url).json()
    assert metadata["resource"] == server.url
    assert metadata["authorization_servers"] == [world.issuer.issuer]
    assert metadata["scopes_supported"] == [
        READ,
        DELETE,
        *(service_scope(s) for s in ("katapult", "vault", "cocoon")),
    ]
    issuer = httpx2.get(world.issuer.issuer + "/.well-known/openid-configuration").json()
    assert issuer["issuer"] == world.issuer.issuer
    assert issuer["token_endpoint"]
    assert issuer["jwks_uri"]


def test_a_valid_token_gets_in(world: World) -> None:
    response = post(world.jwt, world.issuer.token("reader", world.jwt.url))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("problem", ["garbage", "expired", "wrong audience", "wrong issuer"])
def test_each_bad_token_is_refused(world: World, problem: str) -> None:
    server = world.jwt
    server.new_log()
    if problem == "garbage":
        token, reason = "not-a-token", "not a JWT"
    elif problem == "expired":
        token, reason = world.issuer.token("short-lived", server.url), "Signature has expired"
        time.sleep(2.2)  # its lifetime is 1 s
    elif problem == "wrong audience":
        token, reason = world.issuer.token("alice", world.wrong_audience), "Audience doesn't match"
    else:  # signed with the very same key, by another issuer
        token, reason = world.other_issuer.token("alice", server.url), "Invalid issuer"
    response = post(server, token)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert "resource_metadata=" in response.headers["www-authenticate"]
    assert f"access token refused: {reason}" in server.new_log()


def test_a_token_without_the_read_scope_is_refused_with_insufficient_scope(world: World) -> None:
    response = post(world.jwt, world.issuer.token("no-read", world.jwt.url))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert READ in response.json()["error_description"]


async def test_a_revoked_token_is_refused_through_introspection(world: World, sandbox: Sandbox) -> None:
    server = world.introspecting
    token = world.issuer.token("alice", server.url)
    assert post(server, token).status_code == 200
    async with session(server, token) as client:
        assert EMPTY in await tool_names(client)
    world.issuer.revoke("alice", token)
    server.new_log()
    response = post(server, token)
    assert response.status_code == 401
    assert "access token refused: the issuer says it is not active" in server.new_log()
    # A token for the JWT-verifying server is not for this one, introspection says so too.
    wrong = world.issuer.token("alice", world.jwt.url)
    assert post(server, wrong).status_code == 401


async def test_introspection_names_the_principal_in_the_audit_log(world: World, sandbox: Sandbox) -> None:
    server = world.introspecting
    async with session(server, world.issuer.token("bob", server.url)) as client:
        plan = await client.call_tool(PREVIEW, {})
    assert not plan.is_error, text(plan)
    assert audited(server, event="preview", principal="bob")


# --- what each scope sees and may do ------------------------------------------------------------------


async def test_a_read_scoped_caller_lists_and_previews_but_cannot_delete(
    world: World, sandbox: Sandbox
) -> None:
    server = world.jwt
    before = bin_size(sandbox)
    questions = Questions()
    async with session(server, world.issuer.token("reader", server.url), questions) as client:
        names = await tool_names(client)
        assert PREVIEW in names
        assert GET_RUN in names
        assert "vault_list_collections" in names
        listed = (await client.list_tools()).tools
        assert all(tool.annotations and tool.annotations.read_only_hint for tool in listed)
        assert CANCEL_RUN not in names
        plan = await client.call_tool(PREVIEW, {})
        assert not plan.is_error, text(plan)
        assert plan.structured_content is not None
        token = plan.structured_content["confirmation_token"]
        refused = await client.call_tool(EMPTY, {"confirm": token})
        assert refused.is_error
        assert f"needs the OAuth scope {DELETE} (or {service_scope('cocoon')})" in text(refused)
        cancel = await client.call_tool(CANCEL_RUN, {"run_id": "run_x"})
        assert cancel.is_error
        assert f"needs the OAuth scope {DELETE}," in text(cancel)
    assert questions.asked == []  # refused before anyone was asked about it
    assert bin_size(sandbox) == before
    refusal = audited(server, event="refused", tool=EMPTY, principal="reader")
    assert refusal
    assert refusal[-1]["reason"] == "missing_scope"


async def test_a_per_service_delete_scope_gives_that_service_only(world: World, sandbox: Sandbox) -> None:
    server = world.jwt
    async with session(server, world.issuer.token("vault-cleaner", server.url)) as client:
        names = await tool_names(client)
        destructive = {
            tool.name
            for tool in (await client.list_tools()).tools
            if tool.annotations and tool.annotations.destructive_hint
        }
        assert destructive
        assert all(name.startswith("vault_") for name in destructive)
        assert EMPTY not in names
        assert CANCEL_RUN not in names
        refused = await client.call_tool(EMPTY, {"confirm": "anything"})
    assert refused.is_error
    assert service_scope("cocoon") in text(refused)


async def test_a_delete_scoped_caller_completes_a_deletion_named_in_the_audit(
    world: World, sandbox: Sandbox
) -> None:
    server = world.jwt
    planned = bin_size(sandbox)
    assert planned > 0
    async with session(server, world.issuer.token("alice", server.url)) as client:
        names = await tool_names(client)
        assert {EMPTY, CANCEL_RUN} <= names
        plan = await client.call_tool(PREVIEW, {})
        assert plan.structured_content is not None
        done = await client.call_tool(EMPTY, {"confirm": plan.structured_content["confirmation_token"]})
        assert not done.is_error, text(done)
        assert done.structured_content is not None
        run_id = done.structured_content["run_id"]
        run = await client.call_tool(GET_RUN, {"run_id": run_id})
    assert bin_size(sandbox) == 0
    assert run.structured_content is not None
    assert run.structured_content["runs"][0]["principal"] == "alice"
    for event in ("preview", "confirmed", "outcome"):
        assert audited(
            server, event=event, tool=PREVIEW if event == "preview" else EMPTY, principal="alice"
        ), event
    assert audited(server, event="confirmed", run=run_id)[0]["principal"] == "alice"


async def test_another_principal_cannot_confirm_the_plan(world: World, sandbox: Sandbox) -> None:
    server = world.jwt
    before = bin_size(sandbox)
    async with session(server, world.issuer.token("alice", server.url)) as alice:
        plan = await alice.call_tool(PREVIEW, {})
        assert plan.structured_content is not None
        token = plan.structured_content["confirmation_token"]
        async with session(server, world.issuer.token("bob", server.url)) as bob:
            refused = await bob.call_tool(EMPTY, {"confirm": token})
        assert refused.is_error
        assert "issued to another caller" in text(refused)
        assert bin_size(sandbox) == before
        refusal = audited(server, event="refused", tool=EMPTY, principal="bob")
        assert refusal
        assert refusal[-1]["reason"] == "wrong_principal"
        # Bob's attempt did not use the token up: Alice can still confirm her own plan.
        done = await alice.call_tool(EMPTY, {"confirm": token})
    assert not done.is_error, text(done)
    assert bin_size(sandbox) == 0
