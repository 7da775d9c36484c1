"""Katapult emulator, what every endpoint shares: authentication, scopes, argument parsing, routing,
rate limiting, response headers, fault injection and the demo seed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx2
import pytest

from purgewarden.sandbox import Fault, Sandbox
from purgewarden.sandbox.katapult import (
    DEMO_TOKEN,
    NO_PURGE_TOKEN,
    OAUTH_TOKEN,
    OFFICE_ONLY_TOKEN,
    READ_ONLY_TOKEN,
    error_body,
)
from purgewarden.sandbox.katapult.models import ApiToken
from tests.sandbox.katapult_http import client, error_of, trash_of

ACME = {"organization[sub_domain]": "acme"}


@pytest.fixture
def rate_limit_of_3(sandbox: Sandbox) -> Iterator[None]:
    """Three requests a minute per caller for this test only."""
    configured = sandbox.katapult.rate_limit
    sandbox.katapult.rate_limit = 3
    yield
    sandbox.katapult.rate_limit = configured


# Authentication and scopes


@pytest.mark.parametrize("authorization", [None, "Basic a3AtZGVtby1hZG1pbg==", "Bearer", DEMO_TOKEN])
def test_a_request_without_a_bearer_token_is_refused(sandbox: Sandbox, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with client(sandbox, token=None) as api:
        error = error_of(api.get("/organizations", headers=headers), 400)
    assert error["code"] == "missing_api_token"
    assert "Bearer" in error["description"]


def test_an_unknown_token_is_refused(sandbox: Sandbox) -> None:
    with client(sandbox, "kp-not-a-token") as api:
        error = error_of(api.get("/organizations"), 403)
    assert error["code"] == "invalid_api_token"


def test_a_token_restricted_to_other_networks_is_refused_from_loopback(sandbox: Sandbox) -> None:
    with client(sandbox, OFFICE_ONLY_TOKEN) as api:
        error = error_of(api.get("/organizations"), 403)
    assert error == {
        **error,
        "code": "unauthorized_network_for_api_token",
        "detail": {"ip_address": "127.0.0.1"},
    }


@pytest.mark.parametrize(
    ("token", "method", "path", "scopes"),
    [
        (READ_ONLY_TOKEN, "POST", "/organizations/_/trash_objects/purge_all", ["trash_objects:purge"]),
        (NO_PURGE_TOKEN, "DELETE", "/trash_objects/_", ["trash_objects:purge"]),
        (READ_ONLY_TOKEN, "POST", "/trash_objects/_/restore", ["trash_objects:restore"]),
        (READ_ONLY_TOKEN, "POST", "/object_storage/_/buckets/_/revoke_presigned_urls", ["object_storage"]),
    ],
)
def test_a_missing_scope_is_refused_naming_the_scopes_that_grant_it(
    sandbox: Sandbox, token: str, method: str, path: str, scopes: list[str]
) -> None:
    with client(sandbox, token) as api:
        error = error_of(api.request(method, path, params=ACME), 403)
    assert error["code"] == "scope_not_granted"
    assert error["detail"] == {"scopes": scopes}


@pytest.mark.parametrize("scope", ["tasks", "tasks:read", "api.katapult.io/core/v1/tasks:read"])
def test_get_task_is_granted_by_tasks_or_tasks_read(sandbox: Sandbox, scope: str) -> None:
    sandbox.katapult.add_token(ApiToken.create("kp-test-tasks", (scope,)))
    with client(sandbox, "kp-test-tasks") as api:
        error = error_of(api.get("/tasks/task_unknown"), 404)
    assert error["code"] == "task_not_found"


def test_get_task_without_a_tasks_scope_names_both_scopes(sandbox: Sandbox) -> None:
    sandbox.katapult.add_token(ApiToken.create("kp-test-orgs", ("organizations:read",)))
    with client(sandbox, "kp-test-orgs") as api:
        error = error_of(api.get("/tasks/task_unknown"), 403)
    assert error["detail"] == {"scopes": ["tasks", "tasks:read"]}


def test_an_oauth2_token_with_prefixed_scopes_is_accepted(sandbox: Sandbox) -> None:
    with client(sandbox, OAUTH_TOKEN) as api:
        assert api.get("/organizations").status_code == 200
        assert len(trash_of(api)) == 12


# Order of checks


def test_checks_run_route_then_token_then_scope_then_arguments_then_lookups(sandbox: Sandbox) -> None:
    bad_lookup = {"organization[id]": "org_nope", "organization[sub_domain]": "nope"}
    with client(sandbox, token=None) as anonymous:
        assert error_of(anonymous.get("/nowhere"), 404)["code"] == "route_not_found"
        assert error_of(anonymous.get("/organizations"), 400)["code"] == "missing_api_token"
    with client(sandbox, READ_ONLY_TOKEN) as reader:
        purge = reader.post("/organizations/_/trash_objects/purge_all", params=bad_lookup)
        assert error_of(purge, 403)["code"] == "scope_not_granted"
    with client(sandbox) as api:
        ambiguous = api.get("/organizations/_/trash_objects", params=bad_lookup)
        assert error_of(ambiguous, 400)["code"] == "invalid_argument"
        unknown = api.get("/organizations/_/trash_objects", params={"organization[id]": "org_nope"})
        assert error_of(unknown, 404)["code"] == "organization_not_found"


# Arguments


def test_path_segments_fill_the_lookup_only_when_no_argument_names_it(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        acme_id = api.get("/organizations").json()["organizations"][0]["id"]
        by_path = api.get(f"/organizations/{acme_id}/trash_objects").json()
        by_query = api.get("/organizations/organization/trash_objects", params=ACME).json()
        query_wins = api.get("/organizations/org_other/trash_objects", params=ACME).json()
        assert by_path == by_query == query_wins
        for placeholder in ("_", "organization"):
            missing = api.get(f"/organizations/{placeholder}/trash_objects")
            assert error_of(missing, 404)["code"] == "organization_not_found"


def test_the_json_body_wins_over_the_query_key_by_key(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        listed = api.request(
            "GET",
            "/organizations/_/trash_objects",
            params={"organization[sub_domain]": "globex"},
            json={"organization": {"sub_domain": "acme"}},
        )
        assert listed.json()["pagination"]["total"] == 12
        mixed = api.request(
            "GET",
            "/organizations/_/trash_objects",
            params={"organization[id]": "org_x"},
            json={"organization": {"sub_domain": "acme"}},
        )
        assert error_of(mixed, 400)["detail"]["issue"] == "ambiguous_lookup_values"


def test_a_body_not_sent_as_json_is_ignored(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        response = api.post(
            "/organizations/_/trash_objects/purge_all",
            content=b'{"organization": {"sub_domain": "acme"}}',
            headers={"Content-Type": "text/plain"},
        )
    assert error_of(response, 404)["code"] == "organization_not_found"


@pytest.mark.parametrize(
    ("params", "body", "issue", "argument"),
    [
        (
            {"organization[id]": "org_x", "organization[sub_domain]": "acme"},
            None,
            "ambiguous_lookup_values",
            "organization",
        ),
        ({}, {"organization": {}}, "missing_lookup_value", "organization"),
        ({}, {"organization": {"name": "acme"}}, "missing_lookup_value", "organization"),
        ({}, {"organization": "acme"}, "object_expected", "organization"),
        ({}, {"organization": {"sub_domain": 7}}, "invalid_scalar", "organization"),
        ({**ACME, "page": "two"}, None, "invalid_scalar", "page"),
        ({**ACME, "page": "0"}, None, "validation_errors", "page"),
        ({**ACME, "per_page": "0"}, None, "validation_errors", "per_page"),
        ({**ACME, "per_page": "201"}, None, "validation_errors", "per_page"),
        (ACME, {"per_page": True}, "invalid_scalar", "per_page"),
    ],
)
def test_invalid_arguments_are_refused_with_the_issue(
    sandbox: Sandbox, params: dict[str, str], body: object, issue: str, argument: str
) -> None:
    with client(sandbox) as api:
        response = api.request("GET", "/organizations/_/trash_objects", params=params, json=body)
    error = error_of(response, 400)
    assert error["code"] == "invalid_argument"
    assert error["description"] == f"The '{argument}' argument is invalid"
    assert error["detail"]["issue"] == issue
    assert error["detail"]["path"] == [argument]
    assert error["detail"]["argument"]["name"] == argument
    assert bool(error["detail"]["errors"]) == (issue == "validation_errors")


def test_a_malformed_json_body_is_refused(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        response = api.post(
            "/organizations/_/trash_objects/purge_all",
            content=b'{"organization": {',
            headers={"Content-Type": "application/json"},
        )
    error = error_of(response, 400)
    assert error["code"] == "invalid_json_body"
    assert error["detail"]["details"]


# Routing and unexpected failures


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nowhere"), ("PUT", "/organizations"), ("POST", "/tasks/_"), ("GET", "/organizations/")],
)
def test_unknown_routes_are_route_not_found(sandbox: Sandbox, method: str, path: str) -> None:
    with client(sandbox) as api:
        error = error_of(api.request(method, path), 404)
    assert error["code"] == "route_not_found"
    assert method in error["description"]


def test_outside_the_api_prefix_is_route_not_found(sandbox: Sandbox) -> None:
    response = httpx2.get(sandbox.endpoints["katapult"].url + "/v1/organizations")
    assert error_of(response, 404)["code"] == "route_not_found"


def test_an_unhandled_exception_is_a_500(sandbox: Sandbox) -> None:
    sandbox.katapult.crash_next("list_organizations")
    with client(sandbox) as api:
        assert error_of(api.get("/organizations"), 500)["code"] == "unhandled_exception"
        assert api.get("/organizations").status_code == 200


# Headers and the rate limit


def test_every_response_carries_rate_limit_headers_and_a_unique_request_id(sandbox: Sandbox) -> None:
    with client(sandbox) as api, client(sandbox, token=None) as anonymous:
        responses = [
            api.get("/organizations"),
            api.get("/nowhere"),
            api.get("/tasks/_"),
            anonymous.get("/tasks/_"),
        ]
    remaining = [int(r.headers["x-ratelimit-remaining"]) for r in responses[:3]]
    assert remaining == [999, 998, 997]
    assert {r.headers["x-ratelimit-permitted"] for r in responses} == {"1000"}
    assert len({r.headers["x-request-id"] for r in responses}) == 4
    assert "x-api-schema" not in responses[0].headers
    assert responses[3].headers["x-ratelimit-remaining"] == "999"


def test_past_the_rate_limit_requests_get_429_until_the_minute_is_over(
    sandbox: Sandbox, rate_limit_of_3: None
) -> None:
    with client(sandbox) as api, client(sandbox, READ_ONLY_TOKEN) as other:
        statuses = [api.get("/organizations").status_code for _ in range(3)]
        limited = api.get("/organizations")
        assert other.get("/organizations").status_code == 200
        sandbox.clock.advance(59)
        still_limited = api.get("/organizations")
        sandbox.clock.advance(1)
        again = api.get("/organizations")
    assert statuses == [200, 200, 200]
    error = error_of(limited, 429)
    assert error == {**error, "code": "rate_limit_reached", "detail": {"total_permitted": 3}}
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["x-ratelimit-permitted"] == "3"
    assert "retry-after" not in limited.headers
    assert still_limited.status_code == 429
    assert again.status_code == 200
    assert again.headers["x-ratelimit-remaining"] == "2"


def test_the_rate_limit_is_checked_before_anything_else(sandbox: Sandbox, rate_limit_of_3: None) -> None:
    with client(sandbox, "kp-not-a-token") as api:
        codes = [api.get("/nowhere").json()["error"]["code"] for _ in range(4)]
    assert codes == ["route_not_found"] * 3 + ["rate_limit_reached"]


# Fault injection


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "invalid_argument"),
        (403, "permission_denied"),
        (404, "route_not_found"),
        (406, "task_queueing_error"),
        (409, "invalid_argument"),
        (429, "rate_limit_reached"),
        (500, "unhandled_exception"),
        (502, "unhandled_exception"),
        (503, "service_unavailable"),
        (504, "network_error"),
    ],
)
def test_error_body_gives_katapults_own_error_for_a_status(status: int, code: str) -> None:
    assert error_body(status)["error"]["code"] == code
    assert isinstance(error_body(status)["error"]["description"], str)


def test_an_injected_503_looks_like_katapults_own(sandbox: Sandbox) -> None:
    sandbox.inject("katapult", Fault(path="/trash_objects", status=503))
    with client(sandbox) as api:
        assert api.get("/organizations").status_code == 200
        response = api.get("/organizations/_/trash_objects", params=ACME)
        assert response.status_code == 503
        assert response.json() == error_body(503)
        assert response.json()["error"]["code"] == "service_unavailable"
        assert api.get("/organizations/_/trash_objects", params=ACME).status_code == 200


def test_faults_can_be_added_over_http(sandbox: Sandbox) -> None:
    root = sandbox.endpoints["katapult"].url
    added = httpx2.post(
        f"{root}/_sandbox/faults", json={"method": "POST", "path": "purge_all", "status": 503, "times": 2}
    )
    assert added.status_code == 201
    with client(sandbox) as api:
        purges = [api.post("/organizations/_/trash_objects/purge_all", params=ACME) for _ in range(3)]
    assert [r.status_code for r in purges] == [503, 503, 200]
    assert purges[0].json()["error"]["code"] == "service_unavailable"


def test_injected_latency_delays_the_answer(sandbox: Sandbox) -> None:
    sandbox.inject("katapult", Fault(latency=0.3))
    with client(sandbox) as api:
        started = time.perf_counter()
        assert api.get("/organizations").status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_a_connection_dropped_before_handling_changes_nothing(sandbox: Sandbox) -> None:
    sandbox.inject("katapult", Fault(path="purge_all", drop="before"))
    with client(sandbox) as api:
        with pytest.raises(httpx2.TransportError):
            api.post("/organizations/_/trash_objects/purge_all", params=ACME)
        sandbox.clock.advance(5)
        assert len(trash_of(api)) == 12


def test_a_connection_dropped_after_handling_loses_only_the_answer(sandbox: Sandbox) -> None:
    root = sandbox.endpoints["katapult"].url
    httpx2.post(f"{root}/_sandbox/faults", json={"path": "purge_all", "drop": "after"})
    with client(sandbox) as api:
        with pytest.raises(httpx2.RemoteProtocolError):
            api.post("/organizations/_/trash_objects/purge_all", params=ACME)
        sandbox.clock.advance(5)
        assert trash_of(api) == []


# The demo seed


def test_the_demo_seed_is_deterministic(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        first = [t["id"] for t in trash_of(api)]
        sandbox.reset()
        assert [t["id"] for t in trash_of(api)] == first


def test_reset_over_http_restores_the_demo_data(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        api.post("/organizations/_/trash_objects/purge_all", params=ACME)
        sandbox.clock.advance(5)
        assert trash_of(api) == []
        assert httpx2.post(sandbox.endpoints["katapult"].url + "/_sandbox/reset").status_code == 204
        assert len(trash_of(api)) == 12
