"""Nothing is ever deleted without a valid token: every destructive tool × every kind of bad `confirm`.

The whole sandbox (all three services) is read over HTTP before and after each refused call and must
be identical: a refusal changes nothing anywhere, not only in the targeted service.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from pydantic import SecretStr

from purgewarden.sandbox import Sandbox, cocoon, katapult, vault

Connect = Callable[..., AbstractAsyncContextManager[Client]]
BUCKETS = ("acme-assets", "acme-backups", "acme-website")


@dataclass(frozen=True)
class Case:
    preview: str
    args: dict[str, Any]
    other_args: dict[str, Any]
    call_extra: dict[str, Any] = field(default_factory=dict)
    other_credential: dict[str, SecretStr] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "katapult_purge_all_trash_objects": Case(
        "katapult_preview_purge_all_trash_objects",
        {"organization": "acme"},
        {"organization": "globex"},
        {"wait": False},
        {"katapult_api_token": SecretStr(katapult.NO_PURGE_TOKEN)},
    ),
    "katapult_revoke_presigned_urls": Case(
        "katapult_preview_revoke_presigned_urls",
        {"buckets": [{"region": "uk-lon-1", "name": "acme-assets"}]},
        {"buckets": [{"region": "uk-lon-1", "name": "acme-backups"}]},
        other_credential={"katapult_api_token": SecretStr(katapult.NO_PURGE_TOKEN)},
    ),
    "vault_delete_objects": Case(
        "vault_preview_delete_objects",
        {"collection": "customers", "state": "archived"},
        {"collection": "orders", "state": "archived"},
        other_credential={"pvault_api_key": SecretStr(vault.DELETER_API_KEY)},
    ),
    "vault_prune_archived": Case(
        "vault_preview_prune_archived",
        {"filter": "all"},
        {"filter": "objects_only"},
        other_credential={"pvault_api_key": SecretStr(vault.DELETER_API_KEY)},
    ),
    "cocoon_empty_recycle_bin": Case(
        "cocoon_preview_empty_recycle_bin",
        {},
        {"organisation_id": cocoon.OTHER_ORGANISATION_ID},
        other_credential={"cocoon_access_token": SecretStr(cocoon.SECOND_ORIGINATOR_ACCESS_TOKEN)},
    ),
}
BAD_CONFIRMS = [
    "missing",
    "empty",
    "garbage",
    "tampered",
    "other_tool",
    "other_arguments",
    "other_credential",
    "expired",
    "reused",
]


async def world(sandbox: Sandbox) -> dict[str, Any]:
    """Everything a destructive tool could change, read through the emulators' own APIs."""
    ep = sandbox.endpoints
    state: dict[str, Any] = {}
    auth = {"Authorization": f"Bearer {ep['katapult'].credential}"}
    async with httpx2.AsyncClient(base_url=ep["katapult"].url + "/core/v1", headers=auth) as kp:
        for org in ("acme", "globex", "initech"):
            r = await kp.get(
                "/organizations/_/trash_objects", params={"organization[sub_domain]": org, "per_page": 200}
            )
            state[f"katapult/{org}"] = sorted(t["id"] for t in r.json().get("trash_objects", []))
    for name in BUCKETS:
        state[f"katapult/revoked/{name}"] = sandbox.katapult.revocations("uk-lon-1", name)
    auth = {"Authorization": f"Bearer {ep['vault'].credential}"}
    async with httpx2.AsyncClient(base_url=ep["vault"].url + "/api/pvlt/1.0", headers=auth) as pv:
        for collection in ("customers", "orders", "leads"):
            r = await pv.get(
                f"/data/collections/{collection}/count/objects", params={"reason": "Maintenance"}
            )
            state[f"vault/{collection}"] = r.json()
        r = await pv.post("/system/admin/lifecycle/gc", params={"dry_run": "true", "reason": "Maintenance"})
        state["vault/gc"] = r.json()
    for token in (cocoon.DEMO_ACCESS_TOKEN, cocoon.SECOND_ORIGINATOR_ACCESS_TOKEN):
        async with httpx2.AsyncClient(
            base_url=ep["cocoon"].url, headers={"Authorization": f"Bearer {token}"}
        ) as cc:
            r = await cc.get(
                f"/api/v1/organisations/{cocoon.DEMO_ORGANISATION_ID}/recycle-bin/items", params={"limit": 0}
            )
            state[f"cocoon/{token}"] = sorted(i["id"] for i in r.json()["items"])
    return state


def tamper(token: str) -> str:
    head, _, signature = token.rpartition(".")
    flipped = "A" if signature[-2] != "A" else "B"
    return f"{head}.{signature[:-2]}{flipped}{signature[-1]}"


async def plan_token(client: Client, tool: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return str(result.structured_content["confirmation_token"])


@pytest.fixture
def shared_secret_connect(connect: Connect) -> Connect:
    """Sessions whose servers share one signing key, like replicas; only the credential can differ."""
    return lambda **overrides: connect(secret=SecretStr("one secret for every replica"), **overrides)


@pytest.mark.parametrize("kind", BAD_CONFIRMS)
@pytest.mark.parametrize("tool", sorted(CASES))
async def test_a_bad_confirmation_changes_nothing_anywhere(
    sandbox: Sandbox, shared_secret_connect: Connect, tool: str, kind: str
) -> None:
    case = CASES[tool]
    other_tool = next(t for t in sorted(CASES) if t != tool)
    async with shared_secret_connect(confirmation_ttl=0.5 if kind == "expired" else 300) as client:
        if kind == "reused":
            token = await plan_token(client, case.preview, case.args)
            # Without call_extra: a purge is followed to its end, so nothing is still changing afterwards.
            first = await client.call_tool(tool, {**case.args, "confirm": token})
            assert not first.is_error, first.content
        before = await world(sandbox)
        arguments: dict[str, Any] = {**case.args, **case.call_extra}
        if kind == "missing":
            pass
        elif kind == "empty":
            arguments["confirm"] = ""
        elif kind == "garbage":
            arguments["confirm"] = "yes, the user approved"
        elif kind == "tampered":
            arguments["confirm"] = tamper(await plan_token(client, case.preview, case.args))
        elif kind == "other_tool":
            arguments["confirm"] = await plan_token(client, CASES[other_tool].preview, CASES[other_tool].args)
        elif kind == "other_arguments":
            arguments = {
                **case.other_args,
                **case.call_extra,
                "confirm": await plan_token(client, case.preview, case.args),
            }
        elif kind == "expired":
            arguments["confirm"] = await plan_token(client, case.preview, case.args)
            await anyio.sleep(0.6)
        elif kind == "reused":
            arguments["confirm"] = token
        if kind == "other_credential":
            arguments["confirm"] = await plan_token(client, case.preview, case.args)
            async with shared_secret_connect(**case.other_credential) as other:
                result = await other.call_tool(tool, arguments)
        else:
            result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} accepted a {kind} confirmation"
    text = result.content[0].text  # type: ignore[union-attr]
    assert ("Refused" in text) or (kind == "missing" and "confirm" in text), text
    assert await world(sandbox) == before
