"""The adaptive in-flight limit: its arithmetic against a simulated API with a capacity, and its gate.

The simulation is a closed loop in virtual time: the API has `workers` that serve one request each for
`service` seconds after a `network` delay, a FIFO queue, and answers 429 at once beyond `queue_limit`
waiting. Only the policy decides how many requests are in flight, as in the server.
"""

from __future__ import annotations

import heapq
import random
import statistics
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import pytest

from purgewarden.clients.limits import (
    HOLD_ROUNDS,
    INITIAL_LIMIT,
    KNEE_HOLD_ROUNDS,
    ROUND_ANSWERS,
    AdaptiveLimit,
    LimitPolicy,
)


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
        events: list[tuple[float, int, str, int, float, int, bool]] = []
        # (time, seq, kind, epoch, sent, in_use, measured)
        seq = 0
        free = self.workers
        queue: list[tuple[int, float, int, bool]] = []
        in_flight = sent_count = answered = 0
        network = self.network
        rng = random.Random(7)

        def service() -> float:
            return self.service * (1 + rng.uniform(-self.jitter, self.jitter))

        def push(at: float, kind: str, epoch: int, sent: float, in_use: int, measured: bool) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(events, (at, seq, kind, epoch, sent, in_use, measured))

        def fill() -> None:
            nonlocal in_flight, sent_count
            while in_flight < policy.allowed and sent_count < requests:
                in_flight += 1
                sent_count += 1
                push(now + network / 2, "arrive", policy.epoch, now, in_flight, policy.enlist(in_flight))

        fill()
        while events:
            now, _, kind, epoch, sent, in_use, measured = heapq.heappop(events)
            if kind == "arrive":
                if free:
                    free -= 1
                    push(now + service(), "done", epoch, sent, in_use, measured)
                elif len(queue) >= self.queue_limit:
                    self.rejected += 1
                    push(now + network / 2, "rejected", epoch, sent, in_use, measured)
                else:
                    queue.append((epoch, sent, in_use, measured))
            elif kind == "done":
                if queue:
                    push(now + service(), "done", *queue.pop(0))
                else:
                    free += 1
                push(now + network / 2, "answer", epoch, sent, in_use, measured)
            elif kind == "answer":
                in_flight -= 1
                answered += 1
                self.latencies.append(now - sent)
                policy.answered(now - sent, epoch=epoch, measured=measured)
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
    assert max(settled) <= 14
    # throughput: close to all 12 workers busy all the time (the climb included)
    assert 2_000 / seconds >= 0.9 * 12 / api.service
    settled_latencies = api.latencies[len(api.latencies) // 4 :]
    assert p99(settled_latencies) <= 1.5 * api.unloaded()  # a good citizen once it knows the API
    assert max(api.latencies) <= 2.1 * api.unloaded()  # and while it finds out: one round past the knee
    assert api.rejected < 2_000 * 0.01


def test_equal_batches_on_a_pool_run_at_its_workers_from_the_second_run_on() -> None:
    """The bench's capacity-limited Vault: 12 workers, batches of 0.5 s, runs of 100 on one client.
    Past the knee a batch waits a whole service time, so one request too many shows in the p99."""
    policy = LimitPolicy(ceiling=32)
    runs = [
        SimulatedApi(workers=12, service=0.5, network=0.004, queue_limit=12, jitter=0.02) for _ in range(3)
    ]
    for api in runs:
        api.run(policy, 100)
    assert max(runs[0].limits) < 24  # the climb stayed clear of the queue's end (no 429)
    for api in runs[1:]:
        assert set(api.limits) == {12}
        assert p99(api.latencies) <= 1.1 * api.unloaded()
    assert sum(api.rejected for api in runs) == 0


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


def a_round(policy: LimitPolicy, latency: float, *waited: float) -> None:
    """The answers that settle a change, then a round measured: `latency` each, but for the last ones,
    which took `waited` (requests that waited for a worker)."""
    for _ in range(policy.settling):
        policy.answered(latency, epoch=policy.epoch)
    for _ in range(policy.round_size):
        assert policy.enlist(in_use=policy.allowed)
    assert not policy.enlist(in_use=policy.allowed)  # the round's requests are all out
    epoch = policy.epoch
    for _ in range(policy.round_size - len(waited)):
        policy.answered(latency, epoch=epoch)
    for seconds in waited:
        policy.answered(seconds, epoch=epoch)


def held(policy: LimitPolicy, rounds: int, latency: float) -> None:
    """`rounds` rounds at `latency`, through which the limit stays where it is."""
    limit = policy.allowed
    for _ in range(rounds):
        a_round(policy, latency)
        assert policy.allowed == limit


def probed_from(limit: int, latency: float, *, floor: float) -> LimitPolicy:
    """A policy past its climb whose floor latency was measured at a lower limit, after the round at
    `limit` that ended its hold: its first probe is out."""
    policy = LimitPolicy(ceiling=64, limit=2, climbing=False, hold=1)
    a_round(policy, floor)
    policy.limit = limit
    a_round(policy, latency)
    return policy


def test_it_starts_low_and_climbs_by_half_a_round_while_steps_pay() -> None:
    policy = LimitPolicy(ceiling=64)
    assert policy.allowed == INITIAL_LIMIT
    assert policy.round_size == ROUND_ANSWERS
    for _ in range(ROUND_ANSWERS):
        assert policy.enlist(in_use=INITIAL_LIMIT)
    for _ in range(ROUND_ANSWERS - 1):
        policy.answered(0.1, epoch=policy.epoch)
    assert policy.allowed == INITIAL_LIMIT  # a round is a limit's worth of answers, at least ROUND_ANSWERS
    policy.answered(0.1, epoch=policy.epoch)
    assert policy.allowed == 6
    a_round(policy, 0.1)  # 60/s at 6, from 40/s: paid
    assert policy.allowed == 9
    assert policy.climbing


def test_a_climb_slows_as_steps_buy_less_and_ends_at_the_knee_without_what_it_counts_waiting() -> None:
    policy = LimitPolicy(ceiling=64, limit=9)
    a_round(policy, 0.5)  # 18/s at 9: every one served at once
    assert policy.allowed == 13
    a_round(policy, 0.5, 1.0)  # 24.2/s at 13 (12 workers): one waited a whole service time
    assert policy.allowed == 17  # the step bought 3/4 of its share: x1.375, not x1.5
    a_round(policy, 0.5, *[1.2] * 5)  # 24/s at 17: five more waiting, nothing bought
    assert not policy.climbing
    # the knee lies between 13 and 17; at 13 it counted 13 x (1 - 0.5 / 0.538) = 0.93 request waiting
    assert policy.allowed == 12


def test_past_a_knee_a_step_that_queues_requests_must_pay_like_one_below_it() -> None:
    policy = LimitPolicy(ceiling=64, limit=8)
    a_round(policy, 0.1)  # 80/s at 8
    assert policy.allowed == 12
    # 90/s at 12: an eighth more, for half as many again, and a third of them waited a service time
    a_round(policy, 0.1, *[0.2] * 4)
    assert not policy.climbing
    assert policy.allowed == 9  # where 8 in proportion would give the 90/s measured at 12
    held(policy, KNEE_HOLD_ROUNDS, 0.1)  # probes past a knee found wait long
    a_round(policy, 0.1)
    assert policy.allowed == 10


def test_where_every_request_is_slower_a_step_buying_a_fifth_of_its_share_is_kept() -> None:
    policy = LimitPolicy(ceiling=64, limit=8)
    a_round(policy, 0.1)  # 80/s at 8
    a_round(policy, 0.125)  # 96/s at 12, every request a quarter slower: a round trip being overlapped
    assert policy.climbing
    assert policy.allowed == 14  # x1.2: the step bought 2/5 of its share


def test_where_latency_shows_a_queue_a_step_that_did_not_pay_is_undone_and_the_other_way_tried() -> None:
    policy = probed_from(20, 0.2, floor=0.05)  # 100/s, four times the floor: a queue, or a busy CPU
    assert policy.allowed == 25  # a probe up by a quarter
    a_round(policy, 0.25)  # 100/s at 25: nothing bought
    assert policy.allowed == 20
    held(policy, HOLD_ROUNDS, 0.2)
    a_round(policy, 0.2)
    assert policy.allowed == 16  # then a probe down


def test_where_latency_shows_a_queue_a_step_up_that_pays_is_kept_and_the_next_one_tried() -> None:
    policy = probed_from(20, 0.2, floor=0.05)
    a_round(policy, 0.22)  # 113.6/s at 25: +13.6 % for a 25 % step
    assert policy.allowed == 25
    held(policy, HOLD_ROUNDS, 0.22)
    a_round(policy, 0.22)
    assert policy.allowed == 32


def test_a_step_down_that_costs_nothing_is_kept() -> None:
    policy = probed_from(20, 0.2, floor=0.05)
    a_round(policy, 0.25)  # the probe up bought nothing: back, and down next
    for _ in range(HOLD_ROUNDS + 1):
        a_round(policy, 0.2)
    assert policy.allowed == 16
    a_round(policy, 0.16)  # the same 100/s with fewer in flight: they were queueing
    assert policy.allowed == 16
    for _ in range(HOLD_ROUNDS + 1):
        a_round(policy, 0.16)
    assert policy.allowed == 12
    a_round(policy, 0.16)  # 75/s: a real loss, so back
    assert policy.allowed == 16


def test_at_the_floor_a_probe_is_one_request_up_and_past_a_knee_it_waits_longer_each_time() -> None:
    policy = probed_from(12, 0.1, floor=0.1)  # 120/s with no queue at all
    assert policy.allowed == 13
    a_round(policy, 0.106)  # 122.6/s at 13: +2.2 %, not half the 8.3 % step
    assert policy.allowed == 12
    for wait in (KNEE_HOLD_ROUNDS, 2 * KNEE_HOLD_ROUNDS):
        held(policy, wait, 0.1)
        a_round(policy, 0.1)
        assert policy.allowed == 13
        a_round(policy, 0.108)
        assert policy.allowed == 12


def test_at_the_floor_a_probe_that_buys_its_share_is_kept() -> None:
    policy = probed_from(12, 0.1, floor=0.1)
    a_round(policy, 0.1)  # 130/s at 13: another worker was free
    assert policy.allowed == 13


def test_a_429_halves_it_once_per_round_ends_the_climb_and_forgets_what_it_measured_above() -> None:
    policy = LimitPolicy(ceiling=64, limit=6)
    a_round(policy, 0.1)
    a_round(policy, 0.1)
    assert policy.allowed == 13
    policy.overloaded(epoch=policy.epoch)
    assert policy.allowed == 6
    assert not policy.climbing
    assert set(policy.measured) == {6, 9}  # measured below where it hit: still true
    policy.overloaded(epoch=policy.epoch - 1)  # another request of the same round pushed back: the same event
    assert policy.allowed == 6
    policy.overloaded(epoch=policy.epoch)
    assert policy.allowed == 3
    assert policy.measured == {}


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


def test_requests_sent_while_the_limit_is_not_full_measure_nothing() -> None:
    policy = LimitPolicy(ceiling=64, limit=10)
    for _ in range(50):
        assert not policy.enlist(in_use=2)
        policy.answered(0.1, epoch=policy.epoch, measured=False)
    assert policy.allowed == 10
    assert policy.rounds == 0


def test_a_round_waits_for_its_slowest_request_not_the_first_answers_back() -> None:
    policy = LimitPolicy(ceiling=64, limit=8)
    epoch = policy.epoch
    for _ in range(8):
        assert policy.enlist(in_use=8)
    for _ in range(20):  # answers to requests sent after the round was full are not its answers
        policy.answered(0.01, epoch=epoch, measured=False)
    for _ in range(7):
        policy.answered(0.1, epoch=epoch)
    assert policy.rounds == 0
    policy.answered(0.9, epoch=epoch)
    assert policy.rounds == 1
    assert policy.measured[8].latency == pytest.approx(0.2)


def test_a_change_is_measured_once_the_queue_the_old_limit_left_has_settled() -> None:
    policy = probed_from(20, 0.2, floor=0.05)
    assert policy.allowed == 25
    assert policy.settling == 25
    assert not policy.enlist(in_use=25)
    for _ in range(25):
        policy.answered(0.3, epoch=policy.epoch)  # what the old limit's queue makes of the first ones
    assert policy.settling == 0
    assert policy.enlist(in_use=25)


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
    async with gate.slot():
        assert gate.in_flight == 1


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


async def test_an_attempt_that_goes_unanswered_leaves_its_round_to_another() -> None:
    gate = AdaptiveLimit(ceiling=64)
    async with AsyncExitStack() as stack:
        slots = [await stack.enter_async_context(gate.slot()) for _ in range(INITIAL_LIMIT)]
        slots[0].sending()  # measured by the round, then its connection is lost: no answer ever
        slots[0].finish()
        for _ in range(ROUND_ANSWERS):
            slots[1].sending()
            slots[1].answered(0.1)
    assert gate.policy.rounds == 1  # else the round would wait for the lost one for ever


async def test_a_place_given_back_unused_is_not_waited_for() -> None:
    """A worker that takes a place and finds no batch left sends nothing: no round counts on it."""
    gate = AdaptiveLimit(ceiling=64)
    async with AsyncExitStack() as stack:
        slots = [await stack.enter_async_context(gate.slot()) for _ in range(INITIAL_LIMIT)]
        for _ in range(ROUND_ANSWERS):
            slots[0].sending()
            slots[0].answered(0.1)
    assert gate.policy.rounds == 1


async def test_a_request_unlike_those_its_limit_is_judged_by_is_not_timed() -> None:
    """A last share is quicker than a full batch: timed, it would read as a faster API at this limit."""
    gate = AdaptiveLimit(ceiling=64)
    async with AsyncExitStack() as stack:
        slots = [await stack.enter_async_context(gate.slot()) for _ in range(INITIAL_LIMIT)]
        slots[0].comparable = False
        for _ in range(2 * ROUND_ANSWERS):
            slots[0].sending()
            slots[0].answered(0.01)
        assert gate.policy.rounds == 0
        for _ in range(ROUND_ANSWERS):
            slots[1].sending()
            slots[1].answered(0.1)
    assert gate.policy.rounds == 1
    assert gate.policy.measured[INITIAL_LIMIT].latency == pytest.approx(0.1)
