"""Cocoon Data API failures as the model sees them, and injected faults: retries, ambiguity, reconciliation."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from purgewarden.config import Settings
from purgewarden.sandbox import Fault, Sandbox, cocoon
from tests.server.cocoon_support import (
    ALEX_BIN,
    EMPTY,
    LIST,
    PREVIEW,
    Connect,
    audit_lines,
    bin_ids,
    bin_totals,
    error,
    ok,
    plan,
    text,
    world,
)

# Module-level: the conftest adds the anyio marker after parametrization, which anyio would undo.
pytestmark = pytest.mark.anyio

BIN_PATH = "/recycle-bin/items$"


@pytest.fixture
def connect(connect: Connect) -> Connect:
    """Only the Cocoon toolset, so these tests stand apart from the other services' modules."""

    def session(**overrides: Any) -> Any:
        return connect(**{"toolsets": ("cocoon",), **overrides})

    return session


def fired(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The faults that still have shots left."""
    return sandbox.faults["cocoon"].active()


# --- refusals by the API -------------------------------------------------------------------------


@pytest.mark.parametrize("tool", [LIST, PREVIEW])
async def test_a_rejected_access_token_is_explained(
    connect: Connect, sandbox: Sandbox, caplog: pytest.LogCaptureFixture, tool: str
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "cocoon-token-that-expired-yesterday"
    async with connect(cocoon_access_token=SecretStr(bad)) as client:
        message = error(await client.call_tool(tool, {}))
    assert message == (
        f"Error executing tool {tool}: Cocoon Data refused: the access token was rejected (expired, revoked or "
        'wrong) (HTTP 401). The API said: "Invalid access token". Ask the user for a fresh COCOON_ACCESS_TOKEN, '
        "then restart the server."
    )
    assert bad not in caplog.text


@pytest.mark.parametrize("tool", [LIST, PREVIEW])
async def test_a_user_who_is_not_an_originator_is_told_why(connect: Connect, tool: str) -> None:
    collaborator = SecretStr(cocoon.COLLABORATOR_ACCESS_TOKEN)
    async with connect(cocoon_access_token=collaborator) as client:
        message = error(await client.call_tool(tool, {}))
    assert "Cocoon Data refused: this user is not an Originator in that organisation (HTTP 403)." in message
    assert "needs the Originator role" in message
    assert "only an Originator of it has a recycle bin there." in message


async def test_an_organisation_of_which_the_user_is_not_a_member_is_forbidden(mcp: Client) -> None:
    message = error(await mcp.call_tool(PREVIEW, {"organisation_id": cocoon.OTHER_ORGANISATION_ID}))
    assert "(HTTP 403)" in message
    assert cocoon.OTHER_ORGANISATION_ID in message


@pytest.mark.parametrize("tool", [LIST, PREVIEW])
async def test_an_unknown_organisation_is_not_found(mcp: Client, tool: str) -> None:
    message = error(await mcp.call_tool(tool, {"organisation_id": "123456789"}))
    assert "Cocoon Data refused: the organisation or item was not found (HTTP 404)." in message
    assert "Organisation 123456789 not found" in message
    assert "Check the organisation id" in message


# --- injected faults on reads --------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(method="GET", status=503, times=1),
        Fault(method="GET", status=504, times=2),
        Fault(method="GET", status=429, times=3),
        Fault(method="GET", status=429, times=2, headers={"Retry-After": "0"}),
        Fault(method="GET", drop="before", times=1),
        Fault(method="GET", drop="after", times=2),
    ],
    ids=["503", "504-twice", "429-storm", "429-retry-after", "dropped-before", "dropped-after"],
)
@pytest.mark.parametrize("tool", [LIST, PREVIEW])
async def test_a_passing_fault_on_a_read_is_retried(
    mcp: Client, sandbox: Sandbox, fault: Fault, tool: str
) -> None:
    sandbox.inject("cocoon", fault)
    result = ok(await mcp.call_tool(tool, {}))
    assert fired(sandbox) == []
    if tool == PREVIEW:
        assert result["totals"] == bin_totals(sandbox)
    else:
        assert {item["id"] for item in result["items"]} == ALEX_BIN


async def test_a_slow_read_times_out_and_is_retried(connect: Connect, sandbox: Sandbox) -> None:
    sandbox.inject("cocoon", Fault(method="GET", latency=2.0, times=1))
    async with connect(http_timeout=0.3) as client:
        preview = await plan(client)
    assert preview["totals"]["items"] == len(ALEX_BIN)
    assert fired(sandbox) == []


async def test_a_lasting_outage_is_explained(mcp: Client, sandbox: Sandbox) -> None:
    sandbox.inject("cocoon", Fault(method="GET", status=503, times=10))
    message = error(await mcp.call_tool(PREVIEW, {}))
    assert message == (
        f"Error executing tool {PREVIEW}: Cocoon Data failed: the service is temporarily unavailable "
        '(HTTP 503). The API said: "No message available". Wait a minute, then try again.'
    )
    assert fired(sandbox)[0]["fired"] == 5


async def test_an_internal_error_is_not_retried_and_is_explained(mcp: Client, sandbox: Sandbox) -> None:
    sandbox.inject("cocoon", Fault(method="GET", status=500, times=2))
    message = error(await mcp.call_tool(LIST, {}))
    assert "Cocoon Data failed: the service failed with an internal error (HTTP 500)." in message
    assert "Try again later." in message
    assert fired(sandbox)[0]["fired"] == 1


async def test_an_unknown_body_still_gives_a_clear_message(mcp: Client, sandbox: Sandbox) -> None:
    sandbox.inject("cocoon", Fault(method="GET", status=502, body=["not", "an", "error", "object"]))
    message = error(await mcp.call_tool(LIST, {}))
    assert "Cocoon Data failed: a gateway in front of the service failed (HTTP 502)." in message
    assert "Try again in a minute." in message


# --- faults around the destructive call ----------------------------------------------------------


async def test_an_answer_lost_after_emptying_is_reconciled(
    mcp: Client, sandbox: Sandbox, settings: Settings
) -> None:
    token = (await plan(mcp))["confirmation_token"]
    planned = bin_totals(sandbox)
    sandbox.inject("cocoon", Fault(method="DELETE", drop="after"))
    result = await mcp.call_tool(EMPTY, {"confirm": token})
    outcome = ok(result)
    assert fired(sandbox) == []
    assert bin_ids(sandbox) == set()
    assert outcome["totals"] == planned
    assert outcome["remaining"] == 0
    assert {item["id"] for item in outcome["deleted"]} == ALEX_BIN
    assert len(outcome["notes"]) == 1
    assert "The answer to the empty call was lost" in outcome["notes"][0]
    assert "checked by re-reading the bin" in outcome["notes"][0]
    assert "The answer to the empty call was lost" in text(result)
    # Gone after an ambiguous call: the read-back proves them deleted.
    assert outcome["accounting"] == {"carried_out": len(ALEX_BIN), "not_carried_out": 0, "unknown": 0}
    last = audit_lines(settings.audit_log)[-1]
    assert last["event"] == "outcome"
    assert last["counts"] == planned
    assert last["accounting"] == outcome["accounting"]


@pytest.mark.parametrize(
    "fault",
    [Fault(method="DELETE", drop="before"), Fault(method="DELETE", status=503, times=2)],
    ids=["dropped-before", "503"],
)
async def test_an_empty_that_never_happened_says_nothing_was_deleted(
    mcp: Client, sandbox: Sandbox, settings: Settings, fault: Fault
) -> None:
    token = (await plan(mcp))["confirmation_token"]
    before = world(sandbox)
    sandbox.inject("cocoon", fault)
    result = await mcp.call_tool(EMPTY, {"confirm": token})
    outcome = ok(result)
    assert world(sandbox) == before
    # A DELETE is never re-sent blindly: the failure was not proof that nothing happened.
    assert [shot["fired"] for shot in fired(sandbox)] == ([] if fault.times == 1 else [1])
    assert outcome["totals"] == {"items": 0, "bytes": 0}
    assert outcome["deleted"] == []
    assert outcome["remaining"] == len(ALEX_BIN)
    notes = " ".join(outcome["notes"])
    assert "The answer to the empty call was lost" in notes
    assert f"{len(ALEX_BIN)} approved items still in the bin" in notes
    # Sent and unanswered: the API may still act on it, so they are unknown, never "not deleted".
    assert "may yet be carried out" in notes
    assert outcome["accounting"] == {"carried_out": 0, "not_carried_out": 0, "unknown": len(ALEX_BIN)}
    assert text(result).startswith("Deleted 0 items")
    last = audit_lines(settings.audit_log)[-1]
    assert last["event"] == "outcome"
    assert last["counts"] == {"items": 0, "bytes": 0}


async def test_an_outage_at_the_recheck_deletes_nothing_and_is_audited(
    mcp: Client, sandbox: Sandbox, settings: Settings
) -> None:
    token = (await plan(mcp))["confirmation_token"]
    before = world(sandbox)
    sandbox.inject("cocoon", Fault(method="GET", status=503, times=10))
    message = error(await mcp.call_tool(EMPTY, {"confirm": token}))
    assert "Cocoon Data failed: the service is temporarily unavailable (HTTP 503)." in message
    assert world(sandbox) == before
    last = audit_lines(settings.audit_log)[-1]
    assert last["event"] == "failed"
    assert last["status"] == 503
    assert last["tool"] == EMPTY


async def test_a_refused_empty_call_is_reported_not_reconciled(mcp: Client, sandbox: Sandbox) -> None:
    token = (await plan(mcp))["confirmation_token"]
    before = world(sandbox)
    sandbox.inject("cocoon", Fault(method="DELETE", status=403))
    message = error(await mcp.call_tool(EMPTY, {"confirm": token}))
    assert "Cocoon Data refused: this user is not an Originator in that organisation (HTTP 403)." in message
    assert "0 carried out" in message
    assert world(sandbox) == before


@pytest.mark.parametrize(
    ("delete_fault", "words"),
    [
        (
            Fault(method="DELETE", latency=0.4, drop="after"),
            "Accounting so far: 0 carried out, 0 not carried out, 7 unknown.",
        ),
        (
            Fault(method="DELETE", latency=0.4),
            "Accounting so far: 7 carried out, 0 not carried out, 0 unknown.",
        ),
    ],
    ids=["answer-lost", "answer-received"],
)
async def test_a_bin_that_cannot_be_reread_afterwards_is_reported_unverified(
    mcp: Client, sandbox: Sandbox, settings: Settings, delete_fault: Fault, words: str
) -> None:
    token = (await plan(mcp))["confirmation_token"]
    planned = bin_totals(sandbox)
    sandbox.inject("cocoon", delete_fault)

    async def outage_once_emptying(progress: float, total: float | None, message: str | None) -> None:
        # Reported right before the (slowed) DELETE: every read after it fails.
        if progress == 0:
            sandbox.inject("cocoon", Fault(method="GET", status=503, times=10))

    message = error(await mcp.call_tool(EMPTY, {"confirm": token}, progress_callback=outage_once_emptying))
    assert message.startswith(f"Error executing tool {EMPTY}: The run stopped at list_recycle_bin:")
    assert "HTTP 503" in message
    assert words in message
    assert bin_ids(sandbox) == set()
    last = audit_lines(settings.audit_log)[-1]
    assert last["event"] == "failed"
    assert sum(last["accounting"].values()) == planned["items"]


async def test_a_timed_out_empty_warns_that_it_may_still_happen(connect: Connect, sandbox: Sandbox) -> None:
    async with connect(http_timeout=0.3) as client:
        token = (await plan(client))["confirmation_token"]
        sandbox.inject("cocoon", Fault(method="DELETE", latency=1.0))
        outcome = ok(await client.call_tool(EMPTY, {"confirm": token}))
    # The re-read came before the slow DELETE was carried out, and the outcome says so honestly.
    assert outcome["totals"] == {"items": 0, "bytes": 0}
    assert outcome["remaining"] == len(ALEX_BIN)
    notes = " ".join(outcome["notes"])
    assert (
        "The answer to the empty call was lost (Cocoon Data could not be reached: no answer came in time"
        in notes
    )
    assert "may yet be carried out" in notes
    assert "List the bin again in a minute" in notes
    assert outcome["accounting"] == {"carried_out": 0, "not_carried_out": 0, "unknown": len(ALEX_BIN)}
    # ... and indeed the emulator carries it out a moment later.
    for _ in range(100):
        if not bin_ids(sandbox):
            break
        await anyio.sleep(0.05)
    assert bin_ids(sandbox) == set()
