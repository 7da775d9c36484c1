"""Typed async client for the Piiano Vault REST API (`/api/pvlt/1.0`), built on `ServiceClient`.

Only the operations purgewarden needs: list collections, count, list and search objects, bulk
delete (all-or-nothing per call) and garbage collection of archived data. Every data call carries an
access reason, because a Vault may enforce one (PV1001). A bulk delete answering 200 with `ok: false`
is not an exception: nothing was deleted, and the per-item errors say why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter
from pydantic_core import to_json
from typing_extensions import TypedDict

from purgewarden.clients.base import ServiceClient
from purgewarden.clients.limits import Slot

API_PREFIX = "/api/pvlt/1.0"

GcFilter = Literal["all", "objects_only", "tokens_only", "transaction_ids_only"]
Scalar = str | int | float | bool


Reason = Literal[
    "AppFunctionality",
    "Analytics",
    "Notifications",
    "Marketing",
    "ThirdPartyMarketing",
    "FraudPreventionSecurityAndCompliance",
    "AccountManagement",
    "Maintenance",
    "DataSubjectRequest",
    "Other",
]
"""Vault's access reasons; `Other` needs an `adhoc_reason` beside it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Property(_Model):
    name: str
    data_type_name: str = Field(
        "", validation_alias=AliasChoices("data_type_name", "data_type"), description="e.g. EMAIL, STRING"
    )
    """`data_type_name` in the official client's types; `data_type` (our emulator's old name) still read."""
    description: str = ""


class Collection(_Model):
    name: str
    type: str
    properties: list[Property] = Field(default_factory=list)


class ObjectCount(_Model):
    active: int
    archived: int
    total: int


class Paging(_Model):
    size: int = 0
    remaining_count: int = 0
    cursor: str | None = None


class ObjectPage(_Model):
    """One page of objects: each a mapping of property name to value (`id` included)."""

    results: list[dict[str, Any]]
    paging: Paging = Field(default_factory=Paging)


class VaultErrorBody(_Model):
    error_code: str = ""
    message: str = ""
    context: dict[str, Any] = Field(default_factory=dict)


class BulkItemResult(_Model):
    ok: bool
    id: str | None = None
    error: VaultErrorBody | None = None


class BulkDeleteResult(_Model):
    """All or nothing: `ok` false means no object of the call was deleted, and `results` says why per item.

    On success only the count of per-item results is kept: they all say ok, and validating a thousand
    of them per call would cost more than the rest of the client's work on it.
    """

    ok: bool
    count: int = Field(description="Items the Vault reported on")
    results: list[BulkItemResult] = Field(default_factory=list, description="Per-item results when not ok")


class _AnyObject(TypedDict, total=False):
    """A per-item result of a successful bulk call: only counted, so only checked to be a JSON object."""


def _dropped(item: _AnyObject) -> None:
    """A success's per-item result, once checked, is let go at once: a thousand dicts alive together would set
    off the garbage collector in every bulk call, promoting whatever else is in flight towards its full pass."""


class _BulkDeleted(_Model):
    ok: Literal[True]
    results: list[Annotated[_AnyObject, AfterValidator(_dropped)]]


class _BulkRefused(_Model):
    ok: Literal[False]
    results: list[BulkItemResult]


_BulkAnswer = Annotated[_BulkDeleted | _BulkRefused, Field(discriminator="ok")]
"""Told apart by `ok` as the bytes are parsed: a success's thousand items are counted, not copied into dicts."""


class GcCount(_Model):
    collection_name: str
    collection_type: str
    count: int


class SearchQuery(_Model):
    """Vault's object search; conditions combine with AND. `like` patterns use `*` as the wildcard."""

    match: dict[str, Scalar] = Field(default_factory=dict)
    in_: dict[str, list[Scalar]] = Field(default_factory=dict, alias="in")
    like: dict[str, str] = Field(default_factory=dict)

    model_config = ConfigDict(populate_by_name=True)

    def body(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(by_alias=True).items() if v}


_COLLECTIONS = TypeAdapter(list[Collection])
_COUNT = TypeAdapter(ObjectCount)
_PAGE = TypeAdapter(ObjectPage)
_BULK: TypeAdapter[_BulkDeleted | _BulkRefused] = TypeAdapter(_BulkAnswer)
_GC_COUNTS = TypeAdapter(list[GcCount])


class VaultClient(ServiceClient):
    service = "vault"
    api_prefix = API_PREFIX

    def _parse_error(self, body: Any) -> tuple[str | None, str | None, dict[str, Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("error_code"), str):
            return None, None, {}
        context = body.get("context")
        detail = {str(k): v for k, v in context.items()} if isinstance(context, dict) else {}
        message = body.get("message")
        return body["error_code"], message if isinstance(message, str) else None, detail

    async def list_collections(self) -> list[Collection]:
        return await self._call("list_collections", "GET", "/ctl/collections", adapter=_COLLECTIONS)

    async def count_objects(
        self,
        collection: str,
        *,
        reason: Reason,
        adhoc_reason: str | None = None,
        tenants: Sequence[str] | None = None,
    ) -> ObjectCount:
        return await self._call(
            "count_objects",
            "GET",
            f"/data/collections/{self._path_segment('count_objects', collection)}/count/objects",
            params=_reason(reason, adhoc_reason),
            headers=_tenants(tenants),
            adapter=_COUNT,
        )

    async def list_objects(
        self,
        collection: str,
        *,
        reason: Reason,
        adhoc_reason: str | None = None,
        archived: bool = False,
        page_size: int | None = None,
        cursor: str | None = None,
        props: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        tenants: Sequence[str] | None = None,
    ) -> ObjectPage:
        """One page of objects (`ids`: exactly those, at most the max page size, in the given state).

        Each object shows its `id` and the `props` named; `props=None` shows every property (Vault's
        `unsafe` option), an empty `props` only the id.
        """
        params = _page_params(reason, adhoc_reason, archived, page_size, cursor, props)
        if ids is not None:
            params["ids"] = list(ids)
        return await self._call(
            "list_objects",
            "GET",
            f"/data/collections/{self._path_segment('list_objects', collection)}/objects",
            params=params,
            headers=_tenants(tenants),
            adapter=_PAGE,
        )

    async def search_objects(
        self,
        collection: str,
        query: SearchQuery,
        *,
        reason: Reason,
        adhoc_reason: str | None = None,
        archived: bool = False,
        page_size: int | None = None,
        cursor: str | None = None,
        props: Sequence[str] | None = None,
        tenants: Sequence[str] | None = None,
    ) -> ObjectPage:
        return await self._call(
            "search_objects",
            "POST",
            f"/data/collections/{self._path_segment('search_objects', collection)}/query/objects",
            params=_page_params(reason, adhoc_reason, archived, page_size, cursor, props),
            json_body=query.body(),
            headers=_tenants(tenants),
            adapter=_PAGE,
        )

    async def delete_objects(
        self,
        collection: str,
        ids: Sequence[str],
        *,
        reason: Reason,
        adhoc_reason: str | None = None,
        archived: bool = False,
        tenants: Sequence[str] | None = None,
        slot: Slot | None = None,
    ) -> BulkDeleteResult:
        """Delete up to the max page size of objects in one all-or-nothing call (never re-sent blindly)."""
        params: dict[str, str | int | bool | list[str]] = dict(_reason(reason, adhoc_reason))
        if archived:
            params["options"] = ["archived"]
        answer = await self._call(
            "delete_objects",
            "DELETE",
            f"/data/collections/{self._path_segment('delete_objects', collection)}/bulk/objects",
            params=params,
            json_body=ids,
            encode=_bulk_body,
            headers=_tenants(tenants),
            idempotent=False,
            adapter=_BULK,
            slot=slot,
        )
        if isinstance(answer, _BulkDeleted):
            return BulkDeleteResult(ok=True, count=len(answer.results))
        return BulkDeleteResult(ok=False, count=len(answer.results), results=answer.results)

    async def garbage_collection(
        self,
        *,
        reason: Reason,
        adhoc_reason: str | None = None,
        gc_filter: GcFilter = "all",
        dry_run: bool = False,
    ) -> list[GcCount]:
        """Delete (or with `dry_run`, count) what is archived past retention: at most 10,000 items a call."""
        params: dict[str, str | int | bool | list[str]] = dict(_reason(reason, adhoc_reason))
        if gc_filter != "all":
            params["filter"] = gc_filter
        if dry_run:
            params["dry_run"] = "true"
        return await self._call(
            "garbage_collection",
            "POST",
            "/system/admin/lifecycle/gc",
            params=params,
            idempotent=dry_run,
            adapter=_GC_COUNTS,
        )


def _bulk_body(ids: Sequence[str]) -> bytes:
    """A bulk call's body, `[{"id": …}, …]`. When no id needs an escape (the encoder's list of the ids is
    their plain join, as a Vault's UUIDs always are), the body is joined as text: a third of the time of
    encoding a thousand one-key objects."""
    if to_json(list(ids)) == ('["' + '","'.join(ids) + '"]').encode():
        return ('[{"id":"' + '"},{"id":"'.join(ids) + '"}]').encode()
    return to_json([{"id": object_id} for object_id in ids])


def _reason(reason: Reason, adhoc_reason: str | None) -> dict[str, str]:
    params: dict[str, str] = {"reason": reason}
    if adhoc_reason:
        params["adhoc_reason"] = adhoc_reason
    return params


def _page_params(
    reason: Reason,
    adhoc_reason: str | None,
    archived: bool,
    page_size: int | None,
    cursor: str | None,
    props: Sequence[str] | None,
) -> dict[str, str | int | bool | list[str]]:
    params: dict[str, str | int | bool | list[str]] = dict(_reason(reason, adhoc_reason))
    options = ["archived"] if archived else []
    if props is None:
        options.append("unsafe")
    elif props:
        params["props"] = list(props)
    if options:
        params["options"] = options
    if page_size is not None:
        params["page_size"] = page_size
    if cursor:
        params["cursor"] = cursor
    return params


def _tenants(tenants: Sequence[str] | None) -> Mapping[str, str] | None:
    return {"X-Tenant-Id": ",".join(tenants)} if tenants else None
