"""Where plans and runs live, so that every purgewarden process sharing a store agrees on them.

One interface, two stores: an embedded SQLite file (WAL) shared by every process on a machine, and
Redis or Valkey for replicas on several machines. Both hold opaque JSON text; what it means (a plan's
bindings and ids, a run's journal) is the safety kernel's business. Every operation that decides who wins —
consuming a plan, reserving it for a question, claiming a dead process's run — is one atomic step of
the store, never a read followed by a write.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import anyio

EMPTY_IDS = b"[]"
"""The ids of a plan that names none (its totals say what it destroys)."""


class StoreError(Exception):
    """The store could not be reached or written: nothing may be destroyed without its record."""


@dataclass(frozen=True)
class PlanSlot:
    body: str
    used: bool
    asking_until: float
    """Until when one call's question holds the plan (0: nobody is asking)."""


@dataclass(frozen=True)
class StoredRun:
    id: str
    state: str
    owner: str
    body: str
    entries: list[str] = field(default_factory=list)
    """The journal, oldest first (only when asked for)."""


@dataclass
class GroupCommit:
    """Journal entries waiting for the next write, and which writes are done or failed."""

    flushing: anyio.Lock = field(default_factory=anyio.Lock)
    queued: list[tuple[str, str]] = field(default_factory=list)
    queued_seq: int = 0
    flushed_seq: int = 0
    failed: tuple[int, int, StoreError] | None = None
    """The last failed write: the first and last sequence numbers it held, and why."""


class Store(ABC):
    """Plans (single use, reservable for one question) and runs (a record, a journal, an owner)."""

    url: str
    """Where it is, without credentials: for messages and `/readyz`."""

    # --- plans -------------------------------------------------------------------------------------

    @abstractmethod
    async def put_plan(
        self, key: str, body: str, keep_until: float, now: float, *, ids: bytes = EMPTY_IDS
    ) -> None:
        """Keep a new plan, and apart from it the ids it names, until `keep_until` (epoch seconds), after
        which it may be forgotten (the kernel checks expiry itself). A key that exists already is a
        `StoreError`."""

    @abstractmethod
    async def get_plan(self, key: str) -> PlanSlot | None:
        """The plan without its ids (which may take megabytes)."""

    @abstractmethod
    async def reserve(self, key: str, until: float, now: float) -> bool:
        """Hold an unused plan for one question until `until`; False when used or held by another."""

    @abstractmethod
    async def release(self, key: str) -> None: ...

    @abstractmethod
    async def consume(self, key: str) -> bytes | None:
        """Mark the plan used; its ids for exactly one caller, whichever process it is in, None for the
        others (or when there is no such plan)."""

    # --- runs --------------------------------------------------------------------------------------

    @abstractmethod
    async def create_run(self, run_id: str, owner: str, started: float, body: str) -> None: ...

    async def journal(self, run_id: str, entry: str) -> None:
        """Append one entry to the run's journal; returns once it is stored, or raises the failure of the
        write that held it. Entries queued while a write is under way go together in the next one (group
        commit): eight batches in flight cost one round trip, not eight."""
        group = self._group
        group.queued_seq += 1
        mine = group.queued_seq
        group.queued.append((run_id, entry))
        async with group.flushing:
            if mine > group.flushed_seq:
                batch, group.queued = group.queued, []
                first, last = group.flushed_seq + 1, group.queued_seq
                group.flushed_seq = last
                try:
                    await self.append_entries(batch)
                except StoreError as error:
                    group.failed = (first, last, error)
                    raise
        if group.failed is not None and group.failed[0] <= mine <= group.failed[1]:
            raise group.failed[2]

    @cached_property
    def _group(self) -> GroupCommit:
        return GroupCommit()

    @abstractmethod
    async def append_entries(self, entries: list[tuple[str, str]]) -> None:
        """Append (run id, entry) pairs to their runs' journals, in order, all or none."""

    @abstractmethod
    async def save_run(self, run_id: str, state: str, body: str) -> None: ...

    @abstractmethod
    async def get_run(self, run_id: str, *, entries: bool = True) -> StoredRun | None: ...

    @abstractmethod
    async def recent_runs(self, limit: int) -> list[StoredRun]:
        """The latest runs first, without their journals."""

    @abstractmethod
    async def running_runs(self) -> list[StoredRun]:
        """Runs whose record still says running (their owner may have died), without their journals."""

    @abstractmethod
    async def claim(self, run_id: str, owner: str, expected_owner: str) -> bool:
        """Take over a running run from `expected_owner`; True for exactly one claimant."""

    @abstractmethod
    async def request_cancel(self, run_id: str) -> None: ...

    @abstractmethod
    async def cancel_requested(self, run_id: str) -> bool: ...

    # --- owners ------------------------------------------------------------------------------------

    @abstractmethod
    async def beat(self, owner: str, alive_until: float, now: float) -> None:
        """The owner is alive until `alive_until` unless it beats again."""

    @abstractmethod
    async def alive_until(self, owner: str) -> float:
        """0 when the owner never beat, or its last beat has been forgotten."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise `StoreError` unless the store answers."""

    @abstractmethod
    async def close(self) -> None: ...


def open_store(url: str | None, state_dir: Path) -> Store:
    """`redis://…`/`rediss://…`/`valkey://…`, `sqlite:///path`, or None: the SQLite file in `state_dir`."""
    if url is None or url.startswith("sqlite:"):
        from purgewarden.store.sqlite import SqliteStore

        path = Path(url.removeprefix("sqlite://")) if url else state_dir / "purgewarden.db"
        return SqliteStore(path)
    if url.startswith(("redis://", "rediss://", "valkey://", "valkeys://", "unix://")):
        try:
            from purgewarden.store.redis import RedisStore
        except ImportError:
            raise StoreError(
                "PURGEWARDEN_STORE_URL names Redis, but the redis client is not installed: install purgewarden[redis]"
            ) from None
        return RedisStore(url)
    raise StoreError(
        f"PURGEWARDEN_STORE_URL must start with redis://, rediss://, valkey:// or sqlite:/// (got {url.split(':')[0]}:…)"
    )
