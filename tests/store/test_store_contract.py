"""One contract, both stores: what the safety kernel relies on, including races between processes."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from purgewarden.store import PlanSlot, Store, StoredRun, StoreError
from purgewarden.store.redis import RedisStore
from purgewarden.store.sqlite import SqliteStore
from tests.processes import free_port
from tests.store.conftest import OpenStore

NOW = 1_000_000.0


async def race(
    stores: list[Store], attempts: int, attempt: Callable[[Store, int], Awaitable[object]]
) -> list[bool]:
    """Run `attempt(store, i)` `attempts` times at once, spread over the stores; the answers in order
    (whether each is truthy: a reservation won, or a consume's ids)."""
    answers: list[bool] = [False] * attempts

    async def at_once(work: Callable[[Store, int], Awaitable[object]]) -> None:
        async def one(i: int) -> None:
            answers[i] = bool(await work(stores[i % len(stores)], i))

        async with anyio.create_task_group() as group:
            for i in range(attempts):
                group.start_soon(one, i)

    # Open every connection first: Redis clients open theirs one after another, which would line the
    # attempts up one behind the other instead of racing them (a read-then-write consume passes then).
    await at_once(lambda store, _: store.ping())
    await at_once(attempt)
    return answers


# --- plans -----------------------------------------------------------------------------------------


async def test_a_plan_is_kept_as_put(store: Store) -> None:
    await store.put_plan("p", '{"op": "purge"}', NOW + 60, NOW)

    assert await store.get_plan("p") == PlanSlot('{"op": "purge"}', used=False, asking_until=0.0)
    assert await store.get_plan("other") is None


async def test_a_plan_key_is_stored_once(store: Store) -> None:
    await store.put_plan("p", "first", NOW + 60, NOW)

    with pytest.raises(StoreError):
        await store.put_plan("p", "second", NOW + 60, NOW)
    assert await store.get_plan("p") == PlanSlot("first", used=False, asking_until=0.0)


async def test_a_plan_is_forgotten_after_keep_until(store: Store) -> None:
    now = time.time()
    await store.put_plan("short", "body", now + 0.3, now)
    await store.put_plan("long", "body", now + 60, now)
    assert await store.get_plan("short") is not None

    await anyio.sleep(0.5)
    later = time.time()
    await store.put_plan("next", "body", later + 60, later)  # SQLite forgets on the next put

    assert await store.get_plan("short") is None
    assert await store.get_plan("long") is not None
    assert await store.consume("short") is None
    assert await store.get_plan("short") is None  # a late consume does not bring it back


async def test_a_plan_is_consumed_once(store: Store) -> None:
    await store.put_plan("p", "body", NOW + 60, NOW)

    assert await store.consume("p") == b"[]"  # a plan put without ids names none
    assert await store.consume("p") is None
    assert await store.get_plan("p") == PlanSlot("body", used=True, asking_until=0.0)


async def test_a_plans_ids_go_to_the_one_who_consumes_it(store: Store) -> None:
    ids = b'["a\\nb","' + b"x" * 5_000_000 + b'","\xc3\xa9"]'  # bigger than any page, and not ASCII
    await store.put_plan("p", "body", NOW + 60, NOW, ids=ids)
    await store.put_plan("q", "other", NOW + 60, NOW, ids=b'["q"]')

    assert await store.get_plan("p") == PlanSlot("body", used=False, asking_until=0.0)
    assert await store.consume("p") == ids
    assert await store.consume("p") is None
    assert await store.consume("q") == b'["q"]'


async def test_a_missing_plan_cannot_be_consumed_reserved_or_created_by_trying(store: Store) -> None:
    assert await store.consume("ghost") is None
    assert await store.reserve("ghost", NOW + 60, NOW) is False
    await store.release("ghost")

    assert await store.get_plan("ghost") is None


async def test_fifty_consumes_from_five_processes_have_one_winner(open_store: OpenStore) -> None:
    stores = [open_store() for _ in range(5)]
    await stores[0].put_plan("p", "body", NOW + 60, NOW)

    answers = await race(stores, 50, lambda store, _: store.consume("p"))  # ids (b"[]") for the winner

    assert answers.count(True) == 1
    slot = await stores[3].get_plan("p")
    assert slot is not None
    assert slot.used


async def test_a_reservation_holds_the_plan_for_one_question(store: Store) -> None:
    await store.put_plan("p", "body", NOW + 600, NOW)

    assert await store.reserve("p", NOW + 60, NOW) is True
    assert await store.get_plan("p") == PlanSlot("body", used=False, asking_until=NOW + 60)
    assert await store.reserve("p", NOW + 90, NOW + 30) is False  # held by the first question
    assert (await store.get_plan("p")) == PlanSlot("body", used=False, asking_until=NOW + 60)

    await store.release("p")
    assert await store.get_plan("p") == PlanSlot("body", used=False, asking_until=0.0)
    assert await store.reserve("p", NOW + 90, NOW + 30) is True  # released: another may ask

    assert await store.reserve("p", NOW + 200, NOW + 90) is True  # the hold has passed (until <= now)
    assert await store.reserve("p", NOW + 300, NOW + 199.5) is False


async def test_consuming_ends_the_reservation_and_a_used_plan_is_never_reserved(store: Store) -> None:
    await store.put_plan("p", "body", NOW + 600, NOW)
    assert await store.reserve("p", NOW + 60, NOW) is True

    assert await store.consume("p") is not None  # consuming does not look at the hold, it ends it
    assert await store.get_plan("p") == PlanSlot("body", used=True, asking_until=0.0)
    assert await store.reserve("p", NOW + 60, NOW) is False
    assert await store.reserve("p", NOW + 600, NOW + 500) is False


async def test_concurrent_reservations_have_one_winner(open_store: OpenStore) -> None:
    stores = [open_store() for _ in range(5)]
    await stores[0].put_plan("p", "body", NOW + 600, NOW)

    answers = await race(stores, 30, lambda store, i: store.reserve("p", NOW + 60 + i, NOW))

    assert answers.count(True) == 1
    slot = await stores[1].get_plan("p")
    assert slot is not None
    assert slot.asking_until == NOW + 60 + answers.index(True)


# --- runs ------------------------------------------------------------------------------------------


async def test_a_run_keeps_its_record_and_journal_in_order(store: Store) -> None:
    await store.create_run("r1", "owner-a", NOW, '{"step": 0}')
    assert await store.get_run("r1") == StoredRun("r1", "running", "owner-a", '{"step": 0}', entries=[])

    for entry in ("first", "second", "third"):
        await store.journal("r1", entry)

    assert await store.get_run("r1") == StoredRun(
        "r1", "running", "owner-a", '{"step": 0}', entries=["first", "second", "third"]
    )
    assert await store.get_run("r1", entries=False) == StoredRun("r1", "running", "owner-a", '{"step": 0}')
    assert await store.get_run("missing") is None


async def test_entries_written_at_once_are_all_stored_each_in_its_callers_order(store: Store) -> None:
    # Group commit: whoever writes while another write is under way shares the next one; each caller
    # returns only once its own entry is stored.
    for run in ("a", "b"):
        await store.create_run(run, "owner", NOW, "body")
    returned: list[str] = []

    async def writer(run: str, n: int) -> None:
        for i in range(5):
            await store.journal(run, f"{run}{n}-{i}")
            stored = await store.get_run(run)
            assert stored is not None
            assert f"{run}{n}-{i}" in stored.entries  # stored by the time the call returned
        returned.append(f"{run}{n}")

    async with anyio.create_task_group() as group:
        for n in range(8):
            group.start_soon(writer, "a" if n % 2 else "b", n)
    assert len(returned) == 8
    for run in ("a", "b"):
        stored = await store.get_run(run)
        assert stored is not None
        assert len(stored.entries) == 20
        for n in {int(e[1]) for e in stored.entries}:  # each writer's entries in the order it wrote them
            assert [e for e in stored.entries if e.startswith(f"{run}{n}-")] == [
                f"{run}{n}-{i}" for i in range(5)
            ]


async def test_entries_written_together_are_stored_all_or_none(store: Store) -> None:
    await store.create_run("r", "owner", NOW, "body")
    with pytest.raises(StoreError):
        await store.append_entries([("r", "first"), ("r", "second"), ("r", None)])  # type: ignore[list-item]

    stored = await store.get_run("r")
    assert stored is not None
    assert stored.entries == []


async def test_a_sqlite_append_waits_for_another_writer_off_the_event_loop(tmp_path: Path) -> None:
    # Appends are tried on the event loop's thread first; one that meets another process's write lock
    # must wait for it on the worker thread, while the loop runs on, and then be stored.
    store = SqliteStore(tmp_path / "purgewarden.db")
    await store.create_run("r", "owner", NOW, "body")
    await store.journal("r", "first")  # the store is open: the next append is tried on the loop's thread
    stored = anyio.Event()

    async def append() -> None:
        await store.journal("r", "second")
        stored.set()

    other = sqlite3.connect(tmp_path / "purgewarden.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        async with anyio.create_task_group() as group:
            group.start_soon(append)
            await anyio.sleep(0.3)  # the loop runs on meanwhile
            assert not stored.is_set()
            other.execute("COMMIT")
        run = await store.get_run("r")
        assert run is not None
        assert run.entries == ["first", "second"]
    finally:
        other.close()
        await store.close()


async def test_a_run_id_is_created_once(store: Store) -> None:
    await store.create_run("r1", "owner-a", NOW, "first")

    with pytest.raises(StoreError):
        await store.create_run("r1", "owner-b", NOW + 1, "second")
    assert await store.get_run("r1", entries=False) == StoredRun("r1", "running", "owner-a", "first")


async def test_saving_a_finished_run_takes_it_out_of_the_running_ones(store: Store) -> None:
    await store.create_run("done", "owner-a", NOW, "b0")
    await store.create_run("going", "owner-a", NOW + 1, "b0")
    await store.journal("done", "entry")

    await store.save_run("done", "succeeded", "b1")
    await store.save_run("going", "running", "b2")
    await store.save_run("missing", "succeeded", "b3")

    assert await store.get_run("done") == StoredRun("done", "succeeded", "owner-a", "b1", entries=["entry"])
    assert await store.running_runs() == [StoredRun("going", "running", "owner-a", "b2")]
    assert await store.get_run("missing") is None


async def test_running_runs_are_only_those_still_running(store: Store) -> None:
    for i in range(5):
        await store.create_run(f"r{i}", f"owner-{i}", NOW + i, "body")
        await store.journal(f"r{i}", "entry")
    await store.save_run("r1", "failed", "body")
    await store.save_run("r3", "cancelled", "body")

    running = await store.running_runs()

    assert sorted(run.id for run in running) == ["r0", "r2", "r4"]
    assert all(run.state == "running" and run.entries == [] for run in running)
    assert {run.id: run.owner for run in running} == {"r0": "owner-0", "r2": "owner-2", "r4": "owner-4"}


async def test_recent_runs_are_the_latest_started_first(store: Store) -> None:
    for run_id, started in [("c", 3.0), ("a", 1.0), ("d", 4.0), ("b", 2.0)]:
        await store.create_run(run_id, "owner", NOW + started, f"body-{run_id}")
        await store.journal(run_id, "entry")
    await store.save_run("d", "succeeded", "body-d2")

    recent = await store.recent_runs(3)

    assert recent == [
        StoredRun("d", "succeeded", "owner", "body-d2"),
        StoredRun("c", "running", "owner", "body-c"),
        StoredRun("b", "running", "owner", "body-b"),
    ]
    assert [run.id for run in await store.recent_runs(10)] == ["d", "c", "b", "a"]
    assert await store.recent_runs(0) == []


async def test_a_run_is_claimed_only_from_its_owner_while_running(store: Store) -> None:
    await store.create_run("r", "dead", NOW, "body")

    assert await store.claim("r", "new", "someone-else") is False
    assert (await store.get_run("r", entries=False)) == StoredRun("r", "running", "dead", "body")
    assert await store.claim("r", "new", "dead") is True
    assert await store.claim("r", "newer", "dead") is False  # "dead" no longer owns it
    assert (await store.get_run("r", entries=False)) == StoredRun("r", "running", "new", "body")

    await store.save_run("r", "succeeded", "body")
    assert await store.claim("r", "newer", "new") is False  # finished runs are not taken over
    assert (await store.get_run("r", entries=False)) == StoredRun("r", "succeeded", "new", "body")
    assert await store.claim("missing", "new", "dead") is False
    assert await store.get_run("missing") is None


async def test_concurrent_claims_from_several_processes_have_one_winner(open_store: OpenStore) -> None:
    stores = [open_store() for _ in range(5)]
    await stores[0].create_run("r", "dead", NOW, "body")

    answers = await race(stores, 30, lambda store, i: store.claim("r", f"claimant-{i}", "dead"))

    assert answers.count(True) == 1
    run = await stores[2].get_run("r", entries=False)
    assert run is not None
    assert run.owner == f"claimant-{answers.index(True)}"


async def test_cancelling_is_recorded_on_the_run(store: Store) -> None:
    await store.create_run("r", "owner", NOW, "body")
    await store.create_run("other", "owner", NOW, "body")
    assert await store.cancel_requested("r") is False

    await store.request_cancel("r")
    await store.request_cancel("missing")

    assert await store.cancel_requested("r") is True
    assert await store.cancel_requested("other") is False
    assert await store.cancel_requested("missing") is False
    assert await store.get_run("missing") is None


# --- owners ----------------------------------------------------------------------------------------


async def test_an_owner_is_alive_until_its_last_beat_says(store: Store) -> None:
    assert await store.alive_until("a") == 0.0

    await store.beat("a", NOW + 30.25, NOW)
    await store.beat("b", NOW + 10, NOW)
    assert await store.alive_until("a") == NOW + 30.25

    await store.beat("a", NOW + 45.5, NOW + 15)
    assert await store.alive_until("a") == NOW + 45.5
    assert await store.alive_until("b") == NOW + 10


async def test_an_owner_is_forgotten_an_hour_after_it_stopped_beating(store: Store) -> None:
    now = time.time()
    await store.beat("gone", now - 3600 + 0.3, now)  # kept 0.3 s more
    await store.beat("here", now + 30, now)
    assert await store.alive_until("gone") == now - 3600 + 0.3

    await anyio.sleep(0.5)
    later = time.time()
    await store.beat("here", later + 30, later)  # SQLite forgets on the next beat

    assert await store.alive_until("gone") == 0.0
    assert await store.alive_until("here") == later + 30


# --- reaching the store ----------------------------------------------------------------------------


async def test_a_store_that_answers_pings(store: Store) -> None:
    await store.ping()


@pytest.fixture(params=["redis", "sqlite-a-directory", "sqlite-under-a-file"])
async def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "redis":
        return RedisStore(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    if request.param == "sqlite-a-directory":
        return SqliteStore(tmp_path)
    (tmp_path / "file").write_text("not a directory")
    return SqliteStore(tmp_path / "file" / "x.db")


async def test_an_unreachable_store_raises_store_error(unreachable: Store) -> None:
    with pytest.raises(StoreError):
        await unreachable.ping()
    with pytest.raises(StoreError):
        await unreachable.consume("p")
    with pytest.raises(StoreError):
        await unreachable.put_plan("p", "body", NOW + 60, NOW)
    with pytest.raises(StoreError):
        await unreachable.journal("r", "entry")
    await unreachable.close()


async def test_the_redis_url_never_shows_the_password(redis_url: str) -> None:
    port = free_port()
    closed = RedisStore(f"redis://user:s3cret-pw@127.0.0.1:{port}/0?password=s3cret-pw&protocol=3")
    assert closed.url == f"redis://127.0.0.1:{port}/0?protocol=3"
    with pytest.raises(StoreError) as error:
        await closed.ping()
    assert "s3cret" not in str(error.value)
    await closed.close()

    # The server has no such user: it refuses the login, and the refusal does not repeat the password.
    refused = RedisStore(redis_url.replace("redis://", "valkey://nobody:s3cret-pw@"))
    assert refused.url == redis_url.replace("redis://", "valkey://")
    with pytest.raises(StoreError) as error:
        await refused.ping()
    assert "s3cret" not in str(error.value)
    assert "s3cret" not in repr(error.value.__cause__) + repr(error.value.__context__)
    await refused.close()


async def test_valkey_urls_speak_to_the_same_server(redis_url: str) -> None:
    plain = RedisStore(redis_url)
    valkey = RedisStore(redis_url.replace("redis://", "valkey://"))
    try:
        await valkey.ping()
        await valkey.put_plan("shared", "body", NOW + 60, NOW)
        assert await plain.get_plan("shared") == PlanSlot("body", used=False, asking_until=0.0)
    finally:
        await plain.close()
        await valkey.close()


def test_a_malformed_redis_url_is_a_store_error_that_does_not_repeat_it() -> None:
    with pytest.raises(StoreError) as error:
        RedisStore("redis://user:s3cret-pw@127.0.0.1:port/0")
    assert "s3cret" not in str(error.value)
