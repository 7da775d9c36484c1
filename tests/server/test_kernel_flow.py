"""The kernel's flow through the real path (SDK client → server → HTTP → emulator), for every operation.

The human is asked exactly once about a token that will be honoured and never about one that will be
refused; a "no" or a mistyped answer deletes nothing; the operator's cap leaves a plan unconfirmable;
and an "empty everything" call reports what it destroyed beyond the plan.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.types import ElicitRequestParams, ElicitResult
from pydantic import SecretStr

from purgewarden.config import Settings
from purgewarden.safety.text import quote
from purgewarden.sandbox import Fault, Sandbox, cocoon
from tests.conftest import answering
from tests.server import cocoon_support, katapult_support, vault_support
from tests.server.support import audit_lines, error, ok, text

# Module-level: the conftest adds the anyio marker after parametrization, which anyio would undo.
pytestmark = pytest.mark.anyio

Connect = Callable[..., Any]
SECRET = "kernel-flow-test-secret-0123456789"
MODES = pytest.mark.parametrize("mode", ["auto", "legacy"], ids=["2026-07-28", "2025-11-25"])


@dataclass(frozen=True)
class Case:
    """One destructive operation as the tests drive it: its tools, a target and another target."""

    id: str
    service: str
    preview: str
    tool: str
    args: dict[str, Any]
    other_args: dict[str, Any]
    """Arguments for the same tool naming another target: the token is not bound to them."""
    world: Callable[[Sandbox], Any]
    size: int
    """How many items the plan for `args` destroys in the demo data (its blast radius)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Arguments only the destructive tool takes."""


CASES = [
    Case(
        "cocoon-empty",
        "cocoon",
        cocoon_support.PREVIEW,
        cocoon_support.EMPTY,
        {},
        {"organisation_id": cocoon.OTHER_ORGANISATION_ID},
        cocoon_support.world,
        len(cocoon_support.ALEX_BIN),
    ),
    Case(
        "katapult-purge",
        "katapult",
        katapult_support.PREVIEW_PURGE,
        katapult_support.PURGE,
        {"organization": "acme"},
        {"organization": "globex"},
        katapult_support.world,
        sum(katapult_support.ACME_TRASH_TYPES.values()),
    ),
    Case(
        "katapult-revoke",
        "katapult",
        katapult_support.PREVIEW_REVOKE,
        katapult_support.REVOKE,
        {"buckets": [katapult_support.ASSETS, katapult_support.BACKUPS]},
        {"buckets": [katapult_support.ASSETS, katapult_support.WEBSITE]},
        katapult_support.world,
        2,
    ),
    Case(
        "vault-delete",
        "vault",
        vault_support.PREVIEW_DELETE,
        vault_support.DELETE,
        {"collection": "customers", "state": "archived"},
        {"collection": "customers", "ids": vault_support.ARCHIVED_CUSTOMERS[:2]},
        vault_support.world,
        len(vault_support.ARCHIVED_CUSTOMERS),
    ),
    Case(
        "vault-prune",
        "vault",
        vault_support.PREVIEW_PRUNE,
        vault_support.PRUNE,
        {},
        {"filter": "objects_only"},
        vault_support.world,
        33,  # the demo's garbage: 16 objects, 11 tokens, 6 transaction ids past retention
    ),
]
OPERATIONS = pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])


@pytest.fixture
def connect(connect: Connect) -> Connect:
    """A server with one shared secret; servers with the same state directory share a store, and so
    stand for replicas."""

    def session(case: Case, **overrides: Any) -> Any:
        return connect(**{"secret": SecretStr(SECRET), **overrides})

    return session


async def preview(client: Client, case: Case, **arguments: Any) -> dict[str, Any]:
    return ok(await client.call_tool(case.preview, arguments or case.args))


async def destroy(client: Client, case: Case, token: str | None, **arguments: Any) -> Any:
    return await client.call_tool(case.tool, {**(arguments or case.args), **case.extra, "confirm": token})


def last_refusal(settings: Settings) -> dict[str, Any]:
    refusals = [line for line in audit_lines(settings.audit_log) if line["event"] == "refused"]
    assert refusals, "no refusal was audited"
    return refusals[-1]


def asked(callback: Any) -> list[str]:
    questions: list[str] = callback.asked
    return questions


Reply = Callable[[ClientRequestContext, ElicitRequestParams], Awaitable[ElicitResult]]


def typing(answer: Callable[[str], str] | None) -> Reply:
    """An elicitation callback that types `answer(expected)` (None: ticks yes) and records each request."""
    requests: list[ElicitRequestParams] = []

    async def reply(ctx: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        requests.append(params)
        schema = getattr(params, "requested_schema", None) or {}
        if answer is None or "confirmation" not in schema.get("properties", {}):
            return ElicitResult(action="accept", content={"approve": True})
        return ElicitResult(action="accept", content={"confirmation": answer(expected_in(params.message))})

    reply.requests = requests  # type: ignore[attr-defined]
    return reply


def expected_in(question: str) -> str:
    """What a typed question asks for: the quoted literal after `type ...:` at its end."""
    head, _, literal = question.rpartition(": ")
    assert "To approve, type" in head, question
    value: str = json.loads(literal)
    return value


def another_tool(case: Case) -> str:
    return next(c.tool for c in CASES if c.tool != case.tool)


# --- asked exactly once, about a token that is honoured ------------------------------------------------


@MODES
@OPERATIONS
async def test_a_valid_token_is_asked_about_exactly_once_and_carried_out(
    connect: Connect, sandbox: Sandbox, settings: Settings, case: Case, mode: str
) -> None:
    human = answering("accept")
    async with connect(case, mode=mode, elicitation=human) as client:
        plan = await preview(client, case)
        before = case.world(sandbox)
        outcome = ok(await destroy(client, case, plan["confirmation_token"]))
    assert asked(human) == [f"{plan['summary']} This cannot be undone. Approve?"]
    assert case.world(sandbox) != before
    assert set(outcome["accounting"]) == {"carried_out", "not_carried_out", "unknown"}
    assert outcome["accounting"]["carried_out"] == case.size
    assert outcome["accounting"]["not_carried_out"] == outcome["accounting"]["unknown"] == 0
    events = [line["event"] for line in audit_lines(settings.audit_log)]
    assert events[-2:] == ["confirmed", "outcome"]


@MODES
async def test_a_token_that_expires_while_the_user_answers_is_still_honoured(
    connect: Connect, sandbox: Sandbox, mode: str
) -> None:
    # The question holds the token: a user who takes longer than the token's life to say yes is never
    # asked about a token that is then refused as expired.
    case = CASES[0]
    questions: list[str] = []

    async def slow_yes(context: Any, params: Any) -> ElicitResult:
        questions.append(params.message)
        await anyio.sleep(1.5)
        return ElicitResult(action="accept", content={"approve": True})

    async with connect(case, mode=mode, elicitation=slow_yes, confirmation_ttl=1.0) as client:
        plan = await preview(client, case)
        outcome = ok(await destroy(client, case, plan["confirmation_token"]))
    assert len(questions) == 1
    assert outcome["accounting"]["carried_out"] == case.size


@MODES
@OPERATIONS
async def test_a_client_that_cannot_ask_is_not_asked_and_the_token_alone_works(
    connect: Connect, sandbox: Sandbox, case: Case, mode: str
) -> None:
    async with connect(case, mode=mode) as client:
        plan = await preview(client, case)
        before = case.world(sandbox)
        outcome = ok(await destroy(client, case, plan["confirmation_token"]))
    assert outcome["accounting"]["carried_out"] == case.size
    assert case.world(sandbox) != before


# --- never asked about a token that is then refused ----------------------------------------------------


async def spent(client: Client, case: Case, human: Any) -> tuple[str, dict[str, Any]]:
    token = (await preview(client, case))["confirmation_token"]
    ok(await destroy(client, case, token))
    asked(human).clear()
    return token, case.args


async def other_tool(client: Client, case: Case, human: Any) -> tuple[str, dict[str, Any]]:
    other = next(c for c in CASES if c.tool == another_tool(case))
    return (await preview(client, other))["confirmation_token"], case.args


async def other_arguments(client: Client, case: Case, human: Any) -> tuple[str, dict[str, Any]]:
    return (await preview(client, case))["confirmation_token"], case.other_args


async def forged(client: Client, case: Case, human: Any) -> tuple[str, dict[str, Any]]:
    token = (await preview(client, case))["confirmation_token"]
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"), case.args


async def garbage(client: Client, case: Case, human: Any) -> tuple[str, dict[str, Any]]:
    await preview(client, case)
    return "the user said yes", case.args


@MODES
@OPERATIONS
@pytest.mark.parametrize(
    ("token_of", "reason"),
    [
        (spent, "reused_token"),
        (other_tool, "wrong_tool"),
        (other_arguments, "wrong_arguments"),
        (forged, "invalid_token"),
        (garbage, "invalid_token"),
    ],
    ids=["spent", "other-tool", "other-arguments", "forged", "garbage"],
)
async def test_a_token_that_will_be_refused_is_never_asked_about(
    connect: Connect,
    sandbox: Sandbox,
    settings: Settings,
    case: Case,
    mode: str,
    token_of: Callable[..., Awaitable[tuple[str, dict[str, Any]]]],
    reason: str,
) -> None:
    human = answering("accept")
    async with connect(case, mode=mode, elicitation=human) as client:
        token, arguments = await token_of(client, case, human)
        before = case.world(sandbox)
        message = error(await destroy(client, case, token, **arguments))
    assert "Refused" in message
    assert asked(human) == []
    assert last_refusal(settings)["reason"] == reason
    assert case.world(sandbox) == before


@MODES
@OPERATIONS
async def test_an_expired_token_is_never_asked_about(
    connect: Connect, sandbox: Sandbox, settings: Settings, case: Case, mode: str
) -> None:
    human = answering("accept")
    async with connect(case, mode=mode, elicitation=human, confirmation_ttl=0.05) as client:
        token = (await preview(client, case))["confirmation_token"]
        await anyio.sleep(0.1)
        before = case.world(sandbox)
        message = error(await destroy(client, case, token))
    assert "expired" in message
    assert asked(human) == []
    assert last_refusal(settings)["reason"] == "expired_token"
    assert case.world(sandbox) == before


@MODES
@OPERATIONS
async def test_a_token_from_a_server_with_another_store_is_never_asked_about(
    connect: Connect, sandbox: Sandbox, settings: Settings, case: Case, mode: str
) -> None:
    async with connect(case, state_dir=settings.state_dir / "elsewhere") as first:
        token = (await preview(first, case))["confirmation_token"]
    human = answering("accept")
    async with connect(case, mode=mode, elicitation=human) as second:
        before = case.world(sandbox)
        message = error(await destroy(second, case, token))
    assert "not issued by this server" in message
    assert asked(human) == []
    assert case.world(sandbox) == before


# --- the human says no -----------------------------------------------------------------------------


def answers(*replies: tuple[str, bool]) -> Any:
    """An elicitation callback giving `replies` in turn (action, approve), recording each question."""
    queue = list(replies)
    questions: list[str] = []

    async def answer(ctx: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        questions.append(params.message)
        action, approve = queue.pop(0)
        content = {"approve": approve} if action == "accept" else None
        return ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    answer.asked = questions  # type: ignore[attr-defined]
    return answer


@MODES
@OPERATIONS
@pytest.mark.parametrize(("action", "approve"), [("decline", True), ("cancel", True), ("accept", False)])
async def test_a_human_who_says_no_stops_everything(
    connect: Connect,
    sandbox: Sandbox,
    settings: Settings,
    case: Case,
    mode: str,
    action: str,
    approve: bool,
) -> None:
    human = answers((action, approve), ("accept", True))
    async with connect(case, mode=mode, elicitation=human) as client:
        token = (await preview(client, case))["confirmation_token"]
        before = case.world(sandbox)
        message = error(await destroy(client, case, token))
        assert "Nothing was deleted" in message
        assert len(asked(human)) == 1
        assert case.world(sandbox) == before
        assert last_refusal(settings)["reason"] == "human_declined"
        # Refused before the token was consumed: when the human then agrees, the same token works.
        outcome = ok(await destroy(client, case, token))
    assert len(asked(human)) == 2
    assert outcome["accounting"]["carried_out"] == case.size


# --- typed confirmation ----------------------------------------------------------------------------


@MODES
@OPERATIONS
async def test_a_large_plan_asks_to_type_and_the_right_answer_carries_it_out(
    connect: Connect, sandbox: Sandbox, case: Case, mode: str
) -> None:
    human = typing(lambda expected: expected)
    threshold = min(3, case.size - 1)
    async with connect(case, mode=mode, elicitation=human, typed_confirmation_over=threshold) as client:
        plan = await preview(client, case)
        before = case.world(sandbox)
        outcome = ok(await destroy(client, case, plan["confirmation_token"]))
    requests: list[ElicitRequestParams] = human.requests  # type: ignore[attr-defined]
    assert len(requests) == 1
    question = requests[0]
    assert question.message.startswith(f"{plan['summary']} This cannot be undone. To approve, type ")
    assert list(question.requested_schema["properties"]) == ["confirmation"]  # type: ignore[union-attr]
    assert outcome["accounting"]["carried_out"] == case.size
    assert case.world(sandbox) != before


@MODES
async def test_a_count_can_be_typed_with_thousands_separators(
    connect: Connect, sandbox: Sandbox, mode: str
) -> None:
    case = CASES[0]
    added = sandbox.cocoon.build_large_bin(cocoon_support.ALEX, n=1_200, organisation_id=cocoon_support.ORG)
    human = typing(lambda expected: f"{int(expected):,}")
    async with connect(case, mode=mode, elicitation=human) as client:  # default threshold: 1,000 items
        plan = await preview(client, case)
        outcome = ok(await destroy(client, case, plan["confirmation_token"]))
    question = human.requests[0].message  # type: ignore[attr-defined]
    assert "type the number of items" in question
    assert expected_in(question) == str(len(added) + case.size)
    assert outcome["accounting"]["carried_out"] == len(added) + case.size


@MODES
@OPERATIONS
@pytest.mark.parametrize(
    "typed",
    [lambda e: e + "1", lambda e: "", lambda e: "yes", lambda e: e.upper() + "X", lambda e: f'"{e}"'],
    ids=["extra-digit", "empty", "yes", "altered", "with-quotes"],
)
async def test_a_wrong_typed_answer_deletes_nothing(
    connect: Connect,
    sandbox: Sandbox,
    settings: Settings,
    case: Case,
    mode: str,
    typed: Callable[[str], str],
) -> None:
    human = typing(typed)
    threshold = min(3, case.size - 1)
    async with connect(case, mode=mode, elicitation=human, typed_confirmation_over=threshold) as client:
        token = (await preview(client, case))["confirmation_token"]
        before = case.world(sandbox)
        message = error(await destroy(client, case, token))
    assert "did not match" in message
    assert "Nothing was deleted" in message
    assert len(human.requests) == 1  # type: ignore[attr-defined]
    assert last_refusal(settings)["reason"] == "human_mistyped"
    assert case.world(sandbox) == before


@MODES
@OPERATIONS
async def test_ticking_yes_where_typing_was_asked_deletes_nothing(
    connect: Connect, sandbox: Sandbox, settings: Settings, case: Case, mode: str
) -> None:
    human = answering("accept")  # sends {"approve": true} whatever the schema
    threshold = min(3, case.size - 1)
    async with connect(case, mode=mode, elicitation=human, typed_confirmation_over=threshold) as client:
        token = (await preview(client, case))["confirmation_token"]
        before = case.world(sandbox)
        result = await destroy(client, case, token)
    assert result.is_error, text(result)
    assert case.world(sandbox) == before


# --- the operator's cap ----------------------------------------------------------------------------


@OPERATIONS
async def test_a_plan_over_the_cap_has_no_token_and_says_why(
    connect: Connect, sandbox: Sandbox, settings: Settings, case: Case
) -> None:
    async with connect(case, max_items=case.size - 1) as client:
        result = await client.call_tool(case.preview, case.args)
    plan = ok(result)
    assert plan["confirmation_token"] is None
    assert plan["expires_at"] is None
    cap = plan["warnings"][-1]
    assert f"{case.size:,} items" in cap
    assert f"cap of {case.size - 1:,}" in cap
    assert "PURGEWARDEN_MAX_ITEMS" in cap
    assert "confirmation_token: none" in text(result)
    previews = [line for line in audit_lines(settings.audit_log) if line["event"] == "preview"]
    assert previews[-1]["confirmable"] is False


@OPERATIONS
async def test_a_plan_at_the_cap_is_confirmable(connect: Connect, sandbox: Sandbox, case: Case) -> None:
    async with connect(case, max_items=case.size) as client:
        plan = await preview(client, case)
        ok(await destroy(client, case, plan["confirmation_token"]))


@OPERATIONS
async def test_a_token_from_an_uncapped_server_is_refused_by_a_capped_one(
    connect: Connect, sandbox: Sandbox, settings: Settings, case: Case
) -> None:
    async with connect(case) as uncapped:
        token = (await preview(uncapped, case))["confirmation_token"]
    before = case.world(sandbox)
    async with connect(case, max_items=case.size - 1) as capped:
        message = error(await destroy(capped, case, token))
    assert "PURGEWARDEN_MAX_ITEMS" in message
    assert "Nothing was deleted" in message
    assert last_refusal(settings)["reason"] == "over_cap"
    assert case.world(sandbox) == before


@MODES
@OPERATIONS
async def test_a_token_over_the_cap_is_never_asked_about(
    connect: Connect, sandbox: Sandbox, case: Case, mode: str
) -> None:
    async with connect(case) as uncapped:
        token = (await preview(uncapped, case))["confirmation_token"]
    human = answering("accept")
    before = case.world(sandbox)
    async with connect(case, mode=mode, elicitation=human, max_items=case.size - 1) as capped:
        message = error(await destroy(capped, case, token))
    assert "PURGEWARDEN_MAX_ITEMS" in message
    assert asked(human) == []
    assert case.world(sandbox) == before


# --- single use across replicas --------------------------------------------------------------------


@OPERATIONS
async def test_a_token_used_on_one_replica_is_refused_by_another(
    connect: Connect, sandbox: Sandbox, settings: Settings, case: Case
) -> None:
    # DESIGN: "Single use is one atomic operation of the store, so it holds across processes and replicas."
    async with connect(case) as first, connect(case) as second:
        token = (await preview(first, case))["confirmation_token"]
        ok(await destroy(first, case, token))
        message = error(await destroy(second, case, token))
    assert "already used" in message


# --- concurrency -------------------------------------------------------------------------------------


@MODES
async def test_two_concurrent_calls_with_one_token_carry_it_out_once(
    connect: Connect, sandbox: Sandbox, mode: str
) -> None:
    case = CASES[0]
    human = answering("accept")
    results: list[Any] = []
    async with connect(case, mode=mode, elicitation=human) as client:
        token = (await preview(client, case))["confirmation_token"]

        async def call() -> None:
            results.append(await destroy(client, case, token))

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            group.start_soon(call)
    assert sorted(r.is_error for r in results) == [False, True]
    assert len(asked(human)) == 1, asked(human)  # the loser's token was spent: asking about it was moot
    refused = next(r for r in results if r.is_error)
    assert "already used" in text(refused)
    assert cocoon_support.bin_ids(sandbox) == set()


# --- "empty everything": what went beyond the plan ---------------------------------------------------


@dataclass(frozen=True)
class EmptiesAll:
    """An operation whose API can only destroy everything, and how something arrives during its call."""

    case: Case
    fault: Fault
    """Slows the destructive request down, so something can arrive while it is in flight."""
    arrive: Callable[[Sandbox], str]
    """Adds one item now; returns its id."""
    leave: Callable[[Sandbox, str], None]
    """Takes the item away again without destroying it."""
    gone: Callable[[Sandbox, str], bool]
    """Whether the item no longer exists (destroyed)."""
    seen_as: str
    """Something of the item that the note quotes."""


def recycle(sandbox: Sandbox) -> str:
    return cocoon_support.recycle_new_item(sandbox, "arrived-mid-flight.txt", 2048)


def restore(sandbox: Sandbox, item_id: str) -> None:
    backend = sandbox.cocoon
    backend.restore_recycle_bin_item(backend.resolve_user(cocoon_support.ALEX), item_id)


def trash(sandbox: Sandbox) -> str:
    before = katapult_support.trash_ids(sandbox)
    sandbox.katapult.build_large_trash("acme", 1)
    (added,) = katapult_support.trash_ids(sandbox) - before
    return added


def untrash(sandbox: Sandbox, trash_id: str) -> None:
    sandbox.katapult.restore_trash_object(katapult_support.admin(sandbox), ("id", trash_id))


def purged(sandbox: Sandbox, trash_id: str) -> bool:
    sandbox.clock.advance(60)  # any purge task that took it has finished
    return trash_id not in katapult_support.trash_ids(sandbox)


EMPTIES_ALL = [
    EmptiesAll(
        CASES[0],
        Fault(method="DELETE", path="recycle-bin", latency=0.6),
        recycle,
        restore,
        lambda sandbox, i: sandbox.cocoon.items[i].state == cocoon.ItemState.DELETED,
        "arrived-mid-flight.txt",
    ),
    EmptiesAll(
        CASES[1],
        Fault(method="POST", path="purge_all", latency=0.6),
        trash,
        untrash,
        purged,
        "trsh_",
    ),
]
WATCHED = pytest.mark.parametrize("empties", EMPTIES_ALL, ids=[e.case.id for e in EMPTIES_ALL])


async def until_fired(sandbox: Sandbox, service: str) -> None:
    """Wait until the emulator's one-shot fault took its request (that request is now in flight)."""
    with anyio.fail_after(5):
        while sandbox.faults[service].active():  # type: ignore[index]  # noqa: ASYNC110 - another thread's state
            await anyio.sleep(0.01)


@MODES
@WATCHED
async def test_an_item_arriving_during_the_call_is_reported_beyond_the_plan(
    connect: Connect, sandbox: Sandbox, settings: Settings, empties: EmptiesAll, mode: str
) -> None:
    case = empties.case
    human = answering("accept")
    outcome: dict[str, Any] = {}
    late: list[str] = []
    async with connect(case, mode=mode, elicitation=human, watch_interval=0.05) as client:
        plan = await preview(client, case)
        sandbox.inject(case.service, empties.fault)  # type: ignore[arg-type]

        async def call() -> None:
            outcome.update(ok(await destroy(client, case, plan["confirmation_token"])))

        async def arrive_meanwhile() -> None:
            await until_fired(sandbox, case.service)
            late.append(empties.arrive(sandbox))

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            group.start_soon(arrive_meanwhile)
    assert len(asked(human)) == 1
    assert empties.gone(sandbox, late[0])

    # Accounting covers exactly the approved items; the late one is reported beside it.
    assert outcome["accounting"] == {"carried_out": case.size, "not_carried_out": 0, "unknown": 0}
    beyond = [note for note in outcome["notes"] if "not in the plan" in note]
    assert len(beyond) == 1, outcome["notes"]
    assert beyond[0].startswith("1 item that arrived after the approval")
    assert quote(late[0]) in beyond[0]
    assert empties.seen_as in beyond[0]

    record = [line for line in audit_lines(settings.audit_log) if line["event"] == "outcome"][-1]
    assert record["accounting"] == outcome["accounting"]
    assert list(record["beyond_plan"]) == [quote(late[0])]
    assert empties.seen_as in record["beyond_plan"][quote(late[0])]
    assert beyond[0] in record["notes"]


@MODES
@WATCHED
async def test_an_item_that_came_and_went_during_the_call_is_not_reported(
    connect: Connect, sandbox: Sandbox, settings: Settings, empties: EmptiesAll, mode: str
) -> None:
    # Seen by the watcher, then restored before the call acted: not destroyed, so not beyond the plan.
    case = empties.case
    outcome: dict[str, Any] = {}
    late: list[str] = []
    async with connect(case, mode=mode, watch_interval=0.05) as client:
        plan = await preview(client, case)
        sandbox.inject(case.service, empties.fault)  # type: ignore[arg-type]

        async def call() -> None:
            outcome.update(ok(await destroy(client, case, plan["confirmation_token"])))

        async def come_and_go() -> None:
            await until_fired(sandbox, case.service)
            late.append(empties.arrive(sandbox))
            await anyio.sleep(0.3)  # several glances see it
            empties.leave(sandbox, late[0])  # raises if it had already been destroyed

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            group.start_soon(come_and_go)
    assert not [note for note in outcome["notes"] if "not in the plan" in note], outcome["notes"]
    record = [line for line in audit_lines(settings.audit_log) if line["event"] == "outcome"][-1]
    assert record["beyond_plan"] == {}
    assert outcome["accounting"]["carried_out"] == case.size


@WATCHED
async def test_nothing_arriving_means_nothing_beyond_the_plan(
    connect: Connect, sandbox: Sandbox, settings: Settings, empties: EmptiesAll
) -> None:
    case = empties.case
    async with connect(case, watch_interval=0.05) as client:
        plan = await preview(client, case)
        sandbox.inject(case.service, empties.fault.model_copy(update={"latency": 0.3}))  # type: ignore[arg-type]
        outcome = ok(await destroy(client, case, plan["confirmation_token"]))
    assert not [note for note in outcome["notes"] if "not in the plan" in note]
    record = [line for line in audit_lines(settings.audit_log) if line["event"] == "outcome"][-1]
    assert record["beyond_plan"] == {}
