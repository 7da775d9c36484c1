"""Cocoon Data access-service state: organisations, users, items and each user's recycle bins.

No HTTP here. Every API operation is one backend method named like it; refusals are raised as
`CocoonError` carrying a wire code, and `app.py` alone turns them into statuses and bodies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from purgewarden.sandbox.clock import Clock
from purgewarden.sandbox.cocoon import seed

PURGE_PERIOD_DAYS = 30
SECONDS_PER_DAY = 86_400
ORIGINATOR = "Originator"

ErrorCode = Literal["unauthorized", "forbidden", "not_found", "bad_request"]
SortField = Literal["name", "size", "time"]


class CocoonError(Exception):
    """A refusal the API reports: a wire code (the serializer picks the status) and a message."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


class ItemType(StrEnum):
    OBJECT = "object"
    COLLECTION = "collection"


class ItemState(StrEnum):
    ACTIVE = "Active"
    RECYCLED = "Recycled"
    DELETED = "Deleted"


@dataclass(eq=False, slots=True)
class Item:
    """A file object or a folder. A folder's `size` is the sum of everything inside it."""

    id: str
    name: str
    type: ItemType
    organisation_id: str
    owner_id: str
    parent_id: str
    size: int
    shared: bool = False
    state: ItemState = ItemState.ACTIVE
    recycled_ms: int = 0
    requestor_email: str = ""
    children: list[Item] = field(default_factory=list)

    def walk(self) -> Iterator[Item]:
        """This item and everything inside it."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(slots=True)
class User:
    id: str
    email: str
    roles: dict[str, str]
    """Organisation id → role in it."""


@dataclass(slots=True)
class Organisation:
    id: str
    name: str


SORT_KEYS: dict[SortField, Callable[[Item], Any]] = {
    "name": lambda item: (item.name.casefold(), item.name, int(item.id)),
    "size": lambda item: (item.size, int(item.id)),
    "time": lambda item: (item.recycled_ms, int(item.id)),
}


class RecycleBin:
    """One user's bin in one organisation: its top-level items, with each sort order cached until a change."""

    def __init__(self) -> None:
        self.entries: dict[str, Item] = {}
        self._ascending: dict[SortField, list[Item]] = {}

    def add(self, item: Item) -> None:
        self.entries[item.id] = item
        self._ascending.clear()

    def remove(self, item: Item) -> None:
        del self.entries[item.id]
        self._ascending.clear()

    def ascending(self, sort_by: SortField) -> list[Item]:
        ordered = self._ascending.get(sort_by)
        if ordered is None:
            ordered = self._ascending[sort_by] = sorted(self.entries.values(), key=SORT_KEYS[sort_by])
        return ordered

    def page(self, sort_by: SortField, descending: bool, offset: int, limit: int) -> list[Item]:
        """Slice the cached order; `limit` 0 means everything from `offset` on."""
        ordered = self.ascending(sort_by)
        if not descending:
            return ordered[offset : offset + limit] if limit else ordered[offset:]
        end = len(ordered) - offset
        if end <= 0:
            return []
        start = max(end - limit, 0) if limit else 0
        return ordered[start:end][::-1]


def days_to_purge(item: Item, now: float) -> int:
    """Whole days left before the purge (29 right after recycling, 0 on the last day)."""
    remaining = item.recycled_ms / 1000 + PURGE_PERIOD_DAYS * SECONDS_PER_DAY - now
    return max(int(remaining // SECONDS_PER_DAY), 0)


def iso_millis(epoch_ms: int) -> str:
    """ISO 8601 in UTC with milliseconds and `Z`, as the API writes `recycledTime`."""
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class CocoonBackend:
    """The access service's recycle-bin world, reset to the demo data of `seed.py`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.organisations: dict[str, Organisation] = {}
            self.users: dict[str, User] = {}
            self.tokens: dict[str, str] = {}
            # Every item that still exists: active, recycled or (files only) Deleted.
            self.items: dict[str, Item] = {}
            self.bins: dict[tuple[str, str], RecycleBin] = {}
            self._next_id = seed.FIRST_GENERATED_ID
            now = self.clock.now()
            for organisation_id, name in seed.ORGANISATIONS.items():
                self.organisations[organisation_id] = Organisation(organisation_id, name)
            for demo_user in seed.USERS:
                user = self.users[demo_user.id] = User(demo_user.id, demo_user.email, dict(demo_user.roles))
                self.tokens[demo_user.token] = user.id
                for organisation_id, entries in demo_user.recycle_bins.items():
                    for entry in entries:
                        self.recycle(user, organisation_id, entry, now - entry.recycled_ago)

    # -- building the world (seed data and tests) --------------------------------------------------

    def recycle(self, user: User, organisation_id: str, entry: seed.SeedItem, recycled_at: float) -> Item:
        """Put `entry` (with its contents) in `user`'s bin as if they had recycled it at `recycled_at`."""
        with self._lock:
            item = self._materialize(entry, user, organisation_id)
            item.recycled_ms = round(recycled_at * 1000)
            item.requestor_email = user.email
            self.bin_of(user.id, organisation_id).add(item)
            return item

    def build_large_bin(
        self, token_or_user: str, n: int = 10_000, organisation_id: str | None = None
    ) -> list[str]:
        """Add `n` recycled files to a user's bin (their first Originator organisation by default)."""
        with self._lock:
            user = self.resolve_user(token_or_user)
            org_id = organisation_id or next(o for o, role in user.roles.items() if role == ORIGINATOR)
            now = self.clock.now()
            return [
                self.recycle(user, org_id, entry, now - entry.recycled_ago).id for entry in seed.large_bin(n)
            ]

    def resolve_user(self, token_or_user: str) -> User:
        """A user named by access token, id or email (for builders and tests)."""
        user_id = self.tokens.get(token_or_user, token_or_user)
        if user_id in self.users:
            return self.users[user_id]
        for user in self.users.values():
            if user.email == token_or_user:
                return user
        raise KeyError(f"no Cocoon user known as {token_or_user!r}")

    def bin_of(self, user_id: str, organisation_id: str) -> RecycleBin:
        recycle_bin = self.bins.get((user_id, organisation_id))
        if recycle_bin is None:
            recycle_bin = self.bins[user_id, organisation_id] = RecycleBin()
        return recycle_bin

    def _materialize(self, entry: seed.SeedItem, owner: User, organisation_id: str) -> Item:
        item_id = entry.id
        if item_id is None:
            self._next_id += 1
            item_id = str(self._next_id)
        children = [self._materialize(child, owner, organisation_id) for child in entry.contents or ()]
        item = Item(
            id=item_id,
            name=entry.name,
            type=ItemType.OBJECT if entry.contents is None else ItemType.COLLECTION,
            organisation_id=organisation_id,
            owner_id=owner.id,
            parent_id=entry.parent_id,
            size=entry.size if entry.contents is None else sum(child.size for child in children),
            shared=entry.shared,
            state=ItemState.RECYCLED,
            children=children,
        )
        self.items[item.id] = item
        return item

    # -- authentication and lookups -------------------------------------------------------------------

    def authenticate(self, token: str | None) -> User:
        """The user an access token belongs to; every operation acts on this user's bins."""
        if not token:
            raise CocoonError("unauthorized", "Full authentication is required to access this resource")
        user_id = self.tokens.get(token)
        if user_id is None:
            raise CocoonError("unauthorized", "Invalid access token")
        return self.users[user_id]

    def get_organisation(self, organisation_id: str) -> Organisation:
        organisation = self.organisations.get(organisation_id)
        if organisation is None:
            raise CocoonError("not_found", f"Organisation {organisation_id} not found")
        return organisation

    def require_originator(self, user: User, organisation_id: str) -> None:
        if user.roles.get(organisation_id) != ORIGINATOR:
            raise CocoonError(
                "forbidden",
                f"Access is denied: the recycle bin needs the Originator role in organisation {organisation_id}",
            )

    def get_bin_item(self, user: User, item_id: str) -> tuple[RecycleBin, Item]:
        """An item at the top of one of `user`'s bins; anything else (another user's too) is not found."""
        item = self.items.get(item_id)
        recycle_bin = self.bins.get((user.id, item.organisation_id)) if item else None
        if item is not None and recycle_bin is not None:
            self._purge_expired(recycle_bin)
            if item_id in recycle_bin.entries:
                return recycle_bin, item
        raise CocoonError("not_found", f"Recycle bin item {item_id} not found")

    # -- API operations ----------------------------------------------------------------------------

    def list_recycle_bin(
        self,
        user: User,
        organisation_id: str,
        *,
        limit: int,
        offset: int,
        descending: bool,
        sort_by: SortField,
    ) -> list[Item]:
        with self._lock:
            recycle_bin = self._authorized_bin(user, organisation_id)
            return recycle_bin.page(sort_by, descending, offset, limit)

    def empty_recycle_bin(self, user: User, organisation_id: str) -> None:
        """Permanently delete everything in the caller's bin."""
        with self._lock:
            recycle_bin = self._authorized_bin(user, organisation_id)
            for item in list(recycle_bin.entries.values()):
                self._destroy(recycle_bin, item)

    def get_recycle_bin_item(self, user: User, item_id: str) -> Item:
        with self._lock:
            return self._authorized_item(user, item_id)[1]

    def restore_recycle_bin_item(self, user: User, item_id: str) -> None:
        """Back to its original location (`parentId`), with everything inside it."""
        with self._lock:
            recycle_bin, item = self._authorized_item(user, item_id)
            recycle_bin.remove(item)
            for member in item.walk():
                member.state = ItemState.ACTIVE

    def delete_recycle_bin_item(self, user: User, item_id: str) -> None:
        with self._lock:
            recycle_bin, item = self._authorized_item(user, item_id)
            self._destroy(recycle_bin, item)

    # -- internals ---------------------------------------------------------------------------------

    def _authorized_bin(self, user: User, organisation_id: str) -> RecycleBin:
        self.get_organisation(organisation_id)
        self.require_originator(user, organisation_id)
        recycle_bin = self.bin_of(user.id, organisation_id)
        self._purge_expired(recycle_bin)
        return recycle_bin

    def _authorized_item(self, user: User, item_id: str) -> tuple[RecycleBin, Item]:
        recycle_bin, item = self.get_bin_item(user, item_id)
        self.require_originator(user, item.organisation_id)
        return recycle_bin, item

    def _destroy(self, recycle_bin: RecycleBin, item: Item) -> None:
        """Permanent deletion: a file object stays as a Deleted record; a folder leaves no trace at all."""
        recycle_bin.remove(item)
        if item.type is ItemType.OBJECT:
            item.state = ItemState.DELETED
            return
        for member in item.walk():
            del self.items[member.id]

    def _purge_expired(self, recycle_bin: RecycleBin) -> None:
        """What the platform's purge job would have done by now: delete items recycled over 30 days ago."""
        cutoff_ms = (self.clock.now() - PURGE_PERIOD_DAYS * SECONDS_PER_DAY) * 1000
        oldest_first = recycle_bin.ascending("time")
        expired = []
        for item in oldest_first:
            if item.recycled_ms > cutoff_ms:
                break
            expired.append(item)
        for item in expired:
            self._destroy(recycle_bin, item)
