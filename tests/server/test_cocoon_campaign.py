"""Fault campaign on cocoon_empty_recycle_bin: whatever goes wrong, the accounting agrees with the bin.

For each fault the outcome's `accounting` (carried out / not carried out / unknown) is checked against
the emulator's real state once any late execution has landed — unknown is allowed, wrong never — and
the audit log ends with an outcome line carrying the same accounting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest
from mcp import Client

from purgewarden.config import Settings
from purgewarden.sandbox import Fault, Sandbox
from tests.server.cocoon_support import ALEX_BIN, EMPTY, audit_lines, bin_ids, ok, plan, recycle_new_item

Connect = Callable[..., AbstractAsyncContextManager[Client]]

TIMEOUT = 0.3
CAMPAIGN = {
    "late": Fault(method="DELETE", latency=1.0),  # carried out after the client gave up
    "malformed": Fault(method="DELETE", status=200, body={"unexpected": ["shape"]}),  # never reached the bin
    "dropped_after": Fault(method="DELETE", drop="after"),  # carried out, the answer lost
    "grown_after_recheck": Fault(method="DELETE", latency=0.6),  # an item recycled while it is in flight
}


def assert_agrees(accounting: Mapping[str, int], present: set[str]) -> None:
    """Carried out means gone, not carried out means there; unknown may be either."""
    gone = ALEX_BIN - present
    assert sum(accounting.values()) == len(ALEX_BIN)
    assert accounting["carried_out"] <= len(gone)
    assert accounting["not_carried_out"] <= len(ALEX_BIN & present)
    assert accounting["carried_out"] + accounting["unknown"] >= len(gone)


async def settled(sandbox: Sandbox, seconds: float = 5.0) -> set[str]:
    """The bin once no fault is pending and a late request had its time to land."""
    await anyio.sleep(1.2)
    for _ in range(int(seconds / 0.05)):
        if not sandbox.faults["cocoon"].active():
            break
        await anyio.sleep(0.05)
    return bin_ids(sandbox)


@pytest.mark.parametrize("case", list(CAMPAIGN))
async def test_the_accounting_agrees_with_the_bin_whatever_goes_wrong(
    connect: Connect, sandbox: Sandbox, settings: Settings, case: str
) -> None:
    async with connect(http_timeout=TIMEOUT if case == "late" else 30.0, watch_interval=0.05) as client:
        token = (await plan(client))["confirmation_token"]
        sandbox.inject("cocoon", CAMPAIGN[case])
        arrived: list[str] = []

        async def recycle_while_in_flight() -> None:
            await anyio.sleep(0.3)
            arrived.append(recycle_new_item(sandbox, "recycled-mid-flight.txt", 4096))

        async with anyio.create_task_group() as group:
            if case == "grown_after_recheck":
                group.start_soon(recycle_while_in_flight)
            outcome = ok(await client.call_tool(EMPTY, {"confirm": token}))
    present = await settled(sandbox)
    accounting = outcome["accounting"]
    assert_agrees(accounting, present)
    last: dict[str, Any] = audit_lines(settings.audit_log)[-1]
    assert last["event"] == "outcome"
    assert last["accounting"] == accounting
    if case == "malformed":
        # The fault answered for the bin, which never saw the call: nothing may be counted as deleted.
        assert present == ALEX_BIN
        assert accounting == {"carried_out": 0, "not_carried_out": 0, "unknown": len(ALEX_BIN)}
    elif case == "late":
        assert present == set()
        assert accounting["not_carried_out"] == 0
    else:
        assert accounting == {"carried_out": len(ALEX_BIN), "not_carried_out": 0, "unknown": 0}
    if case == "grown_after_recheck":
        # Destroyed by the same call though never in the plan: reported, not counted as approved.
        assert arrived
        assert arrived[0] not in present
        assert last["beyond_plan"]
        assert any("not in the plan" in note for note in outcome["notes"])
