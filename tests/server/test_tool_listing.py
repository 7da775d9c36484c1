"""The tool listing kept in the state directory: a start that finds one written for its code and settings
answers tools/list from it, exactly as a start that built the tools does, and builds the tools in the
background; every call waits for them, and for the runs of dead processes to be taken over."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from purgewarden.config import Settings
from purgewarden.safety.runs import RunRecord, now_iso
from purgewarden.safety.scopes import READ
from purgewarden.server.app import CATALOG_FILE, PurgewardenServer, create_app
from purgewarden.store.sqlite import SqliteStore

ISSUER = "https://issuer.example.com"
AUDIENCE = "https://purgewarden.example.com/mcp"


async def listing(server: PurgewardenServer) -> list[dict[str, Any]]:
    async with Client(server) as client:
        return [
            t.model_dump(mode="json", by_alias=True, exclude_none=True)
            for t in (await client.list_tools()).tools
        ]


@pytest.fixture
async def built(settings: Settings) -> list[dict[str, Any]]:
    """What a start that built its tools listed, which it kept in the state directory."""
    server = create_app(settings)
    assert server.tools.current is not None
    return await listing(server)


@pytest.fixture
def dead_owner() -> str:
    """The owner of a run whose process on this host has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return f"{socket.gethostname()}/{process.pid}/abc123"


async def test_a_start_lists_the_kept_listing_exactly_and_calls_wait_for_the_tools(
    settings: Settings, built: list[dict[str, Any]]
) -> None:
    assert (settings.state_dir / CATALOG_FILE).exists()
    server = create_app(settings)
    assert server.tools.current is None  # nothing built: the listing was read back
    assert await listing(server) == built

    async with Client(create_app(settings)) as client:
        result = await client.call_tool("vault_count_objects", {"collection": "customers"})
    assert not result.is_error, result.content
    assert result.structured_content is not None


async def test_a_listing_is_kept_for_its_settings_selection(
    settings: Settings, built: list[dict[str, Any]]
) -> None:
    read_only = await listing(create_app(settings.model_copy(update={"read_only": True})))
    assert {tool["name"] for tool in read_only} < {tool["name"] for tool in built}
    assert all(tool["annotations"]["readOnlyHint"] for tool in read_only)
    assert await listing(create_app(settings)) == built  # the other selection's listing did not replace it


async def test_a_listing_for_other_code_is_not_used(settings: Settings, built: list[dict[str, Any]]) -> None:
    path = settings.state_dir / CATALOG_FILE
    kept = json.loads(path.read_text())
    path.write_text(json.dumps({**kept, "key": "written by another version", "tools": []}))
    server = create_app(settings)
    assert server.tools.current is not None
    assert await listing(server) == built


@contextmanager
def caller(scopes: list[str]) -> Iterator[None]:
    token = AccessToken(token="t", client_id="app", scopes=scopes, subject="sam", resource=AUDIENCE)
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        yield
    finally:
        auth_context_var.reset(reset)


async def test_over_oauth_a_caller_sees_the_kept_tools_its_scopes_allow(settings: Settings) -> None:
    oauth = settings.model_copy(update={"oauth_issuer": ISSUER, "oauth_audience": AUDIENCE})
    with caller([READ]):
        from_built = await listing(create_app(oauth))
        server = create_app(oauth)
        assert server.tools.current is None
        assert await listing(server) == from_built
    assert from_built
    assert all(tool["annotations"]["readOnlyHint"] for tool in from_built)


async def test_runs_of_dead_processes_are_taken_over_before_a_call_is_served(
    settings: Settings, built: list[dict[str, Any]], dead_owner: str
) -> None:
    owner = dead_owner
    record = RunRecord(
        id="run_dead",
        tool="vault_delete_objects",
        service="vault",
        target={"collection": "customers", "state": "active", "selection": "all"},
        summary="Permanently delete 3 active objects.",
        size=3,
        owner=owner,
        started_at=now_iso(),
    )
    store = SqliteStore(settings.state_dir / "purgewarden.db")
    await store.create_run(record.id, owner, 0.0, record.model_dump_json())
    await store.close()

    server = create_app(settings)
    assert server.tools.current is None
    async with Client(server) as client:
        result = await client.call_tool("purgewarden_get_run", {"run_id": "run_dead"})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert [run["state"] for run in result.structured_content["runs"]] == ["interrupted"]
