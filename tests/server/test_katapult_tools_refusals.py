"""Every refusal of the safety model on both Katapult destructive tools; after each, nothing in the emulator changed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from purgewarden.config import Settings
from purgewarden.sandbox import Sandbox, katapult
from tests.conftest import answering
from tests.server.katapult_support import (
    ASSETS,
    BACKUPS,
    PREVIEW_PURGE,
    PREVIEW_REVOKE,
    PURGE,
    REGION,
    REVOKE,
    TOKEN_IN_MESSAGE,
    Connect,
    acme_account,
    admin,
    audit_lines,
    change_bucket,
    delete_bucket,
    error,
    flip,
    ok,
    trash_ids,
    world,
)

# Module-level: the conftest adds the anyio marker after parametrization, which anyio would undo.
pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Operation:
    preview: str
    tool: str
    arguments: dict[str, Any]
    other_arguments: dict[str, Any]
    grow: Callable[[Sandbox], None]
    """Make the target bigger than previewed."""
    carried_out: Callable[[Sandbox], bool]

    def __str__(self) -> str:
        return self.tool


def _grow_trash(sandbox: Sandbox) -> None:
    sandbox.katapult.build_large_trash("acme", 2)


def _grow_bucket(sandbox: Sandbox) -> None:
    change_bucket(sandbox, "acme-assets", object_count=1300)


PURGE_ACME = Operation(
    PREVIEW_PURGE,
    PURGE,
    {"organization": "acme"},
    {"organization": "globex"},
    _grow_trash,
    lambda sandbox: trash_ids(sandbox) == set(),
)
REVOKE_ASSETS = Operation(
    PREVIEW_REVOKE,
    REVOKE,
    {"buckets": [ASSETS]},
    {"buckets": [ASSETS, BACKUPS]},
    _grow_bucket,
    lambda sandbox: len(sandbox.katapult.revocations(REGION, "acme-assets")) == 1,
)
OPERATIONS = [PURGE_ACME, REVOKE_ASSETS]
each_operation = pytest.mark.parametrize("op", OPERATIONS, ids=str)


@pytest.fixture
def connect(connect: Connect) -> Connect:
    """Only the Katapult toolset, so these tests stand apart from the other services' modules."""

    def session(**overrides: Any) -> Any:
        return connect(**{"toolsets": ("katapult",), **overrides})

    return session


async def plan(client: Client, op: Operation) -> dict[str, Any]:
    return ok(await client.call_tool(op.preview, op.arguments))


async def carry_out(client: Client, op: Operation, token: str) -> dict[str, Any]:
    return ok(await client.call_tool(op.tool, {**op.arguments, "confirm": token}))


def refused(message: str, settings: Settings, reason: str, op: Operation) -> None:
    """The call was refused, told the model what to do next, and the audit log says why."""
    assert message.startswith(f"Error executing tool {op.tool}: Refused:"), message
    last = audit_lines(settings.audit_log)[-1]
    assert last["event"] == "refused"
    assert last["reason"] == reason
    assert last["tool"] == op.tool


# --- tokens that are not right -------------------------------------------------------------------


@each_operation
@pytest.mark.parametrize(
    ("forge", "reason", "words"),
    [
        (lambda token: "", "missing_token", "needs a confirmation token"),
        (lambda token: "   ", "missing_token", "needs a confirmation token"),
        (lambda token: "yes, the user approved", "invalid_token", "unknown here"),
        (lambda token: token + "x", "invalid_token", "unknown here"),
        (lambda token: flip(token, 16), "invalid_token", "unknown here"),
        (lambda token: flip(token, 1), "invalid_token", "unknown here"),
    ],
    ids=["empty", "blank", "garbage", "extended", "middle-changed", "end-changed"],
)
async def test_a_bad_token_is_refused(
    mcp: Client, sandbox: Sandbox, settings: Settings, op: Operation, forge: Any, reason: str, words: str
) -> None:
    token = (await plan(mcp, op))["confirmation_token"]
    before = world(sandbox)
    message = error(await mcp.call_tool(op.tool, {**op.arguments, "confirm": forge(token)}))
    assert words in message
    assert f"Call {op.preview}" in message
    refused(message, settings, reason, op)
    assert world(sandbox) == before
    # The genuine token was not burnt by the failed attempt.
    await carry_out(mcp, op, token)
    assert op.carried_out(sandbox)


@each_operation
async def test_an_expired_token_is_refused(
    connect: Connect, sandbox: Sandbox, settings: Settings, op: Operation
) -> None:
    async with connect(confirmation_ttl=0.05) as client:
        token = (await plan(client, op))["confirmation_token"]
        before = world(sandbox)
        await anyio.sleep(0.1)
        message = error(await client.call_tool(op.tool, {**op.arguments, "confirm": token}))
    assert "expired" in message
    refused(message, settings, "expired_token", op)
    assert world(sandbox) == before


@each_operation
async def test_a_used_token_does_not_work_twice(
    mcp: Client, sandbox: Sandbox, settings: Settings, op: Operation
) -> None:
    token = (await plan(mcp, op))["confirmation_token"]
    await carry_out(mcp, op, token)
    sandbox.katapult.build_large_trash("acme", 1)
    before = world(sandbox)
    message = error(await mcp.call_tool(op.tool, {**op.arguments, "confirm": token}))
    assert "already used" in message
    refused(message, settings, "reused_token", op)
    assert world(sandbox) == before


@each_operation
async def test_a_token_for_other_arguments_is_refused(
    mcp: Client, sandbox: Sandbox, settings: Settings, op: Operation
) -> None:
    token = (await plan(mcp, op))["confirmation_token"]
    before = world(sandbox)
    message = error(await mcp.call_tool(op.tool, {**op.other_arguments, "confirm": token}))
    assert "different arguments" in message
    refused(message, settings, "wrong_arguments", op)
    assert world(sandbox) == before


async def test_an_organization_by_id_is_other_arguments_than_by_sub_domain(
    mcp: Client, sandbox: Sandbox, settings: Settings
) -> None:
    token = (await plan(mcp, PURGE_ACME))["confirmation_token"]
    before = world(sandbox)
    message = error(await mcp.call_tool(PURGE, {"organization": "org_acme5f0c1d2e3a4b", "confirm": token}))
    refused(message, settings, "wrong_arguments", PURGE_ACME)
    assert world(sandbox) == before


@pytest.mark.parametrize(("op", "other"), [(PURGE_ACME, REVOKE_ASSETS), (REVOKE_ASSETS, PURGE_ACME)], ids=str)
async def test_a_token_issued_for_the_other_tool_is_refused(
    mcp: Client, sandbox: Sandbox, settings: Settings, op: Operation, other: Operation
) -> None:
    token = (await plan(mcp, other))["confirmation_token"]
    before = world(sandbox)
    message = error(await mcp.call_tool(op.tool, {**op.arguments, "confirm": token}))
    assert f"issued for {other.tool}" in message
    refused(message, settings, "wrong_tool", op)
    assert world(sandbox) == before


@each_operation
async def test_a_token_issued_under_another_credential_is_refused(
    connect: Connect, sandbox: Sandbox, settings: Settings, op: Operation
) -> None:
    async with connect(secret=SecretStr("k")) as first:
        token = (await plan(first, op))["confirmation_token"]
    before = world(sandbox)
    # Every scope on every organization too, but another API token.
    async with connect(secret=SecretStr("k"), katapult_api_token=SecretStr(katapult.OAUTH_TOKEN)) as second:
        message = error(await second.call_tool(op.tool, {**op.arguments, "confirm": token}))
    assert "different API credential" in message
    refused(message, settings, "wrong_credential", op)
    assert world(sandbox) == before


@each_operation
async def test_a_token_from_a_server_with_another_store_is_refused(
    connect: Connect, sandbox: Sandbox, settings: Settings, op: Operation
) -> None:
    async with connect(state_dir=settings.state_dir / "elsewhere") as first:
        token = (await plan(first, op))["confirmation_token"]
    before = world(sandbox)
    async with connect() as second:
        message = error(await second.call_tool(op.tool, {**op.arguments, "confirm": token}))
    assert "not issued by this server" in message
    refused(message, settings, "invalid_token", op)
    assert world(sandbox) == before


@each_operation
async def test_a_replica_with_the_same_secret_honours_the_token(
    connect: Connect, sandbox: Sandbox, op: Operation
) -> None:
    async with connect(secret=SecretStr("a-secret-the-replicas-share")) as first:
        token = (await plan(first, op))["confirmation_token"]
    async with connect(secret=SecretStr("a-secret-the-replicas-share")) as second:
        await carry_out(second, op, token)
    assert op.carried_out(sandbox)


# --- the state moved between preview and confirmation ---------------------------------------------


@each_operation
async def test_a_grown_target_is_refused_with_a_new_plan_that_then_works(
    mcp: Client, sandbox: Sandbox, settings: Settings, op: Operation
) -> None:
    token = (await plan(mcp, op))["confirmation_token"]
    op.grow(sandbox)
    before = world(sandbox)
    message = error(await mcp.call_tool(op.tool, {**op.arguments, "confirm": token}))
    assert "would now destroy more than the user approved" in message
    assert "Nothing was deleted" in message
    refused(message, settings, "state_grew", op)
    assert world(sandbox) == before
    found = TOKEN_IN_MESSAGE.search(message)
    assert found is not None
    outcome = await carry_out(mcp, op, found.group(1))
    assert op.carried_out(sandbox)
    if op is PURGE_ACME:
        assert "Permanently purge all 14 objects" in message
        assert outcome["totals"]["purged"] == 14
    else:
        assert "1300 objects" in message


async def test_a_swapped_trash_object_counts_as_grown(mcp: Client, sandbox: Sandbox) -> None:
    # Same count, but an object the user never saw: refused.
    token = (await plan(mcp, PURGE_ACME))["confirmation_token"]
    first = sorted(trash_ids(sandbox))[0]
    sandbox.katapult.restore_trash_object(admin(sandbox), ("id", first))
    sandbox.katapult.build_large_trash("acme", 1)
    before = world(sandbox)
    message = error(await mcp.call_tool(PURGE, {"organization": "acme", "confirm": token}))
    assert "Nothing was deleted" in message
    assert world(sandbox) == before


async def test_a_shrunk_trash_proceeds_and_says_so(mcp: Client, sandbox: Sandbox, settings: Settings) -> None:
    token = (await plan(mcp, PURGE_ACME))["confirmation_token"]
    kept = sorted(trash_ids(sandbox))[0]
    sandbox.katapult.restore_trash_object(admin(sandbox), ("id", kept))
    outcome = await carry_out(mcp, PURGE_ACME, token)
    assert outcome["totals"] == {"purged": 11, "remaining": 0}
    assert any("shrank" in note for note in outcome["notes"])
    assert trash_ids(sandbox) == set()
    confirmed = [line for line in audit_lines(settings.audit_log) if line["event"] == "confirmed"]
    assert confirmed[-1]["verdict"] == "shrunk"


async def test_a_deleted_bucket_is_skipped_and_the_rest_revoked(mcp: Client, sandbox: Sandbox) -> None:
    buckets = {"buckets": [ASSETS, BACKUPS]}
    token = ok(await mcp.call_tool(PREVIEW_REVOKE, buckets))["confirmation_token"]
    delete_bucket(sandbox, "acme-backups")
    outcome = ok(await mcp.call_tool(REVOKE, {**buckets, "confirm": token}))
    assert [(r["name"], r["status"]) for r in outcome["results"]] == [("acme-assets", "revoked")]
    notes = " ".join(outcome["notes"])
    assert "shrank" in notes
    assert '"uk-lon-1/acme-backups" no longer exists' in notes
    assert len(sandbox.katapult.revocations(REGION, "acme-assets")) == 1
    assert "acme-backups" not in acme_account(sandbox).buckets


# --- the human in the loop ------------------------------------------------------------------------


@each_operation
@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize(
    ("action", "approve", "words"),
    [("decline", True, "declined"), ("cancel", True, "cancelled"), ("accept", False, "did not approve")],
    ids=["declined", "cancelled", "accepted-but-no"],
)
async def test_the_user_saying_no_stops_everything(
    connect: Connect,
    sandbox: Sandbox,
    settings: Settings,
    op: Operation,
    mode: str,
    action: str,
    approve: bool,
    words: str,
) -> None:
    asked = answering(action, approve)
    async with connect(mode=mode, elicitation=asked) as client:
        token = (await plan(client, op))["confirmation_token"]
        before = world(sandbox)
        message = error(await client.call_tool(op.tool, {**op.arguments, "confirm": token}))
    assert words in message
    assert "Nothing was deleted" in message
    refused(message, settings, "human_declined", op)
    assert world(sandbox) == before
    assert len(asked.asked) == 1  # type: ignore[attr-defined]


@each_operation
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_user_is_asked_with_the_plan_and_approves(
    connect: Connect, sandbox: Sandbox, op: Operation, mode: str
) -> None:
    asked = answering("accept")
    async with connect(mode=mode, elicitation=asked, require_human=True) as client:
        preview = await plan(client, op)
        await carry_out(client, op, preview["confirmation_token"])
    questions: list[str] = asked.asked  # type: ignore[attr-defined]
    assert len(questions) == 1
    assert questions[0].startswith(preview["summary"])
    assert "cannot be undone" in questions[0]
    assert op.carried_out(sandbox)


@each_operation
async def test_require_human_refuses_a_client_that_cannot_ask(
    connect: Connect, sandbox: Sandbox, settings: Settings, op: Operation
) -> None:
    async with connect(require_human=True) as client:
        token = (await plan(client, op))["confirmation_token"]
        before = world(sandbox)
        message = error(await client.call_tool(op.tool, {**op.arguments, "confirm": token}))
    assert "--require-human" in message
    refused(message, settings, "human_required", op)
    assert world(sandbox) == before
