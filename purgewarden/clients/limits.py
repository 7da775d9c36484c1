"""How many requests of one kind a client keeps in flight: found by watching the API, not configured.

The right number depends on the API's capacity, which no setting can know: a fixed 8 leaves a fast
Vault idle and doubles the queue of a busy one. `AdaptiveLimit` starts low and climbs the throughput
hill, deciding once per round (a limit's worth of answers to requests sent since the last change, at
least `ROUND_ANSWERS`: about one round trip):

- **A step is kept only if it paid.** Throughput is requests in flight / mean latency (Little's law).
  A step up must raise it by at least `GAIN_SHARE` of the step's own share (11 → 12 must gain 2.3 %);
  a step down is kept when it costs less than that. A step that did not pay is undone, and the other
  direction is tried after `HOLD_ROUNDS`. Where the API queues requests (its workers are full), more in
  flight only adds latency, so the limit settles at the knee: every worker busy, nothing waiting. Where
  latency rises because a round trip is being overlapped, throughput still rises, and so does the limit.
- **Steps.** Slow start multiplies the limit by `SLOW_START_GROWTH` until a step fails to pay; after
  that a step up is 1, doubling while steps keep paying, up to an eighth of the limit (capacity that
  grew is found in a few rounds, without leaping past the knee).
- **Overload.** A 429, a 503 or a timeout halves the limit at once and forgets what was measured.

Growth waits for a round the limit was actually used in (no growing while a run's tail is idle). The
limit persists with the client, so a server that has learned its API starts the next run there.
`LimitPolicy` is the arithmetic alone (tested without a loop); `AdaptiveLimit` adds the gate.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

INITIAL_LIMIT = 4
"""Where an API not seen yet starts: low, as a newcomer to a shared database should."""
SLOW_START_GROWTH = 1.5
"""Per round until a step fails to pay; its overshoot is at most this factor in load, for one round."""
GAIN_SHARE = 0.25
"""A step up is kept when throughput rises by at least this share of the step (and one down when it
falls by less): more in flight must buy more work done, not only a longer queue."""
HOLD_ROUNDS = 4
"""Rounds spent at a limit after undoing a step, before trying the other way."""
OVERLOAD_CUT = 0.5
ROUND_ANSWERS = 8
"""At least this many answers make a round, however low the limit: fewer are too noisy to judge by."""


@dataclass
class LimitPolicy:
    """The limit's arithmetic: fed answers (latency, epoch, slots in use when sent), it moves the limit."""

    ceiling: int
    limit: int = INITIAL_LIMIT
    slow_start: bool = True
    epoch: int = 0
    """Bumped at every change; only answers to requests sent at the current limit decide the next."""
    rates: dict[int, float] = field(default_factory=dict)
    """Throughput measured at each limit (requests per second, averaged over its rounds)."""
    stepped_from: int | None = None
    """The limit before the step on trial; None when the current limit is not on trial."""
    hold: int = 0
    probe_up: bool = True
    step: int = 1
    """The next step up after slow start: doubles while steps pay, back to 1 when one does not."""
    _round: list[float] = field(default_factory=list)
    _busiest: int = 0

    def __post_init__(self) -> None:
        self.limit = min(max(1, self.ceiling), max(1, self.limit))

    @property
    def allowed(self) -> int:
        return self.limit

    def answered(self, seconds: float, *, epoch: int, in_use: int) -> None:
        """One answer that was not a push-back, `seconds` after its request was sent."""
        if epoch != self.epoch:
            return
        self._round.append(seconds)
        self._busiest = max(self._busiest, in_use)
        if len(self._round) >= max(self.limit, ROUND_ANSWERS):
            self._decide()

    def overloaded(self, *, epoch: int) -> None:
        """A 429, 503 or timeout: the API says it is full. Once per round, however many say so."""
        if epoch != self.epoch:
            return
        self.slow_start = False
        self.rates.clear()  # measured under other conditions
        self.hold = HOLD_ROUNDS
        self.probe_up = True
        self.step = 1
        self._change(int(self.limit * OVERLOAD_CUT), judged=False)

    def _decide(self) -> None:
        # The later half: the first answers after a change come before the queue it causes has built up.
        latency = statistics.fmean(self._round[len(self._round) // 2 :])
        used = self._busiest >= self.limit - 1
        self._round.clear()
        self._busiest = 0
        if not used:
            return  # the limit was not reached: this round says nothing about it
        rate = self.limit / latency
        seen = self.rates.get(self.limit)
        self.rates[self.limit] = rate if seen is None else (seen + rate) / 2
        before = self.stepped_from
        if before is not None:
            self._judge(before)
        elif self.hold > 0:
            self.hold -= 1
        else:
            self._step(up=self.probe_up)

    def _judge(self, before: int) -> None:
        """Go on the same way if the step from `before` paid; else undo it, and later try the other way."""
        up = self.limit > before
        change = self.rates[self.limit] / self.rates[before] - 1
        share = self.limit / before - 1
        if change >= GAIN_SHARE * share:  # (both negative for a step down: it lost less than its share)
            if up and not self.slow_start:
                self.step = min(self.step * 2, max(1, self.limit // 8))
            self._step(up=up)
            return
        self.slow_start = False
        self.step = 1
        self.probe_up = not up
        self.hold = HOLD_ROUNDS
        self._change(before, judged=False)

    def _step(self, *, up: bool) -> None:
        if up:
            grown = int(self.limit * SLOW_START_GROWTH) if self.slow_start else self.limit + self.step
            target = min(self.ceiling, max(self.limit + 1, grown))
        else:
            target = self.limit - 1
        if target == self.limit or target < 1:
            self.probe_up = not up  # at the ceiling or at 1: the next probe goes the other way
            self.step = 1
            self.hold = HOLD_ROUNDS
            self.stepped_from = None
            return
        self.probe_up = up
        self._change(target, judged=True)

    def _change(self, limit: int, *, judged: bool) -> None:
        previous = self.limit
        self.limit = min(self.ceiling, max(1, limit))
        self.stepped_from = previous if judged and self.limit != previous else None
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

    async def pause(self, seconds: float) -> None:
        """Wait `seconds` before another attempt without holding the place, then queue for one again
        (first in line): a retry goes out under the limit as it is then, so a 429 storm cannot feed
        itself with retries of requests the lowered limit no longer allows."""
        self.gate.release()
        try:
            await anyio.sleep(seconds)
        finally:
            await self.gate.acquire(first=True)
        self.epoch, self.in_use = self.gate.policy.epoch, self.gate.in_flight


class AdaptiveLimit:
    """A gate that lets `policy.allowed` requests through at once, in arrival order."""

    def __init__(self, ceiling: int) -> None:
        self.policy = LimitPolicy(ceiling)
        self.in_flight = 0
        self._waiting: deque[anyio.Event] = deque()

    @property
    def limit(self) -> int:
        return self.policy.allowed

    def bound(self, ceiling: int) -> None:
        """A new upper bound (settings can change between runs); what was learned below it is kept."""
        if ceiling != self.policy.ceiling:
            self.policy.ceiling = ceiling
            self.policy.limit = min(self.policy.limit, ceiling)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        await self.acquire()
        try:
            yield Slot(self, self.policy.epoch, self.in_flight)
        finally:
            self.release()

    async def acquire(self, *, first: bool = False) -> None:
        """A place in flight, waiting in arrival order (or at the head of the line) while none is free."""
        if self.in_flight < self.limit and not self._waiting:
            self.in_flight += 1
            return
        event = anyio.Event()
        if first:
            self._waiting.appendleft(event)
        else:
            self._waiting.append(event)
        try:
            await event.wait()
        except BaseException:
            if event in self._waiting:
                self._waiting.remove(event)
            elif event.is_set():
                self.release()  # a place was handed to us: pass it on
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self.wake()

    def wake(self) -> None:
        """Hand free places to the longest waiting (a place handed over is counted as taken)."""
        while self._waiting and self.in_flight < self.limit:
            self.in_flight += 1
            self._waiting.popleft().set()
