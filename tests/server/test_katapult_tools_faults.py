"""Katapult tools under injected faults, rate limits and cancellation: retried when safe, reconciled when not."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp import Client

from purgewarden.clients.base import RetryPolicy
from purgewarden.clients.katapult import KatapultClient
from purgewarden.config import Settings
from purgewarden.sandbox import Fault, Sandbox
from tests.server.katapult_support import (
    ASSETS,
    BACKUPS,
    GET_TASK,
    PREVIEW_PURGE,
    PREVIEW_REVOKE,
    PURGE,
    REGION,
    REVOKE,
    Connect,
    admin,
    audit_lines,
    error,
    ok,
    trash_ids,
    world,
)
from tests.server.support import CANCEL_RUN, ended_run

# Module-level: the conftest adds the anyio marker after parametrization, which anyio would undo.
pytestmark = pytest.mark.anyio

ACME = {"organization": "acme"}


@pytest.fixture
def connect(connect: Connect) -> Connect:
    """Only the Katapult toolset, so these tests stand apart from the other services' modules."""

    def session(**overrides: Any) -> Any:
        return connect(**{"toolsets": ("katapult",), **overrides})

    return session


async def purge_token(client: Client) -> str:
    token: str = ok(await client.call_tool(PREVIEW_PURGE, ACME))["confirmation_token"]
    return token


# --- retried: Katapult turned the request away before doing anything --------------------------------


async def test_a_429_storm_on_reads_is_retried(mcp: Client, sandbox: Sandbox) -> None:
    sandbox.inject("katapult", Fault(method="GET", status=429, times=3))
    plan = ok(await mcp.call_tool(PREVIEW_PURGE, ACME))
    assert plan["totals"] == {"objects": 12}
    assert sandbox.faults["katapult"].active() == []


async def test_a_429_storm_on_the_purge_request_is_retried_and_purges_once(
    mcp: Client, sandbox: Sandbox
) -> None:
    token = await purge_token(mcp)
    sandbox.inject("katapult", Fault(method="POST", path="purge_all", status=429, times=3))
    outcome = ok(await mcp.call_tool(PURGE, {**ACME, "confirm": token}))
    assert outcome["status"] == "completed"
    assert outcome["totals"] == {"purged": 12, "remaining": 0}
    assert trash_ids(sandbox) == set()


async def test_service_unavailable_on_revoke_is_retried(mcp: Client, sandbox: Sandbox) -> None:
    token = ok(await mcp.call_tool(PREVIEW_REVOKE, {"buckets": [ASSETS]}))["confirmation_token"]
    sandbox.inject("katapult", Fault(method="POST", path="revoke", status=503, times=2))
    outcome = ok(await mcp.call_tool(REVOKE, {"buckets": [ASSETS], "confirm": token}))
    assert outcome["results"][0]["status"] == "revoked"
    assert len(sandbox.katapult.revocations(REGION, "acme-assets")) == 1


async def test_a_rate_limit_that_outlasts_the_retries_is_explained_and_nothing_happens(
    mcp: Client, sandbox: Sandbox, settings: Settings
) -> None:
    token = await purge_token(mcp)
    sandbox.inject("katapult", Fault(method="POST", path="purge_all", status=429, times=None))
    before = world(sandbox)
    message = error(await mcp.call_tool(PURGE, {**ACME, "confirm": token}))
    assert "the rate limit of 1000 requests per minute was reached (rate_limit_reached, HTTP 429)" in message
    assert "Wait a minute" in message
    assert world(sandbox) == before
    assert audit_lines(settings.audit_log)[-1]["event"] == "failed"


async def test_a_page_failing_midway_through_the_trash_is_explained(mcp: Client, sandbox: Sandbox) -> None:
    sandbox.katapult.build_large_trash("acme", 2_000)
    # The first page goes through; every later one is refused.
    sandbox.inject("katapult", Fault(method="GET", path="trash_objects", times=1))
    sandbox.inject("katapult", Fault(method="GET", path="trash_objects", status=403, times=None))
    message = error(await mcp.call_tool(PREVIEW_PURGE, ACME))
    assert message.startswith(f"Error executing tool {PREVIEW_PURGE}: Katapult refused:")
    assert "permission_denied, HTTP 403" in message


# --- reconciled: the answer to a destructive request was lost ---------------------------------------


async def test_a_connection_dropped_after_the_purge_was_queued_is_reconciled(
    mcp: Client, sandbox: Sandbox
) -> None:
    token = await purge_token(mcp)
    sandbox.inject("katapult", Fault(method="POST", path="purge_all", drop="after"))
    outcome = ok(await mcp.call_tool(PURGE, {**ACME, "confirm": token}))
    # Katapult queued it: the tool watched the trash empty and says exactly that.
    assert outcome["status"] == "completed"
    assert outcome["task"] is None
    assert outcome["totals"] == {"purged": 12, "remaining": 0}
    assert "answer to the purge request was lost, but Katapult carried it out" in outcome["summary"]
    assert outcome["accounting"] == {"carried_out": 12, "not_carried_out": 0, "unknown": 0}
    assert any("connection" in note for note in outcome["notes"])
    assert trash_ids(sandbox) == set()


async def test_a_connection_dropped_before_katapult_saw_the_purge_is_not_called_a_purge(
    mcp: Client, sandbox: Sandbox
) -> None:
    token = await purge_token(mcp)
    before = world(sandbox)
    sandbox.inject("katapult", Fault(method="POST", path="purge_all", drop="before"))
    started = time.monotonic()
    outcome = ok(await mcp.call_tool(PURGE, {**ACME, "confirm": token}))
    assert time.monotonic() - started >= 30 * 0.05  # it watched the trash before saying so
    assert outcome["status"] == "unknown"
    assert outcome["totals"] == {"purged": 0, "remaining": 12}
    assert "unknown whether Katapult queued the purge" in outcome["summary"]
    assert "Nothing is verified as purged" in outcome["summary"]
    assert world(sandbox) == before


async def test_an_internal_error_on_the_purge_is_reconciled_not_retried(
    mcp: Client, sandbox: Sandbox
) -> None:
    token = await purge_token(mcp)
    before = world(sandbox)
    sandbox.inject("katapult", Fault(method="POST", path="purge_all", status=500, times=None))
    outcome = ok(await mcp.call_tool(PURGE, {**ACME, "confirm": token}))
    assert outcome["status"] == "unknown"
    assert any("unhandled_exception" in note for note in outcome["notes"])
    assert world(sandbox) == before
    (fault,) = sandbox.faults["katapult"].active()
    assert fault["fired"] == 1  # sent once: an ambiguous write is never re-sent


async def test_without_waiting_a_lost_answer_is_checked_once_and_reported_honestly(
    mcp: Client, sandbox: Sandbox
) -> None:
    token = await purge_token(mcp)
    sandbox.inject("katapult", Fault(method="POST", path="purge_all", drop="after"))
    outcome = ok(await mcp.call_tool(PURGE, {**ACME, "confirm": token, "wait": False}))
    # The task is still pending, so nothing can be verified yet; it is not reported as "nothing happened".
    assert outcome["status"] == "unknown"
    assert outcome["totals"] == {"purged": 0, "remaining": 12}
    assert "it is unknown whether Katapult queued the purge" in outcome["summary"]
    # Still there, but the purge may yet run: unknown, never "not purged".
    assert outcome["accounting"] == {"carried_out": 0, "not_carried_out": 0, "unknown": 12}
    sandbox.clock.advance(5)
    assert trash_ids(sandbox) == set()


async def test_a_connection_dropped_after_a_revoke_is_reported_as_unknown(
    mcp: Client, sandbox: Sandbox
) -> None:
    buckets = {"buckets": [ASSETS, BACKUPS]}
    token = ok(await mcp.call_tool(PREVIEW_REVOKE, buckets))["confirmation_token"]
    sandbox.inject("katapult", Fault(method="POST", path="revoke", drop="after", times=1))
    outcome = ok(await mcp.call_tool(REVOKE, {**buckets, "confirm": token}))
    assert [(r["name"], r["status"]) for r in outcome["results"]] == [
        ("acme-assets", "unknown"),
        ("acme-backups", "revoked"),
    ]
    assert "revoking again is harmless" in outcome["results"][0]["message"]
    # It had in fact been revoked, once: the tool did not claim it, nor send it again.
    assert len(sandbox.katapult.revocations(REGION, "acme-assets")) == 1
    assert len(sandbox.katapult.revocations(REGION, "acme-backups")) == 1


async def test_losing_track_of_the_task_hands_back_its_id(mcp: Client, sandbox: Sandbox) -> None:
    token = await purge_token(mcp)
    sandbox.katapult.crash_next("get_task")
    outcome = ok(await mcp.call_tool(PURGE, {**ACME, "confirm": token}))
    assert outcome["status"] == "running"
    assert outcome["task"]["id"].startswith("task_")
    assert "katapult_get_task" in outcome["summary"]
    assert any(
        "Lost track of the task" in note and "unhandled_exception" in note for note in outcome["notes"]
    )
    sandbox.clock.advance(5)
    assert (
        ok(await mcp.call_tool(GET_TASK, {"task_id": outcome["task"]["id"]}))["task"]["status"] == "completed"
    )


# --- cancellation ----------------------------------------------------------------------------------


async def test_a_client_that_gives_up_while_the_purge_is_followed_leaves_the_run_going(
    mcp: Client, sandbox: Sandbox, settings: Settings
) -> None:
    token = await purge_token(mcp)
    with anyio.move_on_after(0.15):  # the client's own timeout: the tool call is cancelled
        await mcp.call_tool(PURGE, {**ACME, "confirm": token})
    run_id = next(line["run"] for line in audit_lines(settings.audit_log) if line["event"] == "confirmed")
    sandbox.clock.advance(5)
    run = await ended_run(mcp, run_id)
    # The run went on in the server and finished with exact accounting: nothing was cancelled.
    assert run["state"] == "finished"
    assert run["accounting"] == {"carried_out": 12, "not_carried_out": 0, "unknown": 0}
    assert trash_ids(sandbox) == set()
    events = [line["event"] for line in audit_lines(settings.audit_log)]
    assert "cancelled" not in events
    assert events[-1] == "outcome"


async def test_cancelling_a_revoke_run_stops_between_buckets(
    connect: Connect, sandbox: Sandbox, settings: Settings
) -> None:
    buckets = {"buckets": [ASSETS, BACKUPS]}
    async with connect(follow_seconds=0.1) as client:
        token = ok(await client.call_tool(PREVIEW_REVOKE, buckets))["confirmation_token"]
        sandbox.inject("katapult", Fault(method="POST", path="revoke", latency=0.4, times=1))
        started = ok(await client.call_tool(REVOKE, {**buckets, "confirm": token}))
        assert started["state"] == "running"
        ok(await client.call_tool(CANCEL_RUN, {"run_id": started["run_id"]}))
        run = await ended_run(client, started["run_id"])
    assert run["state"] == "cancelled"
    assert run["accounting"] == {"carried_out": 1, "not_carried_out": 1, "unknown": 0}
    line = audit_lines(settings.audit_log)[-1]
    assert line["event"] == "cancelled"
    assert line["accounting"] == run["accounting"]
    # The revoke under way was finished, the next one never started.
    assert len(sandbox.katapult.revocations(REGION, "acme-assets")) == 1
    assert sandbox.katapult.revocations(REGION, "acme-backups") == ()


# --- the rate limit and concurrent paging ----------------------------------------------------------


@pytest.fixture
def fast_forward() -> Iterator[list[Sandbox]]:
    """Run the clocks of the sandboxes put in the list at 100x, as if minutes went by in seconds."""
    sandboxes: list[Sandbox] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.01):
            for sandbox in sandboxes:
                sandbox.clock.advance(1.0)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    yield sandboxes
    stop.set()
    thread.join()


async def test_a_low_rate_limit_is_paced_without_a_429_reaching_the_tool(
    connect: Connect, fast_forward: list[Sandbox]
) -> None:
    # 40 requests a minute, and a preview that needs 51 pages: without pacing, the 41st request is refused.
    limited = Sandbox(katapult_rate_limit=40, task_seconds=0.6)
    endpoints = limited.start()
    try:
        limited.katapult.build_large_trash("acme", 51 * 200 - 12)
        fast_forward.append(limited)
        started = time.monotonic()
        async with connect(katapult_api_url=endpoints["katapult"].url, retry_attempts=1) as client:
            plan = ok(await client.call_tool(PREVIEW_PURGE, ACME))
        elapsed = time.monotonic() - started
    finally:
        limited.stop()
    assert plan["totals"] == {"objects": 51 * 200}
    # One retry attempt only, so any 429 would have reached the tool; the pacing spaced requests 1.5 s apart.
    assert elapsed >= 60 / 40


async def test_the_whole_trash_is_fetched_concurrently_once_each_in_order(sandbox: Sandbox) -> None:
    # The speed-up itself is a figure of bench/; here, what concurrency must not break.
    sandbox.katapult.build_large_trash("acme", 100 * 200 - 12)
    endpoint = sandbox.endpoints["katapult"]
    expected = sandbox.katapult.list_trash_objects(admin(sandbox), ("sub_domain", "acme"), 1, 20_000).items
    client = KatapultClient(endpoint.url, endpoint.credential, retry=RetryPolicy(base_delay=0.01))
    try:
        for concurrency in (1, 4, 16):
            found = await client.list_all_trash_objects({"sub_domain": "acme"}, concurrency=concurrency)
            assert list(found) == [t.id for t in expected]
            assert all(found[t.id]["object_type"] == t.object_type for t in expected)
    finally:
        await client.aclose()
