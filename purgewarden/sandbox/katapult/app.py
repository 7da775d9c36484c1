"""Katapult Core API v1 over HTTP: routes that parse arguments the way Katapult's framework (Apia) does,
call the backend, and serialize. Every refusal becomes `{"error": {code, description, detail}}` with
`X-Api-Schema: json-error` in one place, `_error_response`; the status comes from the `ERRORS` table.

Chosen behaviours (where the docs are silent):
- Arguments: query parameters (`organization[sub_domain]=acme`) deep-merged with the JSON body, the body
  winning key by key; a body is read only when sent as `application/json`, and a JSON value that is not an
  object is ignored (both as Apia). A lookup absent from both takes its first key (`id`, `region`, `name`)
  from the path segment, so `/organizations/org_abc/trash_objects` means `organization[id]=org_abc`; `_`
  and the literal placeholder (`organization`) are ids like any other and match nothing.
- Order of checks: rate limit → route → token (missing, unknown, network) → scope → arguments → lookups.
  An unknown method on a known path is `route_not_found`, as Apia routes on method and path together.
- Rate limit: `rate_limit` requests per caller (the bearer token, or the client address when there is none)
  in a fixed 60-second window opened by the caller's first request; every response counts, 429s included.
- Organizations a token may not act on are hidden (404 `organization_not_found`, `trash_object_not_found`,
  `task_not_found`) where the operation documents no `permission_denied` (list trash objects, get trash
  object, get task) and refused with 403 `permission_denied` where it does (purge all, purge one, restore).
  List organizations shows only the token's. Suspension and activation are checked where an organization is
  the argument (list trash objects, purge all), not on single trash objects (the spec lists neither there).
- Trash lists are in the order objects were trashed, oldest first; `total_pages` is ceil(total / per_page)
  (0 for an empty trash); a page past the end is empty; `large_set` is always false.
- Purge tasks (purge all and purge one) are `pending` for the first quarter of `task_seconds`, then `running`
  with progress 0..99, then `completed` (progress 100), at which moment the objects that were in the trash
  when the task was created are purged; objects trashed later stay, and restoring one before then rescues
  it. A purge all while the organization's previous purge all is unfinished returns that task; purging one
  object that an unfinished task already covers returns that task. A task set up to fail
  (`backend.fail_next_purge`) fails at progress 50, five eighths of the way, and deletes nothing.
- Restore takes the object out of the trash at once and returns it as it was. Purging an
  `ObjectStorageAccount` deletes the account with its buckets (then 404 `object_storage_account_not_found`);
  restoring it makes its buckets usable again.
- Buckets belong to the token's organization, as a real API token belongs to one organization; the demo
  tokens are bound as `seed.py` lists, and the OAuth2 token (a user's, no organization) gets 403
  `permission_denied`. Checks: cluster → account (404 not found, 406 in trash, 403 suspended, 403 not
  provisioned) → bucket → injected ambiguity (500); revoke then → injected `network_error` (504).
- Not emulated: `invalid_capabilities_token` (no capabilities tokens here; inject it as a fault body),
  `missing_required_argument` (every lookup can fall back on its path segment), purging at `keep_until`,
  OPTIONS/CORS.
- `error_body(status)`, the body of an injected status: 400 `invalid_argument`, 403 `permission_denied`,
  404 `route_not_found`, 406 `task_queueing_error`, 429 `rate_limit_reached`, 500 `unhandled_exception`,
  503 `service_unavailable`, 504 `network_error`; any other 4xx `invalid_argument`, 5xx `unhandled_exception`.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from purgewarden.sandbox.katapult.models import (
    ApiToken,
    Bucket,
    KatapultError,
    Lookup,
    Organization,
    TaskSnapshot,
    TrashObject,
)
from purgewarden.sandbox.katapult.state import KatapultBackend, Page

API_PREFIX = "/core/v1"
DEFAULT_RATE_LIMIT = 1000

ERRORS: dict[str, tuple[int, str]] = {
    "invalid_argument": (400, "An argument is invalid"),
    "invalid_json_body": (400, "The JSON body provided with this request is invalid"),
    "missing_api_token": (
        400,
        "No API token was provided in the Authorization header. Ensure a token is provided prefixed with Bearer",
    ),
    "invalid_api_token": (403, "The API token provided was not valid (it may not exist or have expired)"),
    "unauthorized_network_for_api_token": (
        403,
        "Network is not allowed to access the API with this API token",
    ),
    "scope_not_granted": (
        403,
        "The scope required for this endpoint has not been granted to the authenticating identity",
    ),
    "permission_denied": (403, "The authenticated identity is not permitted to perform this action"),
    "organization_suspended": (
        403,
        "An organization was found from the arguments provided but it was suspended",
    ),
    "organization_not_activated": (
        403,
        "An organization was found from the arguments provided but it wasn't activated yet",
    ),
    "object_storage_account_not_provisioned": (
        403,
        "An object storage account was found but it is not provisioned. "
        "If the problem persists, try re-creating the account.",
    ),
    "object_storage_account_suspended": (
        403,
        "An object storage account was found from the arguments provided but it is suspended",
    ),
    "route_not_found": (404, "No route matches the request"),
    "organization_not_found": (
        404,
        "No organization was found matching any of the criteria provided in the arguments",
    ),
    "trash_object_not_found": (
        404,
        "No trash object was found matching any of the criteria provided in the arguments",
    ),
    "task_not_found": (404, "No task was found matching any of the criteria provided in the arguments"),
    "object_storage_cluster_not_found": (
        404,
        "No object storage cluster was found matching any of the criteria provided in the arguments",
    ),
    "object_storage_account_not_found": (
        404,
        "No object storage account was found matching any of the criteria provided in the arguments",
    ),
    "object_storage_bucket_not_found": (
        404,
        "No object storage bucket was found matching any of the criteria provided in the arguments",
    ),
    "object_in_trash": (
        406,
        "The object found is in the trash and therefore cannot be manipulated through the API. "
        "It should be restored in order to run this operation.",
    ),
    "task_queueing_error": (
        406,
        "This error means that a background task that was needed to complete your request could not be queued",
    ),
    "rate_limit_reached": (429, "You have reached the rate limit for this type of request"),
    "unhandled_exception": (500, "This is an exception that has occurred and not been handled."),
    "multiple_object_storage_buckets_found": (
        500,
        "Multiple object storage buckets were found matching the criteria provided in the arguments",
    ),
    "service_unavailable": (503, "The service is currently unavailable, please try again later"),
    "network_error": (504, "A network error occurred while performing the action. Please try again."),
}

_INJECTED: dict[int, KatapultError] = {
    400: KatapultError("invalid_argument"),
    403: KatapultError("permission_denied", {"details": None}),
    404: KatapultError("route_not_found"),
    406: KatapultError("task_queueing_error", {"details": "The task queue is unavailable"}),
    429: KatapultError("rate_limit_reached", {"total_permitted": DEFAULT_RATE_LIMIT}),
    500: KatapultError("unhandled_exception"),
    503: KatapultError("service_unavailable"),
    504: KatapultError("network_error"),
}

_ISSUES = {
    "object_expected": "An object was expected for this argument.",
    "invalid_scalar": "The value provided was not of an appropriate type for the scalar that was requested.",
    "validation_errors": "A validation rule that has been specified for this argument was not satisfied.",
    "missing_lookup_value": "A value for a lookup argument set has not been provided "
    "but at least one value is required.",
    "ambiguous_lookup_values": "More than one value has been provided for a lookup argument set. "
    "Only one option may be provided.",
}
_NESTED_KEY = re.compile(r"([A-Za-z_]\w*)\[(\w+)\]")
_INTEGER = re.compile(r"[+-]?\d+")

ORGANIZATION = ("organization", ("id", "sub_domain"))
TRASH_OBJECT = ("trash_object", ("id", "object_id"))
TASK = ("task", ("id",))
CLUSTER = ("object_storage_cluster", ("region",))
BUCKET = ("bucket", ("name",))


def error_body(status: int) -> dict[str, Any]:
    """The Katapult error body for an injected status."""
    fallback = KatapultError("invalid_argument" if status < 500 else "unhandled_exception")
    return _error_payload(_INJECTED.get(status, fallback))


class Arguments:
    """One request's arguments: query parameters deep-merged with the JSON body, and the path segments."""

    def __init__(self, values: dict[str, Any], path_params: Mapping[str, str], operation: str) -> None:
        self._values = values
        self._path_params = path_params
        self._operation = operation

    @classmethod
    def parse(
        cls, query: QueryParams, json_body: bytes, path_params: Mapping[str, str], operation: str
    ) -> Arguments:
        """Apia's merge: the JSON body (read only when sent as JSON) wins over the query, key by key."""
        values: dict[str, Any] = {}
        for key, value in query.multi_items():
            nested = _NESTED_KEY.fullmatch(key)
            if nested is None:
                values[key] = value
                continue
            inner = values.get(nested[1])
            if not isinstance(inner, dict):
                inner = values[nested[1]] = {}
            inner[nested[2]] = value
        if json_body.strip():
            try:
                parsed = json.loads(json_body)
            except ValueError as exc:
                raise KatapultError("invalid_json_body", {"details": str(exc)}) from exc
            if isinstance(parsed, dict):
                for name, given in parsed.items():
                    current = values.get(name)
                    if isinstance(current, dict) and isinstance(given, dict):
                        given = {**current, **given}
                    values[name] = given
        return cls(values, path_params, operation)

    def lookup(self, argument: tuple[str, tuple[str, ...]]) -> Lookup:
        """The one key given for a lookup argument set (e.g. `("sub_domain", "acme")`)."""
        name, keys = argument
        given = self._values[name] if name in self._values else {keys[0]: self._path_params[name]}
        if not isinstance(given, dict):
            raise self._invalid(name, "object_expected")
        present = [(key, given[key]) for key in keys if given.get(key) is not None]
        if any(not isinstance(value, str) for _, value in present):
            raise self._invalid(name, "invalid_scalar")
        if not present:
            raise self._invalid(name, "missing_lookup_value")
        if len(present) > 1:
            raise self._invalid(name, "ambiguous_lookup_values")
        return present[0]

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        raw = self._values.get(name)
        if raw is None:
            return default
        if isinstance(raw, bool) or not (
            isinstance(raw, int) or (isinstance(raw, str) and _INTEGER.fullmatch(raw))
        ):
            raise self._invalid(name, "invalid_scalar")
        value = int(raw)
        errors = []
        if value < minimum:
            errors.append(f"Must be greater than or equal to {minimum}")
        if maximum is not None and value > maximum:
            errors.append(f"Must be less than or equal to {maximum}")
        if errors:
            raise self._invalid(name, "validation_errors", errors)
        return value

    def _invalid(self, name: str, issue: str, errors: list[str] | None = None) -> KatapultError:
        detail = {
            "path": [name],
            "index": None,
            "issue": issue,
            "issue_description": _ISSUES[issue],
            "errors": errors or [],
            "argument": {"id": f"CoreAPI/{self._operation}/{name}", "name": name, "description": None},
        }
        return KatapultError("invalid_argument", detail, f"The '{name}' argument is invalid")


# Operations: parse the arguments, call the backend, serialize the result.

Handler = Callable[[KatapultBackend, ApiToken, Arguments], dict[str, Any]]


@dataclass(frozen=True)
class Operation:
    name: str
    scopes: tuple[str, ...]
    """Any one of these grants the operation."""
    run: Handler


def _list_organizations(backend: KatapultBackend, token: ApiToken, args: Arguments) -> dict[str, Any]:
    return {"organizations": [_organization(o) for o in backend.list_organizations(token)]}


def _list_trash_objects(backend: KatapultBackend, token: ApiToken, args: Arguments) -> dict[str, Any]:
    organization = args.lookup(ORGANIZATION)
    page = args.integer("page", 1, minimum=1)
    per_page = args.integer("per_page", 30, minimum=1, maximum=200)
    found = backend.list_trash_objects(token, organization, page, per_page)
    return {"pagination": _pagination(found), "trash_objects": [_trash_object(t) for t in found.items]}


def _purge_all_trash_objects(backend: KatapultBackend, token: ApiToken, args: Arguments) -> dict[str, Any]:
    return {"task": _task(backend.purge_all_trash_objects(token, args.lookup(ORGANIZATION)))}


def _get_trash_object(backend: KatapultBackend, token: ApiToken, args: Arguments) -> dict[str, Any]:
    return {"trash_object": _trash_object(backend.get_trash_object(token, args.lookup(TRASH_OBJECT)))}


def _purge_trash_object(backend: KatapultBackend, token: ApiToken, args: Arguments) -> dict[str, Any]:
    return {"task": _task(backend.purge_trash_object(token, args.lookup(TRASH_OBJECT)))}


def _restore_trash_object(backend: KatapultBackend, token: ApiToken, args: Arguments) -> dict[str, Any]:
    return {"trash_object": _trash_object(backend.restore_trash_object(token, args.lookup(TRASH_OBJECT)))}


def _get_task(backend: KatapultBackend, token: ApiToken, args: Arguments) -> dict[str, Any]:
    return {"task": _task(backend.get_task(token, args.lookup(TASK)))}


def _get_bucket(backend: KatapultBackend, token: ApiToken, args: Arguments) -> dict[str, Any]:
    cluster, bucket = args.lookup(CLUSTER), args.lookup(BUCKET)
    return {"object_storage_bucket": _bucket(backend.get_bucket(token, cluster, bucket))}


def _revoke_presigned_urls(backend: KatapultBackend, token: ApiToken, args: Arguments) -> dict[str, Any]:
    cluster, bucket = args.lookup(CLUSTER), args.lookup(BUCKET)
    backend.revoke_presigned_urls(token, cluster, bucket)
    return {"success": True}


ROUTES: dict[str, dict[str, Operation]] = {
    "/organizations": {
        "GET": Operation("list_organizations", ("organizations:read",), _list_organizations),
    },
    "/organizations/{organization}/trash_objects": {
        "GET": Operation("list_trash_objects", ("trash_objects:read",), _list_trash_objects),
    },
    "/organizations/{organization}/trash_objects/purge_all": {
        "POST": Operation("purge_all_trash_objects", ("trash_objects:purge",), _purge_all_trash_objects),
    },
    "/trash_objects/{trash_object}": {
        "GET": Operation("get_trash_object", ("trash_objects:read",), _get_trash_object),
        "DELETE": Operation("purge_trash_object", ("trash_objects:purge",), _purge_trash_object),
    },
    "/trash_objects/{trash_object}/restore": {
        "POST": Operation("restore_trash_object", ("trash_objects:restore",), _restore_trash_object),
    },
    "/tasks/{task}": {
        "GET": Operation("get_task", ("tasks", "tasks:read"), _get_task),
    },
    "/object_storage/{object_storage_cluster}/buckets/{bucket}": {
        "GET": Operation("get_bucket", ("object_storage:read",), _get_bucket),
    },
    "/object_storage/{object_storage_cluster}/buckets/{bucket}/revoke_presigned_urls": {
        "POST": Operation("revoke_presigned_urls", ("object_storage",), _revoke_presigned_urls),
    },
}


# Serializers: the only place that decides status codes and bodies.


def _organization(organization: Organization) -> dict[str, Any]:
    return {
        "id": organization.id,
        "name": organization.name,
        "sub_domain": organization.sub_domain,
        "infrastructure_domain": organization.infrastructure_domain,
        "created_at": organization.created_at,
        "activated_at": organization.activated_at,
        "suspended": organization.suspended,
        "managed": organization.managed,
    }


def _trash_object(trash_object: TrashObject) -> dict[str, Any]:
    return {
        "id": trash_object.id,
        "keep_until": trash_object.keep_until,
        "object_id": trash_object.object_id,
        "object_type": trash_object.object_type,
    }


def _task(task: TaskSnapshot) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "status": task.status,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "progress": task.progress,
    }


def _pagination(page: Page[TrashObject]) -> dict[str, Any]:
    return {
        "current_page": page.page,
        "total_pages": math.ceil(page.total / page.per_page),
        "total": page.total,
        "per_page": page.per_page,
        "large_set": False,
    }


def _bucket(bucket: Bucket) -> dict[str, Any]:
    acl = bucket.access_control_list
    return {
        "name": bucket.name,
        "label": bucket.label,
        "created_at": bucket.created_at,
        "state": bucket.state,
        "custom_domain": bucket.custom_domain,
        "object_count": bucket.object_count,
        "size": bucket.size,
        "serve_static_site": bucket.serve_static_site,
        "static_site_index": bucket.static_site_index,
        "static_site_error": bucket.static_site_error,
        "public_url": bucket.public_url,
        "access_control_list": {
            "public_read": acl.public_read,
            "public_list": acl.public_list,
            "all_keys_read": acl.all_keys_read,
            "all_keys_write": acl.all_keys_write,
            "read_key_ids": list(acl.read_key_ids),
            "write_key_ids": list(acl.write_key_ids),
        },
    }


def _error_payload(error: KatapultError) -> dict[str, Any]:
    status_description = ERRORS[error.code][1]
    detail = {k: _trash_object(v) if isinstance(v, TrashObject) else v for k, v in error.detail.items()}
    return {
        "error": {
            "code": error.code,
            "description": error.description or status_description,
            "detail": detail,
        }
    }


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str]) -> Response:
    return Response(json.dumps(body), status, headers, media_type="application/json")


def _error_response(error: KatapultError, headers: dict[str, str]) -> Response:
    return _json_response(
        ERRORS[error.code][0], _error_payload(error), {**headers, "X-Api-Schema": "json-error"}
    )


def _bearer(authorization: str | None) -> str | None:
    scheme, _, secret = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return secret.strip() or None


class _Endpoint:
    """One path's ASGI app: the checks every operation shares, then the operation for the method."""

    def __init__(self, backend: KatapultBackend, methods: Mapping[str, Operation]) -> None:
        self.backend = backend
        self.methods = methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        backend = self.backend
        secret = _bearer(request.headers.get("authorization"))
        address = request.client.host if request.client else ""
        quota = backend.consume_request(secret or f"address:{address}")
        headers = {
            "X-Ratelimit-Permitted": str(quota.permitted),
            "X-Ratelimit-Remaining": str(quota.remaining),
            "X-Request-Id": str(uuid.uuid4()),
        }
        try:
            if quota.exceeded:
                raise KatapultError("rate_limit_reached", {"total_permitted": quota.permitted})
            operation = self.methods.get(request.method)
            if operation is None:
                path = request.url.path.removeprefix(API_PREFIX + "/")
                raise KatapultError(
                    "route_not_found", description=f"No route matches '{path}' for {request.method}"
                )
            token = backend.authenticate(secret, address)
            if not token.grants_any(operation.scopes):
                raise KatapultError("scope_not_granted", {"scopes": list(operation.scopes)})
            is_json = request.headers.get("content-type", "").startswith("application/json")
            body = await request.body() if is_json else b""
            args = Arguments.parse(request.query_params, body, request.path_params, operation.name)
            backend.raise_if_crashing(operation.name)
            return _json_response(200, operation.run(backend, token, args), headers)
        except KatapultError as error:
            return _error_response(error, headers)
        except Exception:
            return _error_response(KatapultError("unhandled_exception"), headers)


def create_app(backend: KatapultBackend) -> ASGIApp:
    """The API routes under `/core/v1`; anything else is `route_not_found`."""
    routes = [Route(API_PREFIX + path, _Endpoint(backend, methods)) for path, methods in ROUTES.items()]
    return Router(routes, redirect_slashes=False, default=_Endpoint(backend, {}))
