"""A run's journal and its replay: what was settled, what was in flight when the process stopped, what
was never sent; and the journal writer, against a real SQLite store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from purgewarden.safety.outcome import FATES, Ledger
from purgewarden.safety.runs import Journal, LiveRun, RunRecord, replay
from purgewarden.safety.text import SAMPLE_SIZE
from purgewarden.store.sqlite import SqliteStore

NOTHING = dict.fromkeys(FATES, 0)


def fates(**counts: int) -> dict[str, int]:
    return {**NOTHING, **counts}


def sending(request: int, ids: list[str] | None = None, count: int | None = None) -> dict[str, Any]:
    return {"kind": "sending", "request": request, "what": "delete", "ids": ids, "count": count}


def answered(request: int, *settled: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "answered", "request": request, "settled": list(settled)}


def ids(fate: str, *listed: str) -> dict[str, Any]:
    return {"fate": fate, "ids": list(listed)}


def counted(fate: str, count: int) -> dict[str, Any]:
    return {"fate": fate, "count": count}


STARTED = {"kind": "started", "owner": "host/1/abc", "size": 0, "target": {}}


# --- replay --------------------------------------------------------------------------------------


def test_an_empty_journal_sent_nothing() -> None:
    told = replay([STARTED], 4)
    assert told.settled == NOTHING
    assert told.accounting == fates(not_carried_out=4)
    assert told.in_flight == []
    assert told.in_flight_count == 0
    assert told.checkpoints == {}


def test_settled_ids_keep_their_fate() -> None:
    told = replay(
        [
            STARTED,
            sending(1, ["a", "b", "c"]),
            answered(1, ids("carried_out", "a", "c"), ids("not_carried_out", "b")),
            sending(2, ["d"]),
            answered(2, ids("unknown", "d")),
        ],
        4,
    )
    assert told.settled == fates(carried_out=2, not_carried_out=1, unknown=1)
    assert told.accounting == told.settled
    assert told.in_flight == []
    assert told.in_flight_count == 0


def test_ids_sent_and_never_settled_are_in_flight_in_order_without_duplicates() -> None:
    told = replay(
        [
            STARTED,
            sending(1, ["z", "y", "q"]),
            answered(1, ids("carried_out", "q")),
            sending(2, ["y", "x", "z"]),  # a retry of the two not settled, and one more
        ],
        10,
    )
    assert told.in_flight == ["z", "y", "x"]
    assert told.in_flight_count == 3
    assert told.accounting == fates(carried_out=1, unknown=3, not_carried_out=6)


def test_ids_of_an_answered_request_that_were_not_settled_are_unknown() -> None:
    told = replay([STARTED, sending(1, ["a", "b", "c"]), answered(1, ids("carried_out", "b"))], 3)
    assert told.in_flight == ["a", "c"]
    assert told.in_flight_count == 2
    assert told.accounting == fates(carried_out=1, unknown=2)


def test_ids_settled_by_a_later_entry_are_no_longer_in_flight() -> None:
    told = replay(
        [
            STARTED,
            sending(1, ["a", "b"]),
            answered(1),
            {"kind": "resumed", "settled": [ids("carried_out", "a", "b")]},
        ],
        2,
    )
    assert told.in_flight == []
    assert told.accounting == fates(carried_out=2)


def test_an_unanswered_count_request_is_unknown() -> None:
    told = replay(
        [STARTED, sending(1, count=4), answered(1, counted("carried_out", 4)), sending(2, count=3)], 10
    )
    assert told.settled == fates(carried_out=4)
    assert told.accounting == fates(carried_out=4, unknown=3, not_carried_out=3)
    assert told.in_flight == []  # nobody was named
    assert told.in_flight_count == 3


def test_an_unanswered_count_request_is_unknown_only_up_to_what_is_unsettled() -> None:
    told = replay(
        [STARTED, sending(1, count=8), answered(1, counted("carried_out", 8)), sending(2, count=5)], 10
    )
    assert told.accounting == fates(carried_out=8, unknown=2)
    assert told.in_flight_count == 2


def test_an_unanswered_count_request_is_unknown_beside_ids_in_flight() -> None:
    told = replay(
        [STARTED, sending(1, ["a", "b"]), answered(1), sending(2, count=10)],
        5,
    )
    assert told.in_flight == ["a", "b"]
    assert told.accounting == fates(unknown=5)
    assert told.in_flight_count == 5


def test_an_answered_count_request_leaves_nothing_unknown() -> None:
    told = replay([STARTED, sending(1, count=5), answered(1, counted("carried_out", 3))], 10)
    assert told.accounting == fates(carried_out=3, not_carried_out=7)
    assert told.in_flight_count == 0


def test_items_never_sent_were_not_carried_out() -> None:
    told = replay(
        [STARTED, sending(1, ["a", "b"]), answered(1, ids("carried_out", "a")), sending(2, ["c"])], 7
    )
    # 7 approved: 1 settled, 2 unknown (b answered unsettled, c unanswered), 4 never sent.
    assert told.accounting == fates(carried_out=1, unknown=2, not_carried_out=4)
    assert sum(told.accounting.values()) == 7


def test_never_sent_is_never_negative() -> None:
    more_settled_than_approved = replay(
        [STARTED, sending(1, count=5), answered(1, counted("carried_out", 5))], 3
    )
    assert more_settled_than_approved.accounting == fates(carried_out=5)
    more_in_flight_than_approved = replay([STARTED, sending(1, ["a", "b", "c", "d"])], 2)
    assert more_in_flight_than_approved.accounting == fates(unknown=4)


def test_checkpoints_merge_and_the_later_wins() -> None:
    told = replay(
        [
            STARTED,
            {"kind": "checkpoint", "data": {"task": "t-1", "bucket": "b"}, "settled": []},
            {"kind": "checkpoint", "data": {"task": "t-2", "counts": {"deleted": 3}}, "settled": []},
        ],
        0,
    )
    assert told.checkpoints == {"task": "t-2", "bucket": "b", "counts": {"deleted": 3}}


@pytest.mark.parametrize("kind", ["answered", "checkpoint", "finished", "resumed"])
def test_settlements_count_in_every_kind_of_entry(kind: str) -> None:
    entry = {"kind": kind, "settled": [ids("carried_out", "a"), counted("not_carried_out", 2)]}
    told = replay([STARTED, sending(1, ["a"]), entry], 5)
    assert told.settled == fates(carried_out=1, not_carried_out=2)
    assert told.in_flight == []
    assert told.accounting == fates(carried_out=1, not_carried_out=4)


def test_settled_excludes_what_was_in_flight_or_never_sent() -> None:
    told = replay(
        [STARTED, sending(1, ["a", "b"]), answered(1, ids("not_carried_out", "a")), sending(2, count=2)], 10
    )
    assert told.settled == fates(not_carried_out=1)
    assert told.accounting == fates(not_carried_out=1 + 6, unknown=3)


def test_a_replay_fills_a_record_with_a_sample_of_the_ids_in_flight() -> None:
    sent = [f"id-{i:03}" for i in range(SAMPLE_SIZE + 5)]
    told = replay([STARTED, sending(1, sent)], len(sent) + 1)
    record = RunRecord(
        id="r",
        tool="vault_delete_objects",
        service="vault",
        target={},
        summary="s",
        size=len(sent) + 1,
        owner="o",
        started_at="2025-01-01T00:00:00+00:00",
    )
    told.record_in(record)
    assert record.in_flight == sent[:SAMPLE_SIZE]
    assert record.in_flight_count == len(sent)
    assert record.accounting == fates(unknown=len(sent), not_carried_out=1)


# --- the ledger hands its settlements over once ------------------------------------------------------


def test_drain_returns_the_settlements_once() -> None:
    ledger = Ledger()
    ledger.settle("carried_out", ["a", "b"])
    ledger.settle("unknown", count=3, why="timeout")
    ledger.settle("not_carried_out", [])  # nothing to hand over
    assert ledger.drain() == [ids("carried_out", "a", "b"), counted("unknown", 3)]
    assert ledger.drain() == []
    ledger.settle("not_carried_out", ["c"], why="refused")
    assert ledger.drain() == [ids("not_carried_out", "c")]
    assert ledger.totals() == fates(carried_out=2, unknown=3, not_carried_out=1)  # drain keeps the counts


# --- the journal writer, against a real store -------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "purgewarden.db")
    await store.create_run("r", "host/1/abc", 0.0, "{}")
    yield store
    await store.close()


async def entries(store: SqliteStore) -> list[dict[str, Any]]:
    stored = await store.get_run("r")
    assert stored is not None
    return [json.loads(e) for e in stored.entries]


def without_time(written: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "at"} for e in written]


async def test_a_request_is_journaled_before_it_is_sent_and_its_answer_after(store: SqliteStore) -> None:
    ledger = Ledger()
    journal = Journal(store, "r", ledger)
    async with journal.sending("delete", ids=["a", "b"]):
        inside = await entries(store)
        ledger.settle("carried_out", ["a"])
        ledger.settle("unknown", ["b"], why="timeout")
    assert without_time(inside) == [
        {"kind": "sending", "request": 1, "what": "delete", "ids": ["a", "b"], "count": None}
    ]
    after = without_time(await entries(store))
    assert after[0] == without_time(inside)[0]
    assert after[1:] == [
        {"kind": "answered", "request": 1, "settled": [ids("carried_out", "a"), ids("unknown", "b")]}
    ]
    assert ledger.unjournaled == []
    assert isinstance((await entries(store))[0]["at"], float)


async def test_requests_are_numbered_and_a_count_request_is_journaled_as_a_count(store: SqliteStore) -> None:
    ledger = Ledger()
    journal = Journal(store, "r", ledger)
    async with journal.sending("delete", ids=iter(["a"])):  # any sequence is written as a list
        pass
    async with journal.sending("purge", count=7):
        ledger.settle("carried_out", count=7)
    written = without_time(await entries(store))
    assert [(e["kind"], e["request"]) for e in written] == [
        ("sending", 1),
        ("answered", 1),
        ("sending", 2),
        ("answered", 2),
    ]
    assert written[0]["ids"] == ["a"]
    assert written[1]["settled"] == []
    assert written[2] == {"kind": "sending", "request": 2, "what": "purge", "ids": None, "count": 7}
    assert written[3]["settled"] == [counted("carried_out", 7)]


async def test_a_journal_read_mid_request_names_the_request_in_flight(store: SqliteStore) -> None:
    ledger = Ledger()
    journal = Journal(store, "r", ledger)
    async with journal.sending("delete", ids=["a", "b"]):
        ledger.settle("carried_out", ["a"])
        ledger.settle("not_carried_out", ["b"], why="404")
    async with journal.sending("delete", ids=["c", "d"]):
        told = replay(await entries(store), 6)  # what another process finds if this one dies now
    assert told.in_flight == ["c", "d"]
    assert told.accounting == fates(carried_out=1, unknown=2, not_carried_out=1 + 2)


async def test_an_answer_is_journaled_when_the_request_fails(store: SqliteStore) -> None:
    ledger = Ledger()
    journal = Journal(store, "r", ledger)

    async def request() -> None:
        async with journal.sending("delete", ids=["a"]):
            ledger.settle("unknown", ["a"], why="connection reset")
            raise RuntimeError("connection reset")

    with pytest.raises(RuntimeError, match="connection reset"):
        await request()
    written = without_time(await entries(store))
    assert [e["kind"] for e in written] == ["sending", "answered"]
    assert written[1]["settled"] == [{"fate": "unknown", "request": 1}]  # the request's own ids, named once


async def test_a_cancellation_does_not_land_inside_a_request(store: SqliteStore) -> None:
    ledger = Ledger()
    journal = Journal(store, "r", ledger)
    reached: list[str] = []
    with anyio.CancelScope() as outer:
        async with journal.sending("delete", ids=["a"]):
            outer.cancel()
            await anyio.sleep(0.01)  # the request's round trip: a checkpoint the cancellation may not use
            ledger.settle("carried_out", ["a"])
            reached.append("answered")
        reached.append("after the request")  # not a checkpoint: still runs
        await (
            anyio.lowlevel.checkpoint()
        )  # the first checkpoint after the request: the cancellation lands here
        reached.append("next request")
    assert outer.cancelled_caught
    assert reached == ["answered", "after the request"]
    written = without_time(await entries(store))
    assert written[-1] == {
        "kind": "answered",
        "request": 1,
        "settled": [{"fate": "carried_out", "request": 1}],
    }


async def test_a_cancellation_before_the_request_is_journaled_does_not_skip_the_journal(
    store: SqliteStore,
) -> None:
    ledger = Ledger()
    journal = Journal(store, "r", ledger)
    ran = False
    with anyio.CancelScope() as outer:
        outer.cancel()
        async with journal.sending("delete", ids=["a"]):
            ran = True
            ledger.settle("carried_out", ["a"])
    assert ran
    assert [e["kind"] for e in await entries(store)] == ["sending", "answered"]


async def test_replaying_the_journal_gives_the_ledgers_totals(store: SqliteStore) -> None:
    ledger = Ledger()
    journal = Journal(store, "r", ledger)
    await journal.write("started", owner="host/1/abc", size=9, target={})
    async with journal.sending("delete", ids=["a", "b", "c"]):
        ledger.settle("carried_out", ["a", "b"])
        ledger.settle("not_carried_out", ["c"], why="403")
    async with journal.sending("purge", count=4):
        ledger.settle("carried_out", count=3)
        ledger.settle("unknown", count=1, why="timeout")
    ledger.settle("carried_out", ["d"])  # between requests: carried by the checkpoint
    await journal.checkpoint(task="t-9")
    async with journal.sending("delete", ids=["e"]):
        ledger.settle("unknown", ["e"], why="502")
    await journal.write("finished", state="finished", settled=ledger.drain())
    assert ledger.settled == 9
    told = replay(await entries(store), ledger.settled)
    assert told.settled == ledger.totals()
    assert told.accounting == ledger.totals() == fates(carried_out=6, not_carried_out=1, unknown=2)
    assert told.in_flight == []
    assert told.checkpoints == {"task": "t-9"}


async def test_a_settlement_of_part_of_a_request_lists_its_ids_and_replay_resolves_both_forms(
    store: SqliteStore,
) -> None:
    ledger = Ledger()
    journal = Journal(store, "r", ledger)
    async with journal.sending("delete", ids=["a", "b"]):
        ledger.settle("carried_out", ["a"])
        ledger.settle("not_carried_out", ["b"])
    async with journal.sending("delete", ids=["c", "d"]):
        ledger.settle("carried_out", ["c", "d"])
    written = without_time(await entries(store))
    assert written[1]["settled"] == [ids("carried_out", "a"), ids("not_carried_out", "b")]
    assert written[3]["settled"] == [{"fate": "carried_out", "request": 2}]
    told = replay(written, size=5)
    assert told.accounting == {"carried_out": 3, "not_carried_out": 2, "unknown": 0}
    assert told.in_flight == []


async def test_any_text_is_journaled_and_read_back_as_it_was(store: SqliteStore) -> None:
    # Written by the Rust encoder as UTF-8; text it cannot encode (a lone surrogate) falls back to
    # json.dumps, which escapes it: no entry is lost to its encoding.
    odd = ["é😀\u2028", '"\\', "a\ud800"]
    journal = Journal(store, "r", Ledger())
    for object_id in odd:
        async with journal.sending("delete", ids=[object_id]):
            pass
    written = [e["ids"] for e in await entries(store) if e["kind"] == "sending"]
    assert written == [[object_id] for object_id in odd]


# --- progress ----------------------------------------------------------------------------------------


async def test_progress_held_back_by_the_pace_is_told_when_the_run_ends_short_of_its_total(
    store: SqliteStore,
) -> None:
    """A task that fails at 50 % never reports its total: its last progress must not be the one dropped."""
    told: list[float] = []

    async def follower(done: float, total: float | None, message: str) -> None:
        told.append(done)

    record = RunRecord(
        id="r",
        tool="katapult_purge_all_trash_objects",
        service="katapult",
        target={},
        summary="s",
        size=12,
        owner="o",
        started_at="2025-01-01T00:00:00+00:00",
    )
    live = LiveRun(record, Journal(store, "r", Ledger()), follower=follower)
    await live.report(10, 100, "running")
    await live.report(50, 100, "failed")  # within PROGRESS_SECONDS of the last: held back
    assert told == [10]
    await live.flush()
    assert told == [10, 50]
    await live.flush()  # told once
    assert told == [10, 50]
    await live.report(100, 100, "done")  # the total goes at once
    assert told == [10, 50, 100]
