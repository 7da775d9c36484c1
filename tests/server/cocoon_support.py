"""Helpers shared by the Cocoon tool tests: names, a fingerprint of the emulator's whole world, results."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from mcp import Client

from purgewarden.sandbox import Sandbox, cocoon
from purgewarden.sandbox.cocoon.seed import DEMO_USER_ID, SeedItem
from tests.server.support import audit_lines as audit_lines
from tests.server.support import error as error
from tests.server.support import flip as flip
from tests.server.support import ok as ok
from tests.server.support import text as text

Connect = Callable[..., AbstractAsyncContextManager[Client]]

LIST = "cocoon_list_recycle_bin"
PREVIEW = "cocoon_preview_empty_recycle_bin"
EMPTY = "cocoon_empty_recycle_bin"
ORG = cocoon.DEMO_ORGANISATION_ID
ALEX = cocoon.DEMO_ACCESS_TOKEN
SAM = cocoon.SECOND_ORIGINATOR_ACCESS_TOKEN

FOLDER_OTHER = "752389961810243584"
FOLDER_ARCHIVE = "756120044395401219"
EXECUTIVE_REPORT = "753099536981094400"
ALEX_BIN = {
    FOLDER_OTHER,
    EXECUTIVE_REPORT,
    "752047795879604224",
    "756120044395401216",
    "756120044395401217",
    "756120044395401218",
    FOLDER_ARCHIVE,
}
TOKEN_IN_MESSAGE = re.compile(r'confirm="(pwc_[^"]+)"')


def world(sandbox: Sandbox) -> dict[str, Any]:
    """Everything the emulator holds that a deletion could change: every item's state and every bin."""
    backend = sandbox.cocoon
    return {
        "items": {item_id: (item.state, item.parent_id) for item_id, item in backend.items.items()},
        "bins": {key: sorted(b.entries) for key, b in backend.bins.items() if b.entries},
    }


def bin_ids(sandbox: Sandbox, token: str = ALEX, organisation_id: str = ORG) -> set[str]:
    backend = sandbox.cocoon
    return set(backend.bin_of(backend.resolve_user(token).id, organisation_id).entries)


def bin_totals(sandbox: Sandbox) -> dict[str, int]:
    entries = sandbox.cocoon.bin_of(DEMO_USER_ID, ORG).entries.values()
    return {"items": len(entries), "bytes": sum(item.size for item in entries)}


def recycle_new_item(sandbox: Sandbox, name: str = "late-arrival.txt", size: int = 1000) -> str:
    """Someone recycles one more file into Alex's bin, right now."""
    backend = sandbox.cocoon
    user = backend.resolve_user(ALEX)
    return backend.recycle(user, ORG, SeedItem(name, size=size), backend.clock.now()).id


async def plan(client: Client, **arguments: Any) -> dict[str, Any]:
    return ok(await client.call_tool(PREVIEW, arguments))
