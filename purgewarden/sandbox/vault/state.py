"""Piiano Vault state: collections, objects, tokens, API keys, and one backend method per API operation.

No HTTP here. Refusals are raised as `VaultError` carrying the Vault error code; `app.py` alone turns
codes into statuses and bodies.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal

from purgewarden.sandbox.clock import Clock
from purgewarden.sandbox.vault import seed
from purgewarden.sandbox.vault.store import (
    ApiKey,
    Capability,
    Collection,
    CollectionStore,
    VaultObject,
)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
GC_LIMIT = 10_000
RETENTION_SECONDS = 30 * 86_400.0

BUILTIN_PROPERTIES = ("id", "_creation_time", "_modification_time", "_tenant_id", "_archive_time")
OBJECT_NOT_FOUND = "PV3005"
NOT_ATTEMPTED = "PV3999"
"""Emulator-chosen code for bulk items that were fine but not deleted because another item failed."""

GcFilter = Literal["all", "objects_only", "tokens_only", "transaction_ids_only"]
GcType = Literal["DATA", "PERSONS", "TOKENS", "TRANSACTION_IDS"]

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class VaultError(Exception):
    """A refusal the API reports: a Vault error code (the serializer picks the status), message, context.

    The context maps strings to strings only, as the official client's `Record<string, string>` says.
    """

    def __init__(self, code: str, message: str, context: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.context: dict[str, str] = context or {}


def invalid(detail: str, **context: str) -> VaultError:
    return VaultError("PV1012", f"The request is not valid: {detail}", context)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of objects; `remaining` counts the matches after it."""

    objects: list[VaultObject]
    remaining: int


@dataclass(frozen=True, slots=True)
class ObjectQuery:
    """A search: every `match` equal, every `any_of` value among the listed ones, every `like` matching."""

    match: dict[str, Any] = field(default_factory=dict)
    any_of: dict[str, list[Any]] = field(default_factory=dict)
    like: dict[str, re.Pattern[str]] = field(default_factory=dict)

    @property
    def properties(self) -> set[str]:
        return {*self.match, *self.any_of, *self.like}

    def matches(self, obj: VaultObject) -> bool:
        def value(name: str) -> Any:
            return obj.id if name == "id" else obj.fields.get(name)

        return (
            all(value(k) == v for k, v in self.match.items())
            and all(value(k) in v for k, v in self.any_of.items())
            and all(isinstance(value(k), str) and p.fullmatch(value(k)) for k, p in self.like.items())
        )


def like_pattern(pattern: str) -> re.Pattern[str]:
    """Vault's `like`: `*` matches any run of characters, everything else is literal."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


@dataclass(frozen=True, slots=True)
class BulkItem:
    id: str
    error: VaultError | None = None


@dataclass(frozen=True, slots=True)
class BulkResult:
    ok: bool
    items: list[BulkItem]


@dataclass(frozen=True, slots=True)
class GcCount:
    collection_name: str
    collection_type: GcType
    count: int


@dataclass(frozen=True, slots=True)
class _GcBatch:
    store: CollectionStore
    type: GcType
    items: list[Any]


class VaultBackend:
    """All Vault state of one sandbox. Attributes a test may change: `retention_seconds`, `in_memory`,
    `gc_limit`; `reset()` restores them."""

    def __init__(
        self, clock: Clock, *, retention_seconds: float = RETENTION_SECONDS, in_memory: bool = False
    ) -> None:
        self.clock = clock
        self._defaults = (retention_seconds, in_memory)
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.retention_seconds, self.in_memory = self._defaults
            self.gc_limit = GC_LIMIT
            self.keys = seed.api_keys()
            self.stores = seed.demo_stores(self.clock.now())
            self._conflict_next_bulk_delete = False

    # --- lookups shared by the operations ---

    def authenticate(self, secret: str | None) -> ApiKey:
        key = self.keys.get(secret or "")
        if key is None:
            raise VaultError("PV1005", "The request is unauthorized.")
        return key

    def authorize(self, key: ApiKey, *any_of: Capability) -> None:
        if key.capabilities.isdisjoint(any_of):
            raise VaultError(
                "PV1007",
                "The operation is forbidden due to missing capabilities.",
                {"username": key.username},
            )

    def tenant_scope(self, key: ApiKey, requested: frozenset[str] | None) -> frozenset[str] | None:
        """The tenants a request may touch: those it names (within a bound key's), else the key's."""
        if requested is None:
            return key.tenants
        if key.tenants is not None and not requested <= key.tenants:
            outside = sorted(requested - key.tenants)[0]
            raise VaultError("PV1006", "The operation is forbidden by policy.", {"tenant_id": outside})
        return requested

    def get_collection(self, name: str) -> CollectionStore:
        store = self.stores.get(name.lower())
        if store is None:
            raise VaultError("PV1004", "The collection is not found.", {"collection": name})
        return store

    def get_object(
        self, store: CollectionStore, object_id: str, *, archived: bool, tenants: frozenset[str] | None
    ) -> VaultObject:
        object_id = normalize_id(object_id)
        obj = store.objects.get(object_id)
        _check_tenants([obj], tenants)
        if obj is None or (obj.archived_at is not None) != archived:
            raise VaultError(
                OBJECT_NOT_FOUND, f"One or more Objects is not found: {object_id}.", {"ids": object_id}
            )
        return obj

    def check_properties(self, store: CollectionStore, names: Iterable[str], extra: Sequence[str]) -> None:
        known = {*store.collection.property_names, *extra}
        for name in names:
            if name not in known:
                raise invalid(f"the collection has no property {name!r}.", property=name)

    # --- API operations ---

    def list_collections(self) -> list[Collection]:
        with self._lock:
            return [store.collection for store in self.stores.values()]

    def list_objects(
        self,
        collection: str,
        *,
        archived: bool,
        tenants: frozenset[str] | None,
        ids: Sequence[str] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        props: Sequence[str] = (),
    ) -> Page:
        with self._lock:
            store = self.get_collection(collection)
            self.check_properties(store, props, BUILTIN_PROPERTIES)
            if ids is not None:
                found = [store.objects.get(object_id) for object_id in _unique(normalize_ids(ids))]
                _check_tenants(found, tenants)
                wanted = [o for o in found if o is not None and (o.archived_at is not None) == archived]
                return Page(wanted, 0)
            index = store.index(archived)
            if tenants is None:
                page = [store.objects[object_id] for object_id in islice(index.after(after), page_size)]
                return Page(page, index.count_after(after) - len(page))
            return _page_where(store, archived, after, page_size, lambda o: o.tenant_id in tenants)

    def get_object_by_id(
        self,
        collection: str,
        object_id: str,
        *,
        archived: bool,
        tenants: frozenset[str] | None,
        props: Sequence[str] = (),
    ) -> VaultObject:
        with self._lock:
            store = self.get_collection(collection)
            self.check_properties(store, props, BUILTIN_PROPERTIES)
            return self.get_object(store, object_id, archived=archived, tenants=tenants)

    def count_objects(self, collection: str, *, tenants: frozenset[str] | None) -> tuple[int, int]:
        """(active, archived) objects of the collection, of the given tenants only when set."""
        with self._lock:
            store = self.get_collection(collection)
            if tenants is None:
                return len(store.active), len(store.archived)
            counts = [store.tenant_counts.get(t, [0, 0]) for t in tenants]
            return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def search_objects(
        self,
        collection: str,
        query: ObjectQuery,
        *,
        archived: bool,
        tenants: frozenset[str] | None,
        page_size: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        props: Sequence[str] = (),
    ) -> Page:
        with self._lock:
            store = self.get_collection(collection)
            self.check_properties(store, props, BUILTIN_PROPERTIES)
            self.check_properties(store, query.properties, ("id",))
            if tenants is None:
                return _page_where(store, archived, after, page_size, query.matches)
            return _page_where(
                store, archived, after, page_size, lambda o: o.tenant_id in tenants and query.matches(o)
            )

    def delete_objects(
        self, collection: str, ids: Sequence[str], *, archived: bool, tenants: frozenset[str] | None
    ) -> BulkResult:
        """All or nothing: when any id is unknown or in the other state, nothing is deleted."""
        with self._lock:
            store = self.get_collection(collection)
            ids = normalize_ids(ids)
            _reject_duplicates(ids)
            if self._conflict_next_bulk_delete:
                self._conflict_next_bulk_delete = False
                raise VaultError("PV3218", "Concurrent conflicting updates to the same object.")
            found = [store.objects.get(object_id) for object_id in ids]
            _check_tenants(found, tenants)
            errors = [
                _bulk_error(object_id, obj, archived) for object_id, obj in zip(ids, found, strict=True)
            ]
            if any(error is not None for error in errors):
                items = [BulkItem(i, e or _not_attempted(i)) for i, e in zip(ids, errors, strict=True)]
                return BulkResult(False, items)
            for obj in found:
                if obj is not None:
                    store.remove_object(obj)
            return BulkResult(True, [BulkItem(object_id) for object_id in ids])

    def delete_object_by_id(
        self, collection: str, object_id: str, *, archived: bool, tenants: frozenset[str] | None
    ) -> None:
        with self._lock:
            store = self.get_collection(collection)
            store.remove_object(self.get_object(store, object_id, archived=archived, tenants=tenants))

    def garbage_collection(self, gc_filter: GcFilter = "all", *, dry_run: bool = False) -> list[GcCount]:
        """Delete what has been archived longer than the retention period, at most `gc_limit` items.

        A dry run counts everything available for deletion now (the vendor's words), past the cap.
        """
        with self._lock:
            if self.in_memory:
                raise VaultError("PV1026", "The operation is not allowed in in-memory mode.")
            batches = self._garbage(gc_filter, None if dry_run else self.gc_limit)
            if not dry_run:
                for batch in batches:
                    _collect(batch)
            return [GcCount(b.store.collection.name, b.type, len(b.items)) for b in batches]

    # --- test hooks (no API counterpart) ---

    def gc_backlog(self, gc_filter: GcFilter = "all") -> list[GcCount]:
        """Everything GC would delete over its calls from now (what an uncapped dry run shows), for tests."""
        with self._lock:
            batches = self._garbage(gc_filter, None)
            return [GcCount(b.store.collection.name, b.type, len(b.items)) for b in batches]

    def archive(self, collection: str, ids: Iterable[str], at: float | None = None) -> None:
        """Archive objects now (or at `at`), as the Vault's update/expiry would."""
        with self._lock:
            store = self.get_collection(collection)
            when = self.clock.now() if at is None else at
            for object_id in ids:
                obj = store.objects.get(normalize_id(object_id))
                if obj is None:
                    raise VaultError(OBJECT_NOT_FOUND, f"One or more Objects is not found: {object_id}.")
                store.archive_object(obj, when)

    def build_large(
        self,
        collection: str = "customers",
        n: int = 100_000,
        *,
        archived: int = 0,
        archived_at: float | None = None,
    ) -> list[str]:
        """Add `n` objects to `collection`, the first `archived` of them archived `archived_at`
        (default: 45 days ago, past retention); returns their ids."""
        with self._lock:
            now = self.clock.now()
            store = self.stores.get(collection)
            if store is None:
                properties = seed.CUSTOMER_PROPERTIES
                store = self.stores[collection] = CollectionStore(
                    Collection(collection, "PERSONS", properties, now, now)
                )
            when = now - 45 * 86_400.0 if archived_at is None else archived_at
            return seed.build_large(store, n, archived=archived, archived_at=when, now=now)

    def conflict_next_bulk_delete(self) -> None:
        """Make the next bulk delete fail with 409 PV3218 and delete nothing, like a concurrent update."""
        with self._lock:
            self._conflict_next_bulk_delete = True

    def _garbage(self, gc_filter: GcFilter, limit: int | None) -> list[_GcBatch]:
        """What GC deletes next, in order: objects, then tokens, then orphaned transaction ids, each by
        collection name. Transaction ids orphaned by this call's token deletions wait for the next call."""
        cutoff = self.clock.now() - self.retention_seconds
        stores = [self.stores[name] for name in sorted(self.stores)]
        sources: list[tuple[CollectionStore, GcType, Callable[[CollectionStore], Iterable[Any]]]] = []
        if gc_filter in ("all", "objects_only"):
            sources += [(s, s.collection.type, lambda s: s.expired_objects(cutoff)) for s in stores]
        if gc_filter in ("all", "tokens_only"):
            sources += [(s, "TOKENS", lambda s: s.expired_tokens(cutoff)) for s in stores]
        if gc_filter in ("all", "transaction_ids_only"):
            sources += [(s, "TRANSACTION_IDS", lambda s: s.orphans) for s in stores]
        batches: list[_GcBatch] = []
        budget = limit
        for store, gc_type, items_of in sources:
            if budget == 0:
                break
            items = list(islice(items_of(store), budget))
            if items:
                batches.append(_GcBatch(store, gc_type, items))
                budget = None if budget is None else budget - len(items)
        return batches


def normalize_id(object_id: str) -> str:
    if not _UUID.fullmatch(object_id):
        raise invalid("an object id is not a UUID.", id=object_id)
    return object_id.lower()


def normalize_ids(ids: Sequence[str]) -> list[str]:
    if len(ids) > MAX_PAGE_SIZE:
        raise invalid(f"at most {MAX_PAGE_SIZE} object ids are allowed, got {len(ids)}.", ids=str(len(ids)))
    return [normalize_id(object_id) for object_id in ids]


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _reject_duplicates(ids: list[str]) -> None:
    seen: set[str] = set()
    for object_id in ids:
        if object_id in seen:
            raise invalid("the same object id is listed twice.", id=object_id)
        seen.add(object_id)


def _check_tenants(objects: Iterable[VaultObject | None], tenants: frozenset[str] | None) -> None:
    """An id-targeted call touching another tenant's object fails as a whole."""
    if tenants is None:
        return
    for obj in objects:
        if obj is not None and obj.tenant_id not in tenants:
            raise VaultError("PV1006", "The operation is forbidden by policy.", {"id": obj.id})


def _bulk_error(object_id: str, obj: VaultObject | None, archived: bool) -> VaultError | None:
    if obj is not None and (obj.archived_at is not None) == archived:
        return None
    message = "The object is not found."
    if obj is not None:
        message += " It is archived; delete it with options=archived." if not archived else " It is active."
    return VaultError(OBJECT_NOT_FOUND, message, {"id": object_id})


def _not_attempted(object_id: str) -> VaultError:
    return VaultError(
        NOT_ATTEMPTED,
        "The object was not deleted because another object in the request failed; nothing was deleted.",
        {"id": object_id},
    )


def _page_where(
    store: CollectionStore,
    archived: bool,
    after: str | None,
    page_size: int,
    predicate: Callable[[VaultObject], bool],
) -> Page:
    """A filtered page: scans from the cursor to the end, since `remaining` needs every later match."""
    objects = store.objects
    page: list[VaultObject] = []
    remaining = 0
    for object_id in store.index(archived).after(after):
        obj = objects[object_id]
        if predicate(obj):
            if len(page) < page_size:
                page.append(obj)
            else:
                remaining += 1
    return Page(page, remaining)


def _collect(batch: _GcBatch) -> None:
    store = batch.store
    if batch.type == "TOKENS":
        for token in batch.items:
            store.remove_token(token)
        store.token_queue.drop_stale_front(store.is_current_token)
    elif batch.type == "TRANSACTION_IDS":
        for transaction_id in batch.items:
            store.remove_transaction(transaction_id)
    else:
        for obj in batch.items:
            store.remove_object(obj)
        store.archive_queue.drop_stale_front(store.is_current_object)
