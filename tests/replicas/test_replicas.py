"""Three replicas, one Redis, one HAProxy, all real: a confirmation token is honoured once whichever
replica gets it, a question asked on one replica may be answered on another, and a plan previewed on one
is confirmed on a second and followed on a third.

Executions are counted where they land: in the emulator (its destructive requests, through a fault rule
that fires on every one of them and changes nothing) and in the replicas' audit logs (`confirmed` and
`outcome` lines, written only by the replica that consumed the token). Which replica answered a request
sent through the balancer is what HAProxy says in `X-Served-By`, checked against its own statistics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import ElicitRequestParams, ElicitResult

from purgewarden.sandbox import Fault, Sandbox, Service
from tests.conftest import Elicitation
from tests.replicas.conftest import NAMES, Cluster, Exchange, connected, missing_servers
from tests.server.katapult_support import REGION
from tests.server.support import ended_run, error, ok, text
from tests.server.test_kernel_flow import CASES, Case

if (reason := missing_servers()) is not None:
    pytest.skip(reason, allow_module_level=True)

pytestmark = pytest.mark.anyio

OPERATIONS = pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
MODES = pytest.mark.parametrize("mode", ["auto", "legacy"], ids=["2026-07-28", "2025-11-25"])

REUSED = "Refused: this confirmation token was already used; each token works once."
BUSY = (
    "Refused: this confirmation token is already used by another call, which is asking the user about it "
    "right now; each token works once."
)
DECLINED = "Refused: the user declined the confirmation prompt. Nothing was deleted."


# --- counting executions in the emulator -----------------------------------------------------------


@dataclass(frozen=True)
class Requests:
    """An operation's destructive requests, counted as they reach the emulator: a fault rule that matches
    them, fires for every one (`times=None`) and does nothing to them (no latency, status or drop)."""

    service: Service
    method: str
    path: str
    per_execution: int
    """How many one execution sends with the demo data."""

    def counter(self, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
        sandbox.inject(self.service, Fault(method=self.method, path=self.path, times=None))

        def count() -> int:
            rules = sandbox.faults[self.service].active()
            return sum(rule["fired"] for rule in rules if rule["path"] == self.path)

        return count


@dataclass(frozen=True)
class GarbageCollections:
    """vault_prune_archived's deleting calls. Its dry runs (preview, re-check) go to the same path, so
    they cannot be told apart there: the emulator's own method is watched instead, calling through."""

    per_execution: int

    def counter(self, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
        calls: list[str] = []
        collect = sandbox.vault.garbage_collection

        def watched(gc_filter: Any = "all", *, dry_run: bool = False) -> Any:
            if not dry_run:
                calls.append(gc_filter)
            return collect(gc_filter, dry_run=dry_run)

        monkeypatch.setattr(sandbox.vault, "garbage_collection", watched)
        return lambda: len(calls)


EXECUTIONS: dict[str, Requests | GarbageCollections] = {
    "cocoon-empty": Requests("cocoon", "DELETE", r"/organisations/[^/]+/recycle-bin/items$", 1),
    "katapult-purge": Requests("katapult", "POST", r"/trash_objects/purge_all$", 1),
    "katapult-revoke": Requests("katapult", "POST", r"/revoke_presigned_urls$", 2),  # one per bucket
    "vault-delete": Requests("vault", "DELETE", r"/bulk/objects$", 1),
    "vault-prune": GarbageCollections(1),
}


@pytest.fixture
def executions(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, case: Case) -> Callable[[], int]:
    """How many destructive requests of `case` reached the emulator since the test began."""
    return EXECUTIONS[case.id].counter(sandbox, monkeypatch)


def assert_carried_out_once(
    case: Case, sandbox: Sandbox, cluster: Cluster, executions: Callable[[], int], on: str
) -> None:
    """One execution's worth of requests in the emulator, and one run, on replica `on`, in the audit logs."""
    assert executions() == EXECUTIONS[case.id].per_execution
    if case.id == "katapult-revoke":
        for bucket in case.args["buckets"]:
            assert len(sandbox.katapult.revocations(REGION, bucket["name"])) == 1, bucket
    assert {name: len(lines) for name, lines in cluster.events("confirmed").items()} == {on: 1}
    assert {name: len(lines) for name, lines in cluster.events("outcome").items()} == {on: 1}


def refusal_reasons(cluster: Cluster) -> dict[str, list[str]]:
    return {name: [line["reason"] for line in lines] for name, lines in cluster.events("refused").items()}


# --- calling the tools -----------------------------------------------------------------------------


async def preview(client: Client, case: Case) -> dict[str, Any]:
    return ok(await client.call_tool(case.preview, case.args))


async def destroy(client: Client, case: Case, token: str) -> Any:
    return await client.call_tool(case.tool, {**case.args, **case.extra, "confirm": token})


def answers(*replies: tuple[str, bool]) -> Elicitation:
    """An elicitation callback giving `replies` in turn (action, approve); `.asked` holds the questions."""
    queue = list(replies)
    asked: list[str] = []

    async def answer(ctx: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        action, approve = queue.pop(0)
        return ElicitResult(action=action, content={"approve": approve} if action == "accept" else None)

    answer.asked = asked  # type: ignore[attr-defined]
    return answer


def questions(human: Elicitation) -> list[str]:
    asked: list[str] = human.asked  # type: ignore[attr-defined]
    return asked


def refusal(result: Any, case: Case) -> str:
    """A refused call's message, without the SDK's "Error executing tool …:" in front of it."""
    return error(result).removeprefix(f"Error executing tool {case.tool}: ")


def served(log: list[Exchange], tool: str) -> list[Exchange]:
    return [exchange for exchange in log if exchange.tool == tool]


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


# --- one token, three replicas ------------------------------------------------------------------------


@OPERATIONS
@pytest.mark.parametrize("asks", [True, False], ids=["client-asks-the-user", "client-cannot-ask"])
async def test_one_token_sent_to_every_replica_at_once_is_carried_out_once(
    cluster: Cluster, sandbox: Sandbox, executions: Callable[[], int], case: Case, asks: bool
) -> None:
    # Straight to each replica's port, all three calls in flight together. A client that asks the user
    # makes each call reserve the token first (one wins; the others are told another call is asking,
    # and the winner's user answers only once they have been); one that cannot ask races to consume it.
    asked: list[str] = []
    others_answered = anyio.Event()

    async def yes_once_the_others_are_answered(
        ctx: ClientRequestContext, params: ElicitRequestParams
    ) -> ElicitResult:
        asked.append(params.message)
        with anyio.move_on_after(15):
            await others_answered.wait()
        return ElicitResult(action="accept", content={"approve": True})

    results: dict[str, Any] = {}
    async with AsyncExitStack() as stack:
        clients = {
            replica.name: await stack.enter_async_context(
                connected(
                    replica.url, mode="auto", elicitation=yes_once_the_others_are_answered if asks else None
                )
            )
            for replica in cluster.replicas.members
        }
        token = (await preview(clients["r1"], case))["confirmation_token"]
        before = case.world(sandbox)
        go = anyio.Event()

        async def confirm(name: str) -> None:
            await go.wait()
            results[name] = await destroy(clients[name], case, token)
            if sum(result.is_error for result in results.values()) == len(clients) - 1:
                others_answered.set()

        async with anyio.create_task_group() as group:
            for name in clients:
                group.start_soon(confirm, name)
            go.set()

    succeeded = [name for name, result in results.items() if not result.is_error]
    assert len(succeeded) == 1, {name: text(result) for name, result in results.items()}
    winner = succeeded[0]
    losers = sorted(set(NAMES) - {winner})
    assert ok(results[winner])["accounting"] == {"carried_out": case.size, "not_carried_out": 0, "unknown": 0}
    refused = {name: refusal(results[name], case) for name in losers}
    if asks:
        assert len(asked) == 1, asked
        assert all(message.startswith(BUSY) for message in refused.values()), refused
        assert refusal_reasons(cluster) == {name: ["token_busy"] for name in losers}
    else:
        assert asked == []
        assert all(message.startswith(REUSED) for message in refused.values()), refused
        assert refusal_reasons(cluster) == {name: ["reused_token"] for name in losers}
    assert case.world(sandbox) != before
    assert_carried_out_once(case, sandbox, cluster, executions, on=winner)


@OPERATIONS
async def test_one_token_sent_through_the_balancer_again_and_again_is_carried_out_once(
    cluster: Cluster, sandbox: Sandbox, executions: Callable[[], int], case: Case
) -> None:
    log: list[Exchange] = []
    async with connected(cluster.replicas.sticky.url + "/mcp", mode="auto", log=log) as client:
        token = (await preview(client, case))["confirmation_token"]
        results = [await destroy(client, case, token) for _ in NAMES]
    calls = served(log, case.tool)
    # Round robin: the three calls went to the three replicas, one each.
    assert sorted(call.served_by or "" for call in calls) == sorted(NAMES)
    first, *others = [call.served_by or "" for call in calls]
    assert ok(results[0])["accounting"]["carried_out"] == case.size
    for result in results[1:]:
        assert refusal(result, case).startswith(REUSED)
    assert refusal_reasons(cluster) == {name: ["reused_token"] for name in others}
    assert_carried_out_once(case, sandbox, cluster, executions, on=first)


# --- the user asked through the balancer ------------------------------------------------------------


@MODES
@OPERATIONS
async def test_the_user_says_no_then_yes_through_the_balancer(
    cluster: Cluster, sandbox: Sandbox, executions: Callable[[], int], case: Case, mode: str
) -> None:
    # 2026-07-28: the answer comes back as a second request carrying the sealed request state, and round
    # robin sends it to another replica, which must open the state (shared keys) and find the question's
    # reservation (shared store). 2025-11-25: the session, its question and the answer stay on the replica
    # that issued the session, because the balancer is sticky on Mcp-Session-Id.
    balancer = cluster.replicas.sticky
    human = answers(("decline", True), ("accept", True))
    log: list[Exchange] = []
    counted_before = balancer.requests_by_server()
    async with connected(balancer.url + "/mcp", mode=mode, elicitation=human, log=log) as client:
        plan = await preview(client, case)
        before = case.world(sandbox)
        declined = refusal(await destroy(client, case, plan["confirmation_token"]), case)
        assert declined.startswith(DECLINED), declined
        assert case.world(sandbox) == before
        assert executions() == 0
        # Released, not spent: the same token is asked about again, and now carried out.
        outcome = ok(await destroy(client, case, plan["confirmation_token"]))
    question = f"{plan['summary']} This cannot be undone. Approve?"
    assert questions(human) == [question, question]
    assert outcome["accounting"]["carried_out"] == case.size
    assert case.world(sandbox) != before

    # HAProxy's own count agrees with what its header said, request by request.
    counted_after = balancer.requests_by_server()
    sent = {name: counted_after[name] - counted_before.get(name, 0) for name in counted_after}
    assert sent == {name: Counter(e.served_by for e in log)[name] for name in NAMES}

    calls = served(log, case.tool)
    if mode == "auto":
        # Each call: a first round that asks, a second that answers, on two different replicas.
        assert [call.answers_a_question for call in calls] == [False, True, False, True]
        assert all(call.session is None for call in log)
        replicas = [call.served_by or "" for call in calls]
        assert replicas[0] != replicas[1]
        assert replicas[2] != replicas[3]
        no_on, yes_on = replicas[1], replicas[3]
    else:
        assert len({call.session for call in log if call.session}) == 1
        (pinned,) = {exchange.served_by for exchange in log}
        no_on = yes_on = pinned or ""
    assert refusal_reasons(cluster) == {no_on: ["human_declined"]}
    assert_carried_out_once(case, sandbox, cluster, executions, on=yes_on)


async def test_without_sticky_sessions_a_2025_11_25_session_breaks(
    cluster: Cluster, sandbox: Sandbox
) -> None:
    # What the README tells operators: 2025-11-25 clients need sticky sessions. Under plain round robin
    # the session's next request reaches a replica that never issued it, and the client fails.
    case = CASES[0]
    log: list[Exchange] = []
    failure: Exception | None = None
    try:
        async with connected(
            cluster.replicas.plain.url + "/mcp", mode="legacy", elicitation=answers(("accept", True)), log=log
        ) as client:
            token = (await preview(client, case))["confirmation_token"]
            await destroy(client, case, token)
    except Exception as raised:
        failure = raised
    assert failure is not None, "a 2025-11-25 session worked through a balancer without sticky sessions"
    assert any(isinstance(leaf, MCPError) and "Session not found" in str(leaf) for leaf in leaves(failure)), (
        repr(failure)
    )
    issued_by = log[0].served_by
    assert log[0].rpc_method == "initialize"
    lost = [exchange for exchange in log if exchange.status == 404]
    assert lost
    assert all(exchange.served_by not in (None, issued_by) for exchange in lost), lost


async def test_without_sticky_sessions_a_2026_07_28_client_is_served(
    cluster: Cluster, sandbox: Sandbox
) -> None:
    # The 2026-07-28 era has no session: plain round robin is enough.
    case = CASES[0]
    human = answers(("accept", True))
    log: list[Exchange] = []
    async with connected(
        cluster.replicas.plain.url + "/mcp", mode="auto", elicitation=human, log=log
    ) as client:
        token = (await preview(client, case))["confirmation_token"]
        outcome = ok(await destroy(client, case, token))
    assert outcome["accounting"]["carried_out"] == case.size
    assert len(questions(human)) == 1
    assert len({exchange.served_by for exchange in log}) == len(NAMES)


# --- previewed here, confirmed there, followed elsewhere ---------------------------------------------


@OPERATIONS
async def test_a_plan_previewed_on_one_replica_is_confirmed_on_another_and_followed_on_a_third(
    cluster: Cluster, sandbox: Sandbox, executions: Callable[[], int], case: Case
) -> None:
    first, second, third = (replica.url for replica in cluster.replicas.members)
    human = answers(("accept", True))
    async with connected(first, mode="auto") as client:
        plan = await preview(client, case)
    async with connected(second, mode="auto", elicitation=human) as client:
        outcome = ok(await destroy(client, case, plan["confirmation_token"]))
    async with connected(third, mode="auto") as client:
        run = await ended_run(client, outcome["run_id"])
    assert len(questions(human)) == 1
    assert outcome["accounting"]["carried_out"] == case.size
    assert run["run_id"] == outcome["run_id"]
    assert run["tool"] == case.tool
    assert run["state"] == "finished"
    assert run["plan"] == plan["summary"]
    assert run["accounting"] == outcome["accounting"]
    assert {name: len(lines) for name, lines in cluster.events("preview").items()} == {"r1": 1}
    assert_carried_out_once(case, sandbox, cluster, executions, on="r2")
    assert cluster.audit("r3") == []
