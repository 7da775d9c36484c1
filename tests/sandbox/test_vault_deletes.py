"""The Vault emulator's destructive calls over real HTTP: bulk and single delete, and garbage collection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from purgewarden.sandbox import Sandbox
from purgewarden.sandbox.vault import ACME_API_KEY, API_PREFIX, DEMO_API_KEY, GC_LIMIT
from purgewarden.sandbox.vault.seed import object_id
from tests.sandbox.test_vault import assert_string_context

REASON = {"reason": "Maintenance"}
CUSTOMERS = "/data/collections/customers"
GC = "/system/admin/lifecycle/gc"
DAY = 86_400.0


def client(sandbox: Sandbox, key: str = DEMO_API_KEY) -> httpx2.Client:
    url = sandbox.endpoints["vault"].url + API_PREFIX
    return httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.fixture
def vault(sandbox: Sandbox) -> Iterator[httpx2.Client]:
    with client(sandbox) as http:
        yield http


def error_of(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error_code"] == code
    assert_string_context(body)
    return body


def bulk_delete(
    vault: httpx2.Client, ids: list[str], headers: dict[str, str] | None = None, **params: Any
) -> httpx2.Response:
    return vault.request(
        "DELETE",
        CUSTOMERS + "/bulk/objects",
        params={**REASON, **params},
        json=[{"id": i} for i in ids],
        headers=headers,
    )


def counts(vault: httpx2.Client, collection: str = "customers") -> dict[str, int]:
    body: dict[str, int] = vault.get(f"/data/collections/{collection}/count/objects", params=REASON).json()
    return body


def gc(vault: httpx2.Client, **params: Any) -> list[dict[str, Any]]:
    response = vault.post(GC, params={**REASON, **params})
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


def rows_of(rows: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(r["collection_name"], r["collection_type"], r["count"]) for r in rows]


# --- bulk delete ---


def test_bulk_delete_deletes_active_objects_in_request_order(vault: httpx2.Client) -> None:
    ids = [object_id("customers", i) for i in (5, 1, 30, 2)]
    body = bulk_delete(vault, ids).json()
    assert body == {"ok": True, "results": [{"id": i, "ok": True} for i in ids]}
    assert counts(vault) == {"active": 36, "archived": 15, "total": 51}
    error_of(vault.get(f"{CUSTOMERS}/objects/{ids[0]}", params=REASON), 404, "PV3005")


def test_bulk_delete_with_the_archived_option_deletes_archived_objects(vault: httpx2.Client) -> None:
    ids = [object_id("customers", i) for i in (44, 40)]
    assert bulk_delete(vault, ids, options="archived").json()["ok"] is True
    assert counts(vault) == {"active": 40, "archived": 13, "total": 53}


def test_ids_match_case_insensitively(vault: httpx2.Client) -> None:
    body = bulk_delete(vault, [object_id("customers", 7).upper()]).json()
    assert body == {"ok": True, "results": [{"id": object_id("customers", 7), "ok": True}]}


@pytest.mark.parametrize(
    ("bad_id", "options", "hint"),
    [
        (object_id("customers", 999), None, ""),
        (object_id("customers", 42), None, "archived"),
        (object_id("customers", 3), "archived", "active"),
    ],
)
def test_one_failing_id_fails_the_whole_batch_and_deletes_nothing(
    vault: httpx2.Client, bad_id: str, options: str | None, hint: str
) -> None:
    good = [object_id("customers", 44 if options else 0), object_id("customers", 45 if options else 1)]
    before = counts(vault)
    ids = [good[0], bad_id, good[1]]
    params: dict[str, Any] = {"options": options} if options else {}
    body = bulk_delete(vault, ids, **params).json()
    assert body["ok"] is False
    assert [item["id"] for item in body["results"]] == ids
    assert [item["ok"] for item in body["results"]] == [False, False, False]
    for item in body["results"]:
        assert_string_context(item["error"])
    failing = body["results"][1]["error"]
    assert failing["error_code"] == "PV3005"
    assert failing["context"] == {"id": bad_id}
    assert hint in failing["message"]
    for untouched in (body["results"][0], body["results"][2]):
        assert untouched["error"]["error_code"] == "PV3999"
        assert "nothing was deleted" in untouched["error"]["message"]
    assert counts(vault) == before


def test_deleting_an_already_deleted_object_fails(vault: httpx2.Client) -> None:
    ids = [object_id("customers", 0)]
    assert bulk_delete(vault, ids).json()["ok"] is True
    again = bulk_delete(vault, [*ids, object_id("customers", 1)]).json()
    assert again["ok"] is False
    assert again["results"][0]["error"]["error_code"] == "PV3005"
    assert counts(vault)["active"] == 39


def test_an_empty_batch_succeeds(vault: httpx2.Client) -> None:
    assert bulk_delete(vault, []).json() == {"ok": True, "results": []}


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"id": "6c581494-5884-57c1-8273-b2a6b78fec0d"}',
        b'["6c581494-5884-57c1-8273-b2a6b78fec0d"]',
        b'[{"uuid": "6c581494-5884-57c1-8273-b2a6b78fec0d"}]',
        b'[{"id": 5}]',
        b'[{"id": "not-a-uuid"}]',
    ],
)
def test_malformed_bulk_bodies_are_invalid(vault: httpx2.Client, body: bytes) -> None:
    response = vault.request("DELETE", CUSTOMERS + "/bulk/objects", params=REASON, content=body)
    error_of(response, 400, "PV1012")
    assert counts(vault)["total"] == 55


def test_more_than_the_max_page_size_is_invalid(vault: httpx2.Client) -> None:
    ids = [object_id("customers", i) for i in range(1001)]
    body = error_of(bulk_delete(vault, ids), 400, "PV1012")
    assert "1000" in body["message"]
    assert counts(vault)["total"] == 55


def test_an_id_listed_twice_is_invalid(vault: httpx2.Client) -> None:
    twice = object_id("customers", 0)
    body = error_of(bulk_delete(vault, [twice, object_id("customers", 1), twice.upper()]), 400, "PV1012")
    assert body["context"] == {"id": twice}
    assert counts(vault)["total"] == 55


def test_an_unknown_option_is_invalid(vault: httpx2.Client) -> None:
    error_of(bulk_delete(vault, [object_id("customers", 0)], options="unsafe"), 400, "PV1012")


def test_a_thousand_ids_delete_from_a_large_collection(sandbox: Sandbox, vault: httpx2.Client) -> None:
    ids = sandbox.vault.build_large("customers", 100_000)
    body = bulk_delete(vault, ids[40_000:41_000]).json()
    assert body["ok"] is True
    assert len(body["results"]) == 1000
    assert counts(vault)["active"] == 100_040 - 1000


def test_a_conflict_fails_the_call_and_deletes_nothing(sandbox: Sandbox, vault: httpx2.Client) -> None:
    sandbox.vault.conflict_next_bulk_delete()
    ids = [object_id("customers", 0)]
    error_of(bulk_delete(vault, ids), 409, "PV3218")
    assert counts(vault)["active"] == 40
    assert bulk_delete(vault, ids).json()["ok"] is True


def test_another_tenants_id_fails_the_whole_batch(vault: httpx2.Client) -> None:
    ids = [object_id("customers", 0), object_id("customers", 2)]  # acme, globex
    response = bulk_delete(vault, ids, headers={"X-Tenant-Id": "acme"})
    assert error_of(response, 403, "PV1006")["context"] == {"id": ids[1]}
    assert counts(vault)["active"] == 40


def test_a_tenant_bound_key_deletes_its_own_objects(sandbox: Sandbox, vault: httpx2.Client) -> None:
    with client(sandbox, ACME_API_KEY) as acme:
        assert bulk_delete(acme, [object_id("customers", 0), object_id("customers", 1)]).json()["ok"] is True
        error_of(bulk_delete(acme, [object_id("customers", 2)]), 403, "PV1006")
    assert counts(vault)["active"] == 38


# --- single delete ---


def test_delete_one_object(vault: httpx2.Client) -> None:
    path = f"{CUSTOMERS}/objects/{object_id('customers', 0)}"
    response = vault.delete(path, params=REASON)
    assert response.status_code == 200
    assert response.content == b""
    assert error_of(vault.delete(path, params=REASON), 404, "PV3005")["context"] == {
        "ids": object_id("customers", 0)
    }
    assert counts(vault)["active"] == 39


def test_delete_one_archived_object_needs_the_archived_option(vault: httpx2.Client) -> None:
    path = f"{CUSTOMERS}/objects/{object_id('customers', 50)}"
    error_of(vault.delete(path, params=REASON), 404, "PV3005")
    assert vault.delete(path, params={**REASON, "options": "archived"}).status_code == 200
    assert counts(vault)["archived"] == 14


def test_delete_one_object_of_another_tenant_is_forbidden(vault: httpx2.Client) -> None:
    path = f"{CUSTOMERS}/objects/{object_id('customers', 2)}"
    error_of(vault.delete(path, params=REASON, headers={"X-Tenant-Id": "acme"}), 403, "PV1006")
    error_of(vault.delete(f"{CUSTOMERS}/objects/zzz", params=REASON), 400, "PV1012")
    assert counts(vault)["active"] == 40


# --- garbage collection ---

DEMO_GC = [
    ("customers", "PERSONS", 10),
    ("orders", "DATA", 6),
    ("customers", "TOKENS", 7),
    ("orders", "TOKENS", 4),
    ("customers", "TRANSACTION_IDS", 4),
    ("orders", "TRANSACTION_IDS", 2),
]
ORPHANED_BY_TOKEN_GC = [("customers", "TRANSACTION_IDS", 7), ("orders", "TRANSACTION_IDS", 4)]


def test_a_dry_run_counts_without_deleting(vault: httpx2.Client) -> None:
    assert rows_of(gc(vault, dry_run="true")) == DEMO_GC
    assert rows_of(gc(vault, dry_run="true")) == DEMO_GC
    assert counts(vault) == {"active": 40, "archived": 15, "total": 55}


def test_gc_deletes_everything_past_retention_over_repeated_calls(vault: httpx2.Client) -> None:
    assert rows_of(gc(vault)) == DEMO_GC
    assert counts(vault) == {"active": 40, "archived": 5, "total": 45}
    assert counts(vault, "orders") == {"active": 22, "archived": 2, "total": 24}
    # The deleted tokens' transaction ids have become orphans: the next call takes them.
    assert rows_of(gc(vault, dry_run="true")) == ORPHANED_BY_TOKEN_GC
    assert rows_of(gc(vault)) == ORPHANED_BY_TOKEN_GC
    assert gc(vault) == []


@pytest.mark.parametrize(
    ("gc_filter", "first", "then"),
    [
        ("objects_only", DEMO_GC[:2], []),
        ("tokens_only", DEMO_GC[2:4], []),
        ("transaction_ids_only", DEMO_GC[4:], []),
        ("all", DEMO_GC, ORPHANED_BY_TOKEN_GC),
    ],
)
def test_gc_filters(
    vault: httpx2.Client, gc_filter: str, first: list[tuple[str, str, int]], then: list[tuple[str, str, int]]
) -> None:
    assert rows_of(gc(vault, filter=gc_filter)) == first
    assert rows_of(gc(vault, filter=gc_filter, dry_run="true")) == then


@pytest.mark.parametrize("params", [{"filter": "everything"}, {"dry_run": "maybe"}])
def test_bad_gc_parameters_are_invalid(vault: httpx2.Client, params: dict[str, str]) -> None:
    error_of(vault.post(GC, params={**REASON, **params}), 400, "PV1012")


def test_retention_follows_the_clock(sandbox: Sandbox, vault: httpx2.Client) -> None:
    gc(vault)
    gc(vault)
    sandbox.clock.advance(19 * DAY)  # the youngest archived items are now 22 to 29 days old
    assert gc(vault, dry_run="true") == []
    advanced = httpx2.post(sandbox.endpoints["vault"].url + "/_sandbox/clock", json={"seconds": 12 * DAY})
    assert advanced.status_code == 200
    assert rows_of(gc(vault)) == [
        ("customers", "PERSONS", 5),
        ("orders", "DATA", 2),
        ("customers", "TOKENS", 2),
    ]
    assert counts(vault)["archived"] == 0


@pytest.mark.parametrize(
    "body", [b"nope", b"{}", b'{"seconds": "soon"}', b'{"seconds": -3600}', b'{"seconds": 1, "days": 2}']
)
def test_a_bad_clock_advance_is_refused_and_time_stays(sandbox: Sandbox, body: bytes) -> None:
    before = sandbox.clock.now()
    refused = httpx2.post(
        sandbox.endpoints["vault"].url + "/_sandbox/clock",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid clock advance"
    assert refused.json()["detail"]
    assert abs(sandbox.clock.now() - before) < 60  # only the real seconds the test took


def test_the_retention_period_is_configurable(sandbox: Sandbox, vault: httpx2.Client) -> None:
    sandbox.vault.retention_seconds = 1 * DAY
    assert rows_of(gc(vault, filter="objects_only", dry_run="true")) == [
        ("customers", "PERSONS", 15),
        ("orders", "DATA", 8),
    ]


def test_objects_archived_through_the_backend_age_into_gc(sandbox: Sandbox, vault: httpx2.Client) -> None:
    gc(vault, filter="objects_only")
    fresh = [object_id("customers", 0)]
    sandbox.vault.archive("customers", fresh)
    assert gc(vault, filter="objects_only", dry_run="true") == []
    sandbox.vault.archive("customers", [object_id("customers", 1)], at=sandbox.clock.now() - 31 * DAY)
    assert rows_of(gc(vault, filter="objects_only")) == [("customers", "PERSONS", 1)]
    assert counts(vault) == {"active": 38, "archived": 6, "total": 44}


def test_gc_deletes_at_most_10000_items_a_call(sandbox: Sandbox, vault: httpx2.Client) -> None:
    sandbox.vault.build_large("customers", 25_000, archived=25_000)
    backlog = sum(row.count for row in sandbox.vault.gc_backlog())
    assert backlog == 25_000 + sum(count for *_, count in DEMO_GC)
    preview = gc(vault, dry_run="true")
    assert sum(row["count"] for row in preview) == backlog  # a dry run is not capped
    assert ("customers", "PERSONS", 25_010) in rows_of(preview)
    assert counts(vault)["archived"] == 25_015
    deleted: list[int] = []
    while rows := gc(vault):
        deleted.append(sum(row["count"] for row in rows))
        assert deleted[-1] <= GC_LIMIT
    assert deleted == [GC_LIMIT, GC_LIMIT, 25_000 + 33 - 2 * GC_LIMIT, 11]
    assert counts(vault) == {"active": 40, "archived": 5, "total": 45}
    assert sandbox.vault.gc_backlog() == []


def test_gc_is_not_allowed_in_in_memory_mode(sandbox: Sandbox, vault: httpx2.Client) -> None:
    sandbox.vault.in_memory = True
    error_of(vault.post(GC, params=REASON), 405, "PV1026")
    error_of(vault.post(GC, params={**REASON, "dry_run": "true"}), 405, "PV1026")
    sandbox.reset()
    assert gc(vault, dry_run="true")
