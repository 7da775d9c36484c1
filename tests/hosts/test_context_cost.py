"""Context cost: every tool's definition lands in the model's context, so `tools/list` has a budget.

26 KB of JSON is about 6,500 tokens for all 20 tools together (descriptions, input and output schemas).
"""

from __future__ import annotations

from mcp import Client

from tests.hosts.support import FIGURES

BUDGET = 26 * 1024


async def test_tools_list_stays_within_its_context_budget(mcp: Client) -> None:
    listed = await mcp.list_tools()
    # The result's `_meta` is the envelope, not tool definitions: on 2026-07-28 it holds the `serverInfo` stamp
    # (the server's icon included, bounded by tests/ops/test_bundle.py), which hosts do not give the model.
    size = len(listed.model_dump_json(by_alias=True, exclude_none=True, exclude={"meta"}).encode())
    FIGURES.append(f"tools/list: {size:,} bytes of JSON for {len(listed.tools)} tools (budget {BUDGET:,})")
    largest = sorted(
        (
            (len(tool.model_dump_json(by_alias=True, exclude_none=True).encode()), tool.name)
            for tool in listed.tools
        ),
        reverse=True,
    )
    assert len(listed.tools) == 20
    assert size < BUDGET, f"tools/list is {size:,} bytes, over {BUDGET:,}; largest tools: " + ", ".join(
        f"{name} {n:,}" for n, name in largest[:5]
    )
