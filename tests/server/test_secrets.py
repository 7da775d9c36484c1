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
