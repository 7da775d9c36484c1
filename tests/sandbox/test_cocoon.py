"""Cocoon emulator over real HTTP: discovery, listing (paging, sorting, validation), seed data and auth."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from purgewarden.sandbox import Sandbox
from purgewarden.sandbox.cocoon import (
    COLLABORATOR_ACCESS_TOKEN,
    DEMO_ACCESS_TOKEN,
    DEMO_ORGANISATION_ID,
    OTHER_ORGANISATION_ACCESS_TOKEN,
    OTHER_ORGANISATION_ID,
)
from purgewarden.sandbox.cocoon.seed import PROMPT_INJECTION_NAME

BIN = f"/api/v1/organisations/{DEMO_ORGANISATION_ID}/recycle-bin/items"
ITEM_FIELDS = {
    "id",
    "name",
    "type",
    "recycledTime",
    "totalVersionSize",
    "requestorEmail",
    "shared",
    "organisationId",
    "parentId",
    "ownerId",
    "daysToPurge",
}
ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
VENDOR_EXAMPLE = {
    "752389961810243584": ("Other", "collection", "210176", True, "755603158478508032"),
    "753099536981094400": ("Executive Report.pdf", "object", "3596928", False, "751980834491527168"),
    "752047795879604224": ("paraglider.jpg", "object", "1183936", True, "755603158478508032"),
}


class Api:
    """httpx2 clients per access token over one shared connection pool."""

    def __init__(self, sandbox: Sandbox, transport: httpx2.HTTPTransport) -> None:
        self.sandbox = sandbox
        self._transport = transport
        self._clients: dict[str | None, httpx2.Client] = {}

    def __call__(self, token: str | None = DEMO_ACCESS_TOKEN) -> httpx2.Client:
        if token not in self._clients:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            url = self.sandbox.endpoints["cocoon"].url
            self._clients[token] = httpx2.Client(base_url=url, headers=headers, transport=self._transport)
        return self._clients[token]

    def listing(self, **params: Any) -> dict[str, Any]:
        response = self().get(BIN, params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def transport() -> Iterator[httpx2.HTTPTransport]:
    """Shared by the module's clients: building a transport takes ~40 ms of TLS setup, even for http."""
    with httpx2.HTTPTransport() as pool:
        yield pool


@pytest.fixture
def api(sandbox: Sandbox, transport: httpx2.HTTPTransport) -> Api:
    return Api(sandbox, transport)


def assert_spring_error(response: httpx2.Response, status: int, path: str) -> dict[str, Any]:
    assert response.status_code == status
    body: dict[str, Any] = response.json()
    assert set(body) == {"timestamp", "status", "error", "message", "path"}
    assert body["status"] == status
    assert body["path"] == path
    assert ISO_MILLIS.match(body["timestamp"])
    assert body["message"]
    return body


def test_discovery_names_the_services_and_needs_a_token(api: Api) -> None:
    body = api().get("/api/v1").json()
    assert set(body) == {"contentServiceURL", "webappServiceURL", "services"}
    assert {"name", "link", "httpMethod"} <= set(body["services"][0])
    assert {(s["httpMethod"], s["link"]) for s in body["services"]} >= {
        ("GET", "/api/v1/organisations/{orgId}/recycle-bin/items"),
        ("DELETE", "/api/v1/organisations/{orgId}/recycle-bin/items"),
        ("PUT", "/api/v1/recycle-bin/items/{itemId}"),
    }
    assert_spring_error(api(None).get("/api/v1"), 401, "/api/v1")


def test_default_listing_is_the_whole_demo_bin_most_recent_first(api: Api) -> None:
    body = api.listing()
    assert set(body) == {"items", "count", "offset"}
    assert (body["count"], body["offset"]) == ("7", "0")
    assert all(set(item) == ITEM_FIELDS for item in body["items"])
    times = [item["recycledTime"] for item in body["items"]]
    assert times == sorted(times, reverse=True)


def test_vendor_example_items_are_seeded_as_published(api: Api) -> None:
    items = {item["id"]: item for item in api.listing()["items"]}
    for item_id, (name, kind, size, shared, parent_id) in VENDOR_EXAMPLE.items():
        item = items[item_id]
        assert (item["name"], item["type"], item["totalVersionSize"], item["shared"], item["parentId"]) == (
            name,
            kind,
            size,
            shared,
            parent_id,
        )
        assert item["organisationId"] == DEMO_ORGANISATION_ID
        assert item["ownerId"] == "749419842687528960"
        assert item["requestorEmail"] == "alex.originator@xy-company.com"
        assert item["daysToPurge"] == 29


def test_item_fields_have_the_wire_types_of_the_api(api: Api) -> None:
    for item in api.listing(limit=0)["items"]:
        assert item["id"].isdigit()
        assert len(item["id"]) == 18
        assert ISO_MILLIS.match(item["recycledTime"])
        assert isinstance(item["totalVersionSize"], str)
        assert item["totalVersionSize"].isdigit()
        assert isinstance(item["shared"], bool)
        assert isinstance(item["daysToPurge"], int)
        assert item["type"] in {"object", "collection"}
        assert item["parentId"].isdigit()


def test_demo_bin_holds_the_cases_the_tools_must_handle(api: Api) -> None:
    items = {item["name"]: item for item in api.listing(limit=0)["items"]}
    assert items["old-invoices-2015.zip"]["daysToPurge"] == 1
    assert items["Q3 Board Minutes.docx"]["shared"] is True
    assert items["Q3 Board Minutes.docx"]["parentId"] == "0"
    assert PROMPT_INJECTION_NAME in items
    assert items["Archive 2019"] == items["Archive 2019"] | {"type": "collection", "totalVersionSize": "0"}


def test_folder_contents_count_towards_its_size_but_are_not_listed(api: Api, sandbox: Sandbox) -> None:
    names = {item["name"] for item in api.listing(limit=0)["items"]}
    assert "Other" in names
    assert names.isdisjoint({"notes.txt", "budget.xlsx", "logo.png", "Drafts", "draft-1.docx"})
    other = sandbox.cocoon.items["752389961810243584"]
    assert other.size == 4096 + 98304 + 57600 + 30720 + 19456 == 210176
    assert api().get("/api/v1/recycle-bin/items/752389961810243601").status_code == 404


@pytest.mark.parametrize(
    ("sort_by", "order_by", "key", "descending"),
    [
        ("name", "ASC", lambda item: item["name"].casefold(), False),
        ("NAME", "desc", lambda item: item["name"].casefold(), True),
        ("size", "asc", lambda item: int(item["totalVersionSize"]), False),
        ("Size", "DESC", lambda item: int(item["totalVersionSize"]), True),
        ("time", "Asc", lambda item: item["recycledTime"], False),
        ("TIME", "dEsC", lambda item: item["recycledTime"], True),
    ],
)
def test_sort_by_and_order_by_are_case_insensitive(
    api: Api, sort_by: str, order_by: str, key: Any, descending: bool
) -> None:
    items = api.listing(limit=0, sortBy=sort_by, orderBy=order_by)["items"]
    assert len(items) == 7
    assert [key(item) for item in items] == sorted((key(item) for item in items), reverse=descending)


def test_order_by_alone_defaults_to_time(api: Api) -> None:
    ascending = [item["id"] for item in api.listing(orderBy="ASC")["items"]]
    descending = [item["id"] for item in api.listing()["items"]]
    assert ascending == descending[::-1]
    assert ascending[0] == "756120044395401217"  # the oldest: one day from purge


def test_limit_and_offset_page_through_the_bin(api: Api) -> None:
    everything = [item["id"] for item in api.listing(limit=0, sortBy="name")["items"]]
    pages = [api.listing(limit=2, offset=offset, sortBy="name") for offset in (0, 2, 4, 6)]
    assert [(page["count"], page["offset"]) for page in pages] == [
        ("2", "0"),
        ("2", "2"),
        ("2", "4"),
        ("1", "6"),
    ]
    assert [item["id"] for page in pages for item in page["items"]] == everything


def test_descending_pages_are_the_ascending_order_reversed(api: Api) -> None:
    ascending = [item["id"] for item in api.listing(limit=0, sortBy="size", orderBy="asc")["items"]]
    pages = [api.listing(limit=3, offset=offset, sortBy="size")["items"] for offset in (0, 3, 6)]
    assert [item["id"] for page in pages for item in page] == ascending[::-1]


def test_offset_past_the_end_gives_no_items(api: Api) -> None:
    body = api.listing(offset=50)
    assert body == {"items": [], "count": "0", "offset": "50"}
    assert api.listing(offset=50, orderBy="ASC")["items"] == []


def test_default_limit_is_ten_and_zero_means_no_limit(api: Api, sandbox: Sandbox) -> None:
    sandbox.cocoon.build_large_bin(DEMO_ACCESS_TOKEN, n=30)
    assert api.listing()["count"] == "10"
    assert api.listing(limit=0)["count"] == "37"
    assert api.listing(limit=0, offset=30)["count"] == "7"
    assert api.listing(limit=1000)["count"] == "37"


def test_empty_parameter_values_mean_the_defaults(api: Api) -> None:
    assert api.listing(limit="", offset="", orderBy="", sortBy="") == api.listing()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("limit", "-1"),
        ("limit", "ten"),
        ("limit", "1.5"),
        ("offset", "-3"),
        ("offset", "2147483648"),
        ("limit", "²"),
        ("limit", "99999999999"),
        ("orderBy", "UP"),
        ("sortBy", "date"),
    ],
)
def test_invalid_listing_parameters_are_400(api: Api, name: str, value: str) -> None:
    body = assert_spring_error(api().get(BIN, params={name: value}), 400, BIN)
    assert body["error"] == "Bad Request"
    assert name in body["message"]
    assert value in body["message"]


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer not-a-token"}, 401),
        ({"Authorization": f"Basic {DEMO_ACCESS_TOKEN}"}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": f"Bearer {COLLABORATOR_ACCESS_TOKEN}"}, 403),
        ({"Authorization": f"Bearer {OTHER_ORGANISATION_ACCESS_TOKEN}"}, 403),
    ],
)
def test_bin_routes_need_an_originator_of_the_organisation(
    api: Api, method: str, headers: dict[str, str], status: int
) -> None:
    response = api(None).request(method, BIN, headers=headers)
    assert_spring_error(response, status, BIN)
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert api.listing()["count"] == "7"


def test_a_member_of_one_organisation_is_refused_in_another(api: Api) -> None:
    other_bin = f"/api/v1/organisations/{OTHER_ORGANISATION_ID}/recycle-bin/items"
    assert_spring_error(api().get(other_bin), 403, other_bin)
    assert api(OTHER_ORGANISATION_ACCESS_TOKEN).get(other_bin).json()["count"] == "1"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_unknown_organisation_is_404(api: Api, method: str) -> None:
    path = "/api/v1/organisations/700000000000000001/recycle-bin/items"
    body = assert_spring_error(api().request(method, path), 404, path)
    assert "700000000000000001" in body["message"]


def test_checks_run_token_then_parameters_then_organisation(api: Api) -> None:
    unknown_org = "/api/v1/organisations/1/recycle-bin/items"
    assert api("nope").get(unknown_org, params={"limit": "x"}).status_code == 401
    assert api().get(unknown_org, params={"limit": "x"}).status_code == 400
    assert api(COLLABORATOR_ACCESS_TOKEN).get(BIN, params={"sortBy": "x"}).status_code == 400


def test_unknown_routes_and_methods_answer_in_the_same_error_shape(api: Api) -> None:
    assert_spring_error(api().get("/api/v1/nothing-here"), 404, "/api/v1/nothing-here")
    response = api().post(BIN)
    assert_spring_error(response, 405, BIN)
    assert "GET" in response.headers["allow"]
