"""Confirmation tokens and plan comparison, without a server: every binding `check` verifies, single use
under contention (in one process and across two stores sharing one SQLite file), reservations for a
question, and how a re-read state compares with the plan."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from purgewarden.safety.plans import (
    TOKEN_SHAPE,
    Claims,
    Confirmations,
    Refusal,
    Snapshot,
    canonical,
    compare,
    store_key,
)
from purgewarden.store.sqlite import SqliteStore

TOOL = "cocoon_empty_recycle_bin"
PREVIEW = "cocoon_preview_empty_recycle_bin"
ARGS = {"organisation_id": "749418071827214336"}
CREDENTIAL = "fp-alex"
SNAPSHOT = Snapshot(totals={"items": 3, "bytes": 300}, members=frozenset({"c", "a", "b"}))
TTL = 300.0


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "purgewarden.db"


@pytest.fixture
async def open_store(db: Path) -> AsyncIterator[Callable[[], SqliteStore]]:
    """`open_store()`: another SqliteStore (its own connection) on the same file; all closed after."""
    opened: list[SqliteStore] = []

    def new() -> SqliteStore:
        opened.append(SqliteStore(db))
        return opened[-1]

    yield new
    for store in opened:
        await store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def confirmations(open_store: Callable[[], SqliteStore], clock: FakeClock) -> Confirmations:
    return Confirmations(open_store(), TTL, clock)


async def check(confirmations: Confirmations, token: str, **overrides: Any) -> Claims:
    binding: dict[str, Any] = {
        "tool": TOOL,
        "preview_tool": PREVIEW,
        "arguments": ARGS,
        "credential": CREDENTIAL,
    }
    return await confirmations.check(token, **{**binding, **overrides})


async def refusal(confirmations: Confirmations, token: str, **overrides: Any) -> Refusal:
    with pytest.raises(Refusal) as raised:
        await check(confirmations, token, **overrides)
    return raised.value


async def issue(
    confirmations: Confirmations,
    snapshot: Snapshot = SNAPSHOT,
    arguments: dict[str, Any] = ARGS,
    principal: str | None = None,
) -> str:
    issued = await confirmations.issue(
        TOOL, arguments, CREDENTIAL, snapshot, "Delete 3 items.", 3, principal=principal
    )
    return issued.token


async def consume_refusal(confirmations: Confirmations, claims: Claims) -> Refusal:
    with pytest.raises(Refusal) as raised:
        await confirmations.consume(claims)
    return raised.value


# --- the token -------------------------------------------------------------------------------------


async def test_a_token_is_a_short_random_handle(confirmations: Confirmations) -> None:
    tokens = [await issue(confirmations) for _ in range(20)]
    for token in tokens:
        assert TOKEN_SHAPE.fullmatch(token), token
        assert token.startswith("pwc_")
        assert len(token) <= 40
    assert len(set(tokens)) == len(tokens)  # the same plan twice still gets two tokens


async def test_the_store_holds_a_digest_of_the_token_never_the_token(
    confirmations: Confirmations, db: Path
) -> None:
    token = await issue(confirmations)
    written = b"".join(f.read_bytes() for f in sorted(db.parent.iterdir()) if f.name.startswith(db.name))
    assert store_key(token).encode() in written  # these are the store's bytes (WAL included)...
    assert token.encode() not in written  # ...and the token is not among them
    assert token[4:].encode() not in written
    slot = await confirmations.store.get_plan(store_key(token))
    assert slot is not None
    assert "key" not in json.loads(slot.body)
    # Whoever reads the store holds the key, which is not a token.
    assert (await refusal(confirmations, store_key(token))).reason == "invalid_token"


async def test_the_expiry_is_reported_in_utc(confirmations: Confirmations, clock: FakeClock) -> None:
    issued = await confirmations.issue(TOOL, ARGS, CREDENTIAL, SNAPSHOT, "s", 3)
    assert issued.expires_at == "1970-01-12T13:51:40+00:00"  # 1_000_000 + 300 s


# --- check: every binding ------------------------------------------------------------------------


async def test_an_issued_token_checks_out_with_its_plan(confirmations: Confirmations) -> None:
    token = await confirmations.issue(
        TOOL, ARGS, CREDENTIAL, SNAPSHOT, "Delete 3 items.", 3, principal="alice"
    )
    claims = await check(confirmations, token.token, principal="alice")
    assert claims.tool == TOOL
    assert claims.credential == CREDENTIAL
    assert claims.principal == "alice"
    assert claims.args == canonical(ARGS)
    assert claims.state == SNAPSHOT.digest
    assert claims.size == 3
    assert claims.summary == "Delete 3 items."
    assert claims.totals == {"items": 3, "bytes": 300}
    assert claims.expires == 1_000_000.0 + TTL
    assert claims.key == store_key(token.token)
    slot = await confirmations.store.get_plan(claims.key)
    assert slot is not None
    assert '"b"' not in slot.body  # the ids are kept apart, for consume alone
    held = await confirmations.consume(claims)
    assert held == SNAPSHOT
    assert list(held.ordered) == ["a", "b", "c"]


async def test_surrounding_whitespace_is_tolerated(confirmations: Confirmations) -> None:
    token = await issue(confirmations)
    assert (await check(confirmations, f"  {token}\n")).key == store_key(token)
    assert (await check(confirmations, f"\t{token} ")).key == (await check(confirmations, token)).key


async def test_argument_order_does_not_matter(confirmations: Confirmations) -> None:
    token = await issue(confirmations, arguments={"a": 1, "b": 2})
    await check(confirmations, token, arguments={"b": 2, "a": 1})
    assert (await refusal(confirmations, token, arguments={"a": 2, "b": 1})).reason == "wrong_arguments"


def one_character_changed(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (lambda t: "", "missing_token"),
        (lambda t: "  \n", "missing_token"),
        (lambda t: "the user said yes", "invalid_token"),
        (lambda t: "pwc_" + "A" * 32, "invalid_token"),
        (one_character_changed, "invalid_token"),
        (lambda t: t[:10] + t[11:], "invalid_token"),
        (lambda t: t + "A", "invalid_token"),
        (lambda t: "pwd_" + t[4:], "invalid_token"),
        (lambda t: t[4:], "invalid_token"),
        (lambda t: "pwc1.eyJ0b29sIjoiY29jb29uX2VtcHR5In0.c2lnbmF0dXJlc2lnbmF0dXJl", "invalid_token"),
    ],
    ids=[
        "empty",
        "blank",
        "garbage",
        "never-issued",
        "one-character-changed",
        "one-character-dropped",
        "extended",
        "other-prefix",
        "no-prefix",
        "old-hmac-format",
    ],
)
async def test_a_token_that_was_not_issued_is_refused(
    confirmations: Confirmations, forge: Callable[[str], str], reason: str
) -> None:
    token = await issue(confirmations)
    forged = forge(token)
    assert forged.strip() != token
    problem = await refusal(confirmations, forged)
    assert problem.reason == reason
    assert f"Call {PREVIEW}" in str(problem)
    if reason == "invalid_token":
        assert "unknown here" in str(problem)
    await check(confirmations, token)  # the real one is untouched


async def test_a_token_for_another_tool_is_refused(confirmations: Confirmations) -> None:
    token = await issue(confirmations)
    problem = await refusal(
        confirmations, token, tool="vault_delete_objects", preview_tool="vault_preview_delete_objects"
    )
    assert problem.reason == "wrong_tool"
    assert f"issued for {TOOL}, not vault_delete_objects" in str(problem)
    assert "Call vault_preview_delete_objects" in str(problem)


async def test_a_token_for_other_arguments_is_refused(confirmations: Confirmations) -> None:
    token = await issue(confirmations)
    problem = await refusal(confirmations, token, arguments={"organisation_id": "749500433215799296"})
    assert problem.reason == "wrong_arguments"
    assert (
        await refusal(confirmations, token, arguments={**ARGS, "extra": None})
    ).reason == "wrong_arguments"
    assert (await refusal(confirmations, token, arguments={})).reason == "wrong_arguments"


async def test_a_token_for_another_credential_is_refused(confirmations: Confirmations) -> None:
    token = await issue(confirmations)
    problem = await refusal(confirmations, token, credential="fp-sam")
    assert problem.reason == "wrong_credential"
    assert "different API credential" in str(problem)
    assert "fp-alex" not in str(problem)
    assert "fp-sam" not in str(problem)


async def test_a_token_for_another_principal_is_refused(confirmations: Confirmations) -> None:
    token = await issue(confirmations, principal="alice")
    problem = await refusal(confirmations, token, principal="mallory")
    assert problem.reason == "wrong_principal"
    assert "whoever previewed it" in str(problem)
    assert "alice" not in str(problem)
    assert (await refusal(confirmations, token)).reason == "wrong_principal"  # no caller is not alice
    assert (await check(confirmations, token, principal="alice")).principal == "alice"


async def test_an_anonymous_plan_is_not_confirmed_by_a_named_caller(confirmations: Confirmations) -> None:
    token = await issue(confirmations)
    assert (await refusal(confirmations, token, principal="alice")).reason == "wrong_principal"
    assert (await check(confirmations, token)).principal is None


async def test_an_expired_token_is_refused(confirmations: Confirmations, clock: FakeClock) -> None:
    token = await issue(confirmations)
    clock.now += TTL - 0.1
    await check(confirmations, token)
    clock.now += 0.1
    problem = await refusal(confirmations, token)
    assert problem.reason == "expired_token"
    assert "expired 0 s ago" in str(problem)
    assert "tokens last 300 s" in str(problem)
    clock.now += 42
    assert "expired 42 s ago" in str(await refusal(confirmations, token))


async def test_a_used_token_is_refused_by_check_and_by_consume(confirmations: Confirmations) -> None:
    token = await issue(confirmations)
    claims = await check(confirmations, token)
    await confirmations.consume(claims)
    problem = await refusal(confirmations, token)
    assert problem.reason == "reused_token"
    assert "already used" in str(problem)
    assert (await consume_refusal(confirmations, claims)).reason == "reused_token"


async def test_a_used_token_is_told_used_past_its_expiry_then_forgotten(
    confirmations: Confirmations, clock: FakeClock
) -> None:
    token = await issue(confirmations)
    await confirmations.consume(await check(confirmations, token))
    clock.now += TTL + 1
    await issue(confirmations)  # issuing forgets plans kept past their time; this one is still kept
    assert (await refusal(confirmations, token)).reason == "reused_token"
    clock.now += TTL
    await issue(confirmations)
    assert (await refusal(confirmations, token)).reason == "invalid_token"


async def test_an_unused_token_is_told_expired_until_forgotten(
    confirmations: Confirmations, clock: FakeClock
) -> None:
    token = await issue(confirmations)
    clock.now += 2 * TTL - 1
    await issue(confirmations)
    assert (await refusal(confirmations, token)).reason == "expired_token"
    clock.now += 2
    await issue(confirmations)
    assert (await refusal(confirmations, token)).reason == "invalid_token"


# --- check does not consume; consume does, exactly once ----------------------------------------------


async def test_check_does_not_consume(confirmations: Confirmations) -> None:
    token = await issue(confirmations)
    for _ in range(5):
        claims = await check(confirmations, token)
    assert await confirmations.consume(claims) == SNAPSHOT


async def test_consume_returns_the_previewed_totals_and_members(confirmations: Confirmations) -> None:
    claims = await check(confirmations, await issue(confirmations))
    held = await confirmations.consume(claims)
    assert dict(held.totals) == {"items": 3, "bytes": 300}
    assert held.members == frozenset({"a", "b", "c"})
    assert held.digest == claims.state == SNAPSHOT.digest


async def test_a_plan_without_members_is_held_too(confirmations: Confirmations) -> None:
    counted = Snapshot(totals={"items": 3})
    held = await confirmations.consume(await check(confirmations, await issue(confirmations, counted)))
    assert held == counted
    assert held.members == frozenset()


async def test_tokens_are_independent(confirmations: Confirmations) -> None:
    first, second = await issue(confirmations), await issue(confirmations)
    assert first != second
    await confirmations.consume(await check(confirmations, first))
    await check(confirmations, second)
    assert (await refusal(confirmations, first)).reason == "reused_token"


async def test_consume_wins_exactly_once_among_50_concurrent_callers(confirmations: Confirmations) -> None:
    token = await issue(confirmations)
    claims = [await check(confirmations, token) for _ in range(50)]  # every caller checked first
    won: list[Snapshot] = []
    lost: list[str] = []

    async def redeem(mine: Claims) -> None:
        try:
            won.append(await confirmations.consume(mine))
        except Refusal as refused:
            lost.append(refused.reason)

    async with anyio.create_task_group() as group:
        for mine in claims:
            group.start_soon(redeem, mine)
    assert won == [SNAPSHOT]
    assert lost == ["reused_token"] * 49


async def test_consume_wins_exactly_once_across_two_stores_on_one_file(
    open_store: Callable[[], SqliteStore], clock: FakeClock
) -> None:
    # Two processes on one machine: two Confirmations, each with its own connection to the same file.
    one, two = Confirmations(open_store(), TTL, clock), Confirmations(open_store(), TTL, clock)
    token = await issue(one)
    callers = [(one if i % 2 else two, await check(one if i % 2 else two, token)) for i in range(50)]
    await one.store.ping()  # both connections open before the race
    await two.store.ping()
    won: list[Snapshot] = []
    lost: list[str] = []

    async def redeem(where: Confirmations, mine: Claims) -> None:
        try:
            won.append(await where.consume(mine))
        except Refusal as refused:
            lost.append(refused.reason)

    async with anyio.create_task_group() as group:
        for where, mine in callers:
            group.start_soon(redeem, where, mine)
    assert won == [SNAPSHOT]
    assert lost == ["reused_token"] * 49
    assert (await refusal(one, token)).reason == "reused_token"
    assert (await refusal(two, token)).reason == "reused_token"


async def test_concurrent_checks_consume_nothing(confirmations: Confirmations) -> None:
    token = await issue(confirmations)
    checked: list[Claims] = []

    async def look() -> None:
        for _ in range(3):
            checked.append(await check(confirmations, token))

    async with anyio.create_task_group() as group:
        for _ in range(16):
            group.start_soon(look)
    assert len(checked) == 48
    assert await confirmations.consume(await check(confirmations, token)) == SNAPSHOT


async def test_many_tokens_consumed_concurrently_each_win_once(confirmations: Confirmations) -> None:
    tokens = [await issue(confirmations) for _ in range(25)]
    claims = [await check(confirmations, t) for t in tokens * 2]
    wins: list[str] = []

    async def redeem(mine: Claims) -> None:
        try:
            await confirmations.consume(mine)
        except Refusal:
            return
        wins.append(mine.key)

    async with anyio.create_task_group() as group:
        for mine in claims:
            group.start_soon(redeem, mine)
    assert sorted(wins) == sorted(store_key(t) for t in tokens)


# --- replicas: whoever shares the store --------------------------------------------------------------


async def test_a_token_works_on_another_confirmations_sharing_the_store(
    open_store: Callable[[], SqliteStore], clock: FakeClock
) -> None:
    issuer, replica = Confirmations(open_store(), TTL, clock), Confirmations(open_store(), TTL, clock)
    token = await issue(issuer, principal="alice")
    claims = await check(replica, token, principal="alice")
    assert (await refusal(replica, token, credential="fp-sam")).reason == "wrong_credential"
    assert await replica.consume(claims) == SNAPSHOT  # the replica holds the plan, members and all
    assert (await refusal(issuer, token, principal="alice")).reason == "reused_token"


async def test_a_token_is_unknown_to_a_confirmations_with_another_store(
    confirmations: Confirmations, tmp_path: Path, clock: FakeClock
) -> None:
    token = await issue(confirmations)
    elsewhere = SqliteStore(tmp_path / "elsewhere" / "purgewarden.db")
    try:
        problem = await refusal(Confirmations(elsewhere, TTL, clock), token)
    finally:
        await elsewhere.close()
    assert problem.reason == "invalid_token"
    assert "not issued by this server" in str(problem)
    await check(confirmations, token)


# --- reserve: one question per token -------------------------------------------------------------


async def test_a_token_is_asked_about_by_one_call_at_a_time(confirmations: Confirmations) -> None:
    token = await issue(confirmations)
    claims = await check(confirmations, token)
    assert not confirmations.being_asked(claims)
    assert await confirmations.reserve(claims)
    assert confirmations.being_asked(await check(confirmations, token))
    assert not await confirmations.reserve(claims)  # a second call may not ask about it meanwhile
    await confirmations.release(claims)  # the user said no: the token may be asked about again
    assert not confirmations.being_asked(await check(confirmations, token))
    assert await confirmations.reserve(claims)


async def test_a_reservation_holds_across_stores_on_one_file(
    open_store: Callable[[], SqliteStore], clock: FakeClock
) -> None:
    one, two = Confirmations(open_store(), TTL, clock), Confirmations(open_store(), TTL, clock)
    token = await issue(one)
    here, there = await check(one, token), await check(two, token)
    assert await one.reserve(here)
    assert two.being_asked(await check(two, token))
    assert not await two.reserve(there)
    await one.release(here)
    assert await two.reserve(there)


async def test_only_one_of_many_concurrent_reservations_wins(confirmations: Confirmations) -> None:
    claims = await check(confirmations, await issue(confirmations))
    answers: list[bool] = []

    async def ask() -> None:
        answers.append(await confirmations.reserve(claims))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(ask)
    assert sorted(answers) == [False] * 19 + [True]


async def test_consuming_ends_the_question_and_a_used_token_cannot_be_reserved(
    confirmations: Confirmations,
) -> None:
    claims = await check(confirmations, await issue(confirmations))
    assert await confirmations.reserve(claims)
    await confirmations.consume(claims)
    slot = await confirmations.store.get_plan(claims.key)
    assert slot is not None
    assert slot.asking_until == 0
    assert not await confirmations.reserve(claims)


async def test_a_used_token_cannot_be_reserved_even_after_a_release(confirmations: Confirmations) -> None:
    claims = await check(confirmations, await issue(confirmations))
    await confirmations.consume(claims)
    await confirmations.release(claims)
    assert not await confirmations.reserve(claims)


async def test_a_reservation_outlives_the_token_by_one_lifetime_at_most(
    confirmations: Confirmations, clock: FakeClock
) -> None:
    token = await issue(confirmations)
    claims = await check(confirmations, token)
    assert await confirmations.reserve(claims)
    clock.now += TTL + 1
    # The answer came after the token's expiry: the question held it, so it is still honoured...
    assert confirmations.being_asked(await check(confirmations, token, asking=True))
    assert (await check(confirmations, token, asking=True)).key == claims.key
    # ...but only for the call that asked.
    assert (await refusal(confirmations, token)).reason == "expired_token"
    clock.now += TTL - 1  # one lifetime past expiry: a client that never came back holds it no longer
    assert not confirmations.being_asked(claims)
    assert (await refusal(confirmations, token, asking=True)).reason == "expired_token"


async def test_asking_does_not_save_an_expired_token_nobody_reserved(
    confirmations: Confirmations, clock: FakeClock
) -> None:
    token = await issue(confirmations)
    clock.now += TTL
    assert (await refusal(confirmations, token, asking=True)).reason == "expired_token"


async def test_a_released_question_no_longer_holds_an_expired_token(
    confirmations: Confirmations, clock: FakeClock
) -> None:
    token = await issue(confirmations)
    claims = await check(confirmations, token)
    assert await confirmations.reserve(claims)
    clock.now += TTL + 1
    await confirmations.release(claims)
    assert (await refusal(confirmations, token, asking=True)).reason == "expired_token"


# --- compare ---------------------------------------------------------------------------------------

PLANNED = Snapshot(totals={"items": 3, "bytes": 300}, members=frozenset({"a", "b", "c"}))


def verdict(current: Snapshot, planned: Snapshot = PLANNED) -> str:
    return compare(planned, current)


def test_the_same_state_is_same() -> None:
    assert verdict(Snapshot(dict(PLANNED.totals), frozenset(PLANNED.members))) == "same"


def test_the_same_totals_without_members_is_same() -> None:
    counted = Snapshot(totals={"items": 7})
    assert compare(counted, Snapshot(totals={"items": 7})) == "same"


def test_a_subset_with_smaller_totals_has_shrunk() -> None:
    assert verdict(Snapshot({"items": 2, "bytes": 200}, frozenset({"a", "b"}))) == "shrunk"
    assert verdict(Snapshot({"items": 0, "bytes": 0})) == "shrunk"


def test_the_planned_ids_with_smaller_totals_have_shrunk() -> None:
    # A re-check that counted again but did not list: what is acted on is still at most the planned ids.
    assert verdict(Snapshot({"items": 2, "bytes": 200}, PLANNED.members)) == "shrunk"


def test_a_proper_subset_with_equal_totals_is_not_same() -> None:
    assert verdict(Snapshot(dict(PLANNED.totals), frozenset({"a", "b"}))) == "shrunk"


def test_more_of_any_total_has_grown() -> None:
    assert verdict(Snapshot({"items": 4, "bytes": 300}, PLANNED.members)) == "grown"
    assert verdict(Snapshot({"items": 3, "bytes": 301}, PLANNED.members)) == "grown"
    assert verdict(Snapshot({"items": 3, "bytes": 300, "folders": 1}, PLANNED.members)) == "grown"


def test_a_superset_has_grown() -> None:
    assert verdict(Snapshot({"items": 4, "bytes": 400}, PLANNED.members | {"d"})) == "grown"


def test_a_superset_with_no_larger_total_has_grown() -> None:
    # An extra id is an item the user never saw, whatever the counts say.
    assert verdict(Snapshot({"items": 3, "bytes": 300}, PLANNED.members | {"d"})) == "grown"


def test_a_swapped_member_has_grown() -> None:
    assert verdict(Snapshot({"items": 3, "bytes": 10}, frozenset({"a", "b", "z"}))) == "grown"


def test_counts_without_members() -> None:
    counted = Snapshot(totals={"items": 7, "bytes": 70})
    assert compare(counted, Snapshot({"items": 5, "bytes": 70})) == "shrunk"
    assert compare(counted, Snapshot({"items": 8, "bytes": 10})) == "grown"


def test_listed_members_against_a_counted_plan_cannot_be_shown_smaller() -> None:
    # A plan that listed nobody cannot tell which listed ids the user saw.
    counted = Snapshot(totals={"items": 7})
    assert compare(counted, Snapshot({"items": 2}, frozenset({"a", "b"}))) == "grown"


def test_sorted_ids_are_the_same_snapshot_as_their_set() -> None:
    ordered = Snapshot(dict(PLANNED.totals), ordered=["a", "b", "c"])
    assert ordered == PLANNED
    assert ordered.members == PLANNED.members
    assert ordered.digest == PLANNED.digest
    assert ordered != Snapshot(dict(PLANNED.totals), ordered=["a", "b"])


def test_a_recount_of_the_planned_ids_is_same_or_shrunk() -> None:
    # The whole-state re-check: the plan's own ids with a count now.
    held = Snapshot({"items": 3}, ordered=["a", "b", "c"])
    assert compare(held, Snapshot({"items": 3}, ordered=held.ordered)) == "same"
    assert compare(held, Snapshot({"items": 2}, ordered=held.ordered)) == "shrunk"
    assert compare(held, Snapshot({"items": 3}, ordered=["a", "b", "d"])) == "grown"


# --- the snapshot's digest -----------------------------------------------------------------------


def test_the_digest_depends_on_totals_and_members_not_their_order() -> None:
    a = Snapshot({"items": 2, "bytes": 3}, frozenset({"x", "y"}))
    b = Snapshot({"bytes": 3, "items": 2}, frozenset({"y", "x"}))
    assert a.digest == b.digest
    assert a.digest != Snapshot({"items": 2, "bytes": 4}, frozenset({"x", "y"})).digest
    assert a.digest != Snapshot({"items": 2, "bytes": 3}, frozenset({"x", "z"})).digest


def test_the_digest_separates_members() -> None:
    # "ab" + "c" must not collide with "a" + "bc".
    assert Snapshot({}, frozenset({"ab", "c"})).digest != Snapshot({}, frozenset({"a", "bc"})).digest


def test_the_digest_separates_members_that_contain_the_separator() -> None:
    # Ids are API text: one id holding a NUL must not hash like two ids.
    assert Snapshot({}, frozenset({"a\0b"})).digest != Snapshot({}, frozenset({"a", "b"})).digest


async def test_ids_with_any_characters_come_back_exactly(confirmations: Confirmations) -> None:
    # API ids are untrusted text: line breaks, separators and quotes must not split or merge them.
    hostile = frozenset({"a\nb", "c,d", 'e"f', "g\x00h", "\u2028", ""})
    snapshot = Snapshot(totals={"items": len(hostile)}, members=hostile)
    token = (await confirmations.issue(TOOL, ARGS, CREDENTIAL, snapshot, "Delete them.", len(hostile))).token
    held = await confirmations.consume(await check(confirmations, token))
    assert held.members == hostile
    assert held.digest == snapshot.digest
