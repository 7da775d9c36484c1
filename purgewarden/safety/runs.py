"""Runs: every confirmed execution, journaled in the store before its first destructive request.

A run is carried out by the process that confirmed it, in the background of that process, so it
outlives the tool call that started it: the call follows it for a while (`PURGEWARDEN_FOLLOW_SECONDS`)
and then answers `running`. Its journal says, at every moment, what was sent and what became of it:

    started → sending (ids or a count) → answered (the settlements since the last entry) → … → finished

`replay` turns a journal into exact accounting, so a process killed at any point leaves a run whose
state can be told: what was settled, what was in flight (unknown, and named as such), and what was
never sent. Runs carry their owner (host, pid, nonce) and the owner beats in the store; a process that
finds a running run whose owner is dead takes it over and marks it interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_json

from purgewarden.safety.outcome import FATES, Ledger
from purgewarden.safety.text import SAMPLE_SIZE
from purgewarden.store import Store, StoreError

logger = logging.getLogger(__name__)

RunState = Literal["running", "finished", "failed", "cancelled", "interrupted"]
RUN_URI = "purgewarden://runs/{run_id}"
BEAT_SECONDS = 2.0
"""How often a process says it is alive, and looks for runs whose process died."""
STALE_BEATS = 3
"""Beats missed before another host's process counts as dead (one on this host is checked by its pid)."""
RECENT_RUNS_CHECKED = 10
"""Interrupted runs a preview looks for among the latest (running ones are indexed: all are looked at)."""
WARN_ABOUT_INTERRUPTED_SECONDS = 86_400
PROGRESS_SECONDS = 0.1
"""At most one progress message per this long (the last always goes): a bulk delete answers a batch
every few ms on a fast API, and each message costs the server a write and the client a read."""
FLUSH_SECONDS = 1.0
"""How long a run's end waits to tell its follower the progress held back (a follower that is slow to
read is not worth holding the end for)."""
IN_FLIGHT = "in flight when the server carrying out the run stopped: it may or may not have been carried out"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunRecord(BaseModel):
    """What the store keeps of a run besides its journal: enough to show it and to take it over."""

    id: str
    tool: str
    service: str
    target: dict[str, Any]
    summary: str
    """The approved plan's summary."""
    size: int
    """Items the run may act on (the re-checked plan)."""
    principal: str | None = None
    client: str | None = None
    owner: str
    state: RunState = "running"
    started_at: str
    finished_at: str | None = None
    result: str | None = None
    """The outcome's summary, or why the run stopped."""
    notes: list[str] = []
    totals: dict[str, int] = {}
    accounting: dict[str, int] = {}
    in_flight: list[str] = []
    """Up to `SAMPLE_SIZE` ids that were in flight when the run's process stopped."""
    in_flight_count: int = 0
    checkpoints: dict[str, Any] = {}
    stopped_owner: str | None = None
    """The process that was carrying the run out when it stopped (an interrupted run)."""

    @property
    def uri(self) -> str:
        return RUN_URI.format(run_id=self.id)


@dataclass
class Replay:
    """A run's exact state as its journal tells it."""

    settled: dict[str, int]
    """What the journal records as settled, per fate."""
    accounting: dict[str, int]
    """Every approved item: settled, in flight (unknown), never sent (not carried out)."""
    in_flight: list[str]
    in_flight_count: int
    checkpoints: dict[str, Any]

    def record_in(self, record: RunRecord) -> None:
        """Write what the journal tells into an interrupted run's record."""
        record.accounting = self.accounting
        record.in_flight = self.in_flight[:SAMPLE_SIZE]
        record.in_flight_count = self.in_flight_count
        record.checkpoints = self.checkpoints
        record.result = (
            f"Interrupted: the server carrying out this run ({record.stopped_owner}) stopped. Accounting from "
            "its journal: "
            + describe_accounting(self.accounting)
            + (f"; {self.in_flight_count:,} of them {IN_FLIGHT}." if self.in_flight_count else ".")
        )


def replay(entries: Iterable[Mapping[str, Any]], size: int) -> Replay:
    """Settled items keep their fate; items sent and never settled are unknown (in flight); the rest of
    the `size` approved items were never sent, so not carried out."""
    counts: dict[str, int] = dict.fromkeys(FATES, 0)
    settled_ids: set[str] = set()
    sent_ids: dict[str, None] = {}
    unanswered_count = 0
    checkpoints: dict[str, Any] = {}
    requests: dict[int, list[str]] = {}
    for entry in entries:
        kind = entry["kind"]
        if kind == "sending" and entry.get("ids") is not None:
            requests[entry["request"]] = entry["ids"]
        for settlement in entry.get("settled", ()):
            if "count" in settlement:
                counts[settlement["fate"]] += settlement["count"]
                continue
            ids = settlement["ids"] if "ids" in settlement else requests[settlement["request"]]
            counts[settlement["fate"]] += len(ids)
            settled_ids.update(ids)
        if kind == "sending":
            if entry.get("ids") is not None:
                sent_ids.update(dict.fromkeys(entry["ids"]))
            else:
                unanswered_count = entry.get("count") or 0
        elif kind == "answered":
            unanswered_count = 0
        checkpoints.update(entry.get("data", {}))
    in_flight = [i for i in sent_ids if i not in settled_ids]
    settled = dict(counts)
    done = sum(settled.values())
    unknown = len(in_flight) + min(unanswered_count, max(0, size - done - len(in_flight)))
    counts["unknown"] += unknown
    counts["not_carried_out"] += max(0, size - done - unknown)
    return Replay(settled, counts, in_flight, unknown, checkpoints)


def _by_reference(settlement: dict[str, Any], sent: list[str] | None, request: int) -> dict[str, Any]:
    """A settlement of exactly the ids a request sent names the request instead of repeating its ids
    (a batch's 1,000 ids are written once, not twice)."""
    if sent is not None and settlement.get("ids") == sent:
        return {"fate": settlement["fate"], "request": request}
    return settlement


def _entry_text(entry: dict[str, Any]) -> str:
    """A journal entry as compact JSON, by pydantic's Rust encoder (a 1,000-id `sending` entry in a third of
    `json.dumps`'s time); text that is not valid Unicode (a lone surrogate) falls back to `json.dumps`,
    which escapes it, so no entry is ever lost to its encoding."""
    try:
        return to_json(entry, fallback=str).decode()
    except PydanticSerializationError:
        return json.dumps(entry, separators=(",", ":"), default=str)


class Journal:
    """One run's journal writer: each request sent is written before it goes out, and its answer (the
    ledger's settlements since) as soon as it is back."""

    def __init__(self, store: Store, run_id: str, ledger: Ledger) -> None:
        self.store = store
        self.run_id = run_id
        self.ledger = ledger
        self._requests = 0

    async def write(self, kind: str, **data: Any) -> None:
        entry = {"kind": kind, "at": round(time.time(), 3), **data}
        await self.store.journal(self.run_id, _entry_text(entry))

    @contextlib.asynccontextmanager
    async def sending(
        self, what: str, ids: Sequence[str] | None = None, count: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Around one destructive request: no cancellation lands inside it; once written as sent, the
        request is carried through and its answer journaled whatever happens, with the facts the body
        put in the yielded dict (a task id) in the same entry."""
        with anyio.CancelScope(shield=True):
            self._requests += 1
            number = self._requests
            listed = list(ids) if ids is not None else None
            await self.write("sending", request=number, what=what, ids=listed, count=count)
            facts: dict[str, Any] = {}
            try:
                yield facts
            finally:
                settled = [_by_reference(s, listed, number) for s in self.ledger.drain()]
                await self.write(
                    "answered", request=number, settled=settled, **({"data": facts} if facts else {})
                )

    async def checkpoint(self, **data: Any) -> None:
        """A fact the run may need after a crash (a task id, a call's counts)."""
        with anyio.CancelScope(shield=True):
            await self.write("checkpoint", data=data, settled=self.ledger.drain())


@dataclass
class LiveRun:
    """A run this process is carrying out: how to stop it, and who follows it."""

    record: RunRecord
    journal: Journal
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: Any = None
    failure: BaseException | None = None
    follower: Callable[[float, float | None, str], Awaitable[None]] | None = None
    stopped_by: str | None = None
    """Set when the run was asked to stop: "cancelled" (a user) or "interrupted" (a shutdown)."""
    _reported: float = field(default=-PROGRESS_SECONDS, init=False, repr=False)
    _held: tuple[float, float | None, str] | None = field(default=None, init=False, repr=False)
    """The latest progress not sent, for `flush`."""

    async def report(self, done: float, total: float | None, message: str) -> None:
        """Progress goes to the call following the run, while one does, every `PROGRESS_SECONDS` (the
        last, `done == total`, at once; one held back when the run ends short of it, by `flush`)."""
        now = time.monotonic()
        if now - self._reported < PROGRESS_SECONDS and done != total:
            self._held = (done, total, message)
            return
        self._reported, self._held = now, None
        await self._tell(done, total, message)

    async def flush(self) -> None:
        """The progress held back, if any: a run that ends short of its total (a failed task, a stop)
        still tells where it ended."""
        if self._held is not None:
            held, self._held = self._held, None
            await self._tell(*held)

    async def _tell(self, done: float, total: float | None, message: str) -> None:
        follower = self.follower
        if follower is not None:
            with contextlib.suppress(Exception):  # a follower that went away only stops listening
                await follower(done, total, message)

    def stop(self, why: Literal["cancelled", "interrupted"]) -> None:
        self.stopped_by = self.stopped_by or why
        self.scope.cancel()


Resumer = Callable[[RunRecord, Replay, Journal], Awaitable[None]]
"""What an operation does with a run taken over from a dead process (e.g. follow its queued task)."""


def _owner_pid(owner: str) -> tuple[str, int] | None:
    host, _, rest = owner.partition("/")
    pid, _, _ = rest.partition("/")
    return (host, int(pid)) if pid.isdigit() else None


class Runs:
    """The runs of every process sharing the store, and those this process carries out."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"
        self.live: dict[str, LiveRun] = {}
        self.resumers: dict[str, Resumer] = {}
        self._group: TaskGroup | None = None

    # --- lifetime ----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Beat, take over runs of dead processes, carry out runs; on exit, stop this process's runs
        between requests and record them as interrupted."""
        async with anyio.create_task_group() as group:
            self._group = group
            await self._beat()
            group.start_soon(self._beating)
            try:
                yield
            finally:
                for live in list(self.live.values()):
                    live.stop("interrupted")
                with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                    for live in list(self.live.values()):
                        await live.done.wait()
                group.cancel_scope.cancel()
                self._group = None

    async def _beating(self) -> None:
        while True:
            await anyio.sleep(BEAT_SECONDS)
            try:
                await self._beat()
            except StoreError as error:
                logger.warning("could not beat in the store: %s", error)

    async def _beat(self) -> None:
        now = time.time()
        await self.store.beat(self.owner, now + BEAT_SECONDS * STALE_BEATS, now)
        for run_id, live in list(self.live.items()):
            if await self.store.cancel_requested(run_id):
                live.stop("cancelled")
        await self.recover()

    async def owner_alive(self, owner: str) -> bool:
        if owner == self.owner:
            return True
        pid = _owner_pid(owner)
        if pid is not None and pid[0] == socket.gethostname():
            return _pid_alive(pid[1])  # on this host the process table is the truth, whatever the store kept
        return await self.store.alive_until(owner) > time.time()

    async def recover(self) -> list[str]:
        """Take over the runs whose process died: mark them interrupted with the journal's accounting,
        then let their operation finish what can be finished (a queued task followed to its end)."""
        taken = []
        for stored in await self.store.running_runs():
            if stored.id in self.live or await self.owner_alive(stored.owner):
                continue
            if not await self.store.claim(stored.id, self.owner, stored.owner):
                continue  # another process took it over first
            taken.append(stored.id)
            interrupted = await self.settle_interrupted(stored.id, stored.owner)
            if interrupted is None:
                continue
            record, told = interrupted
            resumer = self.resumers.get(record.tool)
            if resumer is not None and self._group is not None:
                self._group.start_soon(self._resume, record, told, resumer)
        return taken

    async def settle_interrupted(self, run_id: str, dead_owner: str) -> tuple[RunRecord, Replay] | None:
        stored = await self.store.get_run(run_id)
        if stored is None:
            return None
        record = RunRecord.model_validate_json(stored.body)
        told = replay([json.loads(e) for e in stored.entries], record.size)
        record.state = "interrupted"
        record.owner = self.owner
        record.stopped_owner = dead_owner
        record.finished_at = now_iso()
        told.record_in(record)
        await Journal(self.store, run_id, Ledger()).write("interrupted", by=self.owner, dead_owner=dead_owner)
        await self.store.save_run(run_id, "interrupted", record.model_dump_json())
        return record, told

    async def _resume(self, record: RunRecord, told: Replay, resumer: Resumer) -> None:
        """Let the run's operation finish what it can; the record then shows the journal's new state."""
        ledger = Ledger()
        journal = Journal(self.store, record.id, ledger)
        try:
            await resumer(record, told, journal)
        except Exception as error:  # a resumer's failure leaves the run interrupted, as recorded
            logger.warning("resuming run %s failed: %s", record.id, error)
        finally:
            with anyio.CancelScope(shield=True):
                await journal.write("resumed", settled=ledger.drain())
                stored = await self.store.get_run(record.id)
                if stored is not None:
                    replay([json.loads(e) for e in stored.entries], record.size).record_in(record)
                    await self.store.save_run(record.id, "interrupted", record.model_dump_json())

    # --- one run -----------------------------------------------------------------------------------

    async def start(self, record: RunRecord, ledger: Ledger) -> LiveRun:
        """Record the run and its `started` entry; raises `StoreError` before anything was sent."""
        await self.store.create_run(record.id, self.owner, time.time(), record.model_dump_json())
        journal = Journal(self.store, record.id, ledger)
        await journal.write("started", owner=self.owner, size=record.size, target=record.target)
        live = LiveRun(record, journal)
        self.live[record.id] = live
        return live

    def launch(self, live: LiveRun, body: Callable[[], Awaitable[Any]], finish: Finisher) -> None:
        """Carry out `body` in the background of this process; `finish` says what became of it."""
        if self._group is None:
            raise RuntimeError("runs are carried out only while the server is serving")
        self._group.start_soon(self._carry, live, body, finish)

    async def _carry(self, live: LiveRun, body: Callable[[], Awaitable[Any]], finish: Finisher) -> None:
        state: RunState = "failed"
        try:
            with live.scope:
                try:
                    live.outcome = await body()
                    state = "finished"
                except Exception as error:
                    live.failure = error
            if live.scope.cancelled_caught:
                state = "cancelled" if live.stopped_by == "cancelled" else "interrupted"
            with anyio.CancelScope(shield=True):
                record = live.record
                record.state = state
                record.finished_at = now_iso()
                finish(live, record)
                try:
                    await live.journal.write("finished", state=state, settled=live.journal.ledger.drain())
                    await self.store.save_run(record.id, state, record.model_dump_json())
                except StoreError as error:
                    logger.error("could not record the end of run %s: %s", record.id, error)
                with anyio.move_on_after(FLUSH_SECONDS):  # before the outcome its follower is waiting for
                    await live.flush()
        finally:
            self.live.pop(live.record.id, None)
            live.done.set()

    async def get(self, run_id: str) -> RunRecord | None:
        stored = await self.store.get_run(run_id, entries=False)
        if stored is None:
            return None
        record = RunRecord.model_validate_json(stored.body)
        live = self.live.get(run_id)
        if live is not None:
            record.accounting = live.journal.ledger.totals()
        elif stored.state == "running":
            # Carried out elsewhere: its journal says how far it got.
            full = await self.store.get_run(run_id)
            told = replay([json.loads(e) for e in full.entries] if full else [], record.size)
            record.accounting = told.settled
            record.checkpoints = told.checkpoints
        return record

    async def warnings_for(self, tool: str, target: Mapping[str, Any]) -> list[str]:
        """What a preview must say about runs of the same operation on the same target that are still
        going, or stopped with items whose fate is unknown (in the last day)."""
        since = datetime.now(UTC).timestamp() - WARN_ABOUT_INTERRUPTED_SECONDS
        warnings = []
        running = [RunRecord.model_validate_json(s.body) for s in await self.store.running_runs()]
        latest = [r for r in await self.recent(RECENT_RUNS_CHECKED) if r.state != "running"]
        for record in [*running, *latest]:
            if record.tool != tool or record.target != dict(target):
                continue
            if record.state == "running":
                warnings.append(
                    f"Run {record.id} on this same target is still running (started {record.started_at}): what "
                    "it deletes meanwhile changes what this plan shows. Follow it with purgewarden_get_run first."
                )
            elif (
                record.state == "interrupted"
                and datetime.fromisoformat(record.started_at).timestamp() > since
            ):
                warnings.append(
                    f"Run {record.id} on this same target was interrupted when its server stopped "
                    f"({describe_accounting(record.accounting)}). Look at it with purgewarden_get_run."
                )
        return warnings

    async def recent(self, limit: int) -> list[RunRecord]:
        return [RunRecord.model_validate_json(s.body) for s in await self.store.recent_runs(limit)]

    async def cancel(self, run_id: str) -> LiveRun | None:
        """Ask the run to stop between requests, wherever it runs; the live run when it runs here."""
        await self.store.request_cancel(run_id)
        live = self.live.get(run_id)
        if live is not None:
            live.stop("cancelled")
        return live


Finisher = Callable[[LiveRun, RunRecord], None]
"""Fills the record of a run that ended (its result, totals, notes, accounting), from the live run."""


def describe_accounting(accounting: Mapping[str, int]) -> str:
    return ", ".join(f"{accounting.get(fate, 0):,} {fate.replace('_', ' ')}" for fate in FATES)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
