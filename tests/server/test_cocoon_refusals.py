"""Every refusal of the safety model on cocoon_empty_recycle_bin; after each, nothing in the emulator changed."""

from __future__ import annotations

from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from pydantic import SecretStr

from purgewarden.clients.cocoon import CocoonClient
from purgewarden.config import Settings
from purgewarden.safety.plans import Confirmations, Snapshot
from purgewarden.sandbox import Sandbox, cocoon
from purgewarden.store import open_store
from tests.conftest import answering
from tests.server.cocoon_support import (
    ALEX,
    ALEX_BIN,
    EMPTY,
    EXECUTIVE_REPORT,
    ORG,
    PREVIEW,
    SAM,
    TOKEN_IN_MESSAGE,
    Connect,
    audit_lines,
    bin_ids,
    bin_totals,
    error,
    flip,
    ok,
    plan,
    recycle_new_item,
    world,
)

# Module-level: the conftest adds the anyio marker after parametrization, which anyio would undo.
pytestmark = pytest.mark.anyio

AGAIN = f"Call {PREVIEW}"


@pytest.fixture
def connect(connect: Connect) -> Connect:
    """Only the Cocoon toolset, so these tests stand apart from the other services' modules."""

    def session(**overrides: Any) -> Any:
        return connect(**{"toolsets": ("cocoon",), **overrides})

    return session


def refused(message: str, settings: Settings, reason: str) -> None:
    """The call was refused, and the audit log says why."""
    assert message.startswith(f"Error executing tool {EMPTY}: Refused:"), message
    last = audit_lines(settings.audit_log)[-1]
    assert last["event"] == "refused"
    assert last["reason"] == reason
    assert last["tool"] == EMPTY


# --- tokens that are not right -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forge", "reason", "words"),
    [
        (lambda token: "", "missing_token", "needs a confirmation token"),
        (lambda token: "   ", "missing_token", "needs a confirmation token"),
        (lambda token: "yes, the user approved", "invalid_token", "unknown here"),
        (lambda token: token + "x", "invalid_token", "unknown here"),
        (lambda token: flip(token, 16), "invalid_token", "unknown here"),
        (lambda token: flip(token, 1), "invalid_token", "unknown here"),
        (lambda token: token.replace("pwc_", "pwc1.", 1), "invalid_token", "unknown here"),
    ],
    ids=["empty", "blank", "garbage", "extended", "middle-changed", "end-changed", "prefix"],
)
async def test_a_bad_token_is_refused(
    mcp: Client, sandbox: Sandbox, settings: Settings, forge: Any, reason: str, words: str
) -> None:
    token = (await plan(mcp))["confirmation_token"]
    before = world(sandbox)
    message = error(await mcp.call_tool(EMPTY, {"confirm": forge(token)}))
    assert words in message
    assert AGAIN in message
    refused(message, settings, reason)
    assert world(sandbox) == before
    # The genuine token was not burnt by the failed attempt.
    assert ok(await mcp.call_tool(EMPTY, {"confirm": token}))["totals"]["items"] == len(ALEX_BIN)


async def test_a_missing_confirm_argument_is_rejected(mcp: Client, sandbox: Sandbox) -> None:
    before = world(sandbox)
    await plan(mcp)
    message = error(await mcp.call_tool(EMPTY, {}))
    assert "confirm" in message
    assert world(sandbox) == before


async def test_an_expired_token_is_refused(connect: Connect, sandbox: Sandbox, settings: Settings) -> None:
    async with connect(confirmation_ttl=0.05) as client:
        token = (await plan(client))["confirmation_token"]
        before = world(sandbox)
        await anyio.sleep(0.1)
        message = error(await client.call_tool(EMPTY, {"confirm": token}))
    assert "expired" in message
    assert AGAIN in message
    refused(message, settings, "expired_token")
    assert world(sandbox) == before


async def test_a_used_token_does_not_work_twice(mcp: Client, sandbox: Sandbox, settings: Settings) -> None:
    token = (await plan(mcp))["confirmation_token"]
    ok(await mcp.call_tool(EMPTY, {"confirm": token}))
    late = recycle_new_item(sandbox)
    before = world(sandbox)
    message = error(await mcp.call_tool(EMPTY, {"confirm": token}))
    assert "already used" in message
    assert AGAIN in message
    refused(message, settings, "reused_token")
    assert world(sandbox) == before
    assert bin_ids(sandbox) == {late}


async def test_a_token_for_another_organisation_is_refused(
    mcp: Client, sandbox: Sandbox, settings: Settings
) -> None:
    token = (await plan(mcp))["confirmation_token"]
    before = world(sandbox)
    message = error(
        await mcp.call_tool(EMPTY, {"confirm": token, "organisation_id": cocoon.OTHER_ORGANISATION_ID})
    )
    assert "different arguments" in message
    assert AGAIN in message
    refused(message, settings, "wrong_arguments")
    assert world(sandbox) == before


async def test_a_token_from_a_server_with_another_store_is_refused(
    connect: Connect, sandbox: Sandbox, settings: Settings
) -> None:
    async with connect(state_dir=settings.state_dir / "elsewhere") as first:
        token = (await plan(first))["confirmation_token"]
    before = world(sandbox)
    async with connect() as second:
        message = error(await second.call_tool(EMPTY, {"confirm": token}))
    assert "not issued by this server" in message
    assert AGAIN in message
    refused(message, settings, "invalid_token")
    assert world(sandbox) == before


async def test_a_replica_sharing_the_store_honours_the_token(connect: Connect, sandbox: Sandbox) -> None:
    async with connect() as first:
        token = (await plan(first))["confirmation_token"]
    async with connect() as second:
        outcome = ok(await second.call_tool(EMPTY, {"confirm": token}))
    assert outcome["totals"]["items"] == len(ALEX_BIN)
    assert bin_ids(sandbox) == set()


async def test_a_token_issued_for_another_tool_is_refused(
    connect: Connect, sandbox: Sandbox, settings: Settings
) -> None:
    # A plan in the server's own store, bound to everything else that matches: only the tool differs.
    client = CocoonClient(sandbox.endpoints["cocoon"].url, ALEX)
    fingerprint = client.fingerprint
    await client.aclose()
    snapshot = Snapshot(totals=bin_totals(sandbox), members=frozenset(ALEX_BIN))
    store = open_store(None, settings.state_dir)
    issued = await Confirmations(store, 300).issue(
        "katapult_purge_all_trash_objects", {"organisation_id": ORG}, fingerprint, snapshot, "purge", 7
    )
    await store.close()
    token = issued.token
    before = world(sandbox)
    async with connect() as server:
        message = error(await server.call_tool(EMPTY, {"confirm": token}))
    assert "issued for katapult_purge_all_trash_objects" in message
    assert AGAIN in message
    refused(message, settings, "wrong_tool")
    assert world(sandbox) == before


async def test_a_token_issued_under_another_credential_is_refused(
    connect: Connect, sandbox: Sandbox, settings: Settings
) -> None:
    async with connect(secret=SecretStr("k")) as alex_server:
        token = (await plan(alex_server))["confirmation_token"]
    before = world(sandbox)
    async with connect(secret=SecretStr("k"), cocoon_access_token=SecretStr(SAM)) as sam_server:
        message = error(await sam_server.call_tool(EMPTY, {"confirm": token}))
    assert "different API credential" in message
    assert AGAIN in message
    refused(message, settings, "wrong_credential")
    assert world(sandbox) == before
    assert bin_ids(sandbox, SAM)


# --- the state moved between preview and confirmation ---------------------------------------------


async def test_a_grown_bin_is_refused_with_a_new_plan_that_then_works(
    mcp: Client, sandbox: Sandbox, settings: Settings
) -> None:
    token = (await plan(mcp))["confirmation_token"]
    late = recycle_new_item(sandbox, "late-arrival.txt", 1000)
    before = world(sandbox)
    message = error(await mcp.call_tool(EMPTY, {"confirm": token}))
    assert "would now destroy more than the user approved" in message
    assert "Nothing was deleted" in message
    assert "Permanently delete 8 items" in message
    refused(message, settings, "state_grew")
    assert world(sandbox) == before
    found = TOKEN_IN_MESSAGE.search(message)
    assert found is not None
    outcome = ok(await mcp.call_tool(EMPTY, {"confirm": found.group(1)}))
    assert outcome["totals"]["items"] == len(ALEX_BIN) + 1
    assert late in {item["id"] for item in outcome["deleted"]}
    assert bin_ids(sandbox) == set()


async def test_a_swapped_item_counts_as_grown(mcp: Client, sandbox: Sandbox) -> None:
    # Same count and fewer bytes, but an item the user never saw: still refused.
    token = (await plan(mcp))["confirmation_token"]
    backend = sandbox.cocoon
    backend.restore_recycle_bin_item(backend.resolve_user(ALEX), EXECUTIVE_REPORT)
    recycle_new_item(sandbox, "unseen.txt", 10)
    before = world(sandbox)
    message = error(await mcp.call_tool(EMPTY, {"confirm": token}))
    assert "Refused" in message
    assert "Nothing was deleted" in message
    assert world(sandbox) == before


async def test_a_shrunk_bin_proceeds_and_says_so(mcp: Client, sandbox: Sandbox, settings: Settings) -> None:
    token = (await plan(mcp))["confirmation_token"]
    endpoint = sandbox.endpoints["cocoon"]
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {endpoint.credential}"}) as http:
        restored = await http.put(f"{endpoint.url}/api/v1/recycle-bin/items/{EXECUTIVE_REPORT}")
    assert restored.status_code == 200
    outcome = ok(await mcp.call_tool(EMPTY, {"confirm": token}))
    assert outcome["totals"]["items"] == len(ALEX_BIN) - 1
    assert EXECUTIVE_REPORT not in {item["id"] for item in outcome["deleted"]}
    assert any("shrank" in note for note in outcome["notes"])
    assert sandbox.cocoon.items[EXECUTIVE_REPORT].state == cocoon.ItemState.ACTIVE
    assert bin_ids(sandbox) == set()
    confirmed = [line for line in audit_lines(settings.audit_log) if line["event"] == "confirmed"]
    assert confirmed[-1]["verdict"] == "shrunk"


# --- the human in the loop ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize(
    ("action", "approve", "words"),
    [("decline", True, "declined"), ("cancel", True, "cancelled"), ("accept", False, "did not approve")],
    ids=["declined", "cancelled", "accepted-but-no"],
)
async def test_the_user_saying_no_stops_everything(
    connect: Connect,
    sandbox: Sandbox,
    settings: Settings,
    mode: str,
    action: str,
    approve: bool,
    words: str,
) -> None:
    asked = answering(action, approve)
    async with connect(mode=mode, elicitation=asked) as client:
        token = (await plan(client))["confirmation_token"]
        before = world(sandbox)
        message = error(await client.call_tool(EMPTY, {"confirm": token}))
    assert words in message
    assert "Nothing was deleted" in message
    refused(message, settings, "human_declined")
    assert world(sandbox) == before
    assert len(asked.asked) == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_user_is_asked_with_the_plan_and_approves(
    connect: Connect, sandbox: Sandbox, mode: str
) -> None:
    asked = answering("accept")
    async with connect(mode=mode, elicitation=asked, require_human=True) as client:
        preview = await plan(client)
        outcome = ok(await client.call_tool(EMPTY, {"confirm": preview["confirmation_token"]}))
    questions: list[str] = asked.asked  # type: ignore[attr-defined]
    assert len(questions) == 1
    assert questions[0].startswith(preview["summary"])
    assert "cannot be undone" in questions[0]
    assert outcome["totals"]["items"] == len(ALEX_BIN)
    assert bin_ids(sandbox) == set()


async def test_require_human_refuses_a_client_that_cannot_ask(
    connect: Connect, sandbox: Sandbox, settings: Settings
) -> None:
    async with connect(require_human=True) as client:
        token = (await plan(client))["confirmation_token"]
        before = world(sandbox)
        message = error(await client.call_tool(EMPTY, {"confirm": token}))
    assert "--require-human" in message
    assert "Use a client that supports elicitation" in message
    refused(message, settings, "human_required")
    assert world(sandbox) == before


async def test_a_bad_token_is_refused_without_bothering_the_user(connect: Connect, sandbox: Sandbox) -> None:
    asked = answering("accept")
    async with connect(elicitation=asked) as client:
        before = world(sandbox)
        message = error(await client.call_tool(EMPTY, {"confirm": "not a token"}))
    assert "Refused" in message
    assert asked.asked == []  # type: ignore[attr-defined]
    assert world(sandbox) == before
