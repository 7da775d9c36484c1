"""Katapult emulator: organizations, the trash (list, get, purge one, restore, purge all) and purge tasks."""

from __future__ import annotations

import time
from typing import Any

import httpx2
import pytest

from purgewarden.sandbox import Sandbox
from purgewarden.sandbox.katapult import GLOBEX_TOKEN
from purgewarden.sandbox.katapult.models import TRASH_RETENTION_SECONDS
from tests.sandbox.katapult_http import client, error_of, trash_of

ACME = {"organization[sub_domain]": "acme"}
TASK_SECONDS = 0.6  # what tests/conftest.py gives the sandbox


def purge_all(api: httpx2.Client, sub_domain: str = "acme") -> dict[str, Any]:
    response = api.post(
        "/organizations/_/trash_objects/purge_all", json={"organization": {"sub_domain": sub_domain}}
    )
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()["task"]
    return task


def task_of(api: httpx2.Client, task_id: str) -> dict[str, Any]:
    response = api.get("/tasks/_", params={"task[id]": task_id})
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()["task"]
    return task


# Organizations


def test_list_organizations_shows_every_organization_the_token_may_use(sandbox: Sandbox) -> None:
    with client(sandbox) as admin, client(sandbox, GLOBEX_TOKEN) as globex:
        everyone = admin.get("/organizations").json()["organizations"]
        own = globex.get("/organizations").json()["organizations"]
    assert [o["sub_domain"] for o in everyone] == ["acme", "globex", "initech", "umbrella"]
    assert [o["sub_domain"] for o in own] == ["globex"]
    acme, _, initech, umbrella = everyone
    assert set(acme) == {
        "id", "name", "sub_domain", "infrastructure_domain", "created_at", "activated_at", "suspended", "managed"
    }  # fmt: skip
    assert acme["id"].startswith("org_")
    assert (initech["suspended"], umbrella["activated_at"]) == (True, None)


@pytest.mark.parametrize(
    ("sub_domain", "status", "code"),
    [
        ("initech", 403, "organization_suspended"),
        ("umbrella", 403, "organization_not_activated"),
        ("hooli", 404, "organization_not_found"),
    ],
)
def test_organizations_that_cannot_be_used_are_refused(
    sandbox: Sandbox, sub_domain: str, status: int, code: str
) -> None:
    lookup = {"organization[sub_domain]": sub_domain}
    with client(sandbox) as api:
        assert error_of(api.get("/organizations/_/trash_objects", params=lookup), status)["code"] == code
        assert (
            error_of(api.post("/organizations/_/trash_objects/purge_all", params=lookup), status)["code"]
            == code
        )


def test_a_token_limited_to_other_organizations_cannot_see_or_purge_this_one(sandbox: Sandbox) -> None:
    with client(sandbox, GLOBEX_TOKEN) as globex:
        listed = globex.get("/organizations/_/trash_objects", params=ACME)
        purged = globex.post("/organizations/_/trash_objects/purge_all", params=ACME)
        assert len(trash_of(globex, "globex")) == 3
    assert error_of(listed, 404)["code"] == "organization_not_found"
    assert error_of(purged, 403)["code"] == "permission_denied"


# Trash objects


def test_the_acme_trash_holds_twelve_objects_kept_48_hours_after_trashing(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        trash = trash_of(api)
    now = sandbox.clock.now()
    assert len(trash) == 12
    assert {t["object_type"] for t in trash} >= {"VirtualMachine", "Disk", "FileStorageVolume"}
    assert all(
        t["id"].startswith("trsh_") and set(t) == {"id", "keep_until", "object_id", "object_type"}
        for t in trash
    )
    assert all(now < t["keep_until"] < now + TRASH_RETENTION_SECONDS for t in trash)
    assert [t["keep_until"] for t in trash] == sorted(t["keep_until"] for t in trash)


def test_a_trash_object_is_found_by_id_or_object_id(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        first = trash_of(api)[0]
        by_path = api.get(f"/trash_objects/{first['id']}").json()
        by_id = api.get("/trash_objects/_", params={"trash_object[id]": first["id"]}).json()
        by_object = api.get(
            "/trash_objects/trash_object", params={"trash_object[object_id]": first["object_id"]}
        ).json()
        unknown = api.get("/trash_objects/_")
    assert by_path == by_id == by_object == {"trash_object": first}
    assert error_of(unknown, 404)["code"] == "trash_object_not_found"


def test_another_organizations_trash_object_is_hidden_from_get_and_refused_to_purge_or_restore(
    sandbox: Sandbox,
) -> None:
    with client(sandbox) as api:
        acme_object = trash_of(api)[0]["id"]
    with client(sandbox, GLOBEX_TOKEN) as globex:
        assert error_of(globex.get(f"/trash_objects/{acme_object}"), 404)["code"] == "trash_object_not_found"
        assert error_of(globex.delete(f"/trash_objects/{acme_object}"), 403)["code"] == "permission_denied"
        restored = globex.post("/trash_objects/_/restore", json={"trash_object": {"id": acme_object}})
        assert error_of(restored, 403)["code"] == "permission_denied"


def test_restore_returns_the_object_and_takes_it_out_of_the_trash(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        target = trash_of(api)[3]
        restored = api.post(
            "/trash_objects/_/restore", json={"trash_object": {"object_id": target["object_id"]}}
        )
        assert restored.json() == {"trash_object": target}
        assert target not in trash_of(api)
        assert len(trash_of(api)) == 11
        again = api.post(f"/trash_objects/{target['id']}/restore")
        assert error_of(again, 404)["code"] == "trash_object_not_found"


def test_purging_one_object_removes_only_it_once_its_task_completes(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        target, *others = trash_of(api)
        task = api.request("DELETE", "/trash_objects/_", json={"trash_object": {"id": target["id"]}}).json()[
            "task"
        ]
        assert (task["status"], task["name"]) == ("pending", "Purge items from trash")
        assert api.delete(f"/trash_objects/{target['id']}").json()["task"]["id"] == task["id"]
        assert len(trash_of(api)) == 12
        sandbox.clock.advance(TASK_SECONDS)
        assert task_of(api, task["id"])["status"] == "completed"
        assert trash_of(api) == others
        assert error_of(api.get(f"/trash_objects/{target['id']}"), 404)["code"] == "trash_object_not_found"


# Purge all and its task


def test_purge_all_returns_a_pending_task_that_runs_then_completes_and_empties_the_trash(
    sandbox: Sandbox,
) -> None:
    with client(sandbox) as api:
        before = sandbox.clock.now()
        task = purge_all(api)
        assert task == {
            "id": task["id"],
            "name": "Purge items from trash",
            "status": "pending",
            "created_at": task["created_at"],
            "started_at": None,
            "finished_at": None,
            "progress": 0,
        }
        assert task["id"].startswith("task_")
        assert abs(task["created_at"] - before) <= 1
        # Pending for the first quarter, running until TASK_SECONDS: leave the real clock room to move.
        sandbox.clock.advance(TASK_SECONDS / 3)
        early = task_of(api, task["id"])
        sandbox.clock.advance(TASK_SECONDS / 4)
        later = task_of(api, task["id"])
        assert len(trash_of(api)) == 12
        sandbox.clock.advance(TASK_SECONDS)
        done = task_of(api, task["id"])
        assert trash_of(api) == []
    assert (early["status"], later["status"], done["status"]) == ("running", "running", "completed")
    assert 0 < early["progress"] < later["progress"] < 100 == done["progress"]
    assert early["started_at"] is not None
    assert early["finished_at"] is None
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]


def test_a_task_progresses_on_the_real_clock_too(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        task = purge_all(api)
        time.sleep(TASK_SECONDS + 0.05)
        assert task_of(api, task["id"])["status"] == "completed"


def test_objects_trashed_after_the_purge_started_stay(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        purge_all(api)
        sandbox.katapult.build_large_trash("acme", n=2)
        sandbox.clock.advance(TASK_SECONDS)
        assert len(trash_of(api)) == 2


def test_purge_all_while_one_is_unfinished_returns_that_task(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        first = purge_all(api)
        sandbox.clock.advance(TASK_SECONDS * 0.5)
        second = purge_all(api)
        assert second["id"] == first["id"]
        assert second["status"] == "running"
        sandbox.clock.advance(TASK_SECONDS)
        assert purge_all(api)["id"] != first["id"]


def test_restoring_before_the_purge_completes_rescues_the_object(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        rescued = trash_of(api)[5]
        purge_all(api)
        assert api.post(f"/trash_objects/{rescued['id']}/restore").status_code == 200
        sandbox.clock.advance(TASK_SECONDS)
        assert trash_of(api) == []


def test_a_failing_purge_task_fails_halfway_and_deletes_nothing(sandbox: Sandbox) -> None:
    sandbox.katapult.fail_next_purge("acme")
    with client(sandbox) as api:
        task = purge_all(api)
        sandbox.clock.advance(TASK_SECONDS)
        failed = task_of(api, task["id"])
        assert len(trash_of(api)) == 12
        retried = purge_all(api)
        sandbox.clock.advance(TASK_SECONDS)
        assert task_of(api, retried["id"])["status"] == "completed"
    assert (failed["status"], failed["progress"]) == ("failed", 50)
    assert failed["finished_at"] is not None


def test_task_queueing_errors_refuse_purges_with_their_details(sandbox: Sandbox) -> None:
    sandbox.katapult.refuse_task_queueing("acme", details="Queue full")
    with client(sandbox) as api:
        object_id = trash_of(api)[0]["id"]
        refusals = [
            api.post("/organizations/_/trash_objects/purge_all", params=ACME),
            api.delete(f"/trash_objects/{object_id}"),
        ]
        assert len(trash_of(api)) == 12
        assert len(trash_of(api, "globex")) == 3
        assert purge_all(api, "globex")["status"] == "pending"
    for refused in refusals:
        error = error_of(refused, 406)
        assert error == {**error, "code": "task_queueing_error", "detail": {"details": "Queue full"}}


def test_tasks_are_found_by_id_and_only_by_tokens_of_their_organization(sandbox: Sandbox) -> None:
    with client(sandbox) as api, client(sandbox, GLOBEX_TOKEN) as globex:
        task = purge_all(api)
        assert api.get(f"/tasks/{task['id']}").json()["task"] == task
        assert error_of(globex.get(f"/tasks/{task['id']}"), 404)["code"] == "task_not_found"
        assert error_of(api.get("/tasks/_"), 404)["code"] == "task_not_found"


# Pagination


@pytest.mark.parametrize(
    ("params", "current_page", "per_page", "total_pages", "count"),
    [
        ({}, 1, 30, 1, 12),
        ({"per_page": "5"}, 1, 5, 3, 5),
        ({"per_page": "5", "page": "3"}, 3, 5, 3, 2),
        ({"per_page": "5", "page": "4"}, 4, 5, 3, 0),
        ({"per_page": "1", "page": "12"}, 12, 1, 12, 1),
        ({"per_page": "200"}, 1, 200, 1, 12),
    ],
)
def test_trash_pages(
    sandbox: Sandbox, params: dict[str, str], current_page: int, per_page: int, total_pages: int, count: int
) -> None:
    with client(sandbox) as api:
        listed = api.get("/organizations/_/trash_objects", params={**ACME, **params}).json()
    assert listed["pagination"] == {
        "current_page": current_page,
        "total_pages": total_pages,
        "total": 12,
        "per_page": per_page,
        "large_set": False,
    }
    assert len(listed["trash_objects"]) == count


def test_pages_join_up_to_the_whole_trash_in_order(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        pages = [
            api.get("/organizations/_/trash_objects", params={**ACME, "per_page": "5", "page": str(p)}).json()
            for p in (1, 2, 3)
        ]
        assert [t for page in pages for t in page["trash_objects"]] == trash_of(api)


def test_an_empty_trash_has_no_pages(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        purge_all(api)
        sandbox.clock.advance(TASK_SECONDS)
        listed = api.get("/organizations/_/trash_objects", params=ACME).json()
    assert listed == {
        "pagination": {"current_page": 1, "total_pages": 0, "total": 0, "per_page": 30, "large_set": False},
        "trash_objects": [],
    }


def test_a_large_trash_is_built_fast_and_paged_and_purged(sandbox: Sandbox) -> None:
    sandbox.katapult.build_large_trash("globex", n=20_000)
    with client(sandbox, GLOBEX_TOKEN) as api:
        params = {"organization[sub_domain]": "globex", "per_page": "200"}
        first = api.get("/organizations/_/trash_objects", params=params).json()
        last = api.get("/organizations/_/trash_objects", params={**params, "page": "101"}).json()
        assert first["pagination"] == {**first["pagination"], "total": 20_003, "total_pages": 101}
        assert len(last["trash_objects"]) == 3
        found = api.get(f"/trash_objects/{last['trash_objects'][-1]['id']}")
        assert found.status_code == 200
        purge_all(api, "globex")
        sandbox.clock.advance(TASK_SECONDS)
        assert api.get("/organizations/_/trash_objects", params=params).json()["pagination"]["total"] == 0
