"""A capacity model for an emulator: a few workers, a cost per request, a bounded queue, 429 beyond it.

Without one, every call costs the same however many run at once, so "more in flight" always looks
faster; a real database saturates, then queues, then refuses. `Throttle` enforces a `Capacity`:

- A request waits, first come first served, for a free worker and holds it while it costs
  `request_seconds` plus `item_seconds` per item it deletes. The cost is an `anyio.sleep`: simulated
  database time, so many requests can be "busy" without the emulator's CPU being the bottleneck.
- When every worker is busy and `queue_limit` requests already wait, the request is refused at once
  (`Overloaded`, which the emulator answers as 429 with Retry-After) and changes nothing.
- Deletes pay their cost before their state change, as a database commits at the end: a request
  still waiting or sleeping has deleted nothing. GC pays after it runs, since what it deletes is only
  known then. Invalid requests still pay the base cost (checking them took a worker too).
- The setting is one immutable value swapped under a lock, so other threads (tests, the bench) may
  change it while the emulator's event loop serves: a change applies to requests arriving after it,
  and those already admitted finish under the setting they arrived with.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from pydantic import BaseModel, ConfigDict, Field


class Capacity(BaseModel):
    """How much work the emulated database does at once, and what a request costs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workers: int = Field(ge=1, description="Requests served at once")
    request_seconds: float = Field(
        default=0.002, ge=0.0, description="Base cost of any request while it holds a worker"
    )
    item_seconds: float = Field(
        default=0.0001,
        ge=0.0,
        description="Extra cost per item deleted: bulk delete its ids, single delete 1, GC the count it "
        "deletes (dry-run GC and reads cost only the base)",
    )
    queue_limit: int = Field(
        default=100,
        ge=0,
        description="Requests that may wait for a worker; beyond that a request is answered 429 at once",
    )
    retry_after: float = Field(
        default=1.0, ge=0.0, le=3600.0, description="The Retry-After seconds sent with that 429"
    )


@dataclass(frozen=True)
class CapacityStats:
    """What an observer sees: requests served and refused, the longest queue, the work under way now."""

    served: int
    rejected: int
    max_queue: int
    busy: int
    waiting: int


@dataclass(frozen=True)
class CapacityWindow:
    """What one stretch of traffic did to the database: requests served and refused, the longest queue,
    and each served delete's time in it (waiting for a worker plus being served)."""

    served: int
    rejected: int
    max_queue: int
    delete_seconds: tuple[float, ...]


class Overloaded(Exception):
    """Every worker is busy and the queue is full: the request was refused and changed nothing."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"over capacity; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Counters:
    """Mutated by the event loop only; replaced whole by `reset`, so late requests cannot skew new ones."""

    served: int = 0
    rejected: int = 0
    max_queue: int = 0
    busy: int = 0
    waiting: int = 0
    delete_seconds: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class _Pool:
    """One capacity with its own workers; a new setting gets a new pool, so admitted requests keep theirs."""

    capacity: Capacity
    workers: anyio.Semaphore


@dataclass(frozen=True)
class _Setting:
    pool: _Pool | None
    counters: _Counters


class Worker:
    """A worker held by one request; `spend` charges the items it deletes."""

    def __init__(self, item_seconds: float) -> None:
        self._item_seconds = item_seconds
        self.items = 0

    async def spend(self, items: int) -> None:
        self.items += items
        if self._item_seconds and items:
            await anyio.sleep(self._item_seconds * items)


_FREE = Worker(0.0)
"""What a request holds when no capacity is set: it costs nothing."""


class Throttle:
    """Enforces one emulator's `Capacity` (none by default). Safe to change from any thread."""

    def __init__(self, capacity: Capacity | None = None) -> None:
        self._lock = threading.Lock()
        self._setting = _Setting(None, _Counters())
        self.set(capacity)

    @property
    def capacity(self) -> Capacity | None:
        pool = self._setting.pool
        return pool.capacity if pool is not None else None

    def set(self, capacity: Capacity | None) -> None:
        """Apply `capacity` (None: off) to requests arriving from now on; the counters carry on."""
        # The semaphore binds to the emulator's event loop on first use, whichever thread made it.
        pool = _Pool(capacity, anyio.Semaphore(capacity.workers)) if capacity is not None else None
        with self._lock:
            self._setting = _Setting(pool, self._setting.counters)

    def reset(self) -> None:
        """Off, with the counters at zero."""
        with self._lock:
            self._setting = _Setting(None, _Counters())

    def stats(self) -> CapacityStats:
        c = self._setting.counters
        return CapacityStats(c.served, c.rejected, c.max_queue, c.busy, c.waiting)

    def window(self) -> CapacityWindow:
        """The counters since the last window (or set), then zero: what one client's run did to the
        database. Requests still under way count toward the window they arrived in."""
        with self._lock:
            ended = self._setting.counters
            self._setting = _Setting(self._setting.pool, _Counters())
        return CapacityWindow(ended.served, ended.rejected, ended.max_queue, tuple(ended.delete_seconds))

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        """Wait for a worker and pay the base cost; raise `Overloaded` at once when the queue is full."""
        setting = self._setting  # one read: the pool and the counters this request answers to
        pool, counters = setting.pool, setting.counters
        if pool is None:
            yield _FREE
            return
        capacity, workers = pool.capacity, pool.workers
        arrived = time.monotonic()
        queued = workers.value == 0
        if queued:
            if workers.statistics().tasks_waiting >= capacity.queue_limit:
                counters.rejected += 1
                raise Overloaded(capacity.retry_after)
            counters.waiting += 1
            counters.max_queue = max(counters.max_queue, counters.waiting)
        try:
            await workers.acquire()
        finally:
            if queued:
                counters.waiting -= 1
        counters.busy += 1
        worker = Worker(capacity.item_seconds)
        try:
            await anyio.sleep(capacity.request_seconds)
            yield worker
        finally:
            counters.busy -= 1
            counters.served += 1
            if worker.items:
                counters.delete_seconds.append(time.monotonic() - arrived)
            workers.release()
