"""The adaptive in-flight limit: its arithmetic against a simulated API with a capacity, and its gate.

The simulation is a closed loop in virtual time: the API has `workers` that serve one request each for
`service` seconds after a `network` delay, a FIFO queue, and answers 429 at once beyond `queue_limit`
waiting. Only the policy decides how many requests are in flight, as in the server.
"""

from __future__ import annotations

import heapq
import random
import statistics
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import pytest

from purgewarden.clients.limits import INITIAL_LIMIT, ROUND_ANSWERS, AdaptiveLimit, LimitPolicy


@dataclass
class SimulatedApi:
    workers: int
    service: float = 0.1
    network: float = 0.005
    queue_limit: int = 1_000
    jitter: float = 0.1
    """Each service time varies by up to this share, seeded: a database is never a metronome."""
    latencies: list[float] = field(default_factory=list)
    limits: list[int] = field(default_factory=list)
    rejected: int = 0

    def unloaded(self) -> float:
        return self.service + self.network

    def run(self, policy: LimitPolicy, requests: int, *, slower_after: int | None = None) -> float:
        """Send `requests` through the policy; returns the virtual seconds it took. With `slower_after`,
        the network gets three times slower after that many answers (a route change)."""
        now = 0.0
        events: list[tuple[float, int, str, int, float, int]] = []  # (time, seq, kind, epoch, sent, in_use)
        seq = 0
        free = self.workers
        queue: list[tuple[int, float, int]] = []
        in_flight = sent_count = answered = 0
        network = self.network
        rng = random.Random(7)

        def service() -> float:
            return self.service * (1 + rng.uniform(-self.jitter, self.jitter))

        def push(at: float, kind: str, epoch: int, sent: float, in_use: int) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(events, (at, seq, kind, epoch, sent, in_use))

        def fill() -> None:
            nonlocal in_flight, sent_count
            while in_flight < policy.allowed and sent_count < requests:
                in_flight += 1
                sent_count += 1
                push(now + network / 2, "arrive", policy.epoch, now, in_flight)

        fill()
        while events:
            now, _, kind, epoch, sent, in_use = heapq.heappop(events)
            if kind == "arrive":
                if free:
                    free -= 1
                    push(now + service(), "done", epoch, sent, in_use)
                elif len(queue) >= self.queue_limit:
                    self.rejected += 1
                    push(now + network / 2, "rejected", epoch, sent, in_use)
                else:
                    queue.append((epoch, sent, in_use))
            elif kind == "done":
                if queue:
                    waiting_epoch, waiting_sent, waiting_in_use = queue.pop(0)
                    push(now + service(), "done", waiting_epoch, waiting_sent, waiting_in_use)
                else:
                    free += 1
                push(now + network / 2, "answer", epoch, sent, in_use)
            elif kind == "answer":
                in_flight -= 1
                answered += 1
                self.latencies.append(now - sent)
                policy.answered(now - sent, epoch=epoch, in_use=in_use)
                if slower_after is not None and answered == slower_after:
                    network *= 3
            else:  # rejected: not carried out, sent again (as the client's retry does)
                in_flight -= 1
                sent_count -= 1
                policy.overloaded(epoch=epoch)
            self.limits.append(policy.allowed)
            fill()
        return now


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def test_it_finds_a_capacity_limited_apis_workers_without_queueing_on_it() -> None:
    api = SimulatedApi(workers=12, queue_limit=8)
    policy = LimitPolicy(ceiling=64)
    seconds = api.run(policy, 2_000)
    settled = api.limits[len(api.limits) // 4 :]
    assert min(settled) >= 11
    assert max(settled) <= 15
    # throughput: close to all 12 workers busy all the time (slow start included)
    assert 2_000 / seconds >= 0.9 * 12 / api.service
    settled_latencies = api.latencies[len(api.latencies) // 4 :]
    assert p99(settled_latencies) <= 1.5 * api.unloaded()  # a good citizen once it knows the API
    assert max(api.latencies) <= 2 * api.unloaded()  # and while it finds out: one round past the knee
    assert api.rejected < 2_000 * 0.01


def test_a_fixed_fleet_of_requests_past_capacity_is_what_it_avoids() -> None:
    """The same API driven at the old ceiling: the queue and the 429s the policy stays clear of."""
    api = SimulatedApi(workers=12, queue_limit=8)
    fixed = LimitPolicy(ceiling=32, limit=32)
    fixed.answered = lambda *a, **k: None  # type: ignore[method-assign]
    fixed.overloaded = lambda *a, **k: None  # type: ignore[method-assign]
    api.run(fixed, 2_000)
    assert api.rejected > 2_000 * 0.1
    assert p99(api.latencies) > 1.5 * api.unloaded()


def test_an_api_with_room_to_spare_gets_the_ceiling() -> None:
    api = SimulatedApi(workers=1_000)
    policy = LimitPolicy(ceiling=32)
    api.run(policy, 1_000)
    assert policy.allowed == 32
    assert max(api.limits) == 32


def test_it_starts_low_and_grows_by_half_a_round_while_steps_pay() -> None:
    policy = LimitPolicy(ceiling=64)
    assert policy.allowed == INITIAL_LIMIT
    for _ in range(ROUND_ANSWERS - 1):
        policy.answered(0.1, epoch=0, in_use=INITIAL_LIMIT)
    assert policy.allowed == INITIAL_LIMIT  # a round is a limit's worth of answers, at least ROUND_ANSWERS
    policy.answered(0.1, epoch=0, in_use=INITIAL_LIMIT)
    assert policy.allowed == int(INITIAL_LIMIT * 1.5)
    assert policy.slow_start


def a_round(policy: LimitPolicy, latency: float) -> None:
    for _ in range(max(policy.allowed, ROUND_ANSWERS)):
        policy.answered(latency, epoch=policy.epoch, in_use=policy.allowed)


def test_a_step_up_that_buys_throughput_is_kept_and_the_next_one_tried() -> None:
    policy = LimitPolicy(ceiling=64, limit=10, slow_start=False)
    a_round(policy, 0.1)  # 100/s at 10: then a probe
    assert policy.allowed == 11
    a_round(policy, 0.105)  # 105/s at 11: +4.8 % for a 10 % step
    assert policy.allowed == 12


def test_a_step_up_that_only_lengthens_the_queue_is_undone() -> None:
    policy = LimitPolicy(ceiling=64, limit=10, slow_start=False)
    a_round(policy, 0.1)
    a_round(policy, 0.11)  # 100/s at 11 too: the API's workers were already full
    assert policy.allowed == 10
    for _ in range(4):  # held a while before trying the other way
        a_round(policy, 0.1)
        assert policy.allowed == 10
    a_round(policy, 0.1)
    assert policy.allowed == 9


def test_a_step_down_that_costs_nothing_is_kept() -> None:
    policy = LimitPolicy(ceiling=64, limit=10, slow_start=False, probe_up=False)
    a_round(policy, 0.11)
    assert policy.allowed == 9
    a_round(policy, 0.099)  # the same throughput with one less in flight: it was queueing
    assert policy.allowed == 8
    a_round(policy, 0.1)  # 80/s: a real loss, so back to 9
    assert policy.allowed == 9


def test_slow_start_ends_with_its_first_step_that_did_not_pay_undone() -> None:
    policy = LimitPolicy(ceiling=64, limit=8)
    a_round(policy, 0.1)  # 80/s
    assert policy.allowed == 12
    a_round(policy, 0.15)  # 80/s at 12: the API's workers were full at 8
    assert policy.allowed == 8
    assert not policy.slow_start


def test_steps_up_grow_while_they_pay_but_never_leap_past_an_eighth() -> None:
    policy = LimitPolicy(ceiling=64, limit=32, slow_start=False)
    limits = [policy.allowed]
    for _ in range(6):
        a_round(policy, 0.1)  # throughput proportional to the limit: every step pays
        limits.append(policy.allowed)
    assert limits == [32, 33, 35, 39, 43, 48, 54]


def test_a_429_halves_it_once_per_round_and_ends_slow_start() -> None:
    policy = LimitPolicy(ceiling=64, limit=20)
    policy.answered(0.1, epoch=0, in_use=20)
    policy.overloaded(epoch=0)
    assert policy.allowed == 10
    assert not policy.slow_start
    policy.overloaded(epoch=0)  # another request of the same round pushed back: the same event
    assert policy.allowed == 10
    policy.overloaded(epoch=policy.epoch)
    assert policy.allowed == 5


def test_it_never_goes_below_one_nor_above_its_ceiling() -> None:
    policy = LimitPolicy(ceiling=3, limit=50)
    assert policy.allowed == 3
    for _ in range(20):
        policy.overloaded(epoch=policy.epoch)
    assert policy.allowed == 1
    api = SimulatedApi(workers=1_000)
    api.run(policy, 300)
    assert max(api.limits) == 3
    assert min(api.limits) >= 1


def test_it_does_not_grow_while_the_limit_is_not_used() -> None:
    policy = LimitPolicy(ceiling=64, limit=10)
    for _ in range(50):
        policy.answered(0.1, epoch=policy.epoch, in_use=2)
    assert policy.allowed == 10


def test_a_slower_network_is_overlapped_rather_than_read_as_queueing() -> None:
    api = SimulatedApi(workers=12, network=0.02)
    policy = LimitPolicy(ceiling=64)
    api.run(policy, 6_000, slower_after=1_000)
    # a round trip of 60 ms beside 100 ms of work: 12 workers need about 19 in flight to stay busy
    assert policy.allowed >= 16


async def test_the_gate_lets_the_limit_through_in_arrival_order() -> None:
    gate = AdaptiveLimit(ceiling=2)
    gate.policy.limit = 2
    order: list[int] = []
    most = 0
    release = anyio.Event()

    async def request(number: int) -> None:
        nonlocal most
        async with gate.slot():
            order.append(number)
            most = max(most, gate.in_flight)
            await release.wait()

    async with anyio.create_task_group() as group:
        for number in range(6):
            group.start_soon(request, number)
            await anyio.lowlevel.checkpoint()
        await anyio.wait_all_tasks_blocked()
        assert order == [0, 1]
        assert gate.in_flight == 2
        release.set()
    assert order == list(range(6))
    assert most == 2
    assert gate.in_flight == 0


async def test_a_cancelled_waiter_gives_its_place_back() -> None:
    gate = AdaptiveLimit(ceiling=1)
    gate.policy.limit = 1
    held = anyio.Event()
    release = anyio.Event()

    async def holder() -> None:
        async with gate.slot():
            held.set()
            await release.wait()

    async with anyio.create_task_group() as group:
        group.start_soon(holder)
        await held.wait()
        with anyio.move_on_after(0.01):
            async with gate.slot():
                pytest.fail("a second slot was given past the limit")
        release.set()
    assert gate.in_flight == 0
    async with gate.slot() as slot:
        assert slot.in_use == 1


def test_a_new_ceiling_bounds_what_was_learned() -> None:
    gate = AdaptiveLimit(ceiling=32)
    gate.policy.limit = 20
    gate.bound(8)
    assert gate.limit == 8
    gate.bound(64)
    assert gate.limit == 8  # learned, not raised by the setting


async def test_a_paused_slot_gives_its_place_away_and_comes_back_first_in_line() -> None:
    gate = AdaptiveLimit(ceiling=1)
    gate.policy.limit = 1
    order: list[str] = []

    async def retrying() -> None:
        async with gate.slot() as slot:
            order.append("first try")
            await slot.pause(0.05)  # a 429: wait without the place
            order.append("retry")

    async def other(name: str) -> None:
        async with gate.slot():
            order.append(name)
            await anyio.sleep(0.1)

    async with anyio.create_task_group() as group:
        group.start_soon(retrying)
        await anyio.wait_all_tasks_blocked()
        group.start_soon(other, "took the place meanwhile")
        await anyio.wait_all_tasks_blocked()
        group.start_soon(other, "queued behind")
    assert order == ["first try", "took the place meanwhile", "retry", "queued behind"]
    assert gate.in_flight == 0
