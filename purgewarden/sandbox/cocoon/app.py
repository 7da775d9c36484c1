"""HTTP face of the Cocoon Data access-service emulator: `/api/v1/...` routes over `CocoonBackend`.

Routes parse input, call the backend and serialize; `CocoonError` is turned into a response in one place.

Chosen behaviours (where the vendor documentation is silent or self-contradictory):

- Errors use Spring Boot's body `{"timestamp", "status", "error", "message", "path"}` (the API publishes no
  error format; this one is the emulator's choice). Unknown routes and methods (404, 405) use it too, and a
  401 also sends `WWW-Authenticate: Bearer`.
- Order of checks, as in a Spring service: token (401) → query parameters (400) → organisation exists
  (404) → caller is an Originator there (403; a non-member gets the same 403). Per-item routes: token
  (401) → the item is at the top of one of the caller's own bins (else 404, so another user's item is
  indistinguishable from a missing one) → Originator in the item's organisation (403).
- Listing: `limit` and `offset` are Java ints ≥ 0 (`limit` 0 = everything, default 10; `offset` default 0,
  past the end gives no items),
  `orderBy` ASC/DESC (default DESC) and `sortBy` name/size/time (default time), both case-insensitive; an
  empty value means the default (as Spring's `defaultValue` does); anything else is 400. `sortBy=size` sorts
  by `totalVersionSize` and `time` by `recycledTime` (the vendor page swaps these descriptions by mistake);
  names sort case-insensitively; ties are broken by id, so pages are stable.
- `count` is the number of items in this response, as in the vendor's example (the page's prose calls it "the
  maximum number of items that can be returned", which the example contradicts). The size of the whole bin
  is therefore `count` of a `limit=0` listing. `count` and `offset` are JSON strings, as in the example.
- Only top-level recycled items are listed and addressable by `/recycle-bin/items/{itemId}`; the contents of
  a recycled folder are neither (404), but are restored and deleted with it. A folder's `totalVersionSize`
  is the sum over everything inside it.
- `daysToPurge` is the whole days left of a 30-day purge period (29 just after recycling, 0 on the last day).
  Items are purged when the 30 days are up, with the same effects as deleting them; the emulator does this
  lazily, before it next reads or changes that bin, which no caller can tell apart from a purge job.
- Emptying and per-item delete: a file object becomes state Deleted (kept in `backend.items`, no longer in
  any bin); a folder and everything inside it is removed entirely. Emptying, restoring and deleting answer
  `200 OK` with an empty body, as the vendor page says ("a JSON response for successful GET requests only").
- Restoring puts the item (and a folder's contents) back at its `parentId`; it no longer appears in the bin.
- `GET /api/v1` (discovery) needs any valid token; `contentServiceURL`/`webappServiceURL` name the demo
  tenant's hosts, which the sandbox does not serve.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from purgewarden.sandbox.cocoon.state import (
    CocoonBackend,
    CocoonError,
    ErrorCode,
    Item,
    SortField,
    days_to_purge,
    iso_millis,
)

T = TypeVar("T")

DEFAULT_LIMIT = 10
JAVA_INT_MAX = 2**31 - 1
SORT_FIELDS: dict[str, SortField] = {"name": "name", "size": "size", "time": "time"}
DESCENDING_BY_ORDER = {"asc": False, "desc": True}
STATUS_BY_CODE: dict[ErrorCode, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
}

RECYCLE_BIN_PATH = "/api/v1/organisations/{orgId}/recycle-bin/items"
RECYCLE_BIN_ITEM_PATH = "/api/v1/recycle-bin/items/{itemId}"
"""Route templates, also the `link`s that discovery reports."""
SERVICES = [
    {"name": "getRecycleBinItems", "link": RECYCLE_BIN_PATH, "httpMethod": "GET"},
    {"name": "deleteRecycleBinItems", "link": RECYCLE_BIN_PATH, "httpMethod": "DELETE"},
    {"name": "getRecycleBinItem", "link": RECYCLE_BIN_ITEM_PATH, "httpMethod": "GET"},
    {"name": "restoreRecycleBinItem", "link": RECYCLE_BIN_ITEM_PATH, "httpMethod": "PUT"},
    {"name": "deleteRecycleBinItem", "link": RECYCLE_BIN_ITEM_PATH, "httpMethod": "DELETE"},
]
DISCOVERY = {
    "contentServiceURL": "https://content-service.xy-company.com",
    "webappServiceURL": "https://xy-company.com",
    "services": SERVICES,
}


def error_body(
    status: int, message: str = "No message available", path: str = "", now: float | None = None
) -> dict[str, Any]:
    """Spring Boot's error shape; injected faults get it with an empty path and the real time."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown Status"
    timestamp = iso_millis(round((time.time() if now is None else now) * 1000))
    return {"timestamp": timestamp, "status": status, "error": reason, "message": message, "path": path}


def create_app(backend: CocoonBackend) -> Starlette:
    """The access-service routes (without the sandbox's control plane)."""

    async def discover(request: Request) -> Response:
        backend.authenticate(_bearer_token(request))
        return JSONResponse(DISCOVERY)

    async def list_recycle_bin(request: Request) -> Response:
        user = backend.authenticate(_bearer_token(request))
        limit = _non_negative_int(request, "limit", DEFAULT_LIMIT)
        offset = _non_negative_int(request, "offset", 0)
        descending = _choice(request, "orderBy", DESCENDING_BY_ORDER, default="desc")
        sort_by = _choice(request, "sortBy", SORT_FIELDS, default="time")
        items = backend.list_recycle_bin(
            user,
            request.path_params["orgId"],
            limit=limit,
            offset=offset,
            descending=descending,
            sort_by=sort_by,
        )
        now = backend.clock.now()
        return JSONResponse(
            {"items": [_item(item, now) for item in items], "count": str(len(items)), "offset": str(offset)}
        )

    async def empty_recycle_bin(request: Request) -> Response:
        user = backend.authenticate(_bearer_token(request))
        backend.empty_recycle_bin(user, request.path_params["orgId"])
        return Response(status_code=200)

    async def get_recycle_bin_item(request: Request) -> Response:
        user = backend.authenticate(_bearer_token(request))
        item = backend.get_recycle_bin_item(user, request.path_params["itemId"])
        return JSONResponse(_item(item, backend.clock.now()))

    async def restore_recycle_bin_item(request: Request) -> Response:
        user = backend.authenticate(_bearer_token(request))
        backend.restore_recycle_bin_item(user, request.path_params["itemId"])
        return Response(status_code=200)

    async def delete_recycle_bin_item(request: Request) -> Response:
        user = backend.authenticate(_bearer_token(request))
        backend.delete_recycle_bin_item(user, request.path_params["itemId"])
        return Response(status_code=200)

    async def refused(request: Request, exc: Exception) -> Response:
        """The one place a refusal becomes a status, headers and a Spring-style body."""
        if isinstance(exc, CocoonError):
            status, message = STATUS_BY_CODE[exc.code], exc.message
            headers = {"WWW-Authenticate": 'Bearer realm="cocoon"'} if exc.code == "unauthorized" else {}
        else:  # Starlette's own 404 (no route) and 405 (wrong method)
            assert isinstance(exc, HTTPException)
            status, message, headers = exc.status_code, exc.detail, dict(exc.headers or {})
        body = error_body(status, message, request.url.path, backend.clock.now())
        return JSONResponse(body, status, headers=headers)

    return Starlette(
        routes=[
            Route("/api/v1", discover, methods=["GET"]),
            Route(RECYCLE_BIN_PATH, list_recycle_bin, methods=["GET"]),
            Route(RECYCLE_BIN_PATH, empty_recycle_bin, methods=["DELETE"]),
            Route(RECYCLE_BIN_ITEM_PATH, get_recycle_bin_item, methods=["GET"]),
            Route(RECYCLE_BIN_ITEM_PATH, restore_recycle_bin_item, methods=["PUT"]),
            Route(RECYCLE_BIN_ITEM_PATH, delete_recycle_bin_item, methods=["DELETE"]),
        ],
        exception_handlers={CocoonError: refused, HTTPException: refused},
    )


def _item(item: Item, now: float) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "type": item.type.value,
        "recycledTime": iso_millis(item.recycled_ms),
        "totalVersionSize": str(item.size),
        "requestorEmail": item.requestor_email,
        "shared": item.shared,
        "organisationId": item.organisation_id,
        "parentId": item.parent_id,
        "ownerId": item.owner_id,
        "daysToPurge": days_to_purge(item, now),
    }


def _bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _non_negative_int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name, "")
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10 and int(raw) <= JAVA_INT_MAX):
        raise CocoonError(
            "bad_request",
            f"Invalid value '{raw}' for parameter '{name}': expected an integer from 0 to {JAVA_INT_MAX}",
        )
    return int(raw)


def _choice(request: Request, name: str, choices: dict[str, T], default: str) -> T:
    """An enum parameter, matched case-insensitively."""
    raw = request.query_params.get(name) or default
    if raw.lower() not in choices:
        expected = " or ".join(choices)
        raise CocoonError(
            "bad_request", f"Invalid value '{raw}' for parameter '{name}': expected {expected} (any case)"
        )
    return choices[raw.lower()]
