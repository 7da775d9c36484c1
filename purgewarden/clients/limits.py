"""How many requests of one kind a client keeps in flight: found by watching the API, not configured.

The right number depends on the API's capacity, which no setting can know: a fixed 8 leaves a fast
Vault idle and doubles the queue of a busy one. `AdaptiveLimit` climbs the throughput hill, judging one
limit per round: the first `round_size` requests sent while the limit is full, every one of them however
late it comes back (the first answers back are the fastest and would flatter it), throughput being
requests in flight / their mean latency (Little's law).

- **A step is kept only if it paid.** A step up must raise throughput by at least `STEP_SHARE` of the
  step's own share (x1.5 must gain 10 %); a step down is kept when it costs less than that. More in
  flight must buy more work done, not only a longer queue: past a worker pool's knee a step buys
  almost nothing (the little it buys is the pool never idle between requests, paid for by a queue),
  while where a round trip or a busy CPU is being overlapped throughput still rises with it.
- **Climb.** From `INITIAL_LIMIT`, x`CLIMB_GROWTH` a round while steps pay, by less as they buy less.
- **Past a knee a step must pay like one below it.** A step up that makes requests wait for a worker
  (most still served at once, a few about a whole service time later) must buy `PIPE_SHARE` of its
  share: a good citizen does not queue on the API for the little throughput a pool never idle between
  requests brings. When it does not, the knee lies between, and the limit goes where throughput in
  proportion to it would reach what the step measured, less what it counts waiting there already (as
  TCP Vegas counts its queue): for 12 workers, a climb through 11 to 16 settles at 12.
- **Probes.** `HOLD_ROUNDS` later a step is measured, to follow an API whose capacity changes: where
  latency is near its floor one request up (a step down could only lose), and after a knee only
  `KNEE_HOLD_ROUNDS` later, twice as long after each probe there that did not pay (each queues a
  request for a whole service time); where latency shows a queue already, x`PROBE_GROWTH` either way
  (a step of one is lost in noise there), the same way while steps pay and the other way when not.
  A change is measured after `round_size` answers have settled the queue the old limit left.
- **Overload.** A 429, a 503 or a timeout halves the limit at once, forgets what was measured at or
  above the limit it hit, and ends the climb; the next probe goes down.

The limit persists with the client, so a server that has learned its API starts the next run there.
`LimitPolicy` is the arithmetic alone (tested without a loop); `AdaptiveLimit` adds the gate.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

INITIAL_LIMIT = 4
"""Where an API not seen yet starts: low, as a newcomer to a shared database should."""
CLIMB_GROWTH = 1.5
"""Per round while climbing; its overshoot is at most this factor in load, for one round."""
STEP_SHARE = 0.2
"""A step up is kept when throughput rises by at least this share of the step (and one down when it
falls by less)."""
PIPE_SHARE = 0.5
"""What a step up that makes requests wait for a worker, or a probe one request up from a limit with
no queue, must buy: below a knee it buys its whole share, past it next to nothing (the little it buys
is the pool never idle between requests, paid for by a queue), and a lower bar lets noise walk the
limit past the knee."""
NEAR_FLOOR = 1.2
"""Latency within this factor of its floor: no queue to speak of at that limit."""
QUEUED = 1.5
"""A request this many times the floor latency waited for a worker about a whole service time."""
PROBE_GROWTH = 1.25
HOLD_ROUNDS = 4
"""Rounds at a limit before the next probe."""
KNEE_HOLD_ROUNDS = 32
KNEE_HOLD_MOST = 256
FORGET_ROUNDS = 64
"""A limit's measure older than this many rounds is forgotten: the API may have changed since."""
OVERLOAD_CUT = 0.5
ROUND_ANSWERS = 8
"""At least this many answers make a round, however low the limit: fewer are too noisy to judge by."""


@dataclass
class Measure:
    """Throughput, and mean, lower-quartile and longest latency at one limit (averaged over its rounds), and the
    round it was last measured in."""

    rate: float
    latency: float
    fastest: float
    """The lower quartile: what the quickest requests took."""
    slowest: float
    round: int


@dataclass
class LimitPolicy:
    """The limit's arithmetic: fed answers (latency, epoch, whether measured), it moves the limit."""

    ceiling: int
    limit: int = INITIAL_LIMIT
    climbing: bool = True
    epoch: int = 0
    """Bumped at every round; only answers to requests sent in the current one count."""
    measured: dict[int, Measure] = field(default_factory=dict)
    rounds: int = 0
    stepped_from: int | None = None
    """The limit before the step being measured; None when the limit is not on trial."""
    hold: int = 0
    probe_up: bool = True
    knee_hold: int = KNEE_HOLD_ROUNDS
    settling: int = 0
    """Answers still to come before a change is measured: the first requests at a new limit find the
    queue the old one left."""
    _enlisted: int = 0
    _round: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.limit = min(max(1, self.ceiling), max(1, self.limit))

    @property
    def allowed(self) -> int:
        return self.limit

    @property
    def round_size(self) -> int:
        return max(self.limit, ROUND_ANSWERS)

    def enlist(self, in_use: int) -> bool:
        """Whether a request sent now, the `in_use`th in flight, is one this round measures."""
        if self.settling or self._enlisted >= self.round_size or in_use < self.limit - 1:
            return False
        self._enlisted += 1
        return True

    def answered(self, seconds: float, *, epoch: int, measured: bool = True) -> None:
        """One answer that was not a push-back, `seconds` after its request was sent."""
        if epoch != self.epoch:
            return
        if self.settling:
            self.settling -= 1
            if not self.settling:
                self._next_round()
            return
        if not measured:
            return
        self._round.append(seconds)
        if len(self._round) >= self.round_size:
            self._decide()

    def lost(self, *, epoch: int, measured: bool) -> None:
        """A request that will not be answered: if its round counted on it, another takes its place."""
        if epoch == self.epoch and measured:
            self._enlisted -= 1

    def overloaded(self, *, epoch: int) -> None:
        """A 429, 503 or timeout: the API says it is full. Once per round, however many say so."""
        if epoch != self.epoch:
            return
        self.climbing = False
        for limit in [limit for limit in self.measured if limit >= self.limit]:
            del self.measured[limit]  # what looked fine there did not last
        self.hold = HOLD_ROUNDS
        self.probe_up = False
        self._change(int(self.limit * OVERLOAD_CUT))

    def _next_round(self) -> None:
        self.epoch += 1
        self._enlisted = 0
        self._round.clear()

    def _decide(self) -> None:
        latency = statistics.fmean(self._round)
        self.rounds += 1
        fastest = statistics.quantiles(self._round, n=4)[0]
        self._record(Measure(self.limit / latency, latency, fastest, max(self._round), self.rounds))
        self._next_round()
        before = self.stepped_from
        if before is None:
            if self.climbing:
                self._climb(pace=1.0)
            elif self.hold > 0:
                self.hold -= 1
            else:
                self._probe()
            return
        bought = self._bought(before)
        # A step down is kept if it cost little, one up if it bought what it must.
        kept = bought <= STEP_SHARE if self.limit < before else bought >= self._share_due(before)
        if kept:
            self.stepped_from = None
            if self.climbing:
                self._climb(pace=min(1.0, bought))
            else:
                self.hold = HOLD_ROUNDS  # then on the same way
            return
        self._undo(before)

    def _share_due(self, before: int) -> float:
        """What a step up from `before` must buy: where it made requests wait for a worker, or where it
        is one request past a limit with no queue, what a step below a knee buys (a good citizen does
        not queue on the API for a little more throughput); elsewhere `STEP_SHARE`."""
        from_floor = not self.climbing and self._near_floor(before)
        return PIPE_SHARE if from_floor or self._queued(self.limit) else STEP_SHARE

    def _undo(self, before: int) -> None:
        """Back from a step that did not pay. Where it made requests wait for a worker the knee is
        found: between `before` and it, where throughput in proportion to the limit would reach what
        it measured (less what `before` already queued), and probes past it wait `knee_hold`."""
        back = before
        self.probe_up = self.limit < before
        self.hold = HOLD_ROUNDS
        knee = self.limit > before and (
            self._queued(self.limit) or (self._near_floor(before) and not self.climbing)
        )
        if knee:
            proportional = math.floor(before * self.measured[self.limit].rate / self.measured[before].rate)
            back = min(self.limit - 1, max(before, proportional))
            if self._queued(before) and self._near_floor(before):
                back = before - max(1, self._waiting(before))
            self.probe_up = True
            self.hold = self.knee_hold
            self.knee_hold = min(2 * self.knee_hold, KNEE_HOLD_MOST)
        self.climbing = False
        self._change(back)

    def _record(self, measure: Measure) -> None:
        seen = self.measured.get(self.limit)
        if seen is not None and self.rounds - seen.round <= FORGET_ROUNDS:
            measure.rate = (seen.rate + measure.rate) / 2
            measure.latency = (seen.latency + measure.latency) / 2
            measure.fastest = (seen.fastest + measure.fastest) / 2
            measure.slowest = (seen.slowest + measure.slowest) / 2
        self.measured[self.limit] = measure
        for limit in [limit for limit, m in self.measured.items() if self.rounds - m.round > FORGET_ROUNDS]:
            del self.measured[limit]

    def _bought(self, before: int) -> float:
        """What the step from `before` to the limit bought in throughput, as a share of the step's own
        share (1: throughput rose in proportion, 0: not at all); for a step down, what it cost."""
        gain = self.measured[self.limit].rate / self.measured[before].rate - 1
        return gain / (self.limit / before - 1)

    def _climb(self, *, pace: float) -> None:
        """A step up by `CLIMB_GROWTH` at full `pace` (the last step bought all its share), by less as
        the steps buy less: a climb nearing a knee slows down rather than leap past the API's queue."""
        grown = int(self.limit * (1 + (CLIMB_GROWTH - 1) * pace))
        self._change(max(self.limit + 1, grown), trying=True)

    def _waiting(self, limit: int) -> int:
        """How many of `limit` requests in flight wait in the API's queue, counted as TCP Vegas does:
        `limit x (1 - unqueued latency / latency)`, the unqueued latency being that of the next limit
        measured below (the API's own time at nearly that load)."""
        below = max((measured for measured in self.measured if measured < limit), default=limit)
        waiting = limit * (1 - self.measured[below].latency / self.measured[limit].latency)
        return max(0, round(waiting))

    def _floor(self) -> float:
        return min(m.latency for m in self.measured.values())

    def _queued(self, limit: int) -> bool:
        """Whether requests at `limit` waited for a worker: past a worker pool's knee many are still
        served at once (the lower quartile near the floor) and others wait about a whole service time
        more. Where every request is slower (a busy CPU, a round trip) the quickest are slower too."""
        measure, floor = self.measured[limit], self._floor()
        return measure.fastest <= NEAR_FLOOR * floor and measure.slowest >= QUEUED * floor

    def _near_floor(self, limit: int) -> bool:
        return self.measured[limit].latency <= NEAR_FLOOR * self._floor()

    def _probe(self) -> None:
        if self._near_floor(self.limit):
            target = self.limit + 1
        elif self.probe_up:
            target = max(self.limit + 1, math.ceil(self.limit * PROBE_GROWTH))
        else:
            target = min(self.limit - 1, math.floor(self.limit / PROBE_GROWTH))
        if not 1 <= target <= self.ceiling:  # at the ceiling or at 1: the next probe goes the other way
            self.probe_up = not self.probe_up
            self.hold = HOLD_ROUNDS
            return
        self._change(target, trying=True)

    def _change(self, limit: int, *, trying: bool = False) -> None:
        """Move to `limit` (within 1 and the ceiling); `trying`: a step on trial, judged next round."""
        previous = self.limit
        self.limit = min(self.ceiling, max(1, limit))
        self.stepped_from = previous if trying and self.limit != previous else None
        # Only a step of more than one on trial waits for it: a step back is not measured, a climb's
        # step up is only flattered by the shorter queue it starts from (which ends no climb), and a
        # request more finds the queue it makes at once.
        self.settling = (
            self.round_size if trying and abs(self.limit - previous) > 1 and not self.climbing else 0
        )
        self._next_round()


@dataclass
class Slot:
    """One request's place in flight; the client says here when each attempt goes out and how it
    ended."""

    gate: AdaptiveLimit
    comparable: bool = True
    """Whether the request is like those its limit is judged by (a full batch, not a last share): a
    smaller one's latency would flatter the limit, so only these are timed."""
    epoch: int = -1
    measured: bool = False
    _out: bool = False

    def sending(self) -> None:
        """An attempt goes out on this place now: it may be one its round measures."""
        self.finish()
        policy = self.gate.policy
        measured = self.comparable and policy.enlist(self.gate.in_flight)
        self.epoch, self.measured, self._out = policy.epoch, measured, True

    def answered(self, seconds: float) -> None:
        self._out = False
        self.gate.policy.answered(seconds, epoch=self.epoch, measured=self.measured)
        self.gate.wake()

    def overloaded(self) -> None:
        self._out = False
        self.gate.policy.overloaded(epoch=self.epoch)

    def finish(self) -> None:
        """An attempt that went out and came to neither (an error, a lost connection) leaves its round,
        which would otherwise wait for it for ever."""
        if self._out:
            self._out = False
            self.gate.policy.lost(epoch=self.epoch, measured=self.measured)

    async def pause(self, seconds: float) -> None:
        """Wait `seconds` before another attempt without holding the place, then queue for one again
        (first in line): a retry goes out under the limit as it is then, so a 429 storm cannot feed
        itself with retries of requests the lowered limit no longer allows."""
        self.finish()
        self.gate.release()
        try:
            await anyio.sleep(seconds)
        finally:
            await self.gate.acquire(first=True)


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
        slot = Slot(self)
        try:
            yield slot
        finally:
            slot.finish()
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
