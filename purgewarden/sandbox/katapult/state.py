"""The emulated Katapult: one method per API operation, the rate limiter, and the test controls.

Nothing here knows about HTTP: operations take an authenticated `ApiToken` and resolved lookups, return
plain objects, and refuse by raising `KatapultError` with the wire code.

Tasks need no background thread: a task's status is a function of the clock (pending for the first quarter
of `task_seconds`, then running with rising progress, then finished), and every operation first "settles"
the tasks whose time is up, carrying out their purge. Only unfinished tasks are looked at, so this is cheap.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from purgewarden.sandbox.clock import Clock
from purgewarden.sandbox.katapult.models import (
    ApiToken,
    Bucket,
    KatapultError,
    Lookup,
    ObjectStorageAccount,
    Organization,
    Task,
    TaskSnapshot,
    TrashObject,
    new_id,
)
from purgewarden.sandbox.katapult.seed import demo_world, large_trash

T = TypeVar("T")

PURGE_TASK_NAME = "Purge items from trash"
RATE_LIMIT_WINDOW_SECONDS = 60.0
_PENDING_SHARE = 0.25
"""Share of `task_seconds` a task spends pending before it starts running."""
_FAILURE_SHARE = 0.625
"""A task set up to fail fails here, halfway through its running time (progress 50)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    page: int
    per_page: int


@dataclass(frozen=True)
class RateQuota:
    permitted: int
    remaining: int
    exceeded: bool


class KatapultBackend:
    """In-memory Katapult with deterministic demo data (see `seed.py`)."""

    def __init__(self, clock: Clock, *, rate_limit: int = 1000, task_seconds: float = 2.0) -> None:
        self.clock = clock
        self.rate_limit = rate_limit
        self.task_seconds = task_seconds
        self.reset()

    def reset(self) -> None:
        world = demo_world(self.clock.now())
        self._rng = random.Random(2)
        self._organizations = {o.id: o for o in world.organizations}
        self._organizations_by_sub_domain = {o.sub_domain: o for o in world.organizations}
        self._tokens = {t.secret: t for t in world.tokens}
        self._clusters = world.clusters
        self._accounts = {(a.organization_id, a.region): a for a in world.accounts}
        self._trash_by_id: dict[str, TrashObject] = {}
        self._trash_by_object_id: dict[str, TrashObject] = {}
        for organization in world.organizations:
            self._index_trash(organization.trash.values())
        self._tasks: dict[str, Task] = {}
        self._unfinished_tasks: dict[str, Task] = {}
        self._revocations: dict[tuple[str, str], list[float]] = {}
        self._rate_windows: dict[str, tuple[float, int]] = {}
        self._failing_purges: set[str] = set()
        self._queueing_errors: dict[str, str] = {}
        self._ambiguous_buckets: set[tuple[str, str]] = set()
        self._network_errors: set[tuple[str, str]] = set()
        self._crashing_operations: set[str] = set()

    # Authentication and rate limiting

    def consume_request(self, caller: str) -> RateQuota:
        """Count one request against `caller` in a fixed 60-second window that opens with its first request."""
        now = self.clock.now()
        started, used = self._rate_windows.get(caller, (now, 0))
        if now - started >= RATE_LIMIT_WINDOW_SECONDS:
            started, used = now, 0
        used += 1
        self._rate_windows[caller] = (started, used)
        return RateQuota(self.rate_limit, max(0, self.rate_limit - used), used > self.rate_limit)

    def authenticate(self, secret: str | None, address: str) -> ApiToken:
        if not secret:
            raise KatapultError("missing_api_token")
        token = self._tokens.get(secret)
        if token is None:
            raise KatapultError("invalid_api_token", {"details": None})
        if not token.allows_address(address):
            raise KatapultError("unauthorized_network_for_api_token", {"ip_address": address})
        return token

    # Organizations and trash

    def list_organizations(self, token: ApiToken) -> list[Organization]:
        return [o for o in self._organizations.values() if token.can_access(o.id)]

    def get_organization(self, token: ApiToken, lookup: Lookup, *, hide_if_denied: bool) -> Organization:
        """The organization, usable: found, open to the token (or hidden from it), not suspended, activated."""
        key, value = lookup
        organization = (self._organizations if key == "id" else self._organizations_by_sub_domain).get(value)
        if organization is None or (hide_if_denied and not token.can_access(organization.id)):
            raise KatapultError("organization_not_found")
        self._authorize(token, organization.id)
        if organization.suspended:
            raise KatapultError("organization_suspended")
        if organization.activated_at is None:
            raise KatapultError("organization_not_activated")
        return organization

    def list_trash_objects(
        self, token: ApiToken, organization: Lookup, page: int, per_page: int
    ) -> Page[TrashObject]:
        self._settle()
        trash = self.get_organization(token, organization, hide_if_denied=True).trash_in_order()
        start = (page - 1) * per_page
        return Page(trash[start : start + per_page], len(trash), page, per_page)

    def purge_all_trash_objects(self, token: ApiToken, organization: Lookup) -> TaskSnapshot:
        """Start purging the organization's whole trash, or return the purge of it already under way."""
        now = self._settle()
        organization_id = self.get_organization(token, organization, hide_if_denied=False).id
        self._refuse_if_queue_broken(organization_id)
        for task in self._unfinished_tasks.values():
            if task.organization_id == organization_id and task.purges_all:
                return self._snapshot(task, now)
        trash_ids = frozenset(self._organizations[organization_id].trash)
        return self._snapshot(self._start_task(organization_id, trash_ids, purges_all=True, now=now), now)

    def get_trash_object(self, token: ApiToken, lookup: Lookup) -> TrashObject:
        """The trash object; one of an organization the token cannot see is not found."""
        self._settle()
        trash_object = self._find_trash_object(lookup)
        if not token.can_access(trash_object.organization_id):
            raise KatapultError("trash_object_not_found")
        return trash_object

    def purge_trash_object(self, token: ApiToken, lookup: Lookup) -> TaskSnapshot:
        """Start purging one trash object, or return the unfinished purge that already covers it."""
        now = self._settle()
        trash_object = self._find_trash_object(lookup)
        self._authorize(token, trash_object.organization_id)
        self._refuse_if_queue_broken(trash_object.organization_id)
        for task in self._unfinished_tasks.values():
            if trash_object.id in task.trash_object_ids:
                return self._snapshot(task, now)
        task = self._start_task(
            trash_object.organization_id, frozenset({trash_object.id}), purges_all=False, now=now
        )
        return self._snapshot(task, now)

    def restore_trash_object(self, token: ApiToken, lookup: Lookup) -> TrashObject:
        """Take the object out of the trash at once (an unfinished purge then leaves it alone)."""
        self._settle()
        trash_object = self._find_trash_object(lookup)
        self._authorize(token, trash_object.organization_id)
        self._remove_trash(trash_object, purged=False)
        return trash_object

    def get_task(self, token: ApiToken, lookup: Lookup) -> TaskSnapshot:
        now = self._settle()
        task = self._tasks.get(lookup[1])
        if task is None or not token.can_access(task.organization_id):
            raise KatapultError("task_not_found")
        return self._snapshot(task, now)

    # Object storage

    def get_bucket(self, token: ApiToken, cluster: Lookup, bucket: Lookup) -> Bucket:
        """A bucket of the token's organization's account in the cluster's region."""
        self._settle()
        region, name = cluster[1], bucket[1]
        account = self._get_object_storage_account(token, region)
        found = account.buckets.get(name)
        if found is None:
            raise KatapultError("object_storage_bucket_not_found")
        if (region, name) in self._ambiguous_buckets:
            raise KatapultError("multiple_object_storage_buckets_found")
        return found

    def revoke_presigned_urls(self, token: ApiToken, cluster: Lookup, bucket: Lookup) -> None:
        found = self.get_bucket(token, cluster, bucket)
        key = (cluster[1], found.name)
        if key in self._network_errors:
            self._network_errors.discard(key)
            raise KatapultError("network_error")
        self._revocations.setdefault(key, []).append(self.clock.now())

    def _get_object_storage_account(self, token: ApiToken, region: str) -> ObjectStorageAccount:
        if region not in self._clusters:
            raise KatapultError("object_storage_cluster_not_found")
        if token.object_storage_organization_id is None:
            raise KatapultError(
                "permission_denied", {"details": "This identity does not belong to an organization"}
            )
        account = self._accounts.get((token.object_storage_organization_id, region))
        if account is None:
            raise KatapultError("object_storage_account_not_found")
        trashed = self._trash_by_object_id.get(account.id)
        if trashed is not None:
            raise KatapultError("object_in_trash", {"trash_object": trashed})
        if account.suspended:
            raise KatapultError("object_storage_account_suspended")
        if account.provisioning_state != "provisioned":
            raise KatapultError("object_storage_account_not_provisioned")
        return account

    # Test controls: inspection, fault flags and builders (none of these are API operations)

    def add_token(self, token: ApiToken) -> None:
        """Accept another API token (e.g. one with exactly the scopes a test needs) until reset."""
        self._tokens[token.secret] = token

    def revocations(self, region: str, name: str) -> tuple[float, ...]:
        """When presigned URLs of the bucket were revoked (clock time), oldest first."""
        return tuple(self._revocations.get((region, name), ()))

    def fail_next_purge(self, organization: str) -> None:
        """The next purge task of the organization (id or sub-domain) fails halfway and deletes nothing."""
        self._failing_purges.add(self._organization_by_reference(organization).id)

    def refuse_task_queueing(self, organization: str, details: str = "The task queue is unavailable") -> None:
        """Every purge request for the organization gets 406 task_queueing_error until reset."""
        self._queueing_errors[self._organization_by_reference(organization).id] = details

    def make_bucket_ambiguous(self, region: str, name: str) -> None:
        """Lookups of the bucket get 500 multiple_object_storage_buckets_found until reset."""
        self._ambiguous_buckets.add((region, name))

    def fail_next_revoke(self, region: str, name: str) -> None:
        """The next revoke of the bucket's presigned URLs gets 504 network_error and revokes nothing."""
        self._network_errors.add((region, name))

    def crash_next(self, operation: str) -> None:
        """The next call of the operation (e.g. `get_task`) raises an unexpected exception."""
        self._crashing_operations.add(operation)

    def raise_if_crashing(self, operation: str) -> None:
        if operation in self._crashing_operations:
            self._crashing_operations.discard(operation)
            raise RuntimeError(f"injected crash in {operation}")

    def add_trash_object(self, trash_object: TrashObject) -> None:
        """Put one object in its organization's trash exactly as given (any id or type), until reset."""
        self._organizations[trash_object.organization_id].add_trash([trash_object])
        self._index_trash([trash_object])

    def build_large_trash(self, organization: str, n: int = 20_000) -> None:
        """Add `n` freshly trashed objects to the organization (id or sub-domain)."""
        target = self._organization_by_reference(organization)
        added = large_trash(target.id, n, self.clock.now(), self._rng)
        target.add_trash(added)
        self._index_trash(added)

    # Internals

    def _organization_by_reference(self, reference: str) -> Organization:
        organization = self._organizations.get(reference) or self._organizations_by_sub_domain.get(reference)
        if organization is None:
            raise KeyError(f"no organization {reference!r}")
        return organization

    def _authorize(self, token: ApiToken, organization_id: str) -> None:
        if not token.can_access(organization_id):
            raise KatapultError(
                "permission_denied", {"details": "This API token cannot act on this organization"}
            )

    def _find_trash_object(self, lookup: Lookup) -> TrashObject:
        key, value = lookup
        found = (self._trash_by_id if key == "id" else self._trash_by_object_id).get(value)
        if found is None:
            raise KatapultError("trash_object_not_found")
        return found

    def _index_trash(self, trash: Iterable[TrashObject]) -> None:
        for trash_object in trash:
            self._trash_by_id[trash_object.id] = trash_object
            self._trash_by_object_id[trash_object.object_id] = trash_object

    def _remove_trash(self, trash_object: TrashObject, *, purged: bool) -> None:
        self._organizations[trash_object.organization_id].remove_trash(trash_object.id)
        del self._trash_by_id[trash_object.id]
        del self._trash_by_object_id[trash_object.object_id]
        if purged and trash_object.object_type == "ObjectStorageAccount":
            self._accounts = {k: a for k, a in self._accounts.items() if a.id != trash_object.object_id}

    def _refuse_if_queue_broken(self, organization_id: str) -> None:
        details = self._queueing_errors.get(organization_id)
        if details is not None:
            raise KatapultError("task_queueing_error", {"details": details})

    def _start_task(
        self, organization_id: str, trash_ids: frozenset[str], *, purges_all: bool, now: float
    ) -> Task:
        fails = organization_id in self._failing_purges
        self._failing_purges.discard(organization_id)
        task = Task(
            new_id(self._rng, "task"), organization_id, PURGE_TASK_NAME, now, trash_ids, purges_all, fails
        )
        self._tasks[task.id] = task
        self._unfinished_tasks[task.id] = task
        return task

    def _finishes_after(self, task: Task) -> float:
        return self.task_seconds * (_FAILURE_SHARE if task.fails else 1.0)

    def _settle(self) -> float:
        """Carry out the purges whose time is up; returns the `now` they were settled at."""
        now = self.clock.now()
        for task in list(self._unfinished_tasks.values()):
            if now - task.created_at < self._finishes_after(task):
                continue
            del self._unfinished_tasks[task.id]
            if task.fails:
                continue
            for trash_id in task.trash_object_ids:
                trash_object = self._trash_by_id.get(trash_id)
                if trash_object is not None:
                    self._remove_trash(trash_object, purged=True)
        return now

    def _snapshot(self, task: Task, now: float) -> TaskSnapshot:
        elapsed = now - task.created_at
        starts_after = self.task_seconds * _PENDING_SHARE
        created_at = int(task.created_at)
        if elapsed < starts_after:
            return TaskSnapshot(task.id, task.name, "pending", created_at, None, None, 0)
        started_at = int(task.created_at + starts_after)
        running_seconds = self.task_seconds - starts_after
        progress = min(99, int(100 * (elapsed - starts_after) / running_seconds))
        finishes_after = self._finishes_after(task)
        if elapsed < finishes_after:
            return TaskSnapshot(task.id, task.name, "running", created_at, started_at, None, progress)
        finished_at = int(task.created_at + finishes_after)
        if task.fails:
            failed_progress = int(100 * (finishes_after - starts_after) / running_seconds)
            return TaskSnapshot(
                task.id, task.name, "failed", created_at, started_at, finished_at, failed_progress
            )
        return TaskSnapshot(task.id, task.name, "completed", created_at, started_at, finished_at, 100)
