"""Tool schema snapshots: the tool interface changes only on purpose (as github-mcp-server's toolsnaps).

Each tool's name, title, description, annotations, input and output schema live in
tests/__toolsnaps__/<tool>.snap as sorted-key JSON. Any difference fails, and so does a tool without a snap
or a snap without a tool. After an intended change, rewrite them and review the diff:

    UPDATE_TOOLSNAPS=1 uv run pytest tests/hosts/test_toolsnaps.py
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest
from mcp.types import Tool

from tests.hosts.support import ROOT

SNAPS = ROOT / "tests" / "__toolsnaps__"
FIELDS = ("name", "title", "description", "annotations", "inputSchema", "outputSchema")
HOW_TO_UPDATE = "If the change is intended: UPDATE_TOOLSNAPS=1 uv run pytest tests/hosts/test_toolsnaps.py"


def snapshot(tool: Tool) -> str:
    listed = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
    return json.dumps({k: listed[k] for k in FIELDS if k in listed}, indent=2, sort_keys=True) + "\n"


def snap_path(name: str) -> Path:
    return SNAPS / f"{name}.snap"


async def test_every_tool_matches_its_snapshot(listed_tools: list[Tool]) -> None:
    current = {tool.name: snapshot(tool) for tool in listed_tools}
    assert len(current) == 20, "the fixture serves all three services"
    if os.environ.get("UPDATE_TOOLSNAPS"):
        SNAPS.mkdir(exist_ok=True)
        for stale in set(SNAPS.glob("*.snap")) - {snap_path(name) for name in current}:
            stale.unlink()
        for name, text in current.items():
            snap_path(name).write_text(text)
    problems: list[str] = []
    for name, text in sorted(current.items()):
        path = snap_path(name)
        if not path.exists():
            problems.append(f"{name}: no snapshot at {path.relative_to(ROOT)}")
            continue
        committed = path.read_text()
        if committed != text:
            diff = difflib.unified_diff(
                committed.splitlines(),
                text.splitlines(),
                f"{name}.snap (committed)",
                f"{name} (served)",
                lineterm="",
            )
            problems.append("\n".join(diff))
    if problems:
        pytest.fail("tool interface changed:\n" + "\n".join(problems) + "\n" + HOW_TO_UPDATE, pytrace=False)


async def test_no_snapshot_outlives_its_tool(listed_tools: list[Tool]) -> None:
    served = {tool.name for tool in listed_tools}
    stale = sorted(path.stem for path in SNAPS.glob("*.snap") if path.stem not in served)
    if stale:
        pytest.fail(f"snapshots of tools the server no longer has: {stale}\n{HOW_TO_UPDATE}", pytrace=False)
