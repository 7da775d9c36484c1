"""The Vault emulator's reads over real HTTP: auth, capabilities, reasons, listing, search, tenants, faults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from purgewarden.clients.vault import VaultClient
from purgewarden.sandbox import Fault, Sandbox
from purgewarden.sandbox.vault import (
    ACME_API_KEY,
    API_PREFIX,
    DELETER_API_KEY,
    DEMO_API_KEY,
    READER_API_KEY,
    VaultBackend,
    error_body,
)
from purgewarden.sandbox.vault.seed import object_id

REASON = {"reason": "Maintenance"}
CUSTOMERS = "/data/collections/customers"


def client(sandbox: Sandbox, key: str | None = DEMO_API_KEY) -> httpx2.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx2.Client(base_url=sandbox.endpoints["vault"].url + API_PREFIX, headers=headers)


@pytest.fixture
def vault(sandbox: Sandbox) -> Iterator[httpx2.Client]:
    with client(sandbox) as http:
        yield http


def error_of(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error_code"] == code
    assert isinstance(body["message"], str)
    assert_string_context(body)
    return body


def assert_string_context(body: dict[str, Any]) -> None:
    """An error's context is `Record<string, string>` in the official client's types: no null, no number."""
    context = body["context"]
    assert isinstance(context, dict)
    assert all(isinstance(v, str) for v in context.values()), context


def list_ids(vault: httpx2.Client, path: str = CUSTOMERS, **params: Any) -> list[str]:
    response = vault.get(path + "/objects", params={**REASON, **params})
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["results"]]


# --- health, collections, auth, capabilities, reasons ---


def test_health_needs_no_key(sandbox: Sandbox) -> None:
    with client(sandbox, key=None) as anonymous:
        response = anonymous.get("/data/info/health")
    assert response.status_code == 200
    assert response.json() == {"status": "pass"}


def test_list_collections_shows_the_demo_schema(vault: httpx2.Client) -> None:
    collections = {c["name"]: c for c in vault.get("/ctl/collections").json()}
    assert {name: c["type"] for name, c in collections.items()} == {
        "customers": "PERSONS",
        "orders": "DATA",
        "leads": "DATA",
    }
    assert [p["name"] for p in collections["customers"]["properties"]] == [
        "name",
        "email",
        "phone",
        "country",
    ]
    assert collections["customers"]["creation_time"].endswith("Z")


def test_a_property_names_its_type_as_the_official_client_does(vault: httpx2.Client) -> None:
    """`data_type_name`, as in @piiano/vault-client's `Property`; never the emulator's own `data_type`."""
    [customers] = [c for c in vault.get("/ctl/collections").json() if c["name"] == "customers"]
    types = {p["name"]: p["data_type_name"] for p in customers["properties"]}
    assert types == {"name": "NAME", "email": "EMAIL", "phone": "PHONE_NUMBER", "country": "STRING"}
    assert not [p for p in customers["properties"] if "data_type" in p]


async def test_the_client_reads_the_property_types(sandbox: Sandbox) -> None:
    endpoint = sandbox.endpoints["vault"]
    client = VaultClient(endpoint.url, endpoint.credential)
    try:
        collections = {c.name: c for c in await client.list_collections()}
    finally:
        await client.aclose()
    assert [p.data_type_name for p in collections["orders"].properties] == [
        "STRING",
        "STRING",
        "INTEGER",
        "STRING",
    ]


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-key", f"Basic {DEMO_API_KEY}", DEMO_API_KEY, "Bearer  nope"]
)
def test_requests_without_a_valid_key_are_unauthorized(sandbox: Sandbox, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with client(sandbox, key=None) as anonymous:
        response = anonymous.get(CUSTOMERS + "/objects", params=REASON, headers=headers)
    assert error_of(response, 401, "PV1005")["context"] == {}


@pytest.mark.parametrize(
    ("key", "username", "method", "path"),
    [
        (READER_API_KEY, "Analyst", "DELETE", CUSTOMERS + "/bulk/objects"),
        (READER_API_KEY, "Analyst", "DELETE", CUSTOMERS + "/objects/" + object_id("customers", 0)),
        (READER_API_KEY, "Analyst", "POST", "/system/admin/lifecycle/gc"),
        (DELETER_API_KEY, "Cleaner", "POST", "/system/admin/lifecycle/gc"),
        (DELETER_API_KEY, "Cleaner", "POST", CUSTOMERS + "/query/objects"),
        (ACME_API_KEY, "AcmeApp", "POST", "/system/admin/lifecycle/gc"),
    ],
)
def test_a_missing_capability_is_forbidden(
    sandbox: Sandbox, key: str, username: str, method: str, path: str
) -> None:
    with client(sandbox, key) as limited:
        response = limited.request(method, path, params=REASON, json=[])
    assert error_of(response, 403, "PV1007")["context"] == {"username": username}
    assert sandbox.vault.count_objects("customers", tenants=None) == (40, 15)


def test_the_reader_key_reads_and_searches(sandbox: Sandbox) -> None:
    with client(sandbox, READER_API_KEY) as reader:
        assert reader.get("/ctl/collections").status_code == 200
        assert reader.get(CUSTOMERS + "/count/objects", params=REASON).status_code == 200
        assert reader.post(CUSTOMERS + "/query/objects", params=REASON, json={}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", CUSTOMERS + "/objects"),
        ("GET", CUSTOMERS + "/objects/" + object_id("customers", 0)),
        ("GET", CUSTOMERS + "/count/objects"),
        ("POST", CUSTOMERS + "/query/objects"),
        ("DELETE", CUSTOMERS + "/bulk/objects"),
        ("DELETE", CUSTOMERS + "/objects/" + object_id("customers", 0)),
        ("POST", "/system/admin/lifecycle/gc"),
    ],
)
def test_data_calls_require_a_valid_reason(vault: httpx2.Client, method: str, path: str) -> None:
    missing = vault.request(method, path, json=[])
    assert error_of(missing, 400, "PV1001")["context"] == {}
    bogus = vault.request(method, path, params={"reason": "Curiosity"}, json=[])
    assert error_of(bogus, 400, "PV1002")["context"] == {"reason": "Curiosity"}
    other = vault.request(method, path, params={"reason": "Other"}, json=[])
    error_of(other, 400, "PV1002")
    assert vault.get(CUSTOMERS + "/count/objects", params=REASON).json()["total"] == 55


def test_reason_other_with_an_adhoc_reason_is_accepted(vault: httpx2.Client) -> None:
    params = {"reason": "Other", "adhoc_reason": "ticket 42", "custom_audit": "x", "reload_cache": "true"}
    assert vault.get(CUSTOMERS + "/objects", params=params).status_code == 200
    bad_flag = vault.get(CUSTOMERS + "/objects", params={**REASON, "reload_cache": "maybe"})
    error_of(bad_flag, 400, "PV1012")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/data/collections/nope/objects"),
        ("GET", "/data/collections/nope/objects/" + object_id("customers", 0)),
        ("GET", "/data/collections/nope/count/objects"),
        ("POST", "/data/collections/nope/query/objects"),
        ("DELETE", "/data/collections/nope/bulk/objects"),
        ("DELETE", "/data/collections/nope/objects/" + object_id("customers", 0)),
    ],
)
def test_an_unknown_collection_is_not_found(vault: httpx2.Client, method: str, path: str) -> None:
    response = vault.request(method, path, params=REASON, json=[])
    assert error_of(response, 404, "PV1004")["context"] == {"collection": "nope"}


def test_unknown_paths_and_methods_answer_in_vault_style(vault: httpx2.Client) -> None:
    error_of(vault.get("/data/nothing-here"), 404, "PV1004")
    assert error_of(vault.put("/ctl/collections"), 405, "PV1012")["context"] == {"method": "PUT"}


# --- listing ---


def test_pages_walk_every_active_object_once_in_id_order(vault: httpx2.Client) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {**REASON, "page_size": 7}
    while True:
        body = vault.get(CUSTOMERS + "/objects", params=params).json()
        seen += [row["id"] for row in body["results"]]
        assert body["paging"]["size"] == len(body["results"])
        assert body["paging"]["remaining_count"] == 40 - len(seen)
        if not body["paging"]["cursor"]:
            break
        params["cursor"] = body["paging"]["cursor"]
    assert len(seen) == 40
    assert seen == sorted(seen)
    assert body["paging"] == {"size": 5, "remaining_count": 0, "cursor": ""}


def test_the_default_page_size_is_100(sandbox: Sandbox, vault: httpx2.Client) -> None:
    sandbox.vault.build_large("customers", 250)
    body = vault.get(CUSTOMERS + "/objects", params=REASON).json()
    assert body["paging"]["size"] == 100
    assert body["paging"]["remaining_count"] == 190


def test_archived_objects_are_listed_only_with_the_archived_option(vault: httpx2.Client) -> None:
    archived = list_ids(vault, options="archived")
    active = list_ids(vault)
    assert len(archived) == 15
    assert not set(archived) & set(active)
    assert object_id("customers", 45) in archived


def test_a_cursor_stays_valid_when_objects_are_deleted_between_pages(
    sandbox: Sandbox, vault: httpx2.Client
) -> None:
    first = vault.get(CUSTOMERS + "/objects", params={**REASON, "page_size": 10}).json()
    page_ids = [row["id"] for row in first["results"]]
    everything = list_ids(vault)
    sandbox.vault.delete_objects("customers", [page_ids[-1], everything[12]], archived=False, tenants=None)
    rest = list_ids(vault, cursor=first["paging"]["cursor"], page_size=1000)
    assert rest == [i for i in everything[10:] if i != everything[12]]


def test_without_props_or_unsafe_only_ids_are_shown(vault: httpx2.Client) -> None:
    rows = vault.get(CUSTOMERS + "/objects", params={**REASON, "page_size": 3}).json()["results"]
    assert all(set(row) == {"id"} for row in rows)


@pytest.mark.parametrize("props", ["name,email", ["name", "email"], ["name,email"]])
def test_props_choose_the_properties_shown(vault: httpx2.Client, props: Any) -> None:
    rows = vault.get(CUSTOMERS + "/objects", params={**REASON, "props": props}).json()["results"]
    assert all(list(row) == ["id", "name", "email"] for row in rows)


def test_unsafe_shows_every_property_and_builtins_on_request(vault: httpx2.Client) -> None:
    params: dict[str, Any] = {**REASON, "options": ["unsafe", "show_builtins"], "page_size": 1}
    row = vault.get(CUSTOMERS + "/objects", params=params).json()["results"][0]
    assert set(row) == {
        "id",
        *("name", "email", "phone", "country"),
        *("_creation_time", "_modification_time", "_tenant_id", "_archive_time"),
    }
    assert row["_archive_time"] is None
    archived = vault.get(
        CUSTOMERS + "/objects", params={**REASON, "options": "archived,show_builtins", "page_size": 1}
    ).json()["results"][0]
    assert archived["_archive_time"].endswith("Z")


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": "0"},
        {"page_size": "1001"},
        {"page_size": "ten"},
        {"cursor": "not-a-cursor"},
        {"cursor": "YWZ0ZXI6bm90LWEtdXVpZA=="},
        {"options": "everything"},
        {"props": "shoe_size"},
        {"ids": "not-a-uuid"},
        {"ids": [object_id("customers", i) for i in range(1001)]},
    ],
)
def test_bad_list_parameters_are_invalid(vault: httpx2.Client, params: dict[str, Any]) -> None:
    error_of(vault.get(CUSTOMERS + "/objects", params={**REASON, **params}), 400, "PV1012")


def test_listing_by_ids_keeps_request_order_and_leaves_out_unknown_ids(vault: httpx2.Client) -> None:
    wanted = [object_id("customers", 3), object_id("customers", 1).upper(), object_id("customers", 99)]
    wanted.append(object_id("customers", 45))  # archived: not in the active listing
    body = vault.get(CUSTOMERS + "/objects", params={**REASON, "ids": wanted, "props": "name"}).json()
    assert [row["id"] for row in body["results"]] == [object_id("customers", 3), object_id("customers", 1)]
    assert body["paging"] == {"size": 2, "remaining_count": 0, "cursor": ""}
    archived = list_ids(vault, ids=",".join(wanted), options="archived")
    assert archived == [object_id("customers", 45)]


def test_large_collections_page_without_scanning(sandbox: Sandbox, vault: httpx2.Client) -> None:
    ids = sandbox.vault.build_large("customers", 100_000)
    cursor = ""
    for _ in range(20):
        params: dict[str, Any] = {**REASON, "page_size": 1000, "props": "email"}
        if cursor:
            params["cursor"] = cursor
        body = vault.get(CUSTOMERS + "/objects", params=params).json()
        cursor = body["paging"]["cursor"]
    assert body["paging"]["remaining_count"] == 100_040 - 20_000
    assert ids[0] in list_ids(vault, ids=ids[0])


# --- get, count, search ---


def test_get_object_by_id(vault: httpx2.Client) -> None:
    active = object_id("customers", 2)
    row = vault.get(f"{CUSTOMERS}/objects/{active.upper()}", params={**REASON, "props": "name"}).json()
    assert row == {"id": active, "name": "Alan Turing"}
    archived = object_id("customers", 41)
    assert vault.get(f"{CUSTOMERS}/objects/{archived}", params={**REASON, "options": "archived"}).is_success
    missing = vault.get(f"{CUSTOMERS}/objects/{archived}", params=REASON)
    assert error_of(missing, 404, "PV3005")["context"] == {"ids": archived}
    unknown = object_id("customers", 999)
    error_of(vault.get(f"{CUSTOMERS}/objects/{unknown}", params=REASON), 404, "PV3005")
    error_of(vault.get(f"{CUSTOMERS}/objects/123", params=REASON), 400, "PV1012")


def test_count_objects(sandbox: Sandbox, vault: httpx2.Client) -> None:
    assert vault.get(CUSTOMERS + "/count/objects", params=REASON).json() == {
        "active": 40,
        "archived": 15,
        "total": 55,
    }
    sandbox.vault.archive("customers", [object_id("customers", 0)])
    assert vault.get(CUSTOMERS + "/count/objects", params=REASON).json()["archived"] == 16
    orders = vault.get("/data/collections/orders/count/objects", params=REASON).json()
    assert orders == {"active": 22, "archived": 8, "total": 30}
    empty = vault.get("/data/collections/leads/count/objects", params=REASON).json()
    assert empty == {"active": 0, "archived": 0, "total": 0}
    error_of(vault.get(CUSTOMERS + "/count/objects", params={**REASON, "options": "archived"}), 400, "PV1012")


def search(vault: httpx2.Client, body: Any, **params: Any) -> httpx2.Response:
    return vault.post(CUSTOMERS + "/query/objects", params={**REASON, **params}, json=body)


def test_search_combines_match_in_and_like(vault: httpx2.Client) -> None:
    rows = search(vault, {"match": {"country": "US"}}, props="country").json()["results"]
    assert len(rows) == 7
    assert {row["country"] for row in rows} == {"US"}
    both = search(vault, {"in": {"country": ["US", "DE"]}, "like": {"email": "ada*"}}, props="email,country")
    assert [(r["email"], r["country"]) for r in both.json()["results"]] == [
        ("ada.lovelace0@example.com", "US")
    ]
    contains = search(vault, {"like": {"name": "*Hop*"}}, props="name").json()["results"]
    assert contains
    assert all("Hop" in row["name"] for row in contains)
    by_id = search(vault, {"match": {"id": object_id("customers", 4)}}).json()["results"]
    assert by_id == [{"id": object_id("customers", 4)}]


def test_search_archived_searches_only_archived_objects(vault: httpx2.Client) -> None:
    rows = search(vault, {"like": {"email": "*"}}, options="archived").json()["results"]
    assert len(rows) == 15


def test_search_pages_with_a_cursor(vault: httpx2.Client) -> None:
    first = search(vault, {"like": {"email": "*@example.com"}}, page_size=30).json()
    assert first["paging"]["remaining_count"] == 10
    rest = search(vault, {"like": {"email": "*@example.com"}}, cursor=first["paging"]["cursor"]).json()
    assert rest["paging"] == {"size": 10, "remaining_count": 0, "cursor": ""}
    ids = [r["id"] for r in first["results"] + rest["results"]]
    assert len(set(ids)) == 40


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"where": "1=1"},
        {"match": {"country": ["US"]}},
        {"in": {"country": "US"}},
        {"like": {"email": 3}},
        {"match": {"shoe_size": 9}},
    ],
)
def test_bad_searches_are_invalid(vault: httpx2.Client, body: Any) -> None:
    error_of(search(vault, body), 400, "PV1012")


def test_search_rejects_a_body_that_is_not_json(vault: httpx2.Client) -> None:
    response = vault.post(CUSTOMERS + "/query/objects", params=REASON, content=b"{match")
    error_of(response, 400, "PV1012")


# --- tenants ---


def test_a_tenant_header_limits_listings_searches_and_counts(vault: httpx2.Client) -> None:
    acme = {"X-Tenant-Id": "acme"}
    rows = vault.get(
        CUSTOMERS + "/objects", params={**REASON, "options": "show_builtins", "page_size": 1000}, headers=acme
    ).json()
    assert {row["_tenant_id"] for row in rows["results"]} == {"acme"}
    assert rows["paging"]["size"] == 27
    count = vault.get(CUSTOMERS + "/count/objects", params=REASON, headers=acme).json()
    assert count == {"active": 27, "archived": 10, "total": 37}
    found = vault.post(
        CUSTOMERS + "/query/objects", params=REASON, json={}, headers={"X-Tenant-Id": "globex"}
    )
    assert found.json()["paging"]["size"] == 13
    both = vault.get(CUSTOMERS + "/count/objects", params=REASON, headers={"X-Tenant-Id": "acme, globex"})
    assert both.json()["total"] == 55


def test_a_tenant_header_forbids_targeting_another_tenants_object(vault: httpx2.Client) -> None:
    globex_object = object_id("customers", 2)
    acme = {"X-Tenant-Id": "acme"}
    response = vault.get(f"{CUSTOMERS}/objects/{globex_object}", params=REASON, headers=acme)
    assert error_of(response, 403, "PV1006")["context"] == {"id": globex_object}
    ids = [object_id("customers", 0), globex_object]
    error_of(vault.get(CUSTOMERS + "/objects", params={**REASON, "ids": ids}, headers=acme), 403, "PV1006")


def test_a_tenant_bound_key_sees_only_its_tenant(sandbox: Sandbox) -> None:
    with client(sandbox, ACME_API_KEY) as acme:
        assert acme.get(CUSTOMERS + "/count/objects", params=REASON).json()["total"] == 37
        own = acme.get(f"{CUSTOMERS}/objects/{object_id('customers', 0)}", params=REASON)
        assert own.status_code == 200
        other = acme.get(f"{CUSTOMERS}/objects/{object_id('customers', 2)}", params=REASON)
        error_of(other, 403, "PV1006")
        escape = acme.get(CUSTOMERS + "/objects", params=REASON, headers={"X-Tenant-Id": "globex"})
        assert error_of(escape, 403, "PV1006")["context"] == {"tenant_id": "globex"}


# --- faults, reset, seed ---


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "PV1000"), (503, "PV1009"), (401, "PV1005"), (403, "PV1006"), (404, "PV1004"), (409, "PV3218"),
     (410, "PV1033"), (405, "PV1026"), (429, "PV1000")],
)  # fmt: skip
def test_injected_statuses_carry_the_vault_error_body(
    sandbox: Sandbox, vault: httpx2.Client, status: int, code: str
) -> None:
    sandbox.inject("vault", Fault(status=status, path="/count/objects"))
    error_of(vault.get(CUSTOMERS + "/count/objects", params=REASON), status, code)
    assert vault.get(CUSTOMERS + "/count/objects", params=REASON).status_code == 200
    assert error_body(status)["error_code"] == code


def test_faults_can_be_injected_over_http(sandbox: Sandbox, vault: httpx2.Client) -> None:
    root = sandbox.endpoints["vault"].url
    added = httpx2.post(root + "/_sandbox/faults", json={"status": 503, "method": "DELETE", "times": 2})
    assert added.status_code == 201
    for _ in range(2):
        error_of(vault.request("DELETE", CUSTOMERS + "/bulk/objects", params=REASON, json=[]), 503, "PV1009")
    assert vault.request("DELETE", CUSTOMERS + "/bulk/objects", params=REASON, json=[]).json() == {
        "ok": True,
        "results": [],
    }


def test_faults_cleared_with_a_bad_seed_are_refused_and_kept(sandbox: Sandbox) -> None:
    root = sandbox.endpoints["vault"].url + "/_sandbox/faults"
    assert httpx2.post(root, json={"status": 503, "method": "DELETE"}).status_code == 201
    for seed in ("lucky", "--7", "-"):
        refused = httpx2.delete(root, params={"seed": seed})
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid seed"), seed
    assert [fault["status"] for fault in httpx2.get(root).json()] == [503]
    assert httpx2.delete(root, params={"seed": "-7"}).status_code == 204
    assert httpx2.get(root).json() == []


def test_a_dropped_connection_surfaces_as_a_transport_error(sandbox: Sandbox, vault: httpx2.Client) -> None:
    sandbox.inject("vault", Fault(drop="before", path="/objects"))
    with pytest.raises(httpx2.TransportError):
        vault.get(CUSTOMERS + "/objects", params=REASON)
    assert vault.get(CUSTOMERS + "/objects", params=REASON).status_code == 200


def test_reset_over_http_restores_the_demo_data(sandbox: Sandbox, vault: httpx2.Client) -> None:
    sandbox.vault.delete_objects("customers", [object_id("customers", 0)], archived=False, tenants=None)
    assert httpx2.post(sandbox.endpoints["vault"].url + "/_sandbox/reset").status_code == 204
    assert object_id("customers", 0) in list_ids(vault)


def test_the_demo_data_is_deterministic(sandbox: Sandbox) -> None:
    twin = VaultBackend(sandbox.clock)
    for name in ("customers", "orders", "leads"):
        mine, theirs = sandbox.vault.stores[name], twin.stores[name]
        assert list(mine.objects) == list(theirs.objects)
        assert [o.fields for o in mine.objects.values()] == [o.fields for o in theirs.objects.values()]
    assert sandbox.endpoints["vault"].credential == DEMO_API_KEY
