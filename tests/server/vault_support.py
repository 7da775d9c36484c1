"""Helpers shared by the Vault tool tests: tool names, the emulator's world, results, tokens."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from mcp import Client
from mcp.types import CallToolResult

from purgewarden.sandbox import Sandbox
from purgewarden.sandbox.vault.seed import object_id
from tests.server.support import audit_lines as audit_lines
from tests.server.support import error as error
from tests.server.support import flip as flip
from tests.server.support import ok as ok
from tests.server.support import text as text

Connect = Callable[..., AbstractAsyncContextManager[Client]]

COLLECTIONS = "vault_list_collections"
COUNT = "vault_count_objects"
LIST = "vault_list_objects"
PREVIEW_DELETE = "vault_preview_delete_objects"
DELETE = "vault_delete_objects"
PREVIEW_PRUNE = "vault_preview_prune_archived"
PRUNE = "vault_prune_archived"
READ_TOOLS = {COLLECTIONS, COUNT, LIST, PREVIEW_DELETE, PREVIEW_PRUNE}
ALL_TOOLS = READ_TOOLS | {DELETE, PRUNE}

TOKEN_IN_MESSAGE = re.compile(r'confirm="(pwc1\.[^"]+)"')
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"

# The demo: customers 0-39 active, 40-49 archived 45 days ago, 50-54 archived 3 days ago.
ACTIVE_CUSTOMERS = [object_id("customers", i) for i in range(40)]
ARCHIVED_CUSTOMERS = [object_id("customers", i) for i in range(40, 55)]


def world(sandbox: Sandbox) -> dict[str, Any]:
    """Everything the Vault emulator holds that a deletion could change."""
    return {
        name: (list(store.active), list(store.archived), sorted(store.tokens), list(store.orphans))
        for name, store in sandbox.vault.stores.items()
    }


def ids_in(sandbox: Sandbox, collection: str, state: str) -> set[str]:
    store = sandbox.vault.stores[collection]
    return set(store.archived if state == "archived" else store.active)


def tokens_estimate(result: CallToolResult) -> float:
    """About how many tokens the whole result costs a model (text and structured content)."""
    return (len(text(result)) + len(json.dumps(result.structured_content))) / 4


async def preview(client: Client, **arguments: Any) -> dict[str, Any]:
    return ok(await client.call_tool(PREVIEW_DELETE, arguments))


async def preview_prune(client: Client, **arguments: Any) -> dict[str, Any]:
    return ok(await client.call_tool(PREVIEW_PRUNE, arguments))
