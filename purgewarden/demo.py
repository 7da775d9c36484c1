"""`purgewarden demo`: a real MCP session, printed as a transcript.

It starts the sandbox in this process, launches `purgewarden serve` as a stdio subprocess pointed at
it, and drives that server with the SDK's MCP client through the safety model: list, preview, a
refused call without a token, the confirmed call, and an API error translated for the model.
"""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextContent

from purgewarden.sandbox import Sandbox

WIDTH = 100


class Transcript:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.step = 0

    def say(self, text: str) -> None:
        print(textwrap.fill(text, WIDTH), flush=True)

    async def call(self, title: str, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        self.step += 1
        shown = ", ".join(f"{k}={_short(v)}" for k, v in arguments.items())
        print(f"\n[{self.step}] {title}\n    → {tool}({shown})", flush=True)
        result = await self.client.call_tool(tool, arguments)
        label = "    ✗ isError" if result.is_error else "    ✓"
        text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
        print(label)
        print(textwrap.indent(text, "      "), flush=True)
        return result


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:28] + "…" + text[-8:]


async def run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="purgewarden-demo-") as workdir, Sandbox() as sandbox:
        audit_log = Path(workdir) / "audit.jsonl"
        env = {
            **os.environ,
            **sandbox.server_environment(),
            "PURGEWARDEN_STATE_DIR": workdir,
            "PURGEWARDEN_AUDIT_LOG": str(audit_log),
        }
        params = StdioServerParameters(command=sys.executable, args=["-m", "purgewarden", "serve"], env=env)
        print(
            "purgewarden demo: the MCP server over stdio, driven by the MCP SDK client, against the local sandbox"
        )
        for service, endpoint in sandbox.endpoints.items():
            print(f"  sandbox {service:<9} {endpoint.url}")
        async with Client(params) as client:
            t = Transcript(client)
            tools = (await client.list_tools()).tools
            t.step += 1
            print(f"\n[{t.step}] What can an agent do here?\n    → tools/list: {len(tools)} tools")
            for tool in tools:
                hints = tool.annotations
                kind = "destructive" if hints and hints.destructive_hint else "read-only"
                print(f"      {tool.name:<44} {kind}")
            await t.call(
                "Look at the recycle bin (one file's name is a prompt injection: it stays fenced as data)",
                "cocoon_list_recycle_bin",
                {"limit": 10},
            )
            plan = await t.call(
                "Preview emptying it: the plan the user must see", "cocoon_preview_empty_recycle_bin", {}
            )
            await t.call(
                "An agent that skips the preview is refused, and nothing is deleted",
                "cocoon_empty_recycle_bin",
                {"confirm": "yes, I am sure"},
            )
            token = (plan.structured_content or {}).get("confirmation_token", "")
            await t.call(
                "The user approved the plan: confirm with its token",
                "cocoon_empty_recycle_bin",
                {"confirm": token},
            )
            await t.call(
                "The same token cannot be used twice", "cocoon_empty_recycle_bin", {"confirm": token}
            )
            prune = await t.call(
                "Preview pruning the Vault's archived records past retention",
                "vault_preview_prune_archived",
                {},
            )
            await t.call(
                "Confirm it: the tool repeats the 10,000-item GC call up to the approved plan, never past it",
                "vault_prune_archived",
                {"confirm": (prune.structured_content or {}).get("confirmation_token", "")},
            )
            await t.call(
                "An API error, translated for the model: this organization is suspended",
                "katapult_preview_purge_all_trash_objects",
                {"organization": "initech"},
            )
        lines = audit_log.read_text().splitlines() if audit_log.exists() else []
        print(
            f"\nAudit log: {len(lines)} JSON lines (previews, refusals, confirmations, outcomes); no secrets."
        )
    return 0
