"""The crash campaign: a real `purgewarden serve` SIGKILLed at seeded random points of each destructive
operation, on SQLite and on a real Redis, then started again on the same store.

After each restart the run's journal (read straight from the store and replayed) and
`purgewarden_get_run` agree with each other and with the emulator's real state: every item settled
carried out is gone, every item settled not carried out or never sent is still there, and only items whose
request was in flight at the kill may be either — counted unknown and named as in flight. A Katapult purge
killed after its task was queued is resumed: the task is followed to its end and the trash read again, so
nothing is left unknown. The audit log has the confirmation of every killed run that sent anything (it is
written before the first request), and a preview of the same target warns about an interrupted run.

Kill points are chosen per case from its seed: before the run is recorded or right after, while request n
is in flight (the emulators hold destructive requests with an injected latency, and carry them out even
though their client died), right after the answer to request n, or after the run finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from purgewarden.safety.runs import IN_FLIGHT, RunRecord, replay
from purgewarden.safety.text import SAMPLE_SIZE
from purgewarden.sandbox import Fault, Sandbox, Service, cocoon, katapult
from purgewarden.sandbox.katapult.seed import ACME_ID
from purgewarden.store import Store
from tests.crash.conftest import Campaign, Chain, Kill, Server

pytestmark = pytest.mark.anyio

STORES = ("sqlite", "redis")
KILLS_PER_OPERATION = 5
"""Per operation and store: 5 operations x 2 stores x 5 = 50 kills."""
POLL = 0.01
"""How often the test reads the journal, to kill at a point of the run."""
LANDING = 0.3
"""Margin, beyond the injected latency, for a request held by the emulator to be carried out."""
GET_RUN = "purgewarden_get_run"
REGION = "uk-lon-1"
COCOON_BIN = "/organisations/[^/]+/recycle-bin/items$"


# --- what each operation is given and how its state is read -----------------------------------------


def vault_archived_leads(sandbox: Sandbox) -> set[str]:
    return set(sandbox.vault.stores["leads"].archived)


def vault_gc_eligible(sandbox: Sandbox) -> set[str]:
    """Every object the Vault's garbage collection would delete now (past retention), by name."""
    backend = sandbox.vault
    cutoff = backend.clock.now() - backend.retention_seconds
    return {f"{name}/{o.id}" for name, store in backend.stores.items() for o in store.expired_objects(cutoff)}


def katapult_acme_trash(sandbox: Sandbox) -> set[str]:
    """Acme's trash as it stands, once the emulator carried out every purge task whose time is up."""
    backend = sandbox.katapult
    admin = backend.authenticate(katapult.DEMO_TOKEN, "127.0.0.1")
    return {t.id for t in backend.list_trash_objects(admin, ("sub_domain", "acme"), 1, 100_000).items}


BUCKETS = ("acme-assets", "acme-backups", "acme-website", "acme-logs", "acme-media", "acme-exports")


def katapult_unrevoked(sandbox: Sandbox) -> set[str]:
    """The buckets whose presigned URLs were never revoked (since the reset)."""
    return {f"{REGION}/{b}" for b in BUCKETS if not sandbox.katapult.revocations(REGION, b)}


def cocoon_bin(sandbox: Sandbox) -> set[str]:
    backend = sandbox.cocoon
    user = backend.resolve_user(cocoon.DEMO_ACCESS_TOKEN)
    return set(backend.bin_of(user.id, cocoon.DEMO_ORGANISATION_ID).entries)


def more_leads(sandbox: Sandbox) -> None:
    sandbox.vault.build_large("leads", 1_000, archived=1_000)  # past retention: 10 batches of 100


def more_garbage(sandbox: Sandbox) -> None:
    sandbox.vault.build_large("leads", 800, archived=800)
    sandbox.vault.gc_limit = 300  # a call deletes at most 300: 3 calls for the 816 objects


def more_trash(sandbox: Sandbox) -> None:
    sandbox.katapult.build_large_trash("acme", 60)


def more_buckets(sandbox: Sandbox) -> None:
    account = sandbox.katapult._accounts[(ACME_ID, REGION)]  # no API adds a bucket
    for name in BUCKETS[3:]:
        account.buckets[name] = dataclasses.replace(account.buckets["acme-backups"], name=name)


def more_recycled(sandbox: Sandbox) -> None:
    sandbox.cocoon.build_large_bin(cocoon.DEMO_ACCESS_TOKEN, 30, organisation_id=cocoon.DEMO_ORGANISATION_ID)


@dataclass(frozen=True)
class Operation:
    """One destructive operation as the campaign drives it."""

    id: str
    service: Service
    preview: str
    tool: str
    args: dict[str, Any]
    prepare: Callable[[Sandbox], None]
    """Seeds more data (the sandbox was just reset)."""
    present: Callable[[Sandbox], set[str]]
    """The items the plan covers that are still there (ids; for the prune, eligible objects by name)."""
    slow: Fault
    """Holds every destructive request for `slow.latency` s (the emulator reads its body first)."""
    requests: int
    """Destructive requests a run sends."""
    by_count: bool = False
    """Its journal counts items instead of naming them (what a call deletes is not known before)."""
    resumes: bool = False
    """A run taken over after a crash follows its queued task to the end."""
    slow_reads: Fault | None = None
    """Holds the reads of the destructive call (after the preview): its re-check, and its first look at
    the state once the run is recorded, before its one destructive request."""

    @property
    def latency(self) -> float:
        return self.slow.latency


OPERATIONS = [
    Operation(
        "vault-delete",
        "vault",
        "vault_preview_delete_objects",
        "vault_delete_objects",
        {"collection": "leads", "state": "archived"},
        more_leads,
        vault_archived_leads,
        Fault(method="DELETE", path="/bulk/objects$", latency=0.2, times=None),
        requests=10,
    ),
    Operation(
        "vault-prune",
        "vault",
        "vault_preview_prune_archived",
        "vault_prune_archived",
        {"filter": "objects_only"},  # deleting objects orphans nothing: what is eligible only shrinks
        more_garbage,
        vault_gc_eligible,
        Fault(method="POST", path="/lifecycle/gc$", latency=0.2, times=None),  # dry runs too
        requests=3,
        by_count=True,
    ),
    Operation(
        "katapult-purge",
        "katapult",
        "katapult_preview_purge_all_trash_objects",
        "katapult_purge_all_trash_objects",
        {"organization": "acme"},
        more_trash,
        katapult_acme_trash,
        Fault(method="POST", path="/purge_all$", latency=0.4, times=None),
        requests=1,
        resumes=True,
        slow_reads=Fault(method="GET", path="/trash_objects$", latency=0.25, times=None),
    ),
    Operation(
        "katapult-revoke",
        "katapult",
        "katapult_preview_revoke_presigned_urls",
        "katapult_revoke_presigned_urls",
        {"buckets": [{"region": REGION, "name": b} for b in BUCKETS]},
        more_buckets,
        katapult_unrevoked,
        Fault(method="POST", path="/revoke_presigned_urls$", latency=0.2, times=None),
        requests=len(BUCKETS),
    ),
    Operation(
        "cocoon-empty",
        "cocoon",
        "cocoon_preview_empty_recycle_bin",
        "cocoon_empty_recycle_bin",
        {},
        more_recycled,
        cocoon_bin,
        Fault(method="DELETE", path=COCOON_BIN, latency=0.4, times=None),
        requests=1,
        resumes=True,
        slow_reads=Fault(method="GET", path=COCOON_BIN, latency=0.25, times=None),
    ),
]


# --- where to kill --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillPoint:
    """Where in the run the kill is aimed: `phase` (and request `request`), then `delay` seconds more."""

    phase: str
    request: int
    delay: float

    def __str__(self) -> str:
        if self.phase in ("sending", "answered"):
            return f"{self.phase} request {self.request} +{self.delay * 1000:.0f} ms"
        return f"{self.phase} +{self.delay * 1000:.0f} ms"


def kill_point(op: Operation, number: int, seed: int) -> KillPoint:
    """The `number`th kill of an operation covers, per store, the run from before it is recorded to after
    it ended; the seed picks the request and the moment."""
    rng = random.Random(seed)
    request = rng.randint(1, op.requests)
    phase = ("call" if rng.random() < 0.5 else "recorded", "sending", "sending", "answered", "returned")[
        number % 5
    ]
    delay = {
        "call": rng.uniform(0.0, 0.06),  # after the destructive call went out: maybe still re-checking
        "recorded": rng.uniform(0.0, 0.01),  # once the run is in the store: before its first request
        # The request is held by the emulator, or (later) answered, the next one held.
        "sending": rng.uniform(0.1, 1.5) * op.latency,
        "answered": rng.uniform(0.0, 0.02),  # between requests, or just after the last one
        "returned": rng.uniform(0.0, 0.1),  # the run finished and the call returned
    }[phase]
    return KillPoint(phase, request, delay)


CASES = [
    pytest.param(op, store, number, 1_000 * i + 100 * s + number, id=f"{op.id}-{store}-{number}")
    for i, op in enumerate(OPERATIONS)
    for s, store in enumerate(STORES)
    for number in range(KILLS_PER_OPERATION)
]


# --- reading results and the journal ----------------------------------------------------------------


def text(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text(result)
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


Entries = list[dict[str, Any]]


async def new_run(store: Store, known: set[str]) -> str | None:
    """The run started since `known` was taken (one destructive call per case)."""
    fresh = [r.id for r in await store.recent_runs(len(known) + 5) if r.id not in known]
    assert len(fresh) <= 1, fresh
    return fresh[0] if fresh else None


async def journal(store: Store, run_id: str) -> tuple[RunRecord, str, Entries]:
    stored = await store.get_run(run_id)
    assert stored is not None, run_id
    return RunRecord.model_validate_json(stored.body), stored.state, [json.loads(e) for e in stored.entries]


def requests_of(entries: Entries, kind: str) -> set[int]:
    return {e["request"] for e in entries if e["kind"] == kind}


def reached(point: KillPoint, entries: Entries | None) -> bool:
    if entries is None:
        return False
    if point.phase == "recorded":
        return True
    return any(n >= point.request for n in requests_of(entries, point.phase))


def landed(entries: Entries | None, size: int) -> tuple[str, int]:
    """Where a kill landed, from the journal as the killed server left it; and the items in flight."""
    if entries is None:
        return "before the run was recorded", 0
    kinds = {e["kind"] for e in entries}
    told = replay(entries, size)
    if "finished" in kinds:
        return "after the run finished", told.in_flight_count
    if "sending" not in kinds:
        return "before the first request", told.in_flight_count
    if requests_of(entries, "sending") - requests_of(entries, "answered"):
        return "with a request in flight", told.in_flight_count
    if told.in_flight_count:
        return "after an answer, before its items were settled", told.in_flight_count
    if sum(told.settled.values()) >= size:
        return "after the last request", 0
    return "between requests", 0


def fates_of(entries: Entries) -> tuple[dict[str, str], set[str]]:
    """Each named item's settled fate, and the items named as sent."""
    fates: dict[str, str] = {}
    sent: set[str] = set()
    requests: dict[int, list[str]] = {}
    for entry in entries:
        if entry["kind"] == "sending" and entry.get("ids") is not None:
            sent.update(entry["ids"])
            requests[entry["request"]] = entry["ids"]
        for settlement in entry.get("settled", ()):
            # A settlement names its ids, or the request whose ids it settles, all of them.
            named = (
                settlement["ids"] if "ids" in settlement else requests.get(settlement.get("request", -1), [])
            )
            for item in named:
                assert item not in fates, f"{item} settled twice"
                fates[item] = settlement["fate"]
    return fates, sent


def audited(chain: Chain, event: str, run_id: str) -> bool:
    lines = chain.audit_log.read_text(encoding="utf-8").splitlines() if chain.audit_log.exists() else []
    return any(e["event"] == event and e.get("run") == run_id for e in map(json.loads, lines))


# --- one kill -----------------------------------------------------------------------------------------


@dataclass
class Shot:
    """What the killing side saw."""

    run_id: str | None = None
    entries: Entries | None = None
    """The journal as the killed server left it (None: no run was recorded)."""
    outcome: CallToolResult | None = None
    """The destructive call's result, when it came back before the kill."""
    after_seconds: float = 0.0
    plan: dict[str, Any] | None = None


async def destroy_and_kill(
    op: Operation, sandbox: Sandbox, server: Server, store: Store, point: KillPoint
) -> Shot:
    """Preview, then the destructive call with the preview's token (no elicitation capability: nobody is
    asked); SIGKILL the server at `point` while the call is under way."""
    known = {r.id for r in await store.recent_runs(10_000)}
    shot = Shot()
    returned = anyio.Event()

    async def destroy(client: Client, token: str) -> None:
        try:
            shot.outcome = await client.call_tool(op.tool, {**op.args, "confirm": token})
        finally:
            returned.set()

    async def aim() -> None:
        sent = time.monotonic()
        with anyio.fail_after(60):
            if point.phase == "returned":
                await returned.wait()
            elif point.phase != "call":
                while not returned.is_set():
                    shot.run_id = shot.run_id or await new_run(store, known)
                    if shot.run_id is not None and reached(point, (await journal(store, shot.run_id))[2]):
                        break
                    await anyio.sleep(POLL)
        await anyio.sleep(point.delay)
        shot.after_seconds = time.monotonic() - sent
        server.kill()

    try:
        async with Client(server.url) as client:
            shot.plan = ok(await client.call_tool(op.preview, op.args))
            if op.slow_reads is not None:
                sandbox.inject(op.service, op.slow_reads)
            async with anyio.create_task_group() as group:
                group.start_soon(destroy, client, shot.plan["confirmation_token"])
                await aim()
                group.cancel_scope.cancel()
    except Exception:
        # The client fails with the connection once the server is gone (and only then).
        if server.killed_at is None:
            raise
    assert server.killed_at is not None, "the server was not killed"
    shot.run_id = shot.run_id or await new_run(store, known)
    if shot.run_id is not None:
        shot.entries = (await journal(store, shot.run_id))[2]
    return shot


async def restarted(sandbox: Sandbox, chain: Chain, killed: Server, latency: float) -> Server:
    """A fresh server on the same store, once whatever the killed one had in flight has landed (and the
    emulators answer at once again)."""
    server = await chain.start()
    assert killed.killed_at is not None
    await anyio.sleep(max(0.0, killed.killed_at + latency + LANDING - time.monotonic()))
    for injector in sandbox.faults.values():
        injector.clear()
    return server


async def settled_view(client: Client, store: Store, run_id: str, within: float) -> dict[str, Any]:
    """The run as purgewarden_get_run shows it, once the resumer is done (its `resumed` entry)."""
    with anyio.fail_after(within):
        while not any(e["kind"] == "resumed" for e in (await journal(store, run_id))[2]):  # noqa: ASYNC110 (written by another process)
            await anyio.sleep(0.1)
    view: dict[str, Any] = ok(await client.call_tool(GET_RUN, {"run_id": run_id}))["runs"][0]
    return view


@pytest.mark.parametrize(("op", "store_name", "number", "seed"), CASES)
async def test_a_run_killed_at_a_seeded_point_is_told_exactly_after_the_restart(
    op: Operation,
    store_name: str,
    number: int,
    seed: int,
    crash_sandbox: Sandbox,
    campaign: Campaign,
) -> None:
    chain = campaign.chain(store_name)
    campaign.cases_run += 1
    sandbox = crash_sandbox
    sandbox.reset()
    op.prepare(sandbox)
    approved = op.present(sandbox)
    sandbox.inject(op.service, op.slow)
    point = kill_point(op, number, seed)
    victim = await chain.victim()
    store = chain.open_store()
    try:
        shot = await destroy_and_kill(op, sandbox, victim, store, point)
        assert shot.plan is not None
        record: RunRecord | None = None
        if shot.run_id is not None:
            record, _, _ = await journal(store, shot.run_id)
        where, in_flight = landed(shot.entries, record.size if record else 0)
        resumes = (
            op.resumes
            and shot.entries is not None
            and in_flight > 0
            # A purge is resumed by following its task: only once the answer named it.
            and (op.id != "katapult-purge" or any("task" in e.get("data", {}) for e in shot.entries))
        )
        confirmed = None if shot.run_id is None else audited(chain, "confirmed", shot.run_id)
        campaign.kills.append(
            Kill(
                op.id, store_name, seed, str(point), where, in_flight, shot.after_seconds, resumes, confirmed
            )
        )
        server = await restarted(sandbox, chain, victim, op.latency)
        chain.server = server  # the next case's victim
        context = f"killed {where} (aimed at {point}, {shot.after_seconds:.2f} s into the call)"

        async with Client(server.url) as client:
            listed = ok(await client.call_tool(GET_RUN, {}))["runs"]
            if shot.run_id is None:
                # Killed before the run was recorded: nothing may have been sent, so nothing is gone.
                assert op.present(sandbox) == approved, context
                assert shot.outcome is None, context
                return
            assert listed[0]["run_id"] == shot.run_id, context  # the latest first
            shown = await client.call_tool(GET_RUN, {"run_id": shot.run_id})
            view: dict[str, Any] = ok(shown)["runs"][0]
            summary = text(shown)
            if resumes:
                view = await settled_view(client, store, shot.run_id, within=20)
            preview = ok(await client.call_tool(op.preview, op.args))

        record, state, entries = await journal(store, shot.run_id)
        told = replay(entries, record.size)
        present = op.present(sandbox)
        context += f"; run {shot.run_id}: {view['accounting']} {view['result']}"

        # The record, purgewarden_get_run (one run, and the list) and the journal tell the same.
        assert view["state"] == state, context
        assert state == ("finished" if where == "after the run finished" else "interrupted"), context
        assert view["accounting"] == told.accounting, context
        assert sum(told.accounting.values()) == record.size == len(approved), context
        assert next(r for r in listed if r["run_id"] == shot.run_id)["state"] == state, context
        assert view["in_flight"] == told.in_flight[:SAMPLE_SIZE], context
        if not resumes:
            assert told.in_flight_count == in_flight, context
        if state == "interrupted" and not resumes and in_flight:
            assert f"{in_flight:,} items were {IN_FLIGHT}" in summary, context
        if shot.outcome is not None and state == "finished":
            assert ok(shot.outcome)["accounting"] == told.accounting, context

        # The journal against the emulator's real state.
        if op.by_count:
            assert_counts_agree(told.accounting, approved, present, context)
        else:
            assert_ids_agree(entries, told.accounting, approved, present, context)
        if resumes:  # what the restart re-read: gone is carried out
            assert told.accounting["carried_out"] == len(approved - present), context
            if op.id == "katapult-purge":
                assert any("followed to its end" in note for note in view["notes"]), context

        # The confirmation is audited before anything is sent, and a preview of the same target warns
        # about the interrupted run.
        if shot.entries is not None and any(e["kind"] == "sending" for e in shot.entries):
            assert confirmed, context
        if state == "interrupted":
            assert any(shot.run_id in warning for warning in preview["warnings"]), (context, preview)
    finally:
        await store.close()


def assert_ids_agree(
    entries: Entries,
    accounting: Mapping[str, int],
    approved: set[str],
    present: set[str],
    context: str,
) -> None:
    """Carried out: gone. Not carried out, or never sent: still there. Only items in flight may be either."""
    fates, sent = fates_of(entries)
    by_fate = {f: {i for i, fate in fates.items() if fate == f} for f in accounting}
    in_flight = sent - fates.keys()
    never_sent = approved - sent - fates.keys()
    assert fates.keys() <= approved, context
    assert sent <= approved, context
    assert not by_fate["carried_out"] & present, (context, sorted(by_fate["carried_out"] & present)[:5])
    assert by_fate["not_carried_out"] <= present, (context, sorted(by_fate["not_carried_out"] - present)[:5])
    assert never_sent <= present, (context, sorted(never_sent - present)[:5])
    assert accounting["carried_out"] == len(by_fate["carried_out"]), context
    assert accounting["not_carried_out"] == len(by_fate["not_carried_out"] | never_sent), context
    assert accounting["unknown"] == len(by_fate["unknown"] | in_flight), context
    if not accounting["unknown"]:
        assert approved - present == by_fate["carried_out"], context  # exactly


def assert_counts_agree(
    accounting: Mapping[str, int], approved: set[str], present: set[str], context: str
) -> None:
    """What is gone of the plan is what was carried out, plus at most what was unknown."""
    assert present <= approved, context  # nothing became eligible: nothing beyond the plan
    gone = len(approved - present)
    carried, unknown = accounting["carried_out"], accounting["unknown"]
    assert carried <= gone <= carried + unknown, (context, gone)


# --- a known gap ---------------------------------------------------------------------------------------


class LeftUnknown(AssertionError):
    """Items whose request was answered before the kill are still unknown after the restart."""


async def test_a_cocoon_empty_killed_after_its_answer_is_not_left_unknown(
    crash_sandbox: Sandbox, campaign: Campaign
) -> None:
    op = next(o for o in OPERATIONS if o.id == "cocoon-empty")
    assert op.slow_reads is not None
    chain = campaign.chain("sqlite")
    sandbox = crash_sandbox
    sandbox.reset()
    op.prepare(sandbox)
    approved = op.present(sandbox)
    sandbox.inject(op.service, op.slow)
    victim = await chain.victim()
    store = chain.open_store()
    try:
        # The re-read of the bin after the answer is held: the kill lands 50 ms into it.
        shot = await destroy_and_kill(op, sandbox, victim, store, KillPoint("answered", 1, 0.05))
        assert shot.run_id is not None
        assert shot.entries is not None
        assert landed(shot.entries, len(approved)) == (
            "after an answer, before its items were settled",
            len(approved),
        )
        server = await restarted(sandbox, chain, victim, op.latency)
        chain.server = server
        async with Client(server.url) as client:
            view = ok(await client.call_tool(GET_RUN, {"run_id": shot.run_id}))["runs"][0]
            assert view["state"] == "interrupted"
            assert op.present(sandbox) == set(), "Cocoon answered the empty call: the bin is empty"
            settled: dict[str, Any] | None = None
            with contextlib.suppress(TimeoutError):  # as a Katapult purge's queued task is followed
                settled = await settled_view(client, store, shot.run_id, within=5)
    finally:
        await store.close()
    if settled is None:
        raise LeftUnknown(f"{view['accounting']}, in flight: {view['in_flight'][:3]}…; {view['result']}")
    assert settled["accounting"] == {"carried_out": len(approved), "not_carried_out": 0, "unknown": 0}


# --- the campaign as a whole ---------------------------------------------------------------------------


def test_the_campaign_killed_every_operation_on_both_stores(campaign: Campaign) -> None:
    if campaign.cases_run < len(CASES):
        pytest.skip(f"only {campaign.cases_run} of the campaign's {len(CASES)} cases ran")
    kills = campaign.kills
    assert len(kills) >= 50
    assert {(k.operation, k.store) for k in kills} == {(o.id, s) for o in OPERATIONS for s in STORES}
    where = [k.landed for k in kills]
    assert sum(w == "with a request in flight" for w in where) >= 10, where
    assert any(w in ("before the run was recorded", "before the first request") for w in where), where
    assert sum(w == "after the run finished" for w in where) >= 5, where
    assert any(k.resumed for k in kills), where
