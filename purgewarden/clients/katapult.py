"""Typed async client for the Katapult Core API v1 (`<root>/core/v1`), built on `ServiceClient`.

Only the operations purgewarden needs: organizations, the trash (one page, or all of it fetched
concurrently), purge all, tasks, buckets and revoking presigned URLs. Like the official Go client,
objects are addressed with `_` as the path segment and lookups as query parameters or JSON body
(`organization[sub_domain]=acme`), so no caller-given text ever lands in a path.

Katapult sends no Retry-After; it reports its budget in `X-Ratelimit-Permitted` (per minute) and
`X-Ratelimit-Remaining`. When the remaining budget, less the requests still in flight, runs down to a
small reserve, requests are spaced 60/permitted seconds apart so the limit is not hit, until an answer
shows the budget recovered.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import anyio
import httpx2
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict

from purgewarden.clients.base import ServiceClient
from purgewarden.clients.errors import ApiError
from purgewarden.clients.limits import Slot

API_PREFIX = "/core/v1"
MAX_PER_PAGE = 200
RATE_WINDOW_SECONDS = 60.0
RATE_RESERVE = 2
"""Requests kept in hand when the budget runs low (beyond those already in flight)."""

TaskStatus = Literal["pending", "running", "completed", "failed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Organization(_Model):
    id: str
    name: str
    sub_domain: str
    infrastructure_domain: str | None = None
    created_at: int | None = Field(None, description="Unix seconds")
    activated_at: int | None = Field(None, description="Unix seconds; null while not activated")
    suspended: bool = False
    managed: bool = False


# A plain dict, not a model: a preview reads tens of thousands of them, and pydantic builds dicts of plain
# values in two thirds of a model's time, which the garbage collector then never has to scan. (A comment, not
# a docstring: pydantic would publish a TypedDict's docstring as its schema's description.)
class TrashObject(TypedDict):
    id: str
    keep_until: Annotated[int, Field(description="Unix time Katapult purges it by itself")]
    object_id: str
    object_type: str


class Pagination(_Model):
    current_page: int
    total_pages: int | None = None
    total: int | None = None
    per_page: int
    large_set: bool = False


class TrashObjectPage(_Model):
    # A page's ids are all different: caching every short string (the default), not only the keys,
    # makes validating a page cost a third more.
    model_config = ConfigDict(extra="ignore", cache_strings="keys")

    pagination: Pagination
    trash_objects: list[TrashObject]


class Task(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")
    name: str
    status: TaskStatus
    created_at: int
    started_at: int | None = None
    finished_at: int | None = None
    progress: int = Field(0, description="Percent")


class AccessControlList(_Model):
    public_read: bool = False
    public_list: bool = False
    all_keys_read: bool = False
    all_keys_write: bool = False
    read_key_ids: list[str] = Field(default_factory=list)
    write_key_ids: list[str] = Field(default_factory=list)


class Bucket(_Model):
    name: str
    label: str | None = None
    created_at: int | None = None
    state: str = Field(description="pending or configured")
    custom_domain: str | None = None
    object_count: int | None = None
    size: int | None = Field(None, description="Bytes")
    serve_static_site: bool = False
    public_url: str | None = None
    access_control_list: AccessControlList = Field(default_factory=AccessControlList)


class OrganizationList(_Model):
    organizations: list[Organization]


class TaskEnvelope(_Model):
    task: Task


class BucketEnvelope(_Model):
    object_storage_bucket: Bucket


class RevokeResult(_Model):
    success: bool


_ORGANIZATIONS = TypeAdapter(OrganizationList)
_TRASH_PAGE = TypeAdapter(TrashObjectPage)
_TASK = TypeAdapter(TaskEnvelope)
_BUCKET = TypeAdapter(BucketEnvelope)
_REVOKED = TypeAdapter(RevokeResult)


def organization_lookup(reference: str) -> dict[str, str]:
    """`org_…` is an id; anything else a sub-domain (sub-domains are DNS labels, so never contain `_`)."""
    reference = reference.strip()
    return {"id": reference} if reference.startswith("org_") else {"sub_domain": reference}


def _query(argument: str, lookup: Mapping[str, str]) -> dict[str, str]:
    return {f"{argument}[{key}]": value for key, value in lookup.items()}


class KatapultClient(ServiceClient):
    service = "katapult"
    api_prefix = API_PREFIX

    def __init__(self, base_url: str, credential: str, **options: Any) -> None:
        super().__init__(base_url, credential, **options)
        self._permitted: int | None = None
        self._remaining: int | None = None
        self._in_flight = 0
        self._next_slot = 0.0
        self._recovered: anyio.Event | None = None
        self.started_purges: dict[str, str] = {}
        """Purge-all task ids this client started, by organization reference, to warn about overlaps."""

    # --- errors and rate-limit pacing ------------------------------------------------------------

    def _parse_error(self, body: Any) -> tuple[str | None, str | None, dict[str, Any]]:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            error = body if isinstance(body, dict) and "code" in body else None  # the spec's unwrapped form
        if error is None:
            return None, None, {}
        detail = error.get("detail")
        code, description = error.get("code"), error.get("description")
        return (
            str(code) if code else None,
            str(description) if description else None,
            detail if isinstance(detail, dict) else {},
        )

    async def _send(
        self, operation: str, request: httpx2.Request, slot: Slot | None = None
    ) -> httpx2.Response:
        # Counted so pacing knows how much of the reported budget is already spoken for.
        self._in_flight += 1
        try:
            return await super()._send(operation, request, slot)
        finally:
            self._in_flight -= 1

    def _pace(self) -> float | None:
        """Seconds between requests while the reported budget, less the other requests still in flight,
        is down to the reserve; None while it is not (or nothing was reported yet)."""
        if self._permitted is None or self._remaining is None:
            return None
        if self._remaining - (self._in_flight - 1) > RATE_RESERVE:
            return None
        return RATE_WINDOW_SECONDS / self._permitted

    async def _before_request(self) -> None:
        # While the budget is low, one request may go per interval; the others wait for the next slot, or
        # for an answer showing the budget recovered (a new window), whichever comes first.
        while (interval := self._pace()) is not None:
            now = time.monotonic()
            if self._next_slot <= now:
                self._next_slot = now + interval
                return
            if self._recovered is None or self._recovered.is_set():
                self._recovered = anyio.Event()
            with anyio.move_on_after(self._next_slot - now):
                await self._recovered.wait()

    def _after_response(self, response: httpx2.Response) -> None:
        permitted = _int_header(response, "x-ratelimit-permitted")
        remaining = _int_header(response, "x-ratelimit-remaining")
        if permitted:
            self._permitted = permitted
        if remaining is not None:
            self._remaining = remaining
        if self._recovered is not None and self._pace() is None:
            self._recovered.set()

    # --- operations ------------------------------------------------------------------------------

    async def list_organizations(self) -> list[Organization]:
        return (
            await self._call("list_organizations", "GET", "/organizations", adapter=_ORGANIZATIONS)
        ).organizations

    async def list_trash_objects(
        self, organization: Mapping[str, str], *, page: int = 1, per_page: int = 30, slot: Slot | None = None
    ) -> TrashObjectPage:
        params: dict[str, str | int] = {
            **_query("organization", organization),
            "page": page,
            "per_page": per_page,
        }
        return await self._call(
            "list_trash_objects",
            "GET",
            "/organizations/_/trash_objects",
            params=params,
            adapter=_TRASH_PAGE,
            slot=slot,
        )

    async def list_all_trash_objects(
        self, organization: Mapping[str, str], *, concurrency: int = 4
    ) -> dict[str, TrashObject]:
        """The whole trash: page 1 gives the page count, then pages are fetched at once, as many as the
        API takes without queueing them (`AdaptiveLimit`, learned over this client's life), at most
        `concurrency`.

        Objects are returned by id, in the API's order, each once (a page can shift while it is read: the
        first sighting counts). Without a page count (`large_set`), workers go on until a page comes back
        short.
        """
        first = await self.list_trash_objects(organization, page=1, per_page=MAX_PER_PAGE)
        pages: dict[int, list[TrashObject]] = {1: first.trash_objects}
        last = first.pagination.total_pages
        if len(first.trash_objects) < MAX_PER_PAGE:
            last = 1
        next_page = 2

        limit = self.limit_for("list_trash_objects", concurrency)

        async def worker() -> None:
            nonlocal next_page, last
            while last is None or next_page <= last:
                async with limit.slot() as slot:
                    if last is not None and next_page > last:
                        return  # a short page ended the trash while this worker waited for its place
                    number = next_page
                    next_page += 1
                    found = await self.list_trash_objects(
                        organization, page=number, per_page=MAX_PER_PAGE, slot=slot
                    )
                pages[number] = found.trash_objects
                if len(found.trash_objects) < MAX_PER_PAGE and (last is None or number < last):
                    last = number

        try:
            async with anyio.create_task_group() as group:
                for _ in range(max(1, concurrency)):
                    group.start_soon(worker)
        except* ApiError as failed:
            # The first failure cancelled the other workers; it alone says what went wrong.
            raise _first(failed) from None
        by_id: dict[str, TrashObject] = {}
        for number in sorted(pages):
            for trash_object in pages[number]:
                by_id.setdefault(trash_object["id"], trash_object)
        return by_id

    async def purge_all_trash_objects(self, organization: Mapping[str, str]) -> Task:
        """Queue a purge of the organization's whole trash; re-sent only if Katapult provably did nothing."""
        return (
            await self._call(
                "purge_all_trash_objects",
                "POST",
                "/organizations/_/trash_objects/purge_all",
                json_body={"organization": dict(organization)},
                idempotent=False,
                adapter=_TASK,
            )
        ).task

    async def get_task(self, task_id: str) -> Task:
        return (
            await self._call("get_task", "GET", "/tasks/_", params={"task[id]": task_id}, adapter=_TASK)
        ).task

    async def get_bucket(self, region: str, name: str, *, slot: Slot | None = None) -> Bucket:
        params = {"object_storage_cluster[region]": region, "bucket[name]": name}
        return (
            await self._call(
                "get_bucket", "GET", "/object_storage/_/buckets/_", params=params, adapter=_BUCKET, slot=slot
            )
        ).object_storage_bucket

    async def revoke_presigned_urls(self, region: str, name: str) -> bool:
        """Invalidate every URL presigned so far for any object in the bucket; True when Katapult says so."""
        return (
            await self._call(
                "revoke_presigned_urls",
                "POST",
                "/object_storage/_/buckets/_/revoke_presigned_urls",
                json_body={"object_storage_cluster": {"region": region}, "bucket": {"name": name}},
                idempotent=False,
                adapter=_REVOKED,
            )
        ).success


def _first(group: BaseExceptionGroup[ApiError]) -> ApiError:
    first = group.exceptions[0]
    return first if isinstance(first, ApiError) else _first(first)


def _int_header(response: httpx2.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
