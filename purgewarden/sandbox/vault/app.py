"""Starlette routes of the Piiano Vault emulator (under /api/pvlt/1.0): parse, call the backend, serialize.

Chosen behaviours, where the Vault docs are silent:
- Access reason: every /data/collections call and GC require `reason` (the Vault runs with
  PVAULT_SERVICE_FORCE_ACCESS_REASON=true): missing → 400 PV1001; unknown → 400 PV1002;
  `Other` without `adhoc_reason` → 400 PV1002. /ctl/collections and health need none.
- Checks run in this order: API key (401 PV1005), capability (403 PV1007), query parameters (400),
  collection (404 PV1004), body (400 PV1012), tenants (403 PV1006), then the operation.
- Capabilities: CapCollectionsReader lists collections; CapDataReader lists, gets and counts;
  CapDataSearcher searches; CapDataWriter or CapDataDeleter deletes; CapSystemAdmin runs GC.
- Array query parameters (`options`, `props`, `ids`) may repeat and may also be comma lists. An unknown
  option for the call, a bad `page_size` (not 1..1000), a bad cursor or a bad boolean → 400 PV1012.
- What an object shows: always `id`; with `props` also those properties (builtins allowed); with
  `options=unsafe` every property; with `options=show_builtins` also `_creation_time`,
  `_modification_time`, `_tenant_id` and `_archive_time` (RFC 3339, null while active). An unknown
  property in `props` or in a search → 400 PV1012.
- Listing: objects in id order; the cursor is an opaque token naming the last id returned, so pages stay
  correct when objects are deleted between calls. The last page has `remaining_count` 0 and cursor "".
  With `ids` (at most 1000, else 400): the objects found in the requested state, in request order,
  unknown ids left out, all in one page; `page_size`/`cursor` are ignored.
- Not found (get or single delete): 404 PV3005 "One or more Objects is not found: <id>."; an object in
  the other state (active vs archived) is not found too. A path id that is not a UUID → 400 PV1012.
- Bulk delete: the body must be a JSON array of `{"id": uuid}`; not JSON, not that shape, a non-UUID id,
  more than 1000 ids or an id listed twice → 400 PV1012 and nothing happens. An empty array → ok with no
  results. When any id is unknown or in the other state, nothing is deleted: `ok: false`, failing items
  carry PV3005 (the message says when the object exists in the other state), and every other item
  carries `ok: false` with the emulator's own code PV3999 "not deleted because another object in the
  request failed" (never `ok: true`, which would read as deleted).
- Tenants (`X-Tenant-Id`, comma-separated): every object belongs to one tenant. Calls naming ids (get,
  delete, bulk delete, list with `ids`) fail whole with 403 PV1006 when any existing target belongs to
  another tenant. Listings, searches and counts only see the listed tenants' objects. A tenant-bound
  key behaves as if it always sent its tenants; naming another tenant → 403 PV1006. GC ignores tenants.
- GC: `filter` is all (default, also accepted spelled out), objects_only, tokens_only or
  transaction_ids_only. It deletes oldest archive first: objects, then tokens, then orphaned
  transaction ids, each by collection name, at most 10,000 items per call in total. Transaction ids
  orphaned by this call's token deletions wait for the next call. Rows with a zero count are left out
  (nothing to delete → `[]`). A dry run reports everything available for deletion now, uncapped
  (seed 002: "how many objects and tokens are available for deletion"), so a caller can size the whole
  job before repeating the capped real call. In-memory mode → 405 PV1026.
- Unknown paths → 404 PV1004-style body; a known path with another method → 405 PV1012-style body.
- Capacity (off by default; `sandbox/capacity.py`): every API route but health holds one of the
  database's workers for its cost. Reads, searches, counts, dry-run GC and invalid requests cost the
  base; a delete also costs per item (bulk: its ids, single: 1, GC: what it deleted) and pays before it
  changes anything, GC after. With every worker busy and the queue full → 429 PV1000 "This request
  exceeds the rate limits. Try again later." with Retry-After, and nothing happens.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, get_args

from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from purgewarden.sandbox.capacity import Overloaded, Throttle, Worker
from purgewarden.sandbox.vault.state import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    BulkResult,
    GcFilter,
    ObjectQuery,
    Page,
    VaultBackend,
    VaultError,
    invalid,
    like_pattern,
    normalize_id,
)
from purgewarden.sandbox.vault.store import Capability, Collection, VaultObject

API_PREFIX = "/api/pvlt/1.0"
ERROR_URL = "https://docs.piiano.com/api/error-codes#"

REASONS = frozenset(
    {
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
    }
)

STATUS_OF_CODE = {
    "PV1000": 500,
    "PV1001": 400,
    "PV1002": 400,
    "PV1004": 404,
    "PV1005": 401,
    "PV1006": 403,
    "PV1007": 403,
    "PV1009": 503,
    "PV1012": 400,
    "PV1026": 405,
    "PV1033": 410,
    "PV2001": 501,
    "PV3005": 404,
    "PV3218": 409,
}

_ERROR_OF_STATUS: dict[int, tuple[str, str]] = {
    400: ("PV1012", "The request is not valid against the API specification."),
    401: ("PV1005", "The request is unauthorized."),
    403: ("PV1006", "The operation is forbidden by policy."),
    404: ("PV1004", "The collection is not found."),
    405: ("PV1026", "The operation is not allowed in in-memory mode."),
    409: ("PV3218", "Concurrent conflicting updates to the same object."),
    410: ("PV1033", "The resource is gone."),
    429: ("PV1000", "This request exceeds the rate limits. Try again later."),
    500: ("PV1000", "Something went wrong"),
    501: ("PV2001", "This operation is not implemented."),
    503: ("PV1009", "The operation timed out on the server."),
}


def error_body(status: int) -> dict[str, Any]:
    """The Vault's own error body for an injected status."""
    code, message = _ERROR_OF_STATUS.get(status, ("PV1000", "Something went wrong"))
    return _error_json(VaultError(code, message))


def _error_json(error: VaultError) -> dict[str, Any]:
    return {
        "error_code": error.code,
        "message": error.message,
        "context": error.context,
        "error_url": ERROR_URL + error.code,
    }


# --- query parameters ---


def _list_param(params: QueryParams, name: str) -> list[str]:
    return [part.strip() for value in params.getlist(name) for part in value.split(",") if part.strip()]


def _options(params: QueryParams, *allowed: str) -> set[str]:
    options = set(_list_param(params, "options"))
    for option in sorted(options - set(allowed)):
        raise invalid(f"unknown option {option!r} for this operation.", option=option)
    return options


def _bool(params: QueryParams, name: str) -> bool:
    value = params.get(name)
    if value is None or value.lower() in ("false", "0"):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise invalid(f"{name} must be true or false.", **{name: value})


def _check_reason(params: QueryParams) -> None:
    reason = params.get("reason")
    if not reason:
        raise VaultError("PV1001", "The access reason is missing.")
    if reason not in REASONS:
        raise VaultError("PV1002", "The access reason is invalid.", {"reason": reason})
    if reason == "Other" and not params.get("adhoc_reason"):
        raise VaultError("PV1002", "The access reason Other requires an adhoc_reason.", {"reason": reason})
    _bool(params, "reload_cache")


def _page_size(params: QueryParams) -> int:
    value = params.get("page_size")
    if value is None:
        return DEFAULT_PAGE_SIZE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise invalid(f"page_size must be between 1 and {MAX_PAGE_SIZE}.", page_size=value)
    return int(value)


def _encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode()


def _decode_cursor(params: QueryParams) -> str | None:
    cursor = params.get("cursor")
    if not cursor:
        return None
    try:
        kind, _, last_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind == "after":
            return normalize_id(last_id)
    except (binascii.Error, UnicodeDecodeError, ValueError, VaultError):
        pass
    raise invalid("the cursor is not valid.", cursor=cursor)


def _tenant_header(request: Request) -> frozenset[str] | None:
    tenants = frozenset(t.strip() for t in request.headers.get("x-tenant-id", "").split(",") if t.strip())
    return tenants or None


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise invalid("the body is not valid JSON.") from exc


def _bulk_ids(body: Any) -> list[str]:
    if not isinstance(body, list):
        raise invalid('the body must be a JSON array of {"id": "<uuid>"} objects.')
    ids = []
    for item in body:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise invalid('every item must be an object with a string "id".', item=json.dumps(item)[:200])
        ids.append(item["id"])
    return ids


_SCALARS = (str, int, float, bool, type(None))
_GC_FILTERS: dict[str, GcFilter] = {name: name for name in get_args(GcFilter)}


def _object_query(body: Any) -> ObjectQuery:
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object with match, in and like.")
    for key in sorted(set(body) - {"match", "in", "like"}):
        raise invalid(f"unknown search clause {key!r}.", clause=key)
    match, any_of, like = body.get("match") or {}, body.get("in") or {}, body.get("like") or {}
    if not isinstance(match, dict) or not all(isinstance(v, _SCALARS) for v in match.values()):
        raise invalid("match must map properties to single values.")
    if not isinstance(any_of, dict) or not all(
        isinstance(v, list) and all(isinstance(x, _SCALARS) for x in v) for v in any_of.values()
    ):
        raise invalid("in must map properties to lists of values.")
    if not isinstance(like, dict) or not all(isinstance(v, str) for v in like.values()):
        raise invalid("like must map properties to patterns.")
    return ObjectQuery(match, any_of, {k: like_pattern(v) for k, v in like.items()})


# --- serializers ---


def _time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class _View:
    """Which properties of an object a response shows."""

    def __init__(self, params: QueryParams, options: set[str]) -> None:
        self.props = _list_param(params, "props")
        self.unsafe = "unsafe" in options
        self.builtins = "show_builtins" in options

    def render(self, obj: VaultObject) -> dict[str, Any]:
        shown: dict[str, Any] = {"id": obj.id}
        if self.unsafe:
            shown.update(obj.fields)
        else:
            for name in self.props:
                shown[name] = (
                    _builtin(obj, name) if name.startswith("_") or name == "id" else obj.fields.get(name)
                )
        if self.builtins:
            for name in ("_creation_time", "_modification_time", "_tenant_id", "_archive_time"):
                shown[name] = _builtin(obj, name)
        return shown


def _builtin(obj: VaultObject, name: str) -> Any:
    if name == "_tenant_id":
        return obj.tenant_id
    if name == "_creation_time":
        return _time(obj.creation_time)
    if name == "_modification_time":
        return _time(obj.modification_time)
    if name == "_archive_time":
        return _time(obj.archived_at)
    return obj.id


def _page_json(page: Page, view: _View) -> dict[str, Any]:
    results = [view.render(obj) for obj in page.objects]
    cursor = _encode_cursor(page.objects[-1].id) if page.remaining and page.objects else ""
    return {
        "results": results,
        "paging": {"size": len(results), "remaining_count": page.remaining, "cursor": cursor},
    }


def _collection_json(collection: Collection) -> dict[str, Any]:
    return {
        "name": collection.name,
        "type": collection.type,
        "properties": [
            {
                "name": p.name,
                "data_type_name": p.data_type_name,
                "description": p.description,
                "is_builtin": False,
                "is_encrypted": True,
                "is_index": False,
                "is_nullable": True,
                "is_unique": p.is_unique,
            }
            for p in collection.properties
        ],
        "creation_time": _time(collection.creation_time),
        "modification_time": _time(collection.modification_time),
    }


def _bulk_json(result: BulkResult) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for item in result.items:
        if item.error is None:
            items.append({"id": item.id, "ok": True})
        else:
            items.append({"id": item.id, "ok": False, "error": _error_json(item.error)})
    return {"ok": result.ok, "results": items}


async def _vault_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VaultError)
    return JSONResponse(_error_json(exc), STATUS_OF_CODE.get(exc.code, 500))


async def _overloaded(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Overloaded)
    return JSONResponse(error_body(429), 429, headers={"Retry-After": f"{exc.retry_after:g}"})


async def _routing_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = VaultError("PV1012", "The method is not allowed for this path.", {"method": request.method})
    else:
        error = VaultError("PV1004", "The requested resource is not found.", {"path": request.url.path})
    return JSONResponse(_error_json(error), exc.status_code)


# --- routes ---

Handler = Callable[[Request], Awaitable[Response]]
Deleter = Callable[[Request, Worker], Awaitable[Response]]


def create_app(backend: VaultBackend, throttle: Throttle | None = None) -> Starlette:
    """The Vault API routes over `backend`, each holding a worker of `throttle` (the capacity model;
    none by default). The sandbox adds its control routes and faults around them."""
    throttle = throttle or Throttle()

    def deletes(handler: Deleter) -> Handler:
        """Hold a worker for the request; the handler charges the items it deletes."""

        async def held(request: Request) -> Response:
            async with throttle.worker() as worker:
                return await handler(request, worker)

        return held

    def reads(handler: Handler) -> Handler:
        """Hold a worker for the base cost only."""
        return deletes(lambda request, _: handler(request))

    def authorize(request: Request, *capabilities: Capability) -> frozenset[str] | None:
        """Check the key and its capabilities; return the tenants the request may touch."""
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        key = backend.authenticate(secret.strip() if scheme.lower() == "bearer" else None)
        backend.authorize(key, *capabilities)
        return backend.tenant_scope(key, _tenant_header(request))

    async def data_health(request: Request) -> Response:
        return JSONResponse({"status": "pass"})

    async def list_collections(request: Request) -> Response:
        authorize(request, Capability.COLLECTIONS_READER)
        return JSONResponse([_collection_json(c) for c in backend.list_collections()])

    async def list_objects(request: Request) -> Response:
        tenants = authorize(request, Capability.DATA_READER)
        params = request.query_params
        _check_reason(params)
        options = _options(params, "archived", "unsafe", "show_builtins")
        view = _View(params, options)
        ids = _list_param(params, "ids") if "ids" in params else None
        page = backend.list_objects(
            request.path_params["collection"],
            archived="archived" in options,
            tenants=tenants,
            ids=ids,
            page_size=_page_size(params),
            after=_decode_cursor(params),
            props=view.props,
        )
        return JSONResponse(_page_json(page, view))

    async def get_object_by_id(request: Request) -> Response:
        tenants = authorize(request, Capability.DATA_READER)
        params = request.query_params
        _check_reason(params)
        options = _options(params, "archived", "unsafe", "show_builtins")
        view = _View(params, options)
        obj = backend.get_object_by_id(
            request.path_params["collection"],
            request.path_params["object_id"],
            archived="archived" in options,
            tenants=tenants,
            props=view.props,
        )
        return JSONResponse(view.render(obj))

    async def count_objects(request: Request) -> Response:
        tenants = authorize(request, Capability.DATA_READER)
        _check_reason(request.query_params)
        _options(request.query_params)
        active, archived = backend.count_objects(request.path_params["collection"], tenants=tenants)
        return JSONResponse({"active": active, "archived": archived, "total": active + archived})

    async def search_objects(request: Request) -> Response:
        tenants = authorize(request, Capability.DATA_SEARCHER)
        params = request.query_params
        _check_reason(params)
        options = _options(params, "archived", "unsafe", "show_builtins")
        view = _View(params, options)
        page_size, after = _page_size(params), _decode_cursor(params)
        backend.get_collection(request.path_params["collection"])
        page = backend.search_objects(
            request.path_params["collection"],
            _object_query(await _json_body(request)),
            archived="archived" in options,
            tenants=tenants,
            page_size=page_size,
            after=after,
            props=view.props,
        )
        return JSONResponse(_page_json(page, view))

    async def delete_objects(request: Request, worker: Worker) -> Response:
        tenants = authorize(request, Capability.DATA_WRITER, Capability.DATA_DELETER)
        _check_reason(request.query_params)
        options = _options(request.query_params, "archived")
        backend.get_collection(request.path_params["collection"])
        ids = _bulk_ids(await _json_body(request))
        await worker.spend(len(ids))
        result = backend.delete_objects(
            request.path_params["collection"], ids, archived="archived" in options, tenants=tenants
        )
        return JSONResponse(_bulk_json(result))

    async def delete_object_by_id(request: Request, worker: Worker) -> Response:
        tenants = authorize(request, Capability.DATA_WRITER, Capability.DATA_DELETER)
        _check_reason(request.query_params)
        options = _options(request.query_params, "archived")
        await worker.spend(1)
        backend.delete_object_by_id(
            request.path_params["collection"],
            request.path_params["object_id"],
            archived="archived" in options,
            tenants=tenants,
        )
        return Response(status_code=200)

    async def garbage_collection(request: Request, worker: Worker) -> Response:
        authorize(request, Capability.SYSTEM_ADMIN)
        params = request.query_params
        _check_reason(params)
        requested = params.get("filter") or "all"
        gc_filter = _GC_FILTERS.get(requested)
        if gc_filter is None:
            raise invalid(f"unknown filter {requested!r}.", filter=requested)
        dry_run = _bool(params, "dry_run")
        rows = backend.garbage_collection(gc_filter, dry_run=dry_run)
        await worker.spend(0 if dry_run else sum(r.count for r in rows))
        return JSONResponse(
            [
                {"collection_name": r.collection_name, "collection_type": r.collection_type, "count": r.count}
                for r in rows
            ]
        )

    objects = API_PREFIX + "/data/collections/{collection}"
    routes: list[tuple[str, str, Handler]] = [
        ("GET", API_PREFIX + "/data/info/health", data_health),  # a probe: never queued behind work
        ("GET", API_PREFIX + "/ctl/collections", reads(list_collections)),
        ("GET", objects + "/objects", reads(list_objects)),
        ("GET", objects + "/objects/{object_id}", reads(get_object_by_id)),
        ("DELETE", objects + "/objects/{object_id}", deletes(delete_object_by_id)),
        ("GET", objects + "/count/objects", reads(count_objects)),
        ("POST", objects + "/query/objects", reads(search_objects)),
        ("DELETE", objects + "/bulk/objects", deletes(delete_objects)),
        ("POST", API_PREFIX + "/system/admin/lifecycle/gc", deletes(garbage_collection)),
    ]
    return Starlette(
        routes=[Route(path, handler, methods=[method]) for method, path, handler in routes],
        exception_handlers={
            VaultError: _vault_error,
            Overloaded: _overloaded,
            HTTPException: _routing_error,
        },
    )
