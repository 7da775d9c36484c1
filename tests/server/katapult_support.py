"""Helpers shared by the Katapult tool tests: names, a fingerprint of the emulator's world, results."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from mcp import Client

from purgewarden.sandbox import Sandbox, katapult
from purgewarden.sandbox.katapult.models import ApiToken, Bucket, ObjectStorageAccount, TrashObject
from purgewarden.sandbox.katapult.seed import ACME_ID
from tests.server.support import audit_lines as audit_lines
from tests.server.support import error as error
from tests.server.support import flip as flip
from tests.server.support import ok as ok
from tests.server.support import text as text

Connect = Callable[..., AbstractAsyncContextManager[Client]]

LIST_ORGANIZATIONS = "katapult_list_organizations"
LIST_TRASH = "katapult_list_trash_objects"
GET_TASK = "katapult_get_task"
GET_BUCKET = "katapult_get_bucket"
PREVIEW_PURGE = "katapult_preview_purge_all_trash_objects"
PURGE = "katapult_purge_all_trash_objects"
PREVIEW_REVOKE = "katapult_preview_revoke_presigned_urls"
REVOKE = "katapult_revoke_presigned_urls"
READ_TOOLS = {LIST_ORGANIZATIONS, LIST_TRASH, GET_TASK, GET_BUCKET, PREVIEW_PURGE, PREVIEW_REVOKE}
ALL_TOOLS = READ_TOOLS | {PURGE, REVOKE}

REGION = "uk-lon-1"
ASSETS = {"region": REGION, "name": "acme-assets"}
BACKUPS = {"region": REGION, "name": "acme-backups"}
WEBSITE = {"region": REGION, "name": "acme-website"}
ACME_BUCKETS = ("acme-assets", "acme-backups", "acme-website")
ACME_TRASH_TYPES = {
    "VirtualMachine": 4,
    "Disk": 3,
    "FileStorageVolume": 2,
    "LoadBalancer": 1,
    "IPAddress": 1,
    "SecurityGroup": 1,
}
TOKEN_IN_MESSAGE = re.compile(r'confirm="(pwc_[^"]+)"')


def admin(sandbox: Sandbox) -> ApiToken:
    return sandbox.katapult.authenticate(katapult.DEMO_TOKEN, "127.0.0.1")


def trash_of(sandbox: Sandbox, organization: str = "acme") -> list[TrashObject]:
    """The organization's trash as it stands, after the emulator carried out every purge whose time is up."""
    return sandbox.katapult.list_trash_objects(admin(sandbox), ("sub_domain", organization), 1, 200_000).items


def trash_ids(sandbox: Sandbox, organization: str = "acme") -> set[str]:
    return {t.id for t in trash_of(sandbox, organization)}


def world(sandbox: Sandbox) -> dict[str, Any]:
    """Everything a purge or a revoke could change, once any purge queued by mistake would have finished."""
    sandbox.clock.advance(60)
    backend = sandbox.katapult
    trash_ids(sandbox)  # settles finished tasks
    return {
        "trash": {o.sub_domain: sorted(o.trash) for o in backend.list_organizations(admin(sandbox))},
        "revocations": {name: backend.revocations(REGION, name) for name in ACME_BUCKETS},
    }


def acme_account(sandbox: Sandbox) -> ObjectStorageAccount:
    # The emulator has no operation that changes a bucket, so the tests reach into its state.
    return sandbox.katapult._accounts[(ACME_ID, REGION)]


def change_bucket(sandbox: Sandbox, name: str, **changes: Any) -> Bucket:
    account = acme_account(sandbox)
    account.buckets[name] = dataclasses.replace(account.buckets[name], **changes)
    return account.buckets[name]


def delete_bucket(sandbox: Sandbox, name: str) -> None:
    del acme_account(sandbox).buckets[name]
