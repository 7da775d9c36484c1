"""How many requests of one kind a client keeps in flight: found by watching the API, not configured.

The right number depends on the API's capacity, which no setting can know: a fixed 8 leaves a fast
Vault idle and doubles the queue of a busy one. `AdaptiveLimit` starts low and decides once per round
(a limit's worth of answers to requests sent since the last change: one round trip), TCP-style:

- **Floor.** The round's mean latency is compared with the lowest round mean seen (the API unloaded
  by us). While it stays within `GROW_BELOW` of that floor, more in flight means more throughput: in slow
  start the limit grows by half each round, then by one.
- **Queueing.** Above `SHRINK_ABOVE` requests are waiting on the API's side (its workers are full), so
  the limit is cut to what would bring latency back to the floor (a gradient, at most by half).
- **Overload.** A 429 or 503 halves the limit at once, and ends slow start.

Growth waits for a round the limit was actually used in (no growing while a run's tail is idle). The
floor is reset by what a limit of 1 measures, where nothing of ours can queue, so a network that became
slower is learned rather than read as a queue for ever.
The limit persists with the client, so a server that has learned its API starts the next run there.
`LimitPolicy` is the arithmetic alone (tested without a loop); `AdaptiveLimit` adds the gate.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

INITIAL_LIMIT = 4
"""Where an API not seen yet starts: low, as a newcomer to a shared database should."""
GROW_BELOW = 1.05
"""Round latency / floor under which the API is not queueing our requests (noise allowed)."""
SHRINK_ABOVE = 1.25
"""Round latency / floor over which requests are queueing on the API's side: back off."""
SLOW_START_GROWTH = 1.5
"""Per round while nothing has pushed back; its overshoot is at most this factor in latency."""
OVERLOAD_CUT = 0.5


@dataclass
class LimitPolicy:
    """The limit's arithmetic: fed answers (latency, epoch, slots in use when sent), it moves the limit."""

    ceiling: int
    limit: float = INITIAL_LIMIT
    slow_start: bool = True
    floor: float | None = None
    """Lowest round mean seen: the API's answer time when we are not queueing on it."""
    epoch: int = 0
    """Bumped at every change; only answers to requests sent at the current limit decide the next."""
    _round: list[float] = field(default_factory=list)
    _busiest: int = 0

    def __post_init__(self) -> None:
        self.limit = float(min(max(1, self.ceiling), self.limit))

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit))

    def answered(self, seconds: float, *, epoch: int, in_use: int) -> None:
        """One answer that was not a push-back, `seconds` after its request was sent."""
        if epoch != self.epoch:
            return
        self._round.append(seconds)
        self._busiest = max(self._busiest, in_use)
        if len(self._round) >= self.allowed:
            self._decide()

    def overloaded(self, *, epoch: int) -> None:
        """A 429 or 503: the API says it is full. Once per round, however many say so."""
        if epoch != self.epoch:
            return
        self.slow_start = False
        self._change(self.limit * OVERLOAD_CUT)

    def _decide(self) -> None:
        latency = statistics.fmean(self._round)
        if self.floor is None or latency < self.floor or self.allowed == 1:
            self.floor = latency  # at 1 nothing of ours can queue: this is the API unloaded, now
        ratio = latency / self.floor
        used = self._busiest >= self.allowed - 1
        if ratio > SHRINK_ABOVE:
            self.slow_start = False
            self._change(self.limit * max(OVERLOAD_CUT, 1 / ratio))
        elif ratio < GROW_BELOW and used:
            grown = self.limit * SLOW_START_GROWTH if self.slow_start else self.limit + 1
            self._change(max(grown, self.limit + 1))
        elif ratio >= GROW_BELOW and self.slow_start:
            self.slow_start = False
            self._change(self.limit)
        else:
            self._round.clear()
            self._busiest = 0

    def _change(self, limit: float) -> None:
        self.limit = min(float(self.ceiling), max(1.0, limit))
        self.epoch += 1
        self._round.clear()
        self._busiest = 0


@dataclass
class Slot:
    """One request's place in flight; the client reports its answers (each attempt) here."""

    gate: AdaptiveLimit
    epoch: int
    in_use: int

    def answered(self, seconds: float) -> None:
        self.gate.policy.answered(seconds, epoch=self.epoch, in_use=self.in_use)
        self.gate.wake()

    def overloaded(self) -> None:
        self.gate.policy.overloaded(epoch=self.epoch)


class AdaptiveLimit:
    """A gate that lets `policy.allowed` requests through at once, in arrival order."""

    def __init__(self, ceiling: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = LimitPolicy(ceiling)
        self.clock = clock
        self.in_flight = 0
        self._waiting: deque[anyio.Event] = deque()

    @property
    def limit(self) -> int:
        return self.policy.allowed

    def bound(self, ceiling: int) -> None:
        """A new upper bound (settings can change between runs); what was learned below it is kept."""
        if ceiling != self.policy.ceiling:
            self.policy.ceiling = ceiling
            self.policy.limit = min(self.policy.limit, float(ceiling))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        if self.in_flight >= self.limit or self._waiting:
            event = anyio.Event()
            self._waiting.append(event)
            try:
                await event.wait()
            except BaseException:
                if event in self._waiting:
                    self._waiting.remove(event)
                elif event.is_set():
                    self.in_flight -= 1  # a place was handed to us: pass it on
                    self.wake()
                raise
        else:
            self.in_flight += 1
        try:
            yield Slot(self, self.policy.epoch, self.in_flight)
        finally:
            self.in_flight -= 1
            self.wake()

    def wake(self) -> None:
        """Hand free places to the longest waiting (a place handed over is counted as taken)."""
        while self._waiting and self.in_flight < self.limit:
            self.in_flight += 1
            self._waiting.popleft().set()
