"""Contract test: the Katapult emulator's answers against the vendor's OpenAPI document.

Each case makes one real request to one implemented operation and checks that the status is one the
document lists for that operation and that the body (an error unwrapped from its `error` envelope) validates
against that response's schema, `$ref`s resolved within the whole document. The document is made strict
first: OpenAPI 3.0's `nullable` becomes a JSON Schema null type, and every object schema requires all its
declared properties and allows no others, so a missing or an extra field fails as well.

Some codes come from api/katapult.md rather than from the operation's responses in the document: the
framework's own errors (checked against a generic error schema and the status katapult.md gives them) and
the object storage account errors of the bucket operations (checked against the document's own schemas for
those codes). A last test makes sure every code the emulator can emit has a case here.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from purgewarden.sandbox import Fault, Sandbox
from purgewarden.sandbox.katapult import (
    DEMO_TOKEN,
    GLOBEX_TOKEN,
    INITECH_TOKEN,
    OAUTH_TOKEN,
    OFFICE_ONLY_TOKEN,
    UMBRELLA_TOKEN,
)
from purgewarden.sandbox.katapult.app import ERRORS
from purgewarden.sandbox.katapult.models import ApiToken
from tests.sandbox.katapult_http import client, trash_of

# The project's checkout sits beside shared/ (as in CI); KATAPULT_OPENAPI points elsewhere.
SHARED_SPEC = Path(__file__).resolve().parents[3] / "shared" / "specs" / "katapult-core-openapi.json"
SPEC_PATH = Path(os.environ.get("KATAPULT_OPENAPI", str(SHARED_SPEC)))
DOCUMENT_URI = "urn:katapult-core-openapi"
NO_SCOPES_TOKEN = "kp-contract-no-scopes"

LIST_ORGANIZATIONS = ("get", "/organizations")
LIST_TRASH = ("get", "/organizations/organization/trash_objects")
PURGE_ALL = ("post", "/organizations/organization/trash_objects/purge_all")
GET_TRASH = ("get", "/trash_objects/trash_object")
PURGE_ONE = ("delete", "/trash_objects/trash_object")
RESTORE = ("post", "/trash_objects/trash_object/restore")
GET_TASK = ("get", "/tasks/task")
GET_BUCKET = ("get", "/object_storage/object_storage_cluster/buckets/bucket")
REVOKE = ("post", "/object_storage/object_storage_cluster/buckets/bucket/revoke_presigned_urls")

FRAMEWORK_ERRORS = {
    "invalid_argument": 400,
    "invalid_json_body": 400,
    "route_not_found": 404,
    "unhandled_exception": 500,
}
"""Apia's errors, which the document leaves out of every operation: code → status per api/katapult.md."""
ACCOUNT_ERRORS = {
    "object_storage_account_not_found": "ObjectStorageAccountNotFoundSchema",
    "object_storage_account_suspended": "ObjectStorageAccountSuspendedSchema",
    "object_storage_account_not_provisioned": "ObjectStorageAccountNotProvisionedSchema",
}
"""Errors api/katapult.md lists for the bucket operations, with the document's schema for each."""
GENERIC_ERROR = {
    "type": "object",
    "properties": {
        "code": {"type": "string"},
        "description": {"type": "string"},
        "detail": {"type": "object"},
    },
    "required": ["code", "description", "detail"],
    "additionalProperties": False,
}

if not SPEC_PATH.exists():
    if os.environ.get("CI"):  # CI always has shared/ beside the checkout: a missing spec is a broken run
        raise FileNotFoundError(SPEC_PATH)
    pytest.skip(
        f"the Katapult OpenAPI document is not at {SPEC_PATH} (set KATAPULT_OPENAPI)", allow_module_level=True
    )


# The document, made strict and registered for $ref resolution


def _strict(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema: `nullable` as a null type; declared properties required and closed."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _strict(value) for key, value in node.items() if key != "nullable"}
    if isinstance(converted.get("properties"), dict) and "$ref" not in converted:
        converted["required"] = sorted(converted["properties"])
        converted["additionalProperties"] = False
    if node.get("nullable") is True:
        if "type" in converted:
            converted["type"] = [converted["type"], "null"]
        else:
            converted = {"anyOf": [{"type": "null"}, converted]}
    return converted


@functools.cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = _strict(json.loads(SPEC_PATH.read_text()))
    return document


@functools.cache
def _registry() -> Registry[Any]:
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, DRAFT202012.create_resource(_document()))
    return registry


def _pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def _response_schema(operation: tuple[str, str], status: str) -> str:
    """JSON pointer to the schema of one of the operation's responses, through a shared response's $ref."""
    method, path = operation
    response = _document()["paths"][path][method]["responses"][status]
    base = (
        response["$ref"].removeprefix("#")
        if "$ref" in response
        else _pointer("paths", path, method, "responses", status)
    )
    return base + _pointer("content", "application/json", "schema")


def _validate(payload: Any, schema: dict[str, Any]) -> None:
    Draft202012Validator(schema, registry=_registry()).validate(payload)


def _check(operation: tuple[str, str] | None, code: str, response: httpx2.Response) -> None:
    if code == "ok":
        assert response.status_code == 200, response.text
        assert operation is not None
        _validate(response.json(), {"$ref": DOCUMENT_URI + "#" + _response_schema(operation, "200")})
        return
    if code != "service_unavailable":  # only ever injected, and the shared fault injector sets no headers
        assert response.headers["x-api-schema"] == "json-error"
    error = response.json()["error"]
    assert error["code"] == code, response.text
    if code in FRAMEWORK_ERRORS:
        assert response.status_code == FRAMEWORK_ERRORS[code]
        _validate(error, GENERIC_ERROR)
        return
    assert operation is not None
    method, path = operation
    status = str(response.status_code)
    assert status in _document()["paths"][path][method]["responses"], (
        f"{status} is not listed for {operation}"
    )
    if code in ACCOUNT_ERRORS:
        _validate(error, {"$ref": f"{DOCUMENT_URI}#/components/schemas/{ACCOUNT_ERRORS[code]}"})
    else:
        _validate(error, {"$ref": DOCUMENT_URI + "#" + _response_schema(operation, status)})


# The cases


@dataclass(frozen=True)
class Context:
    """What a case's request may need: the sandbox, an acme trash object, a pending purge of globex."""

    sandbox: Sandbox
    trash_id: str
    task_id: str


Send = Callable[[httpx2.Client, Context], httpx2.Response]
ACME = {"organization[sub_domain]": "acme"}
ASSETS = "/object_storage/uk-lon-1/buckets/acme-assets"


@dataclass(frozen=True)
class Case:
    operation: tuple[str, str] | None
    code: str
    """The error code expected, or "ok" for a 200."""
    send: Send
    token: str | None = DEMO_TOKEN
    prepare: Callable[[Context], object] | None = None

    @property
    def id(self) -> str:
        name = f"{self.operation[0]} {self.operation[1]}" if self.operation else "no operation"
        return f"{name}: {self.code}"


def _purge_all_acme(api: httpx2.Client, ctx: Context) -> httpx2.Response:
    return api.post("/organizations/_/trash_objects/purge_all", json={"organization": {"sub_domain": "acme"}})


OPERATIONS: dict[tuple[str, str], tuple[str, Send]] = {
    LIST_ORGANIZATIONS: ("list_organizations", lambda api, ctx: api.get("/organizations")),
    LIST_TRASH: (
        "list_trash_objects",
        lambda api, ctx: api.get("/organizations/_/trash_objects", params=ACME),
    ),
    PURGE_ALL: ("purge_all_trash_objects", _purge_all_acme),
    GET_TRASH: ("get_trash_object", lambda api, ctx: api.get(f"/trash_objects/{ctx.trash_id}")),
    PURGE_ONE: ("purge_trash_object", lambda api, ctx: api.delete(f"/trash_objects/{ctx.trash_id}")),
    RESTORE: ("restore_trash_object", lambda api, ctx: api.post(f"/trash_objects/{ctx.trash_id}/restore")),
    GET_TASK: ("get_task", lambda api, ctx: api.get("/tasks/_", params={"task[id]": ctx.task_id})),
    GET_BUCKET: ("get_bucket", lambda api, ctx: api.get(ASSETS)),
    REVOKE: ("revoke_presigned_urls", lambda api, ctx: api.post(f"{ASSETS}/revoke_presigned_urls")),
}


def _no_requests_left(ctx: Context) -> None:
    ctx.sandbox.katapult.rate_limit = 0


def _unavailable(ctx: Context) -> None:
    ctx.sandbox.inject("katapult", Fault(status=503))


def _crashing(operation: str) -> Callable[[Context], None]:
    return lambda ctx: ctx.sandbox.katapult.crash_next(operation)


def _common_cases() -> Iterator[Case]:
    """What every operation answers: success, the authentication errors, 429, 503 and a crash."""
    for operation, (name, send) in OPERATIONS.items():
        yield Case(operation, "ok", send)
        yield Case(operation, "missing_api_token", send, token=None)
        yield Case(operation, "invalid_api_token", send, token="kp-not-a-token")
        yield Case(operation, "unauthorized_network_for_api_token", send, token=OFFICE_ONLY_TOKEN)
        yield Case(operation, "scope_not_granted", send, token=NO_SCOPES_TOKEN)
        yield Case(operation, "rate_limit_reached", send, prepare=_no_requests_left)
        yield Case(operation, "service_unavailable", send, prepare=_unavailable)
        yield Case(operation, "unhandled_exception", send, prepare=_crashing(name))


def _list(sub_domain: str, **params: str) -> Send:
    return lambda api, ctx: api.get(
        "/organizations/_/trash_objects", params={"organization[sub_domain]": sub_domain, **params}
    )


def _purge_all(sub_domain: str) -> Send:
    return lambda api, ctx: api.post(
        "/organizations/_/trash_objects/purge_all", params={"organization[sub_domain]": sub_domain}
    )


def _task_after(seconds: float, *, failing: bool = False) -> Send:
    def send(api: httpx2.Client, ctx: Context) -> httpx2.Response:
        if failing:
            ctx.sandbox.katapult.fail_next_purge("acme")
        task_id = _purge_all_acme(api, ctx).json()["task"]["id"]
        ctx.sandbox.clock.advance(seconds)
        return api.get(f"/tasks/{task_id}")

    return send


def _bucket(path: str) -> Send:
    return lambda api, ctx: api.get(path)


def _revoke(path: str) -> Send:
    return lambda api, ctx: api.post(f"{path}/revoke_presigned_urls")


def _object_storage_cases(operation: tuple[str, str], at: Callable[[str], Send]) -> Iterator[Case]:
    yield Case(operation, "object_storage_cluster_not_found", at("/object_storage/_/buckets/acme-assets"))
    yield Case(operation, "object_storage_bucket_not_found", at("/object_storage/uk-lon-1/buckets/none"))
    yield Case(
        operation, "object_storage_account_not_found", at("/object_storage/nl-ams-1/buckets/acme-assets")
    )
    globex_media = "/object_storage/uk-lon-1/buckets/globex-media"
    yield Case(operation, "object_in_trash", at(globex_media), token=GLOBEX_TOKEN)
    initech_reports = "/object_storage/uk-lon-1/buckets/initech-reports"
    yield Case(operation, "object_storage_account_suspended", at(initech_reports), token=INITECH_TOKEN)
    yield Case(operation, "object_storage_account_not_provisioned", at(ASSETS), token=UMBRELLA_TOKEN)
    yield Case(operation, "permission_denied", at(ASSETS), token=OAUTH_TOKEN)
    yield Case(
        operation,
        "multiple_object_storage_buckets_found",
        at(ASSETS),
        prepare=lambda ctx: ctx.sandbox.katapult.make_bucket_ambiguous("uk-lon-1", "acme-assets"),
    )


def _specific_cases() -> Iterator[Case]:
    yield Case(LIST_TRASH, "ok", _list("acme", per_page="5", page="9"))
    yield Case(LIST_TRASH, "ok", _list("globex", per_page="200"), token=GLOBEX_TOKEN)
    yield Case(LIST_TRASH, "organization_not_found", _list("hooli"))
    yield Case(LIST_TRASH, "organization_suspended", _list("initech"))
    yield Case(LIST_TRASH, "organization_not_activated", _list("umbrella"))
    yield Case(LIST_TRASH, "invalid_argument", _list("acme", per_page="500"))
    yield Case(LIST_TRASH, "invalid_argument", _list("acme", **{"organization[id]": "org_x"}))
    yield Case(PURGE_ALL, "organization_not_found", _purge_all("hooli"))
    yield Case(PURGE_ALL, "organization_suspended", _purge_all("initech"))
    yield Case(PURGE_ALL, "organization_not_activated", _purge_all("umbrella"))
    yield Case(PURGE_ALL, "permission_denied", _purge_all("acme"), token=GLOBEX_TOKEN)
    yield Case(
        PURGE_ALL,
        "task_queueing_error",
        _purge_all("acme"),
        prepare=lambda ctx: ctx.sandbox.katapult.refuse_task_queueing("acme"),
    )
    yield Case(
        PURGE_ALL,
        "invalid_json_body",
        lambda api, ctx: api.post(
            "/organizations/_/trash_objects/purge_all",
            content=b"{",
            headers={"Content-Type": "application/json"},
        ),
    )
    yield Case(GET_TRASH, "trash_object_not_found", lambda api, ctx: api.get("/trash_objects/_"))
    yield Case(
        GET_TRASH,
        "invalid_argument",
        lambda api, ctx: api.request("GET", "/trash_objects/_", json={"trash_object": {}}),
    )
    yield Case(PURGE_ONE, "trash_object_not_found", lambda api, ctx: api.delete("/trash_objects/_"))
    yield Case(PURGE_ONE, "permission_denied", OPERATIONS[PURGE_ONE][1], token=GLOBEX_TOKEN)
    yield Case(
        PURGE_ONE,
        "task_queueing_error",
        OPERATIONS[PURGE_ONE][1],
        prepare=lambda ctx: ctx.sandbox.katapult.refuse_task_queueing("acme"),
    )
    yield Case(RESTORE, "trash_object_not_found", lambda api, ctx: api.post("/trash_objects/_/restore"))
    yield Case(RESTORE, "permission_denied", OPERATIONS[RESTORE][1], token=GLOBEX_TOKEN)
    yield Case(GET_TASK, "ok", _task_after(0.3))
    yield Case(GET_TASK, "ok", _task_after(5))
    yield Case(GET_TASK, "ok", _task_after(5, failing=True))
    yield Case(GET_TASK, "task_not_found", lambda api, ctx: api.get("/tasks/_"))
    yield Case(GET_BUCKET, "ok", _bucket("/object_storage/uk-lon-1/buckets/acme-website"))
    yield from _object_storage_cases(GET_BUCKET, _bucket)
    yield from _object_storage_cases(REVOKE, _revoke)
    yield Case(
        REVOKE,
        "network_error",
        OPERATIONS[REVOKE][1],
        prepare=lambda ctx: ctx.sandbox.katapult.fail_next_revoke("uk-lon-1", "acme-assets"),
    )
    yield Case(None, "route_not_found", lambda api, ctx: api.get("/trash_objects"))
    yield Case(None, "route_not_found", lambda api, ctx: api.put("/tasks/_"))


CASES = [*_common_cases(), *_specific_cases()]


@pytest.fixture
def context(sandbox: Sandbox) -> Iterator[Context]:
    configured = sandbox.katapult.rate_limit
    sandbox.katapult.add_token(ApiToken.create(NO_SCOPES_TOKEN, ()))
    with client(sandbox) as api:
        trash_id = trash_of(api)[0]["id"]
        task = api.post(
            "/organizations/_/trash_objects/purge_all", params={"organization[sub_domain]": "globex"}
        )
    yield Context(sandbox, trash_id, task.json()["task"]["id"])
    sandbox.katapult.rate_limit = configured


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_the_answer_matches_the_openapi_document(context: Context, case: Case) -> None:
    if case.prepare is not None:
        case.prepare(context)
    with client(context.sandbox, case.token) as api:
        response = case.send(api, context)
    _check(case.operation, case.code, response)


def test_every_operation_has_a_successful_case_and_every_emitted_code_a_case() -> None:
    assert {c.operation for c in CASES if c.code == "ok"} == set(OPERATIONS)
    assert set(ERRORS) <= {c.code for c in CASES}


def test_the_strict_conversion_rejects_a_missing_field_and_accepts_null_where_nullable() -> None:
    task_schema = {"$ref": f"{DOCUMENT_URI}#/components/schemas/Task"}
    task = {
        "id": "task_1",
        "name": "n",
        "status": "pending",
        "created_at": 1,
        "started_at": None,
        "finished_at": None,
        "progress": 0,
    }
    _validate(task, task_schema)
    with pytest.raises(Exception, match="required"):
        _validate({k: v for k, v in task.items() if k != "progress"}, task_schema)
    with pytest.raises(Exception, match="None is not"):
        _validate({**task, "created_at": None}, task_schema)
    in_trash = copy.deepcopy(_document()["components"]["schemas"]["ObjectInTrash"])
    assert in_trash["properties"]["trash_object"]["anyOf"][0] == {"type": "null"}
