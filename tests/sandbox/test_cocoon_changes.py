"""Cocoon emulator over real HTTP: emptying, per-item get/restore/delete, purging over time, faults, big bins."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from purgewarden.sandbox import Fault, Sandbox
from purgewarden.sandbox.cocoon import (
    COLLABORATOR_ACCESS_TOKEN,
    DEMO_ACCESS_TOKEN,
    DEMO_ORGANISATION_ID,
    OTHER_ORGANISATION_ACCESS_TOKEN,
    OTHER_ORGANISATION_ID,
    SECOND_ORIGINATOR_ACCESS_TOKEN,
    ItemState,
    error_body,
)
from tests.sandbox.test_cocoon import BIN, Api, assert_spring_error

OTHER_FOLDER = "752389961810243584"
OTHER_FOLDER_CONTENTS = [f"75238996181024360{n}" for n in range(1, 7)]
EXECUTIVE_REPORT = "753099536981094400"
NEAR_PURGE = "756120044395401217"
SAMS_FILE = "756200118804250624"
DAY = 86_400.0


def item_path(item_id: str) -> str:
    return f"/api/v1/recycle-bin/items/{item_id}"


@pytest.fixture(scope="module")
def transport() -> Iterator[httpx2.HTTPTransport]:
    with httpx2.HTTPTransport() as pool:
        yield pool


@pytest.fixture
def api(sandbox: Sandbox, transport: httpx2.HTTPTransport) -> Api:
    return Api(sandbox, transport)


def bin_ids(
    api: Api, token: str = DEMO_ACCESS_TOKEN, organisation_id: str = DEMO_ORGANISATION_ID
) -> set[str]:
    path = f"/api/v1/organisations/{organisation_id}/recycle-bin/items"
    return {item["id"] for item in api(token).get(path, params={"limit": 0}).json()["items"]}


def test_emptying_deletes_files_and_removes_folders_entirely(api: Api, sandbox: Sandbox) -> None:
    before = {item["id"]: item for item in api.listing(limit=0)["items"]}
    response = api().delete(BIN)
    assert (response.status_code, response.content) == (200, b"")
    assert api.listing(limit=0) == {"items": [], "count": "0", "offset": "0"}
    items = sandbox.cocoon.items
    for item_id, item in before.items():
        if item["type"] == "object":
            assert items[item_id].state is ItemState.DELETED
            assert items[item_id].name == item["name"]
        else:
            assert item_id not in items
    assert not set(OTHER_FOLDER_CONTENTS) & set(items)
    assert_spring_error(api().get(item_path(EXECUTIVE_REPORT)), 404, item_path(EXECUTIVE_REPORT))


def test_emptying_one_bin_leaves_every_other_bin_alone(api: Api, sandbox: Sandbox) -> None:
    sams = bin_ids(api, SECOND_ORIGINATOR_ACCESS_TOKEN)
    olgas = bin_ids(api, OTHER_ORGANISATION_ACCESS_TOKEN, OTHER_ORGANISATION_ID)
    assert api().delete(BIN).status_code == 200
    assert bin_ids(api, SECOND_ORIGINATOR_ACCESS_TOKEN) == sams == {SAMS_FILE, "756200118804250625"}
    assert bin_ids(api, OTHER_ORGANISATION_ACCESS_TOKEN, OTHER_ORGANISATION_ID) == olgas
    assert sandbox.cocoon.items[SAMS_FILE].state is ItemState.RECYCLED


def test_emptying_an_empty_bin_succeeds(api: Api) -> None:
    assert api().delete(BIN).status_code == 200
    assert api().delete(BIN).status_code == 200


def test_get_item_returns_the_listed_representation(api: Api) -> None:
    listed = {item["id"]: item for item in api.listing(limit=0)["items"]}
    for item_id, item in listed.items():
        response = api().get(item_path(item_id))
        assert response.status_code == 200
        assert response.json() == item


@pytest.mark.parametrize(
    ("token", "item_id", "status"),
    [
        (DEMO_ACCESS_TOKEN, "700000000000000001", 404),
        (DEMO_ACCESS_TOKEN, "not-a-number", 404),
        (DEMO_ACCESS_TOKEN, SAMS_FILE, 404),  # another user's item: not found, not forbidden
        (DEMO_ACCESS_TOKEN, OTHER_FOLDER_CONTENTS[0], 404),  # inside a recycled folder
        (OTHER_ORGANISATION_ACCESS_TOKEN, EXECUTIVE_REPORT, 404),
        (COLLABORATOR_ACCESS_TOKEN, "756300201155198976", 403),  # their own item, but no Originator role
        (None, EXECUTIVE_REPORT, 401),
        ("not-a-token", EXECUTIVE_REPORT, 401),
    ],
)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_item_routes_refuse_what_the_caller_may_not_touch(
    api: Api, method: str, token: str | None, item_id: str, status: int
) -> None:
    assert_spring_error(api(token).request(method, item_path(item_id)), status, item_path(item_id))
    assert api.listing()["count"] == "7"
    assert len(bin_ids(api, SECOND_ORIGINATOR_ACCESS_TOKEN)) == 2


def test_restore_takes_a_folder_and_its_contents_out_of_the_bin(api: Api, sandbox: Sandbox) -> None:
    response = api().put(item_path(OTHER_FOLDER))
    assert (response.status_code, response.content) == (200, b"")
    assert OTHER_FOLDER not in bin_ids(api)
    assert api.listing()["count"] == "6"
    restored = sandbox.cocoon.items[OTHER_FOLDER]
    assert restored.state is ItemState.ACTIVE
    assert restored.parent_id == "755603158478508032"
    assert all(sandbox.cocoon.items[i].state is ItemState.ACTIVE for i in OTHER_FOLDER_CONTENTS)
    assert api().get(item_path(OTHER_FOLDER)).status_code == 404
    assert api().put(item_path(OTHER_FOLDER)).status_code == 404


def test_restored_items_survive_emptying_the_bin(api: Api, sandbox: Sandbox) -> None:
    assert api().put(item_path(EXECUTIVE_REPORT)).status_code == 200
    assert api().delete(BIN).status_code == 200
    assert sandbox.cocoon.items[EXECUTIVE_REPORT].state is ItemState.ACTIVE


def test_deleting_a_file_marks_it_deleted_and_keeps_the_rest(api: Api, sandbox: Sandbox) -> None:
    response = api().delete(item_path(EXECUTIVE_REPORT))
    assert (response.status_code, response.content) == (200, b"")
    assert sandbox.cocoon.items[EXECUTIVE_REPORT].state is ItemState.DELETED
    assert EXECUTIVE_REPORT not in bin_ids(api)
    assert api.listing()["count"] == "6"
    assert api().delete(item_path(EXECUTIVE_REPORT)).status_code == 404


def test_deleting_a_folder_removes_it_with_everything_inside(api: Api, sandbox: Sandbox) -> None:
    assert api().delete(item_path(OTHER_FOLDER)).status_code == 200
    assert not {OTHER_FOLDER, *OTHER_FOLDER_CONTENTS} & set(sandbox.cocoon.items)
    assert bin_ids(api) == {
        EXECUTIVE_REPORT,
        "752047795879604224",
        "756120044395401216",
        NEAR_PURGE,
        "756120044395401218",
        "756120044395401219",
    }


def days_to_purge(api: Api) -> dict[str, int]:
    return {item["id"]: item["daysToPurge"] for item in api.listing(limit=0)["items"]}


def test_days_to_purge_counts_down_with_the_clock(api: Api, sandbox: Sandbox) -> None:
    assert days_to_purge(api)[OTHER_FOLDER] == 29
    assert days_to_purge(api)[NEAR_PURGE] == 1
    sandbox.clock.advance(DAY)
    assert days_to_purge(api)[OTHER_FOLDER] == 28
    assert days_to_purge(api)[NEAR_PURGE] == 0
    assert api().get(item_path(NEAR_PURGE)).json()["daysToPurge"] == 0


def test_items_past_thirty_days_are_purged_like_a_delete(api: Api, sandbox: Sandbox) -> None:
    sandbox.clock.advance(1.5 * DAY + 1)
    assert NEAR_PURGE not in days_to_purge(api)
    assert sandbox.cocoon.items[NEAR_PURGE].state is ItemState.DELETED
    assert api().get(item_path(NEAR_PURGE)).status_code == 404
    sandbox.clock.advance(30 * DAY)
    assert api.listing(limit=0)["count"] == "0"
    assert OTHER_FOLDER not in sandbox.cocoon.items
    assert api(SECOND_ORIGINATOR_ACCESS_TOKEN).get(item_path(SAMS_FILE)).status_code == 404


def test_the_clock_control_endpoint_moves_days_to_purge(api: Api) -> None:
    response = api().post("/_sandbox/clock", json={"seconds": 10 * DAY})
    assert response.status_code == 200
    assert days_to_purge(api)[OTHER_FOLDER] == 19


def test_reset_brings_back_the_demo_bin(api: Api, sandbox: Sandbox) -> None:
    api().delete(BIN)
    sandbox.reset()
    assert api.listing()["count"] == "7"
    api().delete(BIN)
    assert api().post("/_sandbox/reset").status_code == 204
    assert api.listing()["count"] == "7"


def test_injected_status_uses_the_spring_error_shape(api: Api, sandbox: Sandbox) -> None:
    sandbox.inject("cocoon", Fault(method="GET", path="recycle-bin", status=503))
    response = api().get(BIN)
    assert response.status_code == 503
    assert set(response.json()) == {"timestamp", "status", "error", "message", "path"}
    assert response.json()["error"] == "Service Unavailable"
    assert api.listing()["count"] == "7"  # the fault fired once


def test_fault_added_over_http_refuses_the_empty_without_touching_the_bin(api: Api) -> None:
    fault = {"method": "DELETE", "path": "/recycle-bin/items$", "status": 500}
    assert api().post("/_sandbox/faults", json=fault).status_code == 201
    response = api().delete(BIN)
    assert response.status_code == 500
    assert response.json()["status"] == 500
    assert api.listing()["count"] == "7"
    assert api().delete(BIN).status_code == 200


def test_dropped_answer_after_emptying_still_empties(api: Api) -> None:
    fault = {"method": "DELETE", "drop": "after"}
    assert api().post("/_sandbox/faults", json=fault).status_code == 201
    with pytest.raises(httpx2.TransportError):
        api().delete(BIN)
    assert api.listing()["count"] == "0"


def test_injected_latency_delays_the_answer(api: Api, sandbox: Sandbox) -> None:
    sandbox.inject("cocoon", Fault(path="recycle-bin", latency=0.3))
    started = time.perf_counter()
    assert api().get(BIN).status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_error_body_for_any_status() -> None:
    body: dict[str, Any] = error_body(429)
    assert body | {"timestamp": ""} == {
        "timestamp": "",
        "status": 429,
        "error": "Too Many Requests",
        "message": "No message available",
        "path": "",
    }
    assert error_body(599)["error"] == "Unknown Status"


def test_a_large_bin_pages_like_the_small_one(api: Api, sandbox: Sandbox) -> None:
    ids = sandbox.cocoon.build_large_bin(DEMO_ACCESS_TOKEN, n=10_000)
    assert len(set(ids)) == 10_000
    assert api.listing(limit=0)["count"] == "10007"
    page = api.listing(limit=50, offset=9_000, sortBy="name", orderBy="asc")
    names = [item["name"] for item in page["items"]]
    assert page["count"] == "50"
    assert names == sorted(names, key=str.casefold)
    assert all(item["daysToPurge"] >= 1 for item in api.listing(limit=0)["items"])


def test_large_bin_builder_accepts_a_user_id_or_email(api: Api, sandbox: Sandbox) -> None:
    sandbox.cocoon.build_large_bin("sam.originator@xy-company.com", n=5)
    sandbox.cocoon.build_large_bin("749420117732061184", n=5)
    assert len(bin_ids(api, SECOND_ORIGINATOR_ACCESS_TOKEN)) == 12
    assert api.listing()["count"] == "7"
