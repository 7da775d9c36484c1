"""Vault tools through the MCP client against the emulator: reads, errors, the delete plan and its safety model."""

from __future__ import annotations

import json
from typing import Any, get_args

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from purgewarden.clients.vault import Reason
from purgewarden.config import Settings
from purgewarden.safety.text import FENCE_CLOSE, FENCE_OPEN
from purgewarden.sandbox import Fault, Sandbox
from purgewarden.sandbox.vault import DELETER_API_KEY, READER_API_KEY
from purgewarden.sandbox.vault.seed import object_id
from tests.conftest import answering
from tests.server.support import RUN_TOOLS
from tests.server.vault_support import (
    ACTIVE_CUSTOMERS,
    ALL_TOOLS,
    ARCHIVED_CUSTOMERS,
    COLLECTIONS,
    COUNT,
    DELETE,
    LIST,
    PREVIEW_DELETE,
    PREVIEW_PRUNE,
    PRUNE,
    READ_TOOLS,
    TOKEN_IN_MESSAGE,
    UNKNOWN_ID,
    Connect,
    audit_lines,
    error,
    flip,
    ids_in,
    ok,
    preview,
    preview_prune,
    text,
    tokens_estimate,
    world,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def connect(connect: Connect) -> Connect:
    """Only the Vault toolset, so these tests stand apart from the other services' modules."""

    def session(**overrides: Any) -> Any:
        return connect(**{"toolsets": ("vault",), **overrides})

    return session


# --- tools/list ----------------------------------------------------------------------------------


async def test_lists_the_seven_tools_with_annotations_and_flat_schemas(mcp: Client) -> None:
    tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
    assert set(tools) == ALL_TOOLS | RUN_TOOLS
    for name, tool in tools.items():
        if name in RUN_TOOLS:
            continue
        hints = tool.annotations
        assert hints is not None
        assert hints.open_world_hint is True
        assert hints.read_only_hint is (name in READ_TOOLS)
        assert hints.destructive_hint is (name not in READ_TOOLS)
        assert hints.idempotent_hint is (name in READ_TOOLS)
        assert tool.title
        assert tool.description
        assert tool.output_schema is not None
        assert "summary" in tool.output_schema["properties"]
        assert not {"anyOf", "oneOf", "allOf"} & set(tool.input_schema)
        assert not {"ctx", "human"} & set(tool.input_schema.get("properties", {}))
    delete = tools[DELETE].input_schema
    assert set(delete["required"]) == {"collection", "confirm"}
    assert {"ids", "match", "match_any", "like", "state", "reason", "adhoc_reason"} <= set(
        delete["properties"]
    )
    assert set(delete["properties"]) - {"confirm"} == set(tools[PREVIEW_DELETE].input_schema["properties"])
    assert tools[PRUNE].input_schema["required"] == ["confirm"]
    reason_schema = json.dumps(tools[PREVIEW_DELETE].input_schema)
    assert all(f'"{reason}"' in reason_schema for reason in get_args(Reason))
    # Only the object deletions take an access reason; reads and garbage collection record Maintenance.
    for name in tools.keys() - {PREVIEW_DELETE, DELETE}:
        assert not {"reason", "adhoc_reason"} & set(tools[name].input_schema.get("properties", {}))


async def test_read_only_mode_serves_no_destructive_tool(connect: Connect, sandbox: Sandbox) -> None:
    before = world(sandbox)
    async with connect(read_only=True) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == READ_TOOLS
        token = (await preview(client, collection="customers", state="archived"))["confirmation_token"]
        result = await client.call_tool(
            DELETE, {"collection": "customers", "state": "archived", "confirm": token}
        )
    assert DELETE in error(result)
    assert world(sandbox) == before


async def test_no_vault_key_serves_no_vault_tools(connect: Connect) -> None:
    async with connect(pvault_api_key=None) as client:
        assert (await client.list_tools()).tools == []


# --- reads ---------------------------------------------------------------------------------------


async def test_list_collections_fences_names(mcp: Client) -> None:
    result = await mcp.call_tool(COLLECTIONS, {})
    listed = ok(result)
    assert [c["name"] for c in listed["collections"]] == ["customers", "orders", "leads"]
    assert listed["collections"][0] == {
        "name": "customers",
        "type": "PERSONS",
        "properties": ["name", "email", "phone", "country"],
    }
    body = text(result)
    assert body.startswith("3 collections")
    assert body.index(FENCE_OPEN) < body.index('"customers" (PERSONS)') < body.index(FENCE_CLOSE)


async def test_count_objects(mcp: Client) -> None:
    result = await mcp.call_tool(COUNT, {"collection": "customers"})
    assert ok(result) | {"summary": ""} == {
        "summary": "",
        "collection": "customers",
        "active": 40,
        "archived": 15,
        "total": 55,
    }
    assert "40 active and 15 archived" in text(result)


async def test_list_objects_pages_with_a_cursor(mcp: Client) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        arguments = {"collection": "customers", "page_size": 15, "props": ["email"]}
        page = ok(await mcp.call_tool(LIST, arguments | ({"cursor": cursor} if cursor else {})))
        pages += 1
        assert all(set(o) == {"id", "email"} for o in page["objects"])
        seen += [o["id"] for o in page["objects"]]
        cursor = page["next_cursor"]
        if cursor is None:
            assert page["remaining"] == 0
            break
    assert pages == 3
    assert seen == sorted(ACTIVE_CUSTOMERS)


async def test_list_objects_shows_every_property_by_default_and_archived_on_request(mcp: Client) -> None:
    result = await mcp.call_tool(LIST, {"collection": "customers", "state": "archived"})
    page = ok(result)
    assert {o["id"] for o in page["objects"]} == set(ARCHIVED_CUSTOMERS)
    assert set(page["objects"][0]) == {"id", "name", "email", "phone", "country"}
    assert page["next_cursor"] is None
    body = text(result)
    assert "last page" in body
    assert body.index(FENCE_OPEN) < body.index(page["objects"][0]["email"]) < body.index(FENCE_CLOSE)


async def test_list_objects_stays_small_on_huge_values(mcp: Client, sandbox: Sandbox) -> None:
    store = sandbox.vault.stores["customers"]
    for object_id_ in ACTIVE_CUSTOMERS:
        store.objects[object_id_].fields["name"] = "<x>" * 5_000
    sandbox.vault.build_large("customers", 5_000)
    result = await mcp.call_tool(LIST, {"collection": "customers", "page_size": 1000})
    page = ok(result)
    assert tokens_estimate(result) < 25_000
    assert 0 < len(page["objects"]) < 1000
    assert "shortened" in page["summary"]
    assert all(len(o["name"]) < 600 for o in page["objects"])
    assert "<x>" not in text(result)  # the fence delimiter cannot be forged from a value
    following = ok(await mcp.call_tool(LIST, {"collection": "customers", "cursor": page["next_cursor"]}))
    assert following["objects"][0]["id"] > page["objects"][-1]["id"]
    assert following["remaining"] == 5_040 - len(page["objects"]) - len(following["objects"])


# --- errors that reach the model -----------------------------------------------------------------


async def test_unknown_collection_is_pv1004(mcp: Client, sandbox: Sandbox) -> None:
    for tool, arguments in (
        (COUNT, {"collection": "nope"}),
        (LIST, {"collection": "nope"}),
        (PREVIEW_DELETE, {"collection": "nope"}),
    ):
        message = error(await mcp.call_tool(tool, arguments))
        assert "Piiano Vault refused: the collection was not found (PV1004, HTTP 404)" in message
        assert "vault_list_collections" in message


async def test_a_collection_name_cannot_reach_another_route(mcp: Client) -> None:
    message = error(await mcp.call_tool(COUNT, {"collection": "../../ctl/collections"}))
    assert "PV1004" in message


async def test_a_wrong_key_is_pv1005_and_never_shown(connect: Connect, sandbox: Sandbox) -> None:
    async with connect(pvault_api_key=SecretStr("wrong-key-123")) as client:
        for tool in (COLLECTIONS, PREVIEW_PRUNE):
            message = error(await client.call_tool(tool, {}))
            assert "the request is unauthorized" in message
            assert "(PV1005, HTTP 401)" in message
            assert "PVAULT_API_KEY" in message
            assert "wrong-key-123" not in message


async def test_other_without_adhoc_reason_is_refused_before_any_call(mcp: Client, sandbox: Sandbox) -> None:
    sandbox.inject("vault", Fault(status=500, times=1))  # would fire on any request reaching the Vault
    for tool, arguments in (
        (PREVIEW_DELETE, {"collection": "customers"}),
        (DELETE, {"collection": "customers", "confirm": "x"}),
    ):
        message = error(await mcp.call_tool(tool, {**arguments, "reason": "Other", "adhoc_reason": "  "}))
        assert "reason Other needs adhoc_reason" in message
    assert sandbox.faults["vault"].active()[0]["fired"] == 0
    other = {"collection": "customers", "state": "archived", "reason": "Other"}
    result = await mcp.call_tool(PREVIEW_DELETE, {**other, "adhoc_reason": "audit prep"})
    assert "PV1000" in error(result)  # now the call went out (and met the fault)
    assert ok(await mcp.call_tool(PREVIEW_DELETE, {**other, "adhoc_reason": "x"}))["count"] == 15


async def test_an_unknown_reason_is_rejected_by_the_schema(mcp: Client) -> None:
    message = error(await mcp.call_tool(PREVIEW_DELETE, {"collection": "customers", "reason": "Curiosity"}))
    assert "reason" in message


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("PV1001", 400, "the access reason is missing (PV1001, HTTP 400)"),
        ("PV1002", 400, "the access reason is not valid"),
        ("PV1009", 503, "the operation timed out on the Vault server (PV1009, HTTP 503)"),
    ],
)
async def test_reason_and_server_errors_read_clearly(
    mcp: Client, sandbox: Sandbox, code: str, status: int, expected: str
) -> None:
    # An error's context is Record<string, string> in the official client: strings only.
    body = {"error_code": code, "message": "from the Vault", "context": {"reason": "Curiosity"}}
    sandbox.inject("vault", Fault(path="count", status=status, body=body, times=10))
    message = error(await mcp.call_tool(COUNT, {"collection": "customers"}))
    assert expected in message


async def test_a_429_storm_on_reads_is_retried(connect: Connect, sandbox: Sandbox) -> None:
    sandbox.inject("vault", Fault(path="objects", status=429, times=3, headers={"Retry-After": "0"}))
    async with connect() as client:
        assert len(ok(await client.call_tool(LIST, {"collection": "orders"}))["objects"]) == 22
    assert sandbox.faults["vault"].active() == []


async def test_reader_key_can_preview_but_not_delete_pv1007(connect: Connect, sandbox: Sandbox) -> None:
    before = world(sandbox)
    async with connect(pvault_api_key=SecretStr(READER_API_KEY)) as client:
        plan = await preview(client, collection="customers", state="archived")
        assert plan["count"] == 15
        result = await client.call_tool(
            DELETE, {"collection": "customers", "state": "archived", "confirm": plan["confirmation_token"]}
        )
        message = error(result)
        assert "lacks a capability needed here (user " in message
        assert "Analyst" in message
        assert "(PV1007, HTTP 403)" in message
        assert "CapDataDeleter" in message
        assert "Accounting so far: 0 carried out, 15 not carried out, 0 unknown." in message
        assert "PV1007" in error(await client.call_tool(PREVIEW_PRUNE, {}))
    assert world(sandbox) == before


# --- preview ---------------------------------------------------------------------------------------


async def test_preview_of_explicit_ids_leaves_out_absent_ones(mcp: Client, sandbox: Sandbox) -> None:
    before = world(sandbox)
    chosen = ACTIVE_CUSTOMERS[:3]
    given = [chosen[0].upper(), chosen[1], chosen[2], chosen[1], UNKNOWN_ID, ARCHIVED_CUSTOMERS[0]]
    result = await mcp.call_tool(PREVIEW_DELETE, {"collection": "customers", "ids": given})
    plan = ok(result)
    assert plan["count"] == 3
    assert plan["totals"] == {"objects": 3}
    assert plan["sample_ids"] == chosen
    assert plan["absent_ids"] == [UNKNOWN_ID, ARCHIVED_CUSTOMERS[0]]
    assert plan["absent_count"] == 2
    assert plan["selection"] == "5 given ids"
    warning = plan["warnings"][0]
    assert "2 of the given ids are not active objects" in warning
    assert "1 of them are archived objects: preview again with state=archived" in warning
    assert plan["summary"].startswith(
        'Permanently delete 3 active objects from Piiano Vault collection "customers"'
    )
    assert plan["confirmation_token"] in text(result)
    assert world(sandbox) == before


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"ids": ["not-a-uuid", "123"]}, "2 of the ids are not UUIDs"),
        ({"ids": [ACTIVE_CUSTOMERS[0]], "match": {"country": "DE"}}, "either ids or a selection"),
        ({"like": {"email": ""}}, "like pattern is empty"),
        ({"match_any": {"country": []}}, "match_any entry has no values"),
        ({"match": {"country": ["DE"]}}, "values must be strings, numbers or booleans"),
        ({"match_any": {"country": [{"nested": 1}]}}, "values must be strings, numbers or booleans"),
        ({"ids": []}, "ids"),
        ({"ids": [UNKNOWN_ID] * 1001}, "ids"),
        ({"state": "deleted"}, "state"),
    ],
)
async def test_preview_rejects_bad_selections(mcp: Client, arguments: dict[str, Any], expected: str) -> None:
    assert expected in error(await mcp.call_tool(PREVIEW_DELETE, {"collection": "customers", **arguments}))


async def test_preview_of_a_search_selection(mcp: Client, sandbox: Sandbox) -> None:
    store = sandbox.vault.stores["customers"]
    expected = sorted(
        o.id
        for o in store.objects.values()
        if o.archived_at is None and o.fields["country"] in ("US", "DE") and o.fields["email"].startswith("a")
    )
    assert expected
    plan = await preview(
        mcp, collection="customers", match_any={"country": ["US", "DE"]}, like={"email": "a*@example.com"}
    )
    assert plan["count"] == len(expected)
    assert plan["sample_ids"] == expected
    assert plan["selection"] == 'active objects where country in ["US", "DE"] and email like "a*@example.com"'
    exact = await preview(mcp, collection="orders", match={"amount": 1250, "status": "shipped"})
    assert exact["count"] == 1
    assert exact["sample_ids"] == [object_id("orders", 1)]


async def test_preview_of_nothing_says_so(mcp: Client) -> None:
    plan = await preview(mcp, collection="leads")
    assert plan["count"] == 0
    assert "nothing to delete" in " ".join(plan["warnings"])


# --- delete --------------------------------------------------------------------------------------


async def test_delete_explicit_ids_reports_each_id(mcp: Client, sandbox: Sandbox, settings: Settings) -> None:
    chosen = ACTIVE_CUSTOMERS[:3]
    arguments = {"collection": "customers", "ids": [*chosen, UNKNOWN_ID]}
    plan = await preview(mcp, **arguments)
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    result = await mcp.call_tool(
        DELETE, {**arguments, "confirm": plan["confirmation_token"]}, progress_callback=on_progress
    )
    outcome = ok(result)
    assert outcome["deleted"] == outcome["planned"] == 3
    assert outcome["totals"] == {"objects": 3}
    assert outcome["failed_batches"] == []
    assert outcome["not_deleted"] == outcome["not_attempted"] == 0
    assert outcome["outcomes"] == {**dict.fromkeys(chosen, "deleted"), UNKNOWN_ID: "absent"}
    assert progress == [(3, 3, "3 of 3 deleted")]
    assert text(result).startswith('Deleted 3 of 3 active objects from Piiano Vault collection "customers".')
    assert ids_in(sandbox, "customers", "active") == set(ACTIVE_CUSTOMERS[3:])
    assert ids_in(sandbox, "customers", "archived") == set(ARCHIVED_CUSTOMERS)
    events = [(line["event"], line.get("tool")) for line in audit_lines(settings.audit_log)]
    assert events == [("preview", PREVIEW_DELETE), ("confirmed", DELETE), ("outcome", DELETE)]


async def test_delete_every_archived_object_of_a_collection(mcp: Client, sandbox: Sandbox) -> None:
    orders = world(sandbox)["orders"]
    plan = await preview(mcp, collection="customers", state="archived", reason="DataSubjectRequest")
    assert plan["count"] == 15
    outcome = ok(
        await mcp.call_tool(
            DELETE, {"collection": "customers", "state": "archived", "confirm": plan["confirmation_token"]}
        )
    )
    assert outcome["deleted"] == 15
    assert ids_in(sandbox, "customers", "archived") == set()
    assert ids_in(sandbox, "customers", "active") == set(ACTIVE_CUSTOMERS)
    assert world(sandbox)["orders"] == orders


async def test_delete_a_search_selection(mcp: Client, sandbox: Sandbox) -> None:
    arguments = {"collection": "customers", "like": {"email": "*lovelace*"}}
    plan = await preview(mcp, **arguments)
    targets = set(plan["sample_ids"])
    assert plan["count"] == len(targets) == 5
    outcome = ok(await mcp.call_tool(DELETE, {**arguments, "confirm": plan["confirmation_token"]}))
    assert outcome["deleted"] == 5
    assert ids_in(sandbox, "customers", "active") == set(ACTIVE_CUSTOMERS) - targets


# --- the safety model ----------------------------------------------------------------------------

ARCHIVED = {"collection": "customers", "state": "archived"}


async def test_refusals_leave_the_vault_untouched(mcp: Client, sandbox: Sandbox) -> None:
    before = world(sandbox)
    token = (await preview(mcp, **ARCHIVED))["confirmation_token"]
    gc_token = (await preview_prune(mcp))["confirmation_token"]
    cases = [
        ({**ARCHIVED, "confirm": ""}, "needs a confirmation token"),
        ({**ARCHIVED, "confirm": "garbage"}, "unknown here"),
        ({**ARCHIVED, "confirm": flip(token, 16)}, "unknown here"),
        ({**ARCHIVED, "confirm": flip(token, 1)}, "unknown here"),
        ({**ARCHIVED, "confirm": gc_token}, "issued for vault_prune_archived, not vault_delete_objects"),
        ({"collection": "customers", "confirm": token}, "different arguments"),
        ({**ARCHIVED, "match": {"country": "DE"}, "confirm": token}, "different arguments"),
        ({"collection": "orders", "state": "archived", "confirm": token}, "different arguments"),
    ]
    for arguments, expected in cases:
        message = error(await mcp.call_tool(DELETE, arguments))
        assert expected in message, arguments
        assert PREVIEW_DELETE in message
    assert "issued for vault_delete_objects" in error(await mcp.call_tool(PRUNE, {"confirm": token}))
    assert world(sandbox) == before
    # None of those burned the token: it still works once, then never again.
    assert ok(await mcp.call_tool(DELETE, {**ARCHIVED, "confirm": token}))["deleted"] == 15
    assert "already used" in error(await mcp.call_tool(DELETE, {**ARCHIVED, "confirm": token}))


async def test_an_expired_token_is_refused(connect: Connect, sandbox: Sandbox) -> None:
    before = world(sandbox)
    async with connect(confirmation_ttl=0.05) as client:
        token = (await preview(client, **ARCHIVED))["confirmation_token"]
        await anyio.sleep(0.1)
        assert "expired" in error(await client.call_tool(DELETE, {**ARCHIVED, "confirm": token}))
    assert world(sandbox) == before


async def test_a_token_from_another_credential_is_refused(connect: Connect, sandbox: Sandbox) -> None:
    before = world(sandbox)
    secret = SecretStr("shared-replica-secret")
    async with connect(secret=secret) as admin:
        token = (await preview(admin, **ARCHIVED))["confirmation_token"]
    async with connect(secret=secret, pvault_api_key=SecretStr(DELETER_API_KEY)) as cleaner:
        message = error(await cleaner.call_tool(DELETE, {**ARCHIVED, "confirm": token}))
        assert "different API credential" in message
        assert world(sandbox) == before
        own = (await preview(cleaner, **ARCHIVED))["confirmation_token"]
        assert ok(await cleaner.call_tool(DELETE, {**ARCHIVED, "confirm": own}))["deleted"] == 15


async def test_a_grown_selection_is_refused_with_a_new_plan(mcp: Client, sandbox: Sandbox) -> None:
    token = (await preview(mcp, **ARCHIVED))["confirmation_token"]
    sandbox.vault.archive("customers", ACTIVE_CUSTOMERS[:2])
    before = world(sandbox)
    message = error(await mcp.call_tool(DELETE, {**ARCHIVED, "confirm": token}))
    assert 'planned "objects"=15; now "objects"=17' in message
    assert "Permanently delete 17 archived objects" in message
    assert world(sandbox) == before
    fresh = TOKEN_IN_MESSAGE.search(message)
    assert fresh is not None
    assert ok(await mcp.call_tool(DELETE, {**ARCHIVED, "confirm": fresh.group(1)}))["deleted"] == 17
    assert ids_in(sandbox, "customers", "archived") == set()


async def test_a_swap_in_a_whole_state_deletes_only_planned_ids_and_names_the_newcomer(
    mcp: Client, sandbox: Sandbox
) -> None:
    # Same count, other members: the count re-check lets it run, but deletion is by planned id only.
    token = (await preview(mcp, **ARCHIVED))["confirmation_token"]
    gone, newcomer = ARCHIVED_CUSTOMERS[0], ACTIVE_CUSTOMERS[0]
    sandbox.vault.delete_objects("customers", [gone], archived=True, tenants=None)
    sandbox.vault.archive("customers", [newcomer])
    result = await mcp.call_tool(DELETE, {**ARCHIVED, "confirm": token})
    outcome = ok(result)
    assert outcome["deleted"] == outcome["planned"] == 14
    assert outcome["not_deleted"] == outcome["not_attempted"] == outcome["failed_batch_count"] == 0
    assert outcome["outcomes"][gone].startswith("absent: no longer archived")
    assert newcomer not in outcome["outcomes"]
    assert sum(why == "deleted" for why in outcome["outcomes"].values()) == 14
    assert "1 approved object was already gone (no longer archived) and not deleted by this call" in text(
        result
    )
    assert "At least 1 archived object not in the approved plan appeared since the preview" in text(result)
    assert any("The state shrank since the preview" in note and gone in note for note in outcome["notes"])
    assert ids_in(sandbox, "customers", "archived") == {newcomer}
    assert ids_in(sandbox, "customers", "active") == set(ACTIVE_CUSTOMERS[1:])


async def test_a_swapped_search_selection_of_the_same_size_counts_as_grown(
    mcp: Client, sandbox: Sandbox
) -> None:
    # A search is re-run in full: a property change can move objects into or out of it.
    store = sandbox.vault.stores["customers"]
    country = store.objects[ACTIVE_CUSTOMERS[0]].fields["country"]
    matching = [i for i in ACTIVE_CUSTOMERS if store.objects[i].fields["country"] == country]
    other = next(i for i in ACTIVE_CUSTOMERS if store.objects[i].fields["country"] != country)
    arguments = {"collection": "customers", "match": {"country": country}}
    token = (await preview(mcp, **arguments))["confirmation_token"]
    sandbox.vault.delete_objects("customers", matching[:1], archived=False, tenants=None)
    store.objects[other].fields["country"] = country
    before = world(sandbox)
    message = error(await mcp.call_tool(DELETE, {**arguments, "confirm": token}))
    assert "Refused: the state changed" in message
    assert f'planned "objects"={len(matching)}; now "objects"={len(matching)}' in message
    assert world(sandbox) == before


async def test_a_replica_sharing_the_store_acts_on_the_previewed_ids_without_listing_again(
    connect: Connect, sandbox: Sandbox
) -> None:
    # Another server on the same store holds the previewed ids: it re-checks them, it does not re-list.
    async with connect() as first:
        token = (await preview(first, **ARCHIVED))["confirmation_token"]
    listings = Fault(method="GET", path=r"/collections/customers/objects$", times=None)
    sandbox.inject("vault", listings)
    async with connect() as second:
        outcome = ok(await second.call_tool(DELETE, {**ARCHIVED, "confirm": token}))
    assert outcome["deleted"] == 15
    assert sandbox.faults["vault"].active()[0]["fired"] == 0
    assert ids_in(sandbox, "customers", "archived") == set()
    assert ids_in(sandbox, "customers", "active") == set(ACTIVE_CUSTOMERS)


async def test_a_shrunk_selection_proceeds_with_what_is_left(mcp: Client, sandbox: Sandbox) -> None:
    token = (await preview(mcp, **ARCHIVED))["confirmation_token"]
    sandbox.vault.delete_objects("customers", ARCHIVED_CUSTOMERS[:2], archived=True, tenants=None)
    outcome = ok(await mcp.call_tool(DELETE, {**ARCHIVED, "confirm": token}))
    assert outcome["deleted"] == outcome["planned"] == 13
    assert 'shrank since the preview (planned "objects"=15; now "objects"=13)' in outcome["notes"][0]
    assert ids_in(sandbox, "customers", "archived") == set()


async def test_explicit_ids_that_vanish_shrink_the_plan(mcp: Client, sandbox: Sandbox) -> None:
    chosen = ACTIVE_CUSTOMERS[:4]
    token = (await preview(mcp, collection="customers", ids=chosen))["confirmation_token"]
    sandbox.vault.archive("customers", chosen[:1])
    outcome = ok(await mcp.call_tool(DELETE, {"collection": "customers", "ids": chosen, "confirm": token}))
    assert outcome["deleted"] == 3
    assert outcome["outcomes"] == {chosen[0]: "absent", **dict.fromkeys(chosen[1:], "deleted")}
    assert ids_in(sandbox, "customers", "archived") == {*ARCHIVED_CUSTOMERS, chosen[0]}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_the_human_can_stop_it(connect: Connect, sandbox: Sandbox, mode: str, action: str) -> None:
    before = world(sandbox)
    async with connect(mode=mode, elicitation=answering(action)) as client:
        token = (await preview(client, **ARCHIVED))["confirmation_token"]
        message = error(await client.call_tool(DELETE, {**ARCHIVED, "confirm": token}))
    assert f"the user {'declined' if action == 'decline' else 'cancelled'} the confirmation prompt" in message
    assert world(sandbox) == before


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_human_is_asked_with_the_plan_summary(
    connect: Connect, sandbox: Sandbox, mode: str
) -> None:
    no = answering("accept", approve=False)
    yes = answering("accept")
    async with connect(mode=mode, elicitation=no) as client:
        plan = await preview(client, **ARCHIVED)
        assert "did not approve" in error(
            await client.call_tool(DELETE, {**ARCHIVED, "confirm": plan["confirmation_token"]})
        )
    assert len(ids_in(sandbox, "customers", "archived")) == 15
    async with connect(mode=mode, elicitation=yes) as client:
        plan = await preview(client, **ARCHIVED)
        assert (
            ok(await client.call_tool(DELETE, {**ARCHIVED, "confirm": plan["confirmation_token"]}))["deleted"]
            == 15
        )
    for asked in (no.asked, yes.asked):  # type: ignore[attr-defined]
        assert asked == [f"{plan['summary']} This cannot be undone. Approve?"]


async def test_require_human_refuses_a_client_that_cannot_ask(connect: Connect, sandbox: Sandbox) -> None:
    before = world(sandbox)
    async with connect(require_human=True) as client:
        token = (await preview(client, **ARCHIVED))["confirmation_token"]
        assert "--require-human" in error(await client.call_tool(DELETE, {**ARCHIVED, "confirm": token}))
    assert world(sandbox) == before


async def test_a_huge_props_value_is_refused_in_words_before_anything_is_sent(
    mcp: Client, sandbox: Sandbox
) -> None:
    # A 1 MB property name once made an URL no client could send, and the agent got a bare
    # "Error executing tool": the request is now refused locally, in words, and never leaves.
    sandbox.inject("vault", Fault(method="GET", status=500))  # fires on any request that reaches the Vault
    message = error(await mcp.call_tool(LIST, {"collection": "customers", "props": ["x" * 1_000_000]}))
    assert "Error executing tool vault_list_objects: " in message
    assert "too long" in message
    assert len(message) < 2_000
    assert [fault["fired"] for fault in sandbox.faults["vault"].active()] == [0]
