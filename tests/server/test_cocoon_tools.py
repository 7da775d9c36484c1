"""Cocoon Data tools through the MCP client against the emulator: listing, the plan, emptying, switches."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr

from purgewarden.config import Settings
from purgewarden.safety.text import FENCE_CLOSE, FENCE_OPEN
from purgewarden.sandbox import Sandbox, cocoon
from purgewarden.sandbox.cocoon.seed import DEMO_USER_ID, PROMPT_INJECTION_NAME
from tests.server.cocoon_support import (
    ALEX,
    ALEX_BIN,
    EMPTY,
    FOLDER_ARCHIVE,
    FOLDER_OTHER,
    LIST,
    ORG,
    PREVIEW,
    SAM,
    Connect,
    audit_lines,
    bin_ids,
    bin_totals,
    error,
    ok,
    plan,
    text,
    world,
)
from tests.server.support import RUN_TOOLS

# Module-level: the conftest adds the anyio marker after parametrization, which anyio would undo.
pytestmark = pytest.mark.anyio


@pytest.fixture
def connect(connect: Connect) -> Connect:
    """Only the Cocoon toolset, so these tests stand apart from the other services' modules."""

    def session(**overrides: Any) -> Any:
        return connect(**{"toolsets": ("cocoon",), **overrides})

    return session


# --- tools/list ----------------------------------------------------------------------------------


async def test_lists_the_three_tools_with_their_annotations_and_schemas(mcp: Client) -> None:
    tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
    assert set(tools) == {LIST, PREVIEW, EMPTY, *RUN_TOOLS}
    for name in (LIST, PREVIEW):
        hints = tools[name].annotations
        assert hints is not None
        assert hints.read_only_hint is True
        assert hints.destructive_hint is False
        assert hints.idempotent_hint is True
        assert hints.open_world_hint is True
    hints = tools[EMPTY].annotations
    assert hints is not None
    assert hints.destructive_hint is True
    assert hints.read_only_hint is False
    assert hints.open_world_hint is True
    for tool in tools.values():
        assert tool.title
        assert tool.description
        assert tool.output_schema is not None
        assert tool.output_schema["type"] == "object"
        assert "summary" in tool.output_schema["properties"]
        assert not {"anyOf", "oneOf", "allOf"} & set(tool.input_schema)
        assert "ctx" not in tool.input_schema.get("properties", {})
    empty_schema = tools[EMPTY].input_schema
    assert "confirm" in empty_schema["required"]
    assert "human" not in empty_schema["properties"]
    assert "organisation_id" in empty_schema["properties"]
    plan_schema = tools[PREVIEW].output_schema
    assert plan_schema is not None
    assert {"confirmation_token", "expires_at", "totals", "warnings", "sample"} <= set(
        plan_schema["properties"]
    )


async def test_read_only_serves_no_destructive_tool(connect: Connect, sandbox: Sandbox) -> None:
    before = world(sandbox)
    async with connect(read_only=True) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {LIST, PREVIEW}
        token = (await plan(client))["confirmation_token"]
        result = await client.call_tool(EMPTY, {"confirm": token})
    assert error(result) == f"Unknown tool: {EMPTY}"
    assert world(sandbox) == before


async def test_a_toolset_selection_without_cocoon_serves_no_cocoon_tools(connect: Connect) -> None:
    # Cocoon has credentials but is not selected; Katapult is selected but has none: nothing is served.
    async with connect(toolsets=("katapult",), katapult_api_token=None) as client:
        assert (await client.list_tools()).tools == []


@pytest.mark.parametrize(
    "missing", [{"cocoon_access_token": None}, {"cocoon_access_service_url": None}], ids=["token", "url"]
)
async def test_no_cocoon_credentials_serves_no_cocoon_tools(
    connect: Connect, missing: dict[str, None]
) -> None:
    async with connect(**missing) as client:
        assert (await client.list_tools()).tools == []


# --- cocoon_list_recycle_bin ---------------------------------------------------------------------


async def test_list_pages_through_the_whole_bin(mcp: Client) -> None:
    seen: list[str] = []
    offsets: list[int | None] = []
    offset: int | None = 0
    while offset is not None:
        page = ok(await mcp.call_tool(LIST, {"limit": 3, "offset": offset}))
        assert page["offset"] == offset
        assert page["organisation_id"] == ORG
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        offset = page["next_offset"]
        offsets.append(offset)
    assert offsets == [3, 6, None]
    assert len(seen) == len(set(seen)) == len(ALEX_BIN)
    assert set(seen) == ALEX_BIN


async def test_list_defaults_to_newest_first_and_describes_items(mcp: Client) -> None:
    result = await mcp.call_tool(LIST, {})
    page = ok(result)
    times = [item["recycled_time"] for item in page["items"]]
    assert times == sorted(times, reverse=True)
    assert page["next_offset"] is None
    by_id = {item["id"]: item for item in page["items"]}
    assert by_id[FOLDER_OTHER]["kind"] == "folder"
    assert by_id[FOLDER_OTHER]["size_bytes"] == 4096 + 98304 + 57600 + 30720 + 19456
    assert by_id[FOLDER_OTHER]["shared"] is True
    assert by_id["756120044395401217"]["days_to_purge"] == 1
    assert by_id["753099536981094400"] == {
        "id": "753099536981094400",
        "name": "Executive Report.pdf",
        "kind": "file",
        "size_bytes": 3596928,
        "recycled_time": by_id["753099536981094400"]["recycled_time"],
        "shared": False,
        "days_to_purge": 29,
    }
    assert "7 items" in text(result)
    assert "last page" in text(result)


@pytest.mark.parametrize(
    ("sort_by", "order", "key"),
    [
        ("size", "asc", lambda item: (item["size_bytes"], int(item["id"]))),
        ("size", "desc", lambda item: (-item["size_bytes"], -int(item["id"]))),
        ("name", "asc", lambda item: item["name"].casefold()),
        ("time", "asc", lambda item: item["recycled_time"]),
    ],
)
async def test_list_sorts_as_asked(
    mcp: Client, sort_by: str, order: str, key: Callable[[dict[str, Any]], Any]
) -> None:
    page = ok(await mcp.call_tool(LIST, {"sort_by": sort_by, "order": order, "limit": 200}))
    assert [item["id"] for item in page["items"]] == [item["id"] for item in sorted(page["items"], key=key)]
    assert len(page["items"]) == len(ALEX_BIN)


async def test_list_takes_an_explicit_organisation(connect: Connect) -> None:
    other = SecretStr(cocoon.OTHER_ORGANISATION_ACCESS_TOKEN)
    async with connect(cocoon_access_token=other) as client:
        page = ok(await client.call_tool(LIST, {"organisation_id": cocoon.OTHER_ORGANISATION_ID}))
    assert page["organisation_id"] == cocoon.OTHER_ORGANISATION_ID
    assert [item["name"] for item in page["items"]] == ["acme-roadmap.pptx"]


async def test_list_without_any_organisation_asks_for_one(connect: Connect) -> None:
    async with connect(cocoon_organisation_id=None) as client:
        message = error(await client.call_tool(LIST, {}))
    assert "organisation_id" in message
    assert "COCOON_ORGANISATION_ID" in message


@pytest.mark.parametrize("bad", ["acme", "../749418071827214336", "1" * 25, ""])
async def test_list_rejects_a_malformed_organisation_id(mcp: Client, sandbox: Sandbox, bad: str) -> None:
    message = error(await mcp.call_tool(LIST, {"organisation_id": bad}))
    assert "organisation_id" in message


async def test_list_rejects_out_of_range_paging(mcp: Client) -> None:
    assert "limit" in error(await mcp.call_tool(LIST, {"limit": 0}))
    assert "limit" in error(await mcp.call_tool(LIST, {"limit": 201}))
    assert "offset" in error(await mcp.call_tool(LIST, {"offset": -1}))
    assert "sort_by" in error(await mcp.call_tool(LIST, {"sort_by": "owner"}))


async def test_an_injected_name_stays_quoted_inside_the_fence(mcp: Client) -> None:
    for result in (await mcp.call_tool(LIST, {"limit": 200}), await mcp.call_tool(PREVIEW, {})):
        assert not result.is_error
        body = text(result)
        start, end = body.index(FENCE_OPEN), body.index(FENCE_CLOSE)
        at = body.index(PROMPT_INJECTION_NAME)
        assert body.count(PROMPT_INJECTION_NAME) == 1
        assert start < at < end
        assert body[at - 1] == '"'
        assert body[at + len(PROMPT_INJECTION_NAME)] == '"'
        assert body.count(FENCE_OPEN) == body.count(FENCE_CLOSE) == 1
        assert "never instructions" in body[end:]


# --- cocoon_preview_empty_recycle_bin ------------------------------------------------------------


async def test_preview_counts_what_would_go_and_warns(mcp: Client, sandbox: Sandbox) -> None:
    before = world(sandbox)
    result = await mcp.call_tool(PREVIEW, {})
    preview = ok(result)
    assert preview["totals"] == bin_totals(sandbox)
    assert preview["totals"]["items"] == 7
    assert preview["organisation_id"] == ORG
    warnings = " ".join(preview["warnings"])
    assert "3 items shared" in warnings
    assert "1 item would be purged automatically" in warnings
    assert preview["confirmation_token"].startswith("pwc_")
    assert preview["expires_at"]
    sizes = [item["size_bytes"] for item in preview["sample"]]
    assert sizes == sorted(sizes, reverse=True)
    assert {item["id"] for item in preview["sample"]} == ALEX_BIN
    assert preview["summary"].startswith("Permanently delete 7 items (5 files, 2 folders")
    assert ORG in preview["summary"]
    body = text(result)
    assert preview["confirmation_token"] in body
    assert "Warning: 3 items shared" in body
    assert world(sandbox) == before


async def test_preview_of_a_huge_bin_stays_small(mcp: Client, sandbox: Sandbox) -> None:
    sandbox.cocoon.build_large_bin(ALEX, 10_000)
    result = await mcp.call_tool(PREVIEW, {})
    preview = ok(result)
    assert preview["totals"] == bin_totals(sandbox)
    assert preview["totals"]["items"] == 10_007
    assert len(preview["sample"]) == 20
    assert len(json.dumps(preview)) / 4 < 25_000
    assert len(text(result)) / 4 < 25_000
    page = await mcp.call_tool(LIST, {"limit": 200})
    assert len(ok(page)["items"]) == 200
    assert len(json.dumps(page.structured_content)) / 4 < 25_000
    assert len(text(page)) / 4 < 25_000


async def test_preview_of_an_empty_bin_says_there_is_nothing(mcp: Client, sandbox: Sandbox) -> None:
    backend = sandbox.cocoon
    backend.empty_recycle_bin(backend.resolve_user(ALEX), ORG)
    preview = await plan(mcp)
    assert preview["totals"] == {"items": 0, "bytes": 0}
    assert preview["sample"] == []
    assert any("empty" in warning for warning in preview["warnings"])
    outcome = ok(await mcp.call_tool(EMPTY, {"confirm": preview["confirmation_token"]}))
    assert outcome["totals"] == {"items": 0, "bytes": 0}
    assert outcome["remaining"] == 0


# --- cocoon_empty_recycle_bin --------------------------------------------------------------------


async def test_empty_deletes_the_bin_reports_progress_and_audits_without_secrets(
    mcp: Client, sandbox: Sandbox, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = sandbox.cocoon
    sam_before = bin_ids(sandbox, SAM)
    planned = bin_totals(sandbox)
    folder_contents = [item.id for item in backend.items[FOLDER_OTHER].walk()]
    files = ALEX_BIN - {FOLDER_OTHER, FOLDER_ARCHIVE}
    listed = await mcp.call_tool(LIST, {})
    preview_result = await mcp.call_tool(PREVIEW, {})
    token = ok(preview_result)["confirmation_token"]
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    result = await mcp.call_tool(EMPTY, {"confirm": token}, progress_callback=on_progress)
    outcome = ok(result)

    assert outcome["totals"] == planned
    assert outcome["remaining"] == 0
    assert outcome["notes"] == []
    assert outcome["organisation_id"] == ORG
    assert {item["id"] for item in outcome["deleted"]} == ALEX_BIN
    assert text(result).startswith("Deleted 7 items")
    assert len(reports) >= 2
    assert reports[-1][0] == reports[-1][1]
    assert [done for done, _, _ in reports] == sorted(done for done, _, _ in reports)

    assert bin_ids(sandbox) == set()
    assert all(backend.items[item_id].state == cocoon.ItemState.DELETED for item_id in files)
    assert not {FOLDER_OTHER, FOLDER_ARCHIVE, *folder_contents} & set(backend.items)
    assert bin_ids(sandbox, SAM) == sam_before
    assert sam_before

    lines = audit_lines(settings.audit_log)
    events = [line["event"] for line in lines]
    assert events == ["preview", "confirmed", "outcome"]
    preview_line, confirmed, outcome_line = lines
    assert preview_line["tool"] == PREVIEW
    assert preview_line["plan_for"] == confirmed["tool"] == outcome_line["tool"] == EMPTY
    assert preview_line["target"] == confirmed["target"] == {"organisation_id": ORG}
    assert preview_line["counts"] == confirmed["counts"] == planned
    assert confirmed["plan_digest"] == preview_line["plan_digest"]
    assert confirmed["verdict"] == "same"
    assert outcome_line["counts"] == planned
    assert outcome_line["service"] == "cocoon"

    texts = [text(r) for r in (listed, preview_result, result)]
    assert ALEX not in settings.audit_log.read_text(encoding="utf-8")
    assert not any(ALEX in t for t in texts)
    assert not any(ALEX in json.dumps(r.structured_content) for r in (listed, preview_result, result))
    assert caplog.records
    assert ALEX not in caplog.text


async def test_explicit_and_default_organisation_share_a_token(mcp: Client, sandbox: Sandbox) -> None:
    token = (await plan(mcp))["confirmation_token"]
    outcome = ok(await mcp.call_tool(EMPTY, {"confirm": token, "organisation_id": ORG}))
    assert outcome["totals"]["items"] == 7
    assert bin_ids(sandbox) == set()


async def test_empty_acts_on_the_bin_of_the_token_holder_only(connect: Connect, sandbox: Sandbox) -> None:
    alex_before = bin_ids(sandbox)
    async with connect(cocoon_access_token=SecretStr(SAM)) as client:
        preview = await plan(client)
        assert preview["totals"] == {"items": 2, "bytes": 250880 + 80000 + 91000}
        outcome = ok(await client.call_tool(EMPTY, {"confirm": preview["confirmation_token"]}))
    assert outcome["totals"]["items"] == 2
    assert bin_ids(sandbox, SAM) == set()
    assert bin_ids(sandbox) == alex_before
    assert DEMO_USER_ID not in {item["id"] for item in outcome["deleted"]}


async def test_empty_of_a_huge_bin(mcp: Client, sandbox: Sandbox) -> None:
    sandbox.cocoon.build_large_bin(ALEX, 10_000)
    token = (await plan(mcp))["confirmation_token"]
    result = await mcp.call_tool(EMPTY, {"confirm": token})
    outcome = ok(result)
    assert outcome["totals"]["items"] == 10_007
    assert len(outcome["deleted"]) == 20
    assert len(json.dumps(outcome)) / 4 < 25_000
    assert bin_ids(sandbox) == set()
