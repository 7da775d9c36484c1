"""Confirmation tokens and plan comparison, without a server: every binding `check` verifies, single use
under contention, and how a re-read state compares with the plan."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from purgewarden.safety.plans import Claims, Confirmations, Refusal, Snapshot, canonical, compare

TOOL = "cocoon_empty_recycle_bin"
PREVIEW = "cocoon_preview_empty_recycle_bin"
ARGS = {"organisation_id": "749418071827214336"}
CREDENTIAL = "fp-alex"
SNAPSHOT = Snapshot(totals={"items": 3, "bytes": 300}, members=frozenset({"a", "b", "c"}))


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def confirmations(
    clock: Callable[[], float] | None = None, key: bytes = b"key", ttl: float = 300
) -> Confirmations:
    return Confirmations(key, ttl, clock or FakeClock())


def check(store: Confirmations, token: str, **overrides: Any) -> Claims:
    binding: dict[str, Any] = {
        "tool": TOOL,
        "preview_tool": PREVIEW,
        "arguments": ARGS,
        "credential": CREDENTIAL,
    }
    return store.check(token, **{**binding, **overrides})


def refusal(store: Confirmations, token: str, **overrides: Any) -> Refusal:
    with pytest.raises(Refusal) as raised:
        check(store, token, **overrides)
    return raised.value


def issue(store: Confirmations, snapshot: Snapshot = SNAPSHOT, arguments: dict[str, Any] = ARGS) -> str:
    return store.issue(TOOL, arguments, CREDENTIAL, snapshot, "Delete 3 items.", 3).token


# --- check: every binding ------------------------------------------------------------------------


def test_an_authentic_token_checks_out_with_its_claims() -> None:
    store = confirmations()
    token = issue(store)
    assert len(token) > 0
    claims = check(store, token)
    assert claims.tool == TOOL
    assert claims.credential == CREDENTIAL
    assert claims.args == canonical(ARGS)
    assert claims.state == SNAPSHOT.digest
    assert claims.size == 3
    assert "bytes" not in claims.model_dump_json()  # the totals stay on the server
    assert claims.summary == "Delete 3 items."


def test_surrounding_whitespace_is_tolerated() -> None:
    store = confirmations()
    token = issue(store)
    assert check(store, f"  {token}\n").nonce == check(store, token).nonce


def test_argument_order_does_not_matter() -> None:
    store = confirmations()
    token = store.issue(TOOL, {"a": 1, "b": 2}, CREDENTIAL, SNAPSHOT, "s", 3).token
    check(store, token, arguments={"b": 2, "a": 1})


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (lambda t: "", "missing_token"),
        (lambda t: "  ", "missing_token"),
        (lambda t: "the user said yes", "invalid_token"),
        (lambda t: t + "A", "invalid_token"),
        (lambda t: t.replace("pwc1.", "pwc0.", 1), "invalid_token"),
        (lambda t: t.rsplit(".", 1)[0] + ".AAAA", "invalid_token"),
        (lambda t: ".".join(t.split(".")[:2]), "invalid_token"),
    ],
    ids=["empty", "blank", "garbage", "extended", "prefix", "signature", "unsigned"],
)
def test_a_token_that_is_not_authentic_is_refused(forge: Callable[[str], str], reason: str) -> None:
    store = confirmations()
    token = issue(store)
    problem = refusal(store, forge(token))
    assert problem.reason == reason
    assert f"Call {PREVIEW}" in str(problem)


def test_a_token_signed_with_another_key_is_refused() -> None:
    token = issue(confirmations(key=b"one"))
    problem = refusal(confirmations(key=b"two"), token)
    assert problem.reason == "invalid_token"
    assert "not issued by this server" in str(problem)


def test_a_token_signed_with_the_same_key_works_on_a_replica() -> None:
    token = issue(confirmations(key=b"shared"))
    check(confirmations(key=b"shared"), token)


def test_a_token_with_a_rewritten_payload_is_refused() -> None:
    # Re-encode the claims with another tool: the signature no longer matches.
    import base64

    store = confirmations()
    token = issue(store)
    prefix, _payload, signature = token.split(".")
    claims = store.peek(token)
    assert claims is not None
    forged = claims.model_copy(update={"tool": "katapult_purge_all_trash_objects"}).model_dump_json().encode()
    forged_payload = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    assert refusal(store, f"{prefix}.{forged_payload}.{signature}").reason == "invalid_token"


def test_an_expired_token_is_refused() -> None:
    clock = FakeClock()
    store = confirmations(clock, ttl=60)
    token = issue(store)
    clock.now += 59.9
    check(store, token)
    clock.now += 0.1
    problem = refusal(store, token)
    assert problem.reason == "expired_token"
    assert "expired" in str(problem)
    assert "tokens last 60 s" in str(problem)


def test_a_token_for_another_tool_is_refused() -> None:
    store = confirmations()
    token = issue(store)
    problem = refusal(store, token, tool="vault_delete_objects", preview_tool="vault_preview_delete_objects")
    assert problem.reason == "wrong_tool"
    assert f"issued for {TOOL}, not vault_delete_objects" in str(problem)
    assert "Call vault_preview_delete_objects" in str(problem)


def test_a_token_for_other_arguments_is_refused() -> None:
    store = confirmations()
    token = issue(store)
    problem = refusal(store, token, arguments={"organisation_id": "749500433215799296"})
    assert problem.reason == "wrong_arguments"
    assert refusal(store, token, arguments={**ARGS, "extra": None}).reason == "wrong_arguments"
    assert refusal(store, token, arguments={}).reason == "wrong_arguments"


def test_a_token_for_another_credential_is_refused() -> None:
    store = confirmations()
    token = issue(store)
    problem = refusal(store, token, credential="fp-sam")
    assert problem.reason == "wrong_credential"
    assert "different API credential" in str(problem)
    assert "fp-alex" not in str(problem)
    assert "fp-sam" not in str(problem)


def test_a_used_token_is_refused_by_check_and_by_consume() -> None:
    store = confirmations()
    token = issue(store)
    claims = check(store, token)
    store.consume(claims)
    assert refusal(store, token).reason == "reused_token"
    with pytest.raises(Refusal) as again:
        store.consume(claims)
    assert again.value.reason == "reused_token"


# --- check does not consume; consume does, exactly once ----------------------------------------------


def test_check_does_not_consume() -> None:
    store = confirmations()
    token = issue(store)
    for _ in range(5):
        claims = check(store, token)
    assert store.consume(claims) == SNAPSHOT


def test_consume_returns_the_previewed_snapshot_with_its_members_once() -> None:
    store = confirmations()
    claims = check(store, issue(store))
    held = store.consume(claims)
    assert held is not None
    assert held.members == SNAPSHOT.members
    assert held.digest == claims.state


def test_consume_on_a_server_that_did_not_preview_holds_no_snapshot() -> None:
    token = issue(confirmations(key=b"shared"))
    replica = confirmations(key=b"shared")
    assert replica.consume(check(replica, token)) is None
    assert refusal(replica, token).reason == "reused_token"


def test_a_plan_without_members_is_held_too() -> None:
    store = confirmations()
    counted = Snapshot(totals={"items": 3})
    claims = check(store, issue(store, counted))
    assert store.consume(claims) == counted


def test_tokens_are_independent() -> None:
    store = confirmations()
    first, second = issue(store), issue(store)
    assert first != second
    store.consume(check(store, first))
    check(store, second)


def test_a_used_nonce_is_forgotten_only_once_its_token_expired() -> None:
    clock = FakeClock()
    store = confirmations(clock, ttl=10)
    token = issue(store)
    claims = check(store, token)
    store.consume(claims)
    clock.now += 5
    store.consume(check(store, issue(store)))  # prunes used nonces: this one has not expired
    assert refusal(store, token).reason == "reused_token"
    clock.now += 6
    assert refusal(store, token).reason == "expired_token"


@pytest.mark.parametrize("threads", [2, 16, 64])
def test_consume_wins_exactly_once_under_contention(threads: int) -> None:
    store = confirmations()
    token = issue(store)
    claims = [check(store, token) for _ in range(threads)]  # every caller checked before anyone consumed
    start = threading.Barrier(threads)
    won: list[Snapshot | None] = []
    lost: list[str] = []
    record = threading.Lock()

    def redeem(mine: Claims) -> None:
        start.wait()
        try:
            held = store.consume(mine)
        except Refusal as refused:
            with record:
                lost.append(refused.reason)
        else:
            with record:
                won.append(held)

    workers = [threading.Thread(target=redeem, args=(c,)) for c in claims]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(won) == 1
    assert won[0] == SNAPSHOT
    assert lost == ["reused_token"] * (threads - 1)


def test_concurrent_checks_consume_nothing() -> None:
    store = confirmations()
    token = issue(store)
    start = threading.Barrier(32)
    failures: list[BaseException] = []

    def look() -> None:
        start.wait()
        try:
            for _ in range(20):
                check(store, token)
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=look) for _ in range(32)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    assert store.consume(check(store, token)) == SNAPSHOT


def test_many_tokens_consumed_concurrently_each_win_once() -> None:
    store = confirmations()
    tokens = [issue(store) for _ in range(50)]
    start = threading.Barrier(100)
    wins: list[str] = []
    record = threading.Lock()

    def redeem(token: str) -> None:
        claims = check(store, token)
        start.wait()
        try:
            store.consume(claims)
        except Refusal:
            return
        with record:
            wins.append(token)

    workers = [threading.Thread(target=redeem, args=(t,)) for t in tokens * 2]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(wins) == sorted(tokens)


# --- compare ---------------------------------------------------------------------------------------

PLANNED = Snapshot(totals={"items": 3, "bytes": 300}, members=frozenset({"a", "b", "c"}))


def verdict(current: Snapshot, *, held: bool = True, planned: Snapshot = PLANNED) -> str:
    return compare(planned if held else None, planned.digest, current)


def test_the_same_state_is_same() -> None:
    assert verdict(Snapshot(dict(PLANNED.totals), frozenset(PLANNED.members))) == "same"
    assert verdict(Snapshot(dict(PLANNED.totals), frozenset(PLANNED.members)), held=False) == "same"


def test_the_same_totals_without_members_is_same_by_digest() -> None:
    counted = Snapshot(totals={"items": 7})
    assert compare(counted, counted.digest, Snapshot(totals={"items": 7})) == "same"
    assert compare(None, counted.digest, Snapshot(totals={"items": 7})) == "same"


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


def test_members_without_the_held_plan_cannot_be_shown_smaller() -> None:
    # A replica that does not hold the previewed ids cannot tell a subset from a swap.
    assert verdict(Snapshot({"items": 2, "bytes": 200}, frozenset({"a", "b"})), held=False) == "grown"


def test_counts_without_members() -> None:
    counted = Snapshot(totals={"items": 7, "bytes": 70})
    assert compare(counted, counted.digest, Snapshot({"items": 5, "bytes": 70})) == "shrunk"
    assert compare(counted, counted.digest, Snapshot({"items": 8, "bytes": 10})) == "grown"


def test_without_the_held_plan_any_change_counts_as_grown() -> None:
    # A server that does not hold the plan has only its digest: it cannot show that a change is smaller.
    counted = Snapshot(totals={"items": 7, "bytes": 70})
    assert compare(None, counted.digest, Snapshot({"items": 5, "bytes": 70})) == "grown"


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
    # Ids are API text: one id holding a NUL must not hash like two ids (a replica compares digests only).
    assert Snapshot({}, frozenset({"a\0b"})).digest != Snapshot({}, frozenset({"a", "b"})).digest


# --- reserve: one question per token -------------------------------------------------------------


def test_a_token_is_asked_about_by_one_call_at_a_time() -> None:
    store = confirmations()
    claims = check(store, issue(store))
    assert store.reserve(claims)
    assert store.being_asked(claims)
    assert not store.reserve(claims)  # a second call may not ask about it meanwhile
    store.release(claims)  # the user said no: the token may be asked about again
    assert not store.being_asked(claims)
    assert store.reserve(claims)


def test_consuming_ends_the_question_and_a_used_token_cannot_be_reserved() -> None:
    store = confirmations()
    claims = check(store, issue(store))
    assert store.reserve(claims)
    store.consume(claims)
    assert not store.being_asked(claims)
    assert not store.reserve(claims)


def test_a_reservation_outlives_the_token_by_one_lifetime_at_most() -> None:
    now = [1_000_000.0]
    store = Confirmations(b"k", 300, clock=lambda: now[0])
    claims = check(store, issue(store))
    assert store.reserve(claims)
    now[0] += 301
    assert store.being_asked(claims)  # an answer may come after the token's expiry
    now[0] += 300
    assert not store.being_asked(claims)  # a client that never came back holds it no longer
