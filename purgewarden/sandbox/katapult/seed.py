"""Deterministic demo data for the Katapult emulator, and a fast builder for a trash of any size.

Demo credentials (API tokens, sent as `Authorization: Bearer <token>`):

- `kp-demo-admin` (`DEMO_TOKEN`): every scope, every organization; its object storage is acme's.
- `kp-demo-readonly` (`READ_ONLY_TOKEN`): only the `:read` scopes; every organization; acme's object storage.
- `kp-demo-no-purge` (`NO_PURGE_TOKEN`): every scope but `trash_objects:purge`.
- `kp-demo-office-only` (`OFFICE_ONLY_TOKEN`): every scope, but only from 10.0.0.0/8, so loopback is refused.
- `kp-demo-globex` (`GLOBEX_TOKEN`): every scope, globex only; its object storage is globex's (in the trash).
- `kp-demo-initech` (`INITECH_TOKEN`), `kp-demo-umbrella` (`UMBRELLA_TOKEN`): every scope, that organization
  only, with its object storage account suspended / still provisioning.
- `kp-demo-oauth` (`OAUTH_TOKEN`): an OAuth2 access token holding the `api.katapult.io/core/v1/`-prefixed scopes;
  it belongs to a user, not an organization, so it has no object storage.

Organizations: `acme` (active, 12 trash objects of six types), `globex` (active, 3 trash objects, one of them
its uk-lon-1 object storage account), `initech` (suspended, 2), `umbrella` (not activated yet, none).
Object storage clusters: `uk-lon-1` and `nl-ams-1` (no demo organization has an account there). Buckets in
uk-lon-1: `acme-assets` (configured, 1,284 objects), `acme-backups`, `acme-website` (pending, static site),
`globex-media`, `initech-reports`.
"""

from __future__ import annotations

import random

from purgewarden.sandbox.katapult.models import (
    TRASH_RETENTION_SECONDS,
    AccessControlList,
    ApiToken,
    Bucket,
    ObjectStorageAccount,
    Organization,
    TrashObject,
    World,
    new_id,
)

DEMO_TOKEN = "kp-demo-admin"
READ_ONLY_TOKEN = "kp-demo-readonly"
NO_PURGE_TOKEN = "kp-demo-no-purge"
OFFICE_ONLY_TOKEN = "kp-demo-office-only"
GLOBEX_TOKEN = "kp-demo-globex"
INITECH_TOKEN = "kp-demo-initech"
UMBRELLA_TOKEN = "kp-demo-umbrella"
OAUTH_TOKEN = "kp-demo-oauth"

ALL_SCOPES = (
    "organizations:read",
    "trash_objects:read",
    "trash_objects:purge",
    "trash_objects:restore",
    "tasks:read",
    "object_storage",
    "object_storage:read",
)
READ_SCOPES = tuple(s for s in ALL_SCOPES if s.endswith(":read"))

ACME_ID = "org_acme5f0c1d2e3a4b"
GLOBEX_ID = "org_globex9a8b7c6d5e"
INITECH_ID = "org_initech1a2b3c4d"
UMBRELLA_ID = "org_umbrella6f7e8d9"

_TRASHABLE_TYPES = (
    ("VirtualMachine", "vm"),
    ("Disk", "disk"),
    ("FileStorageVolume", "fsv"),
    ("LoadBalancer", "lb"),
    ("IPAddress", "ip"),
    ("SecurityGroup", "sg"),
)
VM, DISK, VOLUME, LOAD_BALANCER, IP_ADDRESS, SECURITY_GROUP = _TRASHABLE_TYPES


def demo_world(now: float) -> World:
    """The demo organizations, tokens and object storage; trash times are relative to `now`."""
    rng = random.Random(1)
    organizations = [
        Organization(ACME_ID, "Acme Corporation", "acme", "acme.kpult.net", 1_672_531_200, 1_672_534_800),
        Organization(GLOBEX_ID, "Globex", "globex", "globex.kpult.net", 1_675_209_600, 1_675_213_200),
        Organization(
            INITECH_ID,
            "Initech",
            "initech",
            "initech.kpult.net",
            1_677_628_800,
            1_677_632_400,
            suspended=True,
        ),
        Organization(UMBRELLA_ID, "Umbrella", "umbrella", "umbrella.kpult.net", 1_680_307_200, None),
    ]
    accounts = [
        ObjectStorageAccount(new_id(rng, "osa"), ACME_ID, "uk-lon-1", buckets=_acme_buckets()),
        ObjectStorageAccount(
            new_id(rng, "osa"), GLOBEX_ID, "uk-lon-1", buckets=_buckets(("globex-media", 1_675_300_000))
        ),
        ObjectStorageAccount(
            new_id(rng, "osa"),
            INITECH_ID,
            "uk-lon-1",
            suspended=True,
            buckets=_buckets(("initech-reports", 1_677_700_000)),
        ),
        ObjectStorageAccount(new_id(rng, "osa"), UMBRELLA_ID, "uk-lon-1", provisioning_state="provisioning"),
    ]
    acme, globex, initech, _ = organizations
    acme_kinds = [VM, DISK, VM, VOLUME, DISK, LOAD_BALANCER, VM, IP_ADDRESS, DISK, SECURITY_GROUP, VOLUME, VM]
    _fill_trash(acme, acme_kinds, now, rng)
    globex.add_trash([_trashed(globex, "ObjectStorageAccount", accounts[1].id, now - 30 * 3600, rng)])
    _fill_trash(globex, [VM, DISK], now, rng)
    _fill_trash(initech, [VM, VOLUME], now, rng)
    tokens = [
        ApiToken.create(DEMO_TOKEN, ALL_SCOPES, object_storage_organization_id=ACME_ID),
        ApiToken.create(READ_ONLY_TOKEN, READ_SCOPES, object_storage_organization_id=ACME_ID),
        ApiToken.create(
            NO_PURGE_TOKEN,
            tuple(s for s in ALL_SCOPES if s != "trash_objects:purge"),
            object_storage_organization_id=ACME_ID,
        ),
        ApiToken.create(
            OFFICE_ONLY_TOKEN,
            ALL_SCOPES,
            object_storage_organization_id=ACME_ID,
            allowed_networks=("10.0.0.0/8",),
        ),
        _organization_token(GLOBEX_TOKEN, GLOBEX_ID),
        _organization_token(INITECH_TOKEN, INITECH_ID),
        _organization_token(UMBRELLA_TOKEN, UMBRELLA_ID),
        ApiToken.create(OAUTH_TOKEN, tuple(f"api.katapult.io/core/v1/{s}" for s in ALL_SCOPES)),
    ]
    return World(organizations, tokens, frozenset({"uk-lon-1", "nl-ams-1"}), accounts)


def large_trash(organization_id: str, n: int, now: float, rng: random.Random) -> list[TrashObject]:
    """`n` trash objects of mixed types, trashed just before `now` one millisecond apart, oldest first."""
    keep_base = now + TRASH_RETENTION_SECONDS - n * 0.001
    types = _TRASHABLE_TYPES
    return [
        TrashObject(
            new_id(rng, "trsh"),
            organization_id,
            new_id(rng, types[i % 6][1]),
            types[i % 6][0],
            int(keep_base + i * 0.001),
        )
        for i in range(n)
    ]


def _organization_token(secret: str, organization_id: str) -> ApiToken:
    return ApiToken.create(
        secret,
        ALL_SCOPES,
        organization_ids=frozenset({organization_id}),
        object_storage_organization_id=organization_id,
    )


def _fill_trash(
    organization: Organization, kinds: list[tuple[str, str]], now: float, rng: random.Random
) -> None:
    """Trash one object per kind, three hours apart, the last one an hour ago."""
    organization.add_trash(
        _trashed(
            organization, object_type, new_id(rng, prefix), now - 3600 - (len(kinds) - 1 - i) * 3 * 3600, rng
        )
        for i, (object_type, prefix) in enumerate(kinds)
    )


def _trashed(
    organization: Organization, object_type: str, object_id: str, trashed_at: float, rng: random.Random
) -> TrashObject:
    return TrashObject(
        new_id(rng, "trsh"),
        organization.id,
        object_id,
        object_type,
        int(trashed_at + TRASH_RETENTION_SECONDS),
    )


def _acme_buckets() -> dict[str, Bucket]:
    return {
        "acme-assets": Bucket(
            "acme-assets",
            "Acme assets",
            1_672_600_000,
            "configured",
            "https://acme-assets.uk-lon-1.katapult-objects.io",
            custom_domain="assets.acme.example",
            object_count=1284,
            size=734_003_200,
            access_control_list=AccessControlList(public_read=True, read_key_ids=("osak_acmecdn0001",)),
        ),
        "acme-backups": Bucket(
            "acme-backups",
            None,
            1_672_700_000,
            "configured",
            "https://acme-backups.uk-lon-1.katapult-objects.io",
            object_count=57,
            size=96_636_764_160,
            access_control_list=AccessControlList(write_key_ids=("osak_acmebackup01",)),
        ),
        "acme-website": Bucket(
            "acme-website",
            "Acme marketing site",
            1_690_000_000,
            "pending",
            "https://acme-website.uk-lon-1.katapult-objects.io",
            serve_static_site=True,
            static_site_index="index.html",
            static_site_error="404.html",
            access_control_list=AccessControlList(public_read=True, public_list=True),
        ),
    }


def _buckets(*names: tuple[str, int]) -> dict[str, Bucket]:
    return {
        name: Bucket(
            name,
            None,
            created_at,
            "configured",
            f"https://{name}.uk-lon-1.katapult-objects.io",
            object_count=12,
            size=52_428_800,
        )
        for name, created_at in names
    }
