"""vault_preview_prune_archived and vault_prune_archived (the Vault's GC) against the emulator."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr

from purgewarden.sandbox import Fault, Sandbox
from purgewarden.sandbox.vault import READER_API_KEY
from purgewarden.sandbox.vault.seed import DAY
from tests.conftest import answering
from tests.server.vault_support import (
    ACTIVE_CUSTOMERS,
    PRUNE,
    TOKEN_IN_MESSAGE,
    Connect,
    audit_lines,
    error,
    flip,
    ids_in,
    ok,
    preview,
    preview_prune,
    text,
    tokens_estimate,
    world,
)

pytestmark = pytest.mark.anyio

# What the demo holds past the 30-day retention (see purgewarden/sandbox/vault/seed.py).
DEMO_GARBAGE = {
    "customers/PERSONS": 10,
    "customers/TOKENS": 7,
    "customers/TRANSACTION_IDS": 4,
    "orders/DATA": 6,
    "orders/TOKENS": 4,
    "orders/TRANSACTION_IDS": 2,
}
# Transaction ids whose last token the first GC call deletes: they become garbage only afterwards.
ORPHANED_BY_THE_FIRST_CALL = {"customers/TRANSACTION_IDS": 7, "orders/TRANSACTION_IDS": 4}


@pytest.fixture
def connect(connect: Connect) -> Connect:
    def session(**overrides: Any) -> Any:
        return connect(**{"toolsets": ("vault",), **overrides})

    return session


def backlog(sandbox: Sandbox) -> dict[str, int]:
    """Everything GC would delete over all its calls (the emulator's uncapped view)."""
    return {f"{row.collection_name}/{row.collection_type}": row.count for row in sandbox.vault.gc_backlog()}


async def test_preview_counts_per_collection_and_type(mcp: Client, sandbox: Sandbox) -> None:
    before = world(sandbox)
    result = await mcp.call_tool("vault_preview_prune_archived", {})
    plan = ok(result)
    assert plan["totals"] == DEMO_GARBAGE
    assert plan["total"] == 33
    assert plan["summary"].startswith(
        "Permanently delete 33 Piiano Vault items archived past the retention period"
    )
    assert "at most 10,000 items" in plan["warnings"][0]
    assert len(plan["warnings"]) == 1
    body = text(result)
    assert '"customers": 10 PERSONS objects' in body
    assert plan["confirmation_token"] in body
    assert world(sandbox) == before


async def test_preview_with_a_filter(mcp: Client) -> None:
    plan = await preview_prune(mcp, filter="tokens_only")
    assert plan["totals"] == {"customers/TOKENS": 7, "orders/TOKENS": 4}


async def test_prune_deletes_the_plan_and_never_more(mcp: Client, sandbox: Sandbox, settings: Any) -> None:
    plan = await preview_prune(mcp)
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    result = await mcp.call_tool(
        PRUNE, {"confirm": plan["confirmation_token"]}, progress_callback=on_progress
    )
    outcome = ok(result)
    assert outcome["totals"] == DEMO_GARBAGE
    assert outcome["deleted_total"] == 33
    assert outcome["calls"] == 1
    assert progress == [(33, 33)]
    # The tokens it deleted orphaned 11 transaction ids: eligible now, but not in the plan, so left alone.
    assert outcome["remaining"] == ORPHANED_BY_THE_FIRST_CALL
    assert backlog(sandbox) == ORPHANED_BY_THE_FIRST_CALL
    assert any("Stopped before going past the plan" in note for note in outcome["notes"])
    assert "11 items are eligible now: call vault_preview_prune_archived" in text(result)
    assert len(ids_in(sandbox, "customers", "archived")) == 5  # archived 3 days ago: within retention
    assert ids_in(sandbox, "customers", "active") == set(ACTIVE_CUSTOMERS)
    assert audit_lines(settings.audit_log)[-1]["counts"] == DEMO_GARBAGE

    again = await preview_prune(mcp)
    assert again["totals"] == ORPHANED_BY_THE_FIRST_CALL
    final = ok(await mcp.call_tool(PRUNE, {"confirm": again["confirmation_token"]}))
    assert final["deleted_total"] == 11
    assert final["remaining"] == {}
    assert "Nothing more is eligible" in final["summary"]
    assert backlog(sandbox) == {}


async def test_prune_works_through_more_than_10000_items(mcp: Client, sandbox: Sandbox) -> None:
    sandbox.vault.build_large("leads", 25_000, archived=25_000)
    expected = sum(backlog(sandbox).values()) + sum(ORPHANED_BY_THE_FIRST_CALL.values())
    assert expected == 33 + 25_000 + 11
    deleted = calls = rounds = 0
    while True:
        result = await mcp.call_tool("vault_preview_prune_archived", {})
        plan = ok(result)
        assert tokens_estimate(result) < 25_000
        if not plan["total"]:
            break
        capped = any("per-call cap" in warning for warning in plan["warnings"])
        assert capped == (plan["total"] == 10_000)
        outcome = ok(await mcp.call_tool(PRUNE, {"confirm": plan["confirmation_token"]}))
        assert outcome["deleted_total"] == sum(plan["totals"].values())  # exactly the plan, never more
        assert outcome["deleted_total"] <= 10_000 * outcome["calls"]
        deleted += outcome["deleted_total"]
        calls += outcome["calls"]
        rounds += 1
        assert rounds < 10
    assert deleted == expected
    assert calls >= 3
    assert rounds == 2  # one approval covers the whole backlog; the second, the ids it orphaned
    assert backlog(sandbox) == {}
    assert ids_in(sandbox, "leads", "archived") == set()


async def test_a_grown_backlog_is_refused_with_a_new_plan(mcp: Client, sandbox: Sandbox) -> None:
    plan = await preview_prune(mcp)
    long_ago = sandbox.clock.now() - 90 * DAY
    sandbox.vault.archive("customers", ACTIVE_CUSTOMERS[:3], at=long_ago)
    before = world(sandbox)
    message = error(await mcp.call_tool(PRUNE, {"confirm": plan["confirmation_token"]}))
    assert '"customers/PERSONS"=13' in message
    assert "Permanently delete 36 Piiano Vault items" in message
    assert world(sandbox) == before
    fresh = TOKEN_IN_MESSAGE.search(message)
    assert fresh is not None
    outcome = ok(await mcp.call_tool(PRUNE, {"confirm": fresh.group(1)}))
    assert outcome["totals"]["customers/PERSONS"] == 13


async def test_a_shrunk_backlog_proceeds(mcp: Client, sandbox: Sandbox) -> None:
    plan = await preview_prune(mcp)
    sandbox.vault.garbage_collection("objects_only")  # someone else's prune job ran meanwhile
    outcome = ok(await mcp.call_tool(PRUNE, {"confirm": plan["confirmation_token"]}))
    assert "shrank since the preview" in outcome["notes"][0]
    assert outcome["deleted_total"] == 33 - 16
    assert "customers/PERSONS" not in outcome["totals"]


async def test_prune_refusals_leave_everything_untouched(connect: Connect, sandbox: Sandbox) -> None:
    before = world(sandbox)
    async with connect() as client:
        plan = await preview_prune(client)
        token = plan["confirmation_token"]
        delete_token = (await preview(client, collection="customers", state="archived"))["confirmation_token"]
        for confirm, expected in (
            ("", "needs a confirmation token"),
            (flip(token, 1), "unknown here"),
            (delete_token, "issued for vault_delete_objects"),
        ):
            assert expected in error(await client.call_tool(PRUNE, {"confirm": confirm}))
        assert "different arguments" in error(
            await client.call_tool(PRUNE, {"confirm": token, "filter": "tokens_only"})
        )
        assert world(sandbox) == before
        assert ok(await client.call_tool(PRUNE, {"confirm": token}))["deleted_total"] == 33
        assert "already used" in error(await client.call_tool(PRUNE, {"confirm": token}))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_prune_asks_the_human(connect: Connect, sandbox: Sandbox, mode: str) -> None:
    before = world(sandbox)
    declining = answering("decline")
    async with connect(mode=mode, elicitation=declining) as client:
        plan = await preview_prune(client)
        assert "declined" in error(await client.call_tool(PRUNE, {"confirm": plan["confirmation_token"]}))
    assert world(sandbox) == before
    assert declining.asked == [f"{plan['summary']} This cannot be undone. Approve?"]  # type: ignore[attr-defined]


async def test_in_memory_vault_is_pv1026(mcp: Client, sandbox: Sandbox) -> None:
    sandbox.vault.in_memory = True
    message = error(await mcp.call_tool("vault_preview_prune_archived", {}))
    assert "not allowed while the Vault runs in in-memory mode (PV1026, HTTP 405)" in message
    assert "persistent storage" in message


async def test_reader_key_cannot_prune_pv1007(connect: Connect, sandbox: Sandbox) -> None:
    async with connect(pvault_api_key=SecretStr(READER_API_KEY)) as client:
        message = error(await client.call_tool("vault_preview_prune_archived", {}))
    assert "Analyst" in message
    assert "(PV1007, HTTP 403)" in message


async def test_a_dry_run_hit_by_a_429_storm_is_retried(connect: Connect, sandbox: Sandbox) -> None:
    sandbox.inject("vault", Fault(path="lifecycle/gc", status=429, times=3, headers={"Retry-After": "0"}))
    async with connect() as client:
        assert (await preview_prune(client))["total"] == 33


async def test_a_lost_answer_to_a_gc_call_is_reconciled_by_a_dry_run(mcp: Client, sandbox: Sandbox) -> None:
    plan = await preview_prune(mcp, filter="objects_only")
    assert plan["totals"] == {"customers/PERSONS": 10, "orders/DATA": 6}
    sandbox.inject("vault", Fault(path="lifecycle/gc", times=1))  # lets the re-check dry run through
    sandbox.inject(
        "vault", Fault(path="lifecycle/gc", drop="after", times=1)
    )  # the real call: done, answer lost
    result = await mcp.call_tool(PRUNE, {"confirm": plan["confirmation_token"], "filter": "objects_only"})
    outcome = ok(result)
    assert outcome["totals"] == {"customers/PERSONS": 10, "orders/DATA": 6}
    assert any(
        "failed ambiguously" in note and "16 of the 16 pending items gone" in note
        for note in outcome["notes"]
    )
    assert backlog(sandbox) == {k: v for k, v in DEMO_GARBAGE.items() if not k.endswith(("PERSONS", "DATA"))}


async def test_a_refused_gc_call_deletes_nothing_and_says_why(mcp: Client, sandbox: Sandbox) -> None:
    plan = await preview_prune(mcp)
    before = world(sandbox)
    sandbox.inject("vault", Fault(path="lifecycle/gc", times=1))
    sandbox.inject("vault", Fault(path="lifecycle/gc", status=409, times=1))
    message = error(await mcp.call_tool(PRUNE, {"confirm": plan["confirmation_token"]}))
    assert "(PV3218, HTTP 409)" in message
    assert world(sandbox) == before
