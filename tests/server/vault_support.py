"""Helpers shared by the Vault tool tests: tool names, the emulator's world, results, tokens."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
from mcp import Client
from mcp.types import CallToolResult

from purgewarden.safety.text import FENCE_CLOSE, FENCE_OPEN
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

TOKEN_IN_MESSAGE = re.compile(r'confirm="(pwc_[^"]+)"')
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


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    """Wait for something another task or thread makes true (polling: the emulator runs in a thread)."""
    with anyio.fail_after(seconds):
        for _ in iter(int, 1):
            if condition():
                return
            await anyio.sleep(0.01)


def gc_eligible(sandbox: Sandbox) -> set[str]:
    """Every item garbage collection would delete now, by identity (objects, tokens, transaction ids)."""
    backend = sandbox.vault
    cutoff = backend.clock.now() - backend.retention_seconds
    items: set[str] = set()
    for name, store in backend.stores.items():
        items |= {f"{name}/object/{o.id}" for o in store.expired_objects(cutoff)}
        items |= {f"{name}/token/{t.id}" for t in store.expired_tokens(cutoff)}
        items |= {f"{name}/transaction/{x}" for x in store.orphans}
    return items


def gc_present(sandbox: Sandbox) -> set[str]:
    """Every object, token and transaction id the Vault still holds, named as `gc_eligible` names them."""
    items: set[str] = set()
    for name, store in sandbox.vault.stores.items():
        items |= {f"{name}/object/{i}" for i in store.objects}
        items |= {f"{name}/token/{i}" for i in store.tokens}
        items |= {f"{name}/transaction/{i}" for i in store.token_counts}
    return items


def assert_agrees(accounting: Mapping[str, int], approved: set[str], present: set[str]) -> None:
    """The kernel's accounting against the emulator's real state: every approved item is accounted for;
    no item said carried out is still there, none said not carried out is gone (unknown may be either)."""
    assert sum(accounting.values()) == len(approved), accounting
    assert accounting["carried_out"] <= len(approved - present), accounting
    assert accounting["not_carried_out"] <= len(approved & present), accounting


def assert_no_forged_lines(body: str) -> None:
    """Nothing in a result's text can pass for the server's own words: one fence at most, closed once,
    and no line starting as an instruction or a confirmation token that the server did not write."""
    assert body.count(FENCE_OPEN) == body.count(FENCE_CLOSE) <= 1, body
    for line in body.splitlines():
        assert not line.lstrip().startswith("SYSTEM"), line
        assert not (line.startswith("confirmation_token:") and "FAKE" in line), line
