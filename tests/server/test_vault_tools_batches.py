"""vault_delete_objects at scale and under faults: 100,000 ids, all-or-nothing batches, lost answers, cancellation."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from mcp import Client

from purgewarden.config import Settings
from purgewarden.sandbox import Fault, Sandbox
from purgewarden.sandbox.vault import DEMO_API_KEY
from purgewarden.sandbox.vault.store import ApiKey, Capability
from tests.server.support import CANCEL_RUN, ended_run
from tests.server.vault_support import (
    ACTIVE_CUSTOMERS,
    DELETE,
    PREVIEW_DELETE,
    UNKNOWN_ID,
    Connect,
    audit_lines,
    error,
    ids_in,
    ok,
    preview,
    text,
    tokens_estimate,
    until,
    world,
)

pytestmark = pytest.mark.anyio

LEADS = {"collection": "leads", "state": "archived"}


@pytest.fixture
def connect(connect: Connect) -> Connect:
    def session(**overrides: Any) -> Any:
        return connect(**{"toolsets": ("vault",), **overrides})

    return session


def archived_leads(sandbox: Sandbox, n: int) -> list[str]:
    """`n` archived objects in the (otherwise empty) leads collection, in id order."""
    return sorted(sandbox.vault.build_large("leads", n, archived=n))


async def delete_leads(client: Client, **extra: Any) -> tuple[dict[str, Any], str]:
    plan = await preview(client, **LEADS)
    result = await client.call_tool(DELETE, {**LEADS, "confirm": plan["confirmation_token"]}, **extra)
    return ok(result), text(result)


async def test_100k_selection_previews_and_deletes_within_the_output_budget(
    mcp: Client, sandbox: Sandbox
) -> None:
    sandbox.vault.build_large("customers", 100_000, archived=100_000)
    started = time.monotonic()
    result = await mcp.call_tool(PREVIEW_DELETE, {"collection": "customers", "state": "archived"})
    plan = ok(result)
    assert plan["count"] == 100_015
    assert plan["batches"] == 101
    assert len(plan["sample_ids"]) == 20
    assert tokens_estimate(result) < 25_000
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        assert total == 100_015
        progress.append(done)

    result = await mcp.call_tool(
        DELETE,
        {"collection": "customers", "state": "archived", "confirm": plan["confirmation_token"]},
        progress_callback=on_progress,
    )
    elapsed = time.monotonic() - started
    outcome = ok(result)
    assert outcome["deleted"] == 100_015
    assert outcome["failed_batch_count"] == 0
    assert outcome["outcomes"] == {}
    # a message at most every PROGRESS_SECONDS, rising, and the last one says all is done
    assert 2 <= len(progress) <= 101
    assert progress == sorted(progress)
    assert progress[-1] == 100_015
    assert tokens_estimate(result) < 25_000
    assert ids_in(sandbox, "customers", "archived") == set()
    assert ids_in(sandbox, "customers", "active") == set(ACTIVE_CUSTOMERS)
    assert elapsed < 30


async def test_a_refused_batch_deletes_nothing_and_the_rest_goes_on(
    connect: Connect, sandbox: Sandbox
) -> None:
    ids = archived_leads(sandbox, 3_500)
    async with connect(vault_delete_concurrency=1) as client:
        sandbox.inject("vault", Fault(method="DELETE", path="bulk", status=409, times=1))
        outcome, body = await delete_leads(client)
    assert outcome["deleted"] == 2_500
    assert outcome["not_deleted"] == 1_000
    assert outcome["failed_batch_count"] == 1
    (failed,) = outcome["failed_batches"]
    assert failed["batch"] == 1
    assert failed["not_deleted"] == 1_000
    assert failed["unknown"] == failed["deleted"] == 0
    assert "PV3218, HTTP 409" in failed["reason"]
    assert failed["sample_ids"] == ids[:5]
    assert ids_in(sandbox, "leads", "archived") == set(ids[:1_000])
    assert body.startswith("Deleted 2,500 of 3,500 archived objects")
    assert "1 of 4 batches failed: 1,000 objects were not deleted" in body
    assert "Preview again" in body


async def test_a_concurrent_conflict_on_a_small_request_is_reported_per_id(
    mcp: Client, sandbox: Sandbox
) -> None:
    chosen = ACTIVE_CUSTOMERS[:3]
    plan = await preview(mcp, collection="customers", ids=chosen)
    sandbox.vault.conflict_next_bulk_delete()
    outcome = ok(
        await mcp.call_tool(
            DELETE, {"collection": "customers", "ids": chosen, "confirm": plan["confirmation_token"]}
        )
    )
    assert outcome["deleted"] == 0
    assert outcome["not_deleted"] == 3
    assert list(outcome["outcomes"]) == chosen
    for why in outcome["outcomes"].values():
        assert why.startswith(
            "not_deleted: Piiano Vault refused: another request was updating the same objects"
        )
    assert ids_in(sandbox, "customers", "active") == set(ACTIVE_CUSTOMERS)


async def test_an_object_vanishing_mid_run_is_left_out_and_its_batch_sent_again(
    connect: Connect, sandbox: Sandbox
) -> None:
    ids = archived_leads(sandbox, 2_000)
    vanished = ids[10]
    async with connect(vault_delete_concurrency=1) as client:
        plan = await preview(client, **LEADS)
        # The first bulk call waits in the emulator; meanwhile someone else deletes one of the objects.
        sandbox.inject("vault", Fault(method="DELETE", path="bulk", latency=0.5, times=1))
        bulk_calls = Fault(method="DELETE", path="bulk", times=None)
        sandbox.inject("vault", bulk_calls)

        async def someone_else() -> None:
            await until(lambda: len(sandbox.faults["vault"].active()) == 1)  # the delayed call is in
            sandbox.vault.delete_objects("leads", [vanished], archived=True, tenants=None)

        async with anyio.create_task_group() as group:
            group.start_soon(someone_else)
            result = await client.call_tool(DELETE, {**LEADS, "confirm": plan["confirmation_token"]})
    outcome = ok(result)
    assert outcome["deleted"] == outcome["planned"] == 1_999
    assert outcome["not_deleted"] == outcome["unknown"] == outcome["not_attempted"] == 0
    assert outcome["failed_batch_count"] == 0
    assert outcome["batches"] == 2
    (note,) = outcome["notes"]
    assert note.startswith("The state shrank since the preview: 1 approved object was no longer archived")
    assert vanished in note
    body = text(result)
    assert body.startswith("Deleted 1,999 of 1,999 archived objects")
    assert "1 approved object was already gone (no longer archived) and not deleted by this call" in body
    assert "appeared since the preview" not in body
    # Two batches, and the one that met the vanished id once more without it.
    assert sandbox.faults["vault"].active()[0]["fired"] == 2
    assert ids_in(sandbox, "leads", "archived") == set()


async def test_a_whole_state_is_re_checked_by_a_count_without_listing(
    connect: Connect, sandbox: Sandbox
) -> None:
    archived_leads(sandbox, 3_000)
    async with connect(retry_attempts=1) as client:
        plan = await preview(client, **LEADS)
        search = {"collection": "customers", "match": {"country": "DE"}}
        search_plan = await preview(client, **search)
        # From now on every listing and search fails: only the count and the bulk calls work.
        sandbox.inject(
            "vault", Fault(method="GET", path=r"/collections/[^/]+/objects$", status=500, times=None)
        )
        sandbox.inject("vault", Fault(method="POST", path=r"/query/objects$", status=500, times=None))
        outcome = ok(await client.call_tool(DELETE, {**LEADS, "confirm": plan["confirmation_token"]}))
        before = world(sandbox)
        message = error(
            await client.call_tool(DELETE, {**search, "confirm": search_plan["confirmation_token"]})
        )
    assert outcome["deleted"] == outcome["planned"] == 3_000
    assert outcome["failed_batch_count"] == 0
    assert ids_in(sandbox, "leads", "archived") == set()
    # A search selection is re-run in full before anything is deleted (a property may have changed).
    assert "PV1000" in message
    assert world(sandbox) == before
    listing, searching = sandbox.faults["vault"].active()
    assert listing["fired"] == 0
    assert searching["fired"] == 1


async def test_a_batch_refused_for_another_item_reason_is_not_sent_again(
    connect: Connect, sandbox: Sandbox
) -> None:
    ids = archived_leads(sandbox, 3)
    items = [
        {"ok": False, "id": ids[0], "error": {"error_code": "PV3005", "message": "The object is not found."}},
        {"ok": False, "id": ids[1], "error": {"error_code": "PV1006", "message": "Forbidden by policy."}},
        {"ok": False, "id": ids[2], "error": {"error_code": "PV3999", "message": "Not attempted."}},
    ]
    async with connect() as client:
        plan = await preview(client, **LEADS)
        sandbox.inject(
            "vault",
            Fault(method="DELETE", path="bulk", status=200, body={"ok": False, "results": items}, times=1),
        )
        bulk_calls = Fault(method="DELETE", path="bulk", times=None)
        sandbox.inject("vault", bulk_calls)
        outcome = ok(await client.call_tool(DELETE, {**LEADS, "confirm": plan["confirmation_token"]}))
    assert outcome["deleted"] == 0
    assert outcome["not_deleted"] == outcome["planned"] == 3
    (failed,) = outcome["failed_batches"]
    # The Vault's per-item errors are data: quoted, code and message together.
    assert '1 × "PV3005: The object is not found."' in failed["reason"]
    assert '1 × "PV1006: Forbidden by policy."' in failed["reason"]
    assert outcome["outcomes"][ids[1]] == 'not_deleted: "PV1006: Forbidden by policy."'
    assert sandbox.faults["vault"].active()[0]["fired"] == 0  # not sent again
    assert ids_in(sandbox, "leads", "archived") == set(ids)


async def test_a_batch_sent_again_without_vanished_ids_can_still_fail(
    connect: Connect, sandbox: Sandbox
) -> None:
    ids = archived_leads(sandbox, 3)
    async with connect() as client:
        plan = await preview(client, **LEADS)
        sandbox.vault.delete_objects("leads", ids[:1], archived=True, tenants=None)
        sandbox.inject("vault", Fault(method="DELETE", path="bulk", times=1))  # the first call passes
        sandbox.inject("vault", Fault(method="DELETE", path="bulk", status=409, times=1))
        result = await client.call_tool(DELETE, {**LEADS, "confirm": plan["confirmation_token"]})
    outcome = ok(result)
    assert outcome["deleted"] == 0
    assert outcome["planned"] == outcome["not_deleted"] == 2
    assert outcome["not_attempted"] == outcome["unknown"] == 0
    (failed,) = outcome["failed_batches"]
    assert "PV3218, HTTP 409" in failed["reason"]
    assert failed["not_deleted"] == 2
    assert outcome["outcomes"][ids[0]].startswith("absent: no longer archived")
    assert all(outcome["outcomes"][i].startswith("not_deleted: ") for i in ids[1:])
    body = text(result)
    assert body.startswith("Deleted 0 of 2 archived objects")
    assert "1 approved object was already gone" in body
    assert "appeared since the preview" not in body
    assert sandbox.faults["vault"].active() == []
    assert ids_in(sandbox, "leads", "archived") == set(ids[1:])


async def test_a_lost_answer_with_some_ids_gone_leaves_the_rest_unknown(
    connect: Connect, sandbox: Sandbox
) -> None:
    # Gone when read back is carried out (the one rule); still there is unknown, never "not deleted":
    # the request may yet be carried out, and a read-back cannot tell who removed the gone ones.
    ids = archived_leads(sandbox, 5)
    async with connect() as client:
        plan = await preview(client, **LEADS)
        sandbox.vault.delete_objects("leads", ids[:1], archived=True, tenants=None)
        sandbox.inject("vault", Fault(method="DELETE", path="bulk", drop="before", times=1))
        outcome = ok(await client.call_tool(DELETE, {**LEADS, "confirm": plan["confirmation_token"]}))
    assert outcome["accounting"] == {"carried_out": 1, "not_carried_out": 0, "unknown": 4}
    assert outcome["deleted"] == 1
    assert outcome["unknown"] == 4
    assert outcome["not_deleted"] == 0
    (failed,) = outcome["failed_batches"]
    assert (failed["deleted"], failed["unknown"], failed["not_deleted"]) == (1, 4, 0)
    assert "read back: 1 gone, 4 still present" in failed["reason"]
    assert outcome["outcomes"][ids[0]] == "deleted: gone when read back (deleted by this call, or elsewhere)"
    assert all(outcome["outcomes"][i].startswith("unknown: the connection broke") for i in ids[1:])
    assert ids_in(sandbox, "leads", "archived") == set(ids[1:])


async def test_a_429_storm_on_deletes_is_retried(connect: Connect, sandbox: Sandbox) -> None:
    archived_leads(sandbox, 3_500)
    async with connect(retry_attempts=12) as client:
        sandbox.inject(
            "vault", Fault(method="DELETE", path="bulk", status=429, times=10, headers={"Retry-After": "0"})
        )
        outcome, _ = await delete_leads(client)
    assert outcome["deleted"] == 3_500
    assert outcome["failed_batch_count"] == 0
    assert sandbox.faults["vault"].active() == []
    assert ids_in(sandbox, "leads", "archived") == set()


async def test_a_503_on_a_batch_leaves_its_ids_unknown(connect: Connect, sandbox: Sandbox) -> None:
    # A server error proves nothing either way: ids still there when read back may yet be deleted.
    ids = archived_leads(sandbox, 2_500)
    async with connect(vault_delete_concurrency=1) as client:
        sandbox.inject("vault", Fault(method="DELETE", path="bulk", status=503, times=1))
        outcome, body = await delete_leads(client)
    assert outcome["deleted"] == 1_500
    assert outcome["not_deleted"] == 0
    assert outcome["unknown"] == 1_000
    assert outcome["accounting"] == {"carried_out": 1_500, "not_carried_out": 0, "unknown": 1_000}
    (failed,) = outcome["failed_batches"]
    assert failed["reason"].startswith('HTTP 503 "PV1009", so it may or may not have been carried out')
    assert failed["reason"].endswith("read back: 0 gone, 1000 still present")
    assert "1,000 could not be verified and may yet be deleted" in body
    assert "not deleted" not in outcome["summary"]
    assert ids_in(sandbox, "leads", "archived") == set(ids[:1_000])


async def test_a_dropped_answer_after_the_delete_is_reconciled_as_deleted(
    connect: Connect, sandbox: Sandbox, settings: Settings
) -> None:
    archived_leads(sandbox, 3_500)
    async with connect() as client:
        sandbox.inject("vault", Fault(method="DELETE", path="bulk", drop="after", times=1))
        outcome, body = await delete_leads(client)
    assert outcome["deleted"] == 3_500
    assert outcome["failed_batch_count"] == 0
    assert any(
        "reading the ids back shows all" in note and "counted as deleted" in note for note in outcome["notes"]
    )
    assert "the answer was lost" in body
    assert ids_in(sandbox, "leads", "archived") == set()
    assert audit_lines(settings.audit_log)[-1]["counts"] == {"objects": 3_500}


async def test_a_connection_broken_before_handling_leaves_its_ids_unknown(
    connect: Connect, sandbox: Sandbox
) -> None:
    # The client cannot tell a connection broken before handling from one broken after: unknown, not "not deleted".
    ids = archived_leads(sandbox, 1_500)
    async with connect(vault_delete_concurrency=1) as client:
        sandbox.inject("vault", Fault(method="DELETE", path="bulk", drop="before", times=1))
        outcome, _ = await delete_leads(client)
    assert outcome["deleted"] == 500
    assert outcome["unknown"] == 1_000
    assert outcome["not_deleted"] == 0
    assert ids_in(sandbox, "leads", "archived") == set(ids[:1_000])


async def test_an_unverifiable_batch_is_never_claimed(connect: Connect, sandbox: Sandbox) -> None:
    archived_leads(sandbox, 1_000)
    async with connect(retry_attempts=2) as client:
        plan = await preview(client, **LEADS)
        sandbox.inject("vault", Fault(method="DELETE", path="bulk", drop="after", latency=0.3, times=1))

        async def reads_break_once_the_delete_is_in_flight() -> None:
            await until(lambda: not sandbox.faults["vault"].active())
            sandbox.inject("vault", Fault(method="GET", path="objects", status=500, times=None))

        async with anyio.create_task_group() as group:
            group.start_soon(reads_break_once_the_delete_is_in_flight)
            result = await client.call_tool(DELETE, {**LEADS, "confirm": plan["confirmation_token"]})
    outcome = ok(result)
    assert outcome["deleted"] == 0
    assert outcome["unknown"] == 1_000
    assert "reading the ids back failed too" in outcome["failed_batches"][0]["reason"]
    assert "1,000 could not be verified" in text(result)
    assert ids_in(sandbox, "leads", "archived") == set()  # it did happen; the tool just could not see it


async def test_a_refusal_mid_run_stops_launching_batches(connect: Connect, sandbox: Sandbox) -> None:
    ids = archived_leads(sandbox, 4_000)
    keys = sandbox.vault.keys
    admin = keys[DEMO_API_KEY]
    async with connect(vault_delete_concurrency=1) as client:
        plan = await preview(client, **LEADS)
        sandbox.inject("vault", Fault(method="DELETE", path="bulk", latency=0.3, times=None))

        async def revoke(done: float, total: float | None, message: str | None) -> None:
            writers = {Capability.DATA_DELETER, Capability.DATA_WRITER}
            keys[DEMO_API_KEY] = ApiKey(admin.secret, admin.username, admin.capabilities - writers)

        result = await client.call_tool(
            DELETE, {**LEADS, "confirm": plan["confirmation_token"]}, progress_callback=revoke
        )
    outcome = ok(result)
    assert outcome["deleted"] == 1_000
    assert outcome["not_deleted"] == 1_000
    assert outcome["not_attempted"] == 2_000
    assert "PV1007" in outcome["failed_batches"][0]["reason"]
    assert any(note.startswith("Stopped launching batches after a refusal") for note in outcome["notes"])
    assert ids_in(sandbox, "leads", "archived") == set(ids[1_000:])


async def test_a_refusal_before_anything_was_deleted_is_an_error(mcp: Client, sandbox: Sandbox) -> None:
    plan = await preview(mcp, collection="customers", ids=[*ACTIVE_CUSTOMERS[:2], UNKNOWN_ID])
    keys = sandbox.vault.keys
    admin = keys[DEMO_API_KEY]
    keys[DEMO_API_KEY] = ApiKey(
        admin.secret, admin.username, admin.capabilities - {Capability.DATA_DELETER, Capability.DATA_WRITER}
    )
    result = await mcp.call_tool(
        DELETE,
        {
            "collection": "customers",
            "ids": [*ACTIVE_CUSTOMERS[:2], UNKNOWN_ID],
            "confirm": plan["confirmation_token"],
        },
    )
    assert "(PV1007, HTTP 403)" in error(result)
    assert ids_in(sandbox, "customers", "active") == set(ACTIVE_CUSTOMERS)


async def test_cancelling_a_run_stops_between_batches_with_exact_counts(
    connect: Connect, sandbox: Sandbox, settings: Settings
) -> None:
    archived_leads(sandbox, 8_000)
    async with connect(vault_delete_concurrency=2, follow_seconds=0.3) as client:
        plan = await preview(client, **LEADS)
        sandbox.inject("vault", Fault(method="DELETE", path="bulk", latency=0.2, times=None))
        started = ok(await client.call_tool(DELETE, {**LEADS, "confirm": plan["confirmation_token"]}))
        assert started["state"] == "running"
        ok(await client.call_tool(CANCEL_RUN, {"run_id": started["run_id"]}))
        run = await ended_run(client, started["run_id"])
    left = len(ids_in(sandbox, "leads", "archived"))
    assert run["state"] == "cancelled"
    assert 0 < 8_000 - left < 8_000
    assert (8_000 - left) % 1_000 == 0  # whole batches: the ones sent finished, no other started
    assert run["accounting"] == {"carried_out": 8_000 - left, "not_carried_out": left, "unknown": 0}
    cancelled = [line for line in audit_lines(settings.audit_log) if line["event"] == "cancelled"]
    assert [line["accounting"] for line in cancelled] == [run["accounting"]]
    assert not any(line["event"] == "outcome" for line in audit_lines(settings.audit_log))


async def test_an_unreadable_answer_to_a_batch_is_read_back(connect: Connect, sandbox: Sandbox) -> None:
    ids = archived_leads(sandbox, 2_000)
    async with connect(vault_delete_concurrency=1) as client:
        sandbox.inject(
            "vault", Fault(method="DELETE", path="bulk", status=200, body={"surprise": True}, times=1)
        )
        outcome, _ = await delete_leads(client)
    assert outcome["deleted"] == 1_000
    assert outcome["unknown"] == 1_000  # a success status whose body cannot be read proves nothing
    assert outcome["not_deleted"] == 0
    assert "the answer could not be read" in outcome["failed_batches"][0]["reason"]
    assert ids_in(sandbox, "leads", "archived") == set(ids[:1_000])


async def test_an_unreadable_answer_to_a_read_is_a_clear_error(mcp: Client, sandbox: Sandbox) -> None:
    sandbox.inject("vault", Fault(path="count", status=200, body=["not", "a", "count"], times=1))
    message = error(await mcp.call_tool("vault_count_objects", {"collection": "customers"}))
    assert "could not be read" in message
    assert "unexpected shape" in message
