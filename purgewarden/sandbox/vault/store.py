"""The records of one Vault collection and the indexes that keep every operation cheap on big datasets.

Objects live in a dict (id → object) beside one sorted id index per state, so a page is a bisect and
a slice, a bulk delete is k dict and index updates, and a count is a length. Archived objects and
tokens also sit in an archive-time queue, so garbage collection reads the expired prefix instead of
scanning the collection.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

CollectionType = Literal["PERSONS", "DATA"]


class Capability(StrEnum):
    COLLECTIONS_READER = "CapCollectionsReader"
    DATA_READER = "CapDataReader"
    DATA_SEARCHER = "CapDataSearcher"
    DATA_WRITER = "CapDataWriter"
    DATA_DELETER = "CapDataDeleter"
    SYSTEM_ADMIN = "CapSystemAdmin"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A Vault user's API key; a tenant-bound key only ever sees its own tenants' objects."""

    secret: str
    username: str
    capabilities: frozenset[Capability]
    tenants: frozenset[str] | None = None


@dataclass(slots=True, eq=False)
class VaultObject:
    """One object; `archived_at` is None while it is active."""

    id: str
    tenant_id: str
    fields: dict[str, Any]
    creation_time: float
    modification_time: float
    archived_at: float | None = None


@dataclass(slots=True, eq=False)
class Token:
    """A token of a collection's object, grouped with others under one transaction id."""

    id: str
    transaction_id: str
    archived_at: float | None = None


@dataclass(frozen=True, slots=True)
class Property:
    name: str
    data_type_name: str
    description: str = ""
    is_unique: bool = False


@dataclass(frozen=True, slots=True)
class Collection:
    name: str
    type: CollectionType
    properties: tuple[Property, ...]
    creation_time: float
    modification_time: float

    @property
    def property_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.properties)


class SortedIds:
    """Ids in sorted order, kept in chunks so an insert, a removal or a rank costs about √n, not n."""

    _CHUNK = 1000

    def __init__(self) -> None:
        self._chunks: list[list[str]] = []
        self._maxes: list[str] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            yield from chunk

    def update(self, ids: Iterable[str]) -> None:
        """Add many ids at once by merging and rechunking (one sort instead of n insertions)."""
        merged = sorted([*self, *ids])
        size = self._CHUNK
        self._chunks = [merged[i : i + size] for i in range(0, len(merged), size)]
        self._maxes = [chunk[-1] for chunk in self._chunks]
        self._len = len(merged)

    def add(self, object_id: str) -> None:
        if not self._chunks:
            self._chunks, self._maxes = [[object_id]], [object_id]
            self._len = 1
            return
        i = min(bisect_left(self._maxes, object_id), len(self._chunks) - 1)
        chunk = self._chunks[i]
        insort(chunk, object_id)
        self._maxes[i] = chunk[-1]
        if len(chunk) > 2 * self._CHUNK:
            half = len(chunk) // 2
            self._chunks[i : i + 1] = [chunk[:half], chunk[half:]]
            self._maxes[i : i + 1] = [chunk[half - 1], chunk[-1]]
        self._len += 1

    def discard(self, object_id: str) -> None:
        i = bisect_left(self._maxes, object_id)
        if i == len(self._chunks):
            return
        chunk = self._chunks[i]
        j = bisect_left(chunk, object_id)
        if j == len(chunk) or chunk[j] != object_id:
            return
        del chunk[j]
        if chunk:
            self._maxes[i] = chunk[-1]
        else:
            del self._chunks[i]
            del self._maxes[i]
        self._len -= 1

    def _position(self, after: str | None) -> tuple[int, int]:
        if after is None:
            return 0, 0
        i = bisect_right(self._maxes, after)
        return i, (bisect_right(self._chunks[i], after) if i < len(self._chunks) else 0)

    def after(self, after: str | None) -> Iterator[str]:
        """The ids greater than `after` (all when None), in order."""
        i, j = self._position(after)
        if i < len(self._chunks):
            yield from self._chunks[i][j:]
            for chunk in self._chunks[i + 1 :]:
                yield from chunk

    def count_after(self, after: str | None) -> int:
        i, j = self._position(after)
        return self._len - sum(len(chunk) for chunk in self._chunks[:i]) - j


class ArchiveQueue:
    """Archived items by archive time, oldest first; entries made stale by a delete or a re-archive
    are skipped when read and dropped once they reach the front."""

    def __init__(self) -> None:
        self._entries: list[tuple[float, str]] = []

    def push(self, archived_at: float, item_id: str) -> None:
        entry = (archived_at, item_id)
        if not self._entries or entry >= self._entries[-1]:
            self._entries.append(entry)
        else:
            insort(self._entries, entry)

    def extend(self, entries: Iterable[tuple[float, str]]) -> None:
        """Add many at once: one sort of two sorted runs instead of many insertions."""
        self._entries.extend(entries)
        self._entries.sort()

    def expired(self, cutoff: float, is_current: Callable[[str, float], bool]) -> Iterator[str]:
        """Ids whose current archive time is before `cutoff`, oldest first."""
        for archived_at, item_id in self._entries:
            if archived_at >= cutoff:
                return
            if is_current(item_id, archived_at):
                yield item_id

    def drop_stale_front(self, is_current: Callable[[str, float], bool]) -> None:
        stale = 0
        for archived_at, item_id in self._entries:
            if is_current(item_id, archived_at):
                break
            stale += 1
        del self._entries[:stale]


class CollectionStore:
    """One collection's objects, its tokens and their transaction ids."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self.objects: dict[str, VaultObject] = {}
        self.active = SortedIds()
        self.archived = SortedIds()
        self.tenant_counts: dict[str, list[int]] = {}
        """Tenant id → [active, archived] object counts."""
        self.archive_queue = ArchiveQueue()
        self.tokens: dict[str, Token] = {}
        self.token_queue = ArchiveQueue()
        self.token_counts: dict[str, int] = {}
        """Transaction id → how many tokens still carry it."""
        self.orphans: dict[str, None] = {}
        """Transaction ids no token carries any more, in the order they became orphans."""

    def index(self, archived: bool) -> SortedIds:
        return self.archived if archived else self.active

    def add_objects(self, objects: list[VaultObject]) -> None:
        self.objects.update((obj.id, obj) for obj in objects)
        active = [obj.id for obj in objects if obj.archived_at is None]
        archived = [(obj.archived_at, obj.id) for obj in objects if obj.archived_at is not None]
        for (tenant_id, is_archived), count in Counter(
            (obj.tenant_id, obj.archived_at is not None) for obj in objects
        ).items():
            self._count(tenant_id, is_archived, count)
        self.archive_queue.extend(archived)
        for index, ids in ((self.active, active), (self.archived, [object_id for _, object_id in archived])):
            if len(ids) > 64:
                index.update(ids)
            else:
                for object_id in ids:
                    index.add(object_id)

    def remove_object(self, obj: VaultObject) -> None:
        del self.objects[obj.id]
        archived = obj.archived_at is not None
        self.index(archived).discard(obj.id)
        self._count(obj.tenant_id, archived, -1)

    def archive_object(self, obj: VaultObject, at: float) -> None:
        if obj.archived_at is None:
            self.active.discard(obj.id)
            self.archived.add(obj.id)
            self._count(obj.tenant_id, False, -1)
            self._count(obj.tenant_id, True, 1)
        obj.archived_at = at
        obj.modification_time = max(obj.modification_time, at)
        self.archive_queue.push(at, obj.id)

    def _count(self, tenant_id: str, archived: bool, delta: int) -> None:
        counts = self.tenant_counts.get(tenant_id)
        if counts is None:
            counts = self.tenant_counts[tenant_id] = [0, 0]
        counts[archived] += delta

    def add_token(self, token: Token) -> None:
        self.tokens[token.id] = token
        self.token_counts[token.transaction_id] = self.token_counts.get(token.transaction_id, 0) + 1
        self.orphans.pop(token.transaction_id, None)
        if token.archived_at is not None:
            self.token_queue.push(token.archived_at, token.id)

    def add_orphan_transaction(self, transaction_id: str) -> None:
        self.token_counts.setdefault(transaction_id, 0)
        if not self.token_counts[transaction_id]:
            self.orphans[transaction_id] = None

    def remove_token(self, token: Token) -> None:
        del self.tokens[token.id]
        remaining = self.token_counts[token.transaction_id] - 1
        self.token_counts[token.transaction_id] = remaining
        if not remaining:
            self.orphans[token.transaction_id] = None

    def remove_transaction(self, transaction_id: str) -> None:
        del self.token_counts[transaction_id]
        del self.orphans[transaction_id]

    def is_current_object(self, object_id: str, archived_at: float) -> bool:
        obj = self.objects.get(object_id)
        return obj is not None and obj.archived_at == archived_at

    def is_current_token(self, token_id: str, archived_at: float) -> bool:
        token = self.tokens.get(token_id)
        return token is not None and token.archived_at == archived_at

    def expired_objects(self, cutoff: float) -> Iterator[VaultObject]:
        for object_id in self.archive_queue.expired(cutoff, self.is_current_object):
            yield self.objects[object_id]

    def expired_tokens(self, cutoff: float) -> Iterator[Token]:
        for token_id in self.token_queue.expired(cutoff, self.is_current_token):
            yield self.tokens[token_id]
