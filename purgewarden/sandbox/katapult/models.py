"""The Katapult emulator's plain data: organizations, tokens, trash, tasks, object storage, and its one error.

Kept apart from `state.py` so that `seed.py` can build these objects and the backend can load them
without the two importing each other.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

OAUTH_SCOPE_PREFIX = "api.katapult.io/core/v1/"
TRASH_RETENTION_SECONDS = 48 * 3600
"""Real traffic shows `keep_until` = the time an object was trashed + 48 hours."""

Lookup = tuple[str, str]
"""One resolved lookup argument: the key that was given (e.g. `sub_domain`) and its value."""

TaskStatus = Literal["pending", "running", "completed", "failed"]
ProvisioningState = Literal["provisioning", "provisioned", "failed"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def new_id(rng: random.Random, prefix: str) -> str:
    """An id shaped like Katapult's (`trsh_` + 16 characters), deterministic for a seeded generator."""
    return f"{prefix}_{rng.getrandbits(64):016x}"


class KatapultError(Exception):
    """A refusal with its wire code (e.g. `organization_not_found`); the app picks the status and body."""

    def __init__(
        self, code: str, detail: dict[str, Any] | None = None, description: str | None = None
    ) -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail or {}
        self.description = description


@dataclass(frozen=True)
class ApiToken:
    """An API token (or OAuth2 access token): what it may do, for which organizations, from where."""

    secret: str
    scopes: frozenset[str]
    organization_ids: frozenset[str] | None = None
    """Organizations the token may act on; None means every organization."""
    object_storage_organization_id: str | None = None
    """The organization whose object storage the bucket endpoints act on (buckets take no organization)."""
    allowed_networks: tuple[IPNetwork, ...] | None = None
    """Networks the token may be used from; None means anywhere."""

    @classmethod
    def create(
        cls,
        secret: str,
        scopes: tuple[str, ...],
        *,
        organization_ids: frozenset[str] | None = None,
        object_storage_organization_id: str | None = None,
        allowed_networks: tuple[str, ...] | None = None,
    ) -> ApiToken:
        """Accept scopes in either form (bare `trash_objects:purge` or OAuth2-prefixed) and store them bare."""
        return cls(
            secret=secret,
            scopes=frozenset(s.removeprefix(OAUTH_SCOPE_PREFIX) for s in scopes),
            organization_ids=organization_ids,
            object_storage_organization_id=object_storage_organization_id,
            allowed_networks=(
                None if allowed_networks is None else tuple(ipaddress.ip_network(n) for n in allowed_networks)
            ),
        )

    def grants_any(self, scopes: tuple[str, ...]) -> bool:
        return any(scope in self.scopes for scope in scopes)

    def can_access(self, organization_id: str) -> bool:
        return self.organization_ids is None or organization_id in self.organization_ids

    def allows_address(self, address: str) -> bool:
        if self.allowed_networks is None:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.allowed_networks)


@dataclass(frozen=True)
class TrashObject:
    id: str
    organization_id: str
    object_id: str
    object_type: str
    keep_until: int


@dataclass
class Organization:
    id: str
    name: str
    sub_domain: str
    infrastructure_domain: str
    created_at: int
    activated_at: int | None
    suspended: bool = False
    managed: bool = False
    trash: dict[str, TrashObject] = field(default_factory=dict)
    """Trash objects by id, in the order they were trashed (oldest first)."""
    _ordered_trash: list[TrashObject] | None = field(default=None, init=False, repr=False, compare=False)

    def trash_in_order(self) -> list[TrashObject]:
        """The trash as a list, cached between changes so a page is a slice, not a scan."""
        if self._ordered_trash is None:
            self._ordered_trash = list(self.trash.values())
        return self._ordered_trash

    def add_trash(self, trash_objects: Iterable[TrashObject]) -> None:
        self.trash.update((t.id, t) for t in trash_objects)
        self._ordered_trash = None

    def remove_trash(self, trash_object_id: str) -> None:
        del self.trash[trash_object_id]
        self._ordered_trash = None


@dataclass
class Task:
    """A purge running in the background; its status is a function of the clock, worked out on read."""

    id: str
    organization_id: str
    name: str
    created_at: float
    trash_object_ids: frozenset[str]
    """What it purges: the organization's trash at the moment the task was created."""
    purges_all: bool
    fails: bool = False


@dataclass(frozen=True)
class TaskSnapshot:
    """A task as it stands at one moment."""

    id: str
    name: str
    status: TaskStatus
    created_at: int
    started_at: int | None
    finished_at: int | None
    progress: int


@dataclass(frozen=True)
class AccessControlList:
    public_read: bool = False
    public_list: bool = False
    all_keys_read: bool = False
    all_keys_write: bool = False
    read_key_ids: tuple[str, ...] = ()
    write_key_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Bucket:
    name: str
    label: str | None
    created_at: int
    state: Literal["pending", "configured"]
    public_url: str
    custom_domain: str | None = None
    object_count: int | None = None
    size: int | None = None
    serve_static_site: bool = False
    static_site_index: str | None = None
    static_site_error: str | None = None
    access_control_list: AccessControlList = AccessControlList()


@dataclass
class ObjectStorageAccount:
    """An organization's object storage in one cluster; its id is what a trash object points at."""

    id: str
    organization_id: str
    region: str
    provisioning_state: ProvisioningState = "provisioned"
    suspended: bool = False
    buckets: dict[str, Bucket] = field(default_factory=dict)


@dataclass
class World:
    """Everything the emulated Katapult knows; `seed.py` builds one and the backend indexes it."""

    organizations: list[Organization]
    tokens: list[ApiToken]
    clusters: frozenset[str]
    accounts: list[ObjectStorageAccount]
