"""`vault_delete_objects` against a Vault whose database has a capacity (the emulator's capacity model):
the server finds how many batches it takes instead of sending its ceiling, and a 429 costs nothing.

What must not happen: a queue as long as the ceiling on the Vault's database, an object deleted twice
or lost from the accounting when the Vault refuses a batch.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from purgewarden.config import Settings
from purgewarden.sandbox import Capacity, Sandbox
from purgewarden.store import open_store
from tests.server.support import audit_lines
from tests.server.vault_support import DELETE, Connect, ids_in, ok, preview

LEADS = {"collection": "leads", "state": "archived"}
BATCH = 50
IN_FLIGHT = re.compile(r"up to (\d+) batches in flight")


@pytest.fixture
def connect(connect: Connect) -> Connect:
    def session(**overrides: Any) -> Any:
        return connect(**{"toolsets": ("vault",), "pvault_max_page_size": BATCH, **overrides})

    return session


async def delete_leads(
    connect: Connect, sandbox: Sandbox, n: int, **settings: Any
) -> tuple[dict[str, Any], list[int]]:
    """Delete `n` archived leads (at default settings unless told); the outcome and the limits its
    progress told."""
    sandbox.vault.build_large("leads", n, archived=n)
    limits: list[int] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        found = IN_FLIGHT.search(message or "")
        if found:
            limits.append(int(found.group(1)))

    async with connect(**settings) as client:
        plan = await preview(client, **LEADS)
        result = await client.call_tool(
            DELETE, {**LEADS, "confirm": plan["confirmation_token"]}, progress_callback=progress
        )
    return ok(result), limits


async def test_a_database_with_four_workers_gets_a_short_queue_not_the_ceiling(
    connect: Connect, sandbox: Sandbox
) -> None:
    # a batch holds a worker for 55 ms: long beside the noise of a busy machine's event loops
    sandbox.set_capacity("vault", Capacity(workers=4, request_seconds=0.005, item_seconds=0.001))
    outcome, limits = await delete_leads(connect, sandbox, 60 * BATCH)

    assert outcome["deleted"] == 60 * BATCH
    assert not ids_in(sandbox, "leads", "archived")
    stats = sandbox.capacity_stats("vault")
    assert stats.rejected == 0
    # the ceiling (32) would have queued 28 batches on it; the server stays near its 4 workers
    assert stats.max_queue <= 8, (stats, limits)
    assert max(limits) <= 12
    assert Settings().vault_delete_concurrency == 32


async def test_a_refused_batch_is_sent_again_and_the_limit_halves(
    connect: Connect, sandbox: Sandbox, settings: Settings
) -> None:
    sandbox.set_capacity(
        "vault",
        Capacity(workers=1, queue_limit=0, request_seconds=0.002, item_seconds=0.0001, retry_after=0.05),
    )
    outcome, limits = await delete_leads(connect, sandbox, 30 * BATCH)

    assert sandbox.capacity_stats("vault").rejected > 0  # it started at 4 against one worker
    # every batch deleted once: a 429 is sent again after its Retry-After, never counted twice
    assert outcome["deleted"] == 30 * BATCH
    assert not ids_in(sandbox, "leads", "archived")
    [audited] = [line for line in audit_lines(settings.audit_log) if line["event"] == "outcome"]
    assert audited["accounting"] == {"carried_out": 30 * BATCH, "not_carried_out": 0, "unknown": 0}
    # past its first batch (whose answer may be told before the refusals of its round are back) it holds
    # one or two in flight, probing one more now and then, and its retries wait for a place under the
    # lowered limit: a refusal does not breed more (4 fixed would meet ~3 a batch)
    assert max(limits[1:]) <= 3, limits
    assert sandbox.capacity_stats("vault").rejected <= 15


async def test_the_last_round_is_shared_out_and_every_id_is_sent_once(
    connect: Connect, sandbox: Sandbox, settings: Settings
) -> None:
    sandbox.set_capacity("vault", Capacity(workers=4, request_seconds=0.005, item_seconds=0.001))
    # 4 in flight at most, as many as the workers: rounds of 4 batches, whatever the limit learns
    outcome, _ = await delete_leads(connect, sandbox, 30 * BATCH + 30, vault_delete_concurrency=4)

    store = open_store(None, settings.state_dir)
    try:
        [run] = await store.recent_runs(1)
        stored = await store.get_run(run.id)
    finally:
        await store.close()
    assert stored is not None
    entries = [json.loads(entry) for entry in stored.entries]
    sent = sorted((e["request"], e["ids"]) for e in entries if e["kind"] == "sending")
    # what the server sent, as its journal wrote it before each call: 7 rounds of max-size batches, then
    # the 130 ids left shared by the 4 places (not 2 batches and 30 ids with a place idle); each id once
    assert [len(ids) for _, ids in sent] == [BATCH] * 28 + [33, 33, 33, 31]
    assert sorted(i for _, ids in sent for i in ids) == sorted(set(i for _, ids in sent for i in ids))
    assert outcome["batches"] == 32
    assert outcome["deleted"] == 30 * BATCH + 30
    assert not ids_in(sandbox, "leads", "archived")
    assert sandbox.capacity_stats("vault").rejected == 0
