"""No API secret appears in any tool result, log line or audit line, on success or failure."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr

from purgewarden.config import Settings
from purgewarden.sandbox import Fault, Sandbox
from purgewarden.sandbox.katapult.models import TrashObject
from tests.conftest import answering
from tests.server import katapult_support
from tests.server.cocoon_support import recycle_new_item

Connect = Callable[..., AbstractAsyncContextManager[Client]]

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("katapult_list_organizations", {}),
    ("katapult_list_trash_objects", {"organization": "acme"}),
    ("katapult_get_bucket", {"region": "uk-lon-1", "name": "acme-assets"}),
    ("katapult_preview_purge_all_trash_objects", {"organization": "initech"}),
    ("katapult_preview_revoke_presigned_urls", {"buckets": [{"region": "uk-lon-1", "name": "acme-assets"}]}),
    ("vault_list_collections", {}),
    ("vault_count_objects", {"collection": "customers"}),
    ("vault_list_objects", {"collection": "customers"}),
    ("vault_preview_delete_objects", {"collection": "nope"}),
    ("vault_preview_prune_archived", {}),
    ("cocoon_list_recycle_bin", {}),
    ("cocoon_preview_empty_recycle_bin", {}),
    ("cocoon_empty_recycle_bin", {"confirm": "guess"}),
]


async def collect(client: Client) -> list[str]:
    seen = []
    for tool, args in CALLS:
        result = await client.call_tool(tool, args)
        seen += [getattr(c, "text", "") for c in result.content]
        seen.append(json.dumps(result.structured_content))
    return seen


@pytest.mark.parametrize("credentials", ["valid", "rejected"])
async def test_secrets_never_leave_the_server(
    sandbox: Sandbox, settings: Settings, connect: Connect, caplog: pytest.LogCaptureFixture, credentials: str
) -> None:
    overrides: dict[str, Any] = {"secret": SecretStr("signing-key-that-must-stay-private")}
    if credentials == "rejected":
        # Wrong secrets are secrets too: the APIs refuse them, and the refusals must not repeat them.
        overrides |= {
            "katapult_api_token": SecretStr("kp-wrong-token-0123456789"),
            "pvault_api_key": SecretStr("pvault-wrong-key-0123456789"),
            "cocoon_access_token": SecretStr("cocoon-wrong-token-0123456789"),
        }
    sandbox.inject("vault", Fault(status=503, times=2))
    caplog.set_level(logging.DEBUG)
    async with connect(**overrides) as client:
        outputs = await collect(client)
    secrets = settings.model_copy(update=overrides).secrets()
    assert len(secrets) == 4
    audit = settings.audit_log.read_text()
    assert audit.count("\n") >= 1  # at least the refusal; failed previews issue no plan
    logs = caplog.text
    assert logs
    for secret in secrets:
        assert not any(secret in text for text in outputs), secret
        assert secret not in audit
        assert secret not in logs


async def test_a_secret_the_apis_echo_back_is_scrubbed_everywhere(
    sandbox: Sandbox, settings: Settings, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    # Names, types and error messages are API text: an API (or whoever named a file) may repeat a
    # credential in them. Every path to the agent, the user, the log and the audit log is scrubbed once,
    # by the kernel, whatever the tool: reads, previews, the question, outcomes and errors.
    katapult_token = settings.katapult_api_token.get_secret_value()  # type: ignore[union-attr]
    vault_key = settings.pvault_api_key.get_secret_value()  # type: ignore[union-attr]
    cocoon_token = settings.cocoon_access_token.get_secret_value()  # type: ignore[union-attr]
    recycle_new_item(sandbox, f"notes {cocoon_token} {katapult_token}.txt", 10)
    organizations = sandbox.katapult.list_organizations(katapult_support.admin(sandbox))
    organization = next(o for o in organizations if o.sub_domain == "acme")
    sandbox.katapult.add_trash_object(
        TrashObject("trsh_echo", organization.id, f"vm_{vault_key}", f"Type{katapult_token}", 2_000_000_000)
    )
    sandbox.vault.build_large(f"echo_{vault_key}", n=1, archived=1)  # its name is in the prune question
    echo = {"error_code": "PV1012", "message": f"bad request from {vault_key}", "context": {"key": vault_key}}
    human = answering("accept")
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await client.call_tool(tool, arguments)
        seen.extend(getattr(c, "text", "") for c in result.content)
        seen.append(json.dumps(result.structured_content))
        return result.structured_content or {}

    async with connect(elicitation=human) as client:
        await call(client, "cocoon_list_recycle_bin", {})
        bin_plan = await call(client, "cocoon_preview_empty_recycle_bin", {})
        await call(client, "cocoon_empty_recycle_bin", {"confirm": bin_plan["confirmation_token"]})
        await call(client, "katapult_list_trash_objects", {"organization": "acme"})
        trash_plan = await call(client, "katapult_preview_purge_all_trash_objects", {"organization": "acme"})
        await call(
            client,
            "katapult_purge_all_trash_objects",
            {"organization": "acme", "confirm": trash_plan["confirmation_token"], "wait": False},
        )
        sandbox.inject("vault", Fault(status=400, body=echo, times=1))
        await call(client, "vault_count_objects", {"collection": "customers"})
        vault_plan = await call(client, "vault_preview_prune_archived", {})
        sandbox.inject("vault", Fault(method="POST", path="lifecycle/gc", status=400, body=echo, times=2))
        await call(client, "vault_prune_archived", {"confirm": vault_plan["confirmation_token"]})
    asked = human.asked  # type: ignore[attr-defined]
    assert len(asked) == 3
    audit = settings.audit_log.read_text()
    for secret in (katapult_token, vault_key, cocoon_token):
        assert not [text for text in seen if secret in text], secret
        assert not [question for question in asked if secret in question], secret
        assert secret not in audit
        assert secret not in caplog.text
    assert "[REDACTED]" in " ".join(seen)
    assert "[REDACTED]" in " ".join(asked)
