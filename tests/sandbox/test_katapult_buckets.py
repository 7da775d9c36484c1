"""Katapult emulator: object storage buckets (get one, revoke its presigned URLs) and their refusals."""

from __future__ import annotations

import pytest

from purgewarden.sandbox import Fault, Sandbox
from purgewarden.sandbox.katapult import (
    DEMO_TOKEN,
    GLOBEX_TOKEN,
    INITECH_TOKEN,
    OAUTH_TOKEN,
    READ_ONLY_TOKEN,
    UMBRELLA_TOKEN,
    error_body,
)
from tests.sandbox.katapult_http import client, error_of, trash_of

ASSETS = "/object_storage/uk-lon-1/buckets/acme-assets"
REVOKE_ASSETS = {"object_storage_cluster": {"region": "uk-lon-1"}, "bucket": {"name": "acme-assets"}}


def test_get_bucket_by_path_segments_or_by_arguments(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        by_path = api.get(ASSETS).json()
        by_query = api.get(
            "/object_storage/_/buckets/_",
            params={"object_storage_cluster[region]": "uk-lon-1", "bucket[name]": "acme-assets"},
        ).json()
        by_body = api.request("GET", "/object_storage/_/buckets/_", json=REVOKE_ASSETS).json()
    assert by_path == by_query == by_body
    bucket = by_path["object_storage_bucket"]
    assert bucket == {
        **bucket,
        "name": "acme-assets",
        "state": "configured",
        "object_count": 1284,
        "custom_domain": "assets.acme.example",
        "serve_static_site": False,
    }
    assert set(bucket["access_control_list"]) == {
        "public_read", "public_list", "all_keys_read", "all_keys_write", "read_key_ids", "write_key_ids"
    }  # fmt: skip


def test_a_pending_static_site_bucket(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        bucket = api.get("/object_storage/uk-lon-1/buckets/acme-website").json()["object_storage_bucket"]
    assert (bucket["state"], bucket["serve_static_site"], bucket["object_count"]) == ("pending", True, None)


def test_revoking_presigned_urls_succeeds_and_is_recorded_each_time(sandbox: Sandbox) -> None:
    with client(sandbox) as api:
        first = api.post("/object_storage/_/buckets/_/revoke_presigned_urls", json=REVOKE_ASSETS)
        sandbox.clock.advance(10)
        second = api.post(f"{ASSETS}/revoke_presigned_urls")
    assert first.json() == second.json() == {"success": True}
    times = sandbox.katapult.revocations("uk-lon-1", "acme-assets")
    assert len(times) == 2
    assert times[1] - times[0] >= 10
    assert sandbox.katapult.revocations("uk-lon-1", "acme-backups") == ()


def test_the_read_only_token_may_get_but_not_revoke(sandbox: Sandbox) -> None:
    with client(sandbox, READ_ONLY_TOKEN) as api:
        assert api.get(ASSETS).status_code == 200
        assert error_of(api.post(f"{ASSETS}/revoke_presigned_urls"), 403)["code"] == "scope_not_granted"
    assert sandbox.katapult.revocations("uk-lon-1", "acme-assets") == ()


@pytest.mark.parametrize("operation", ["get", "revoke"])
@pytest.mark.parametrize(
    ("token", "path", "status", "code"),
    [
        (
            DEMO_TOKEN,
            "/object_storage/eu-mars-1/buckets/acme-assets",
            404,
            "object_storage_cluster_not_found",
        ),
        (DEMO_TOKEN, "/object_storage/_/buckets/acme-assets", 404, "object_storage_cluster_not_found"),
        (DEMO_TOKEN, "/object_storage/uk-lon-1/buckets/acme-nothing", 404, "object_storage_bucket_not_found"),
        (DEMO_TOKEN, "/object_storage/uk-lon-1/buckets/globex-media", 404, "object_storage_bucket_not_found"),
        (DEMO_TOKEN, "/object_storage/nl-ams-1/buckets/acme-assets", 404, "object_storage_account_not_found"),
        (
            INITECH_TOKEN,
            "/object_storage/uk-lon-1/buckets/initech-reports",
            403,
            "object_storage_account_suspended",
        ),
        (
            UMBRELLA_TOKEN,
            "/object_storage/uk-lon-1/buckets/any",
            403,
            "object_storage_account_not_provisioned",
        ),
        (OAUTH_TOKEN, ASSETS, 403, "permission_denied"),
    ],
)
def test_buckets_that_cannot_be_reached_are_refused(
    sandbox: Sandbox, operation: str, token: str, path: str, status: int, code: str
) -> None:
    with client(sandbox, token) as api:
        response = api.get(path) if operation == "get" else api.post(f"{path}/revoke_presigned_urls")
    assert error_of(response, status)["code"] == code


def test_a_bucket_whose_account_is_in_the_trash_is_refused_naming_the_trash_object(sandbox: Sandbox) -> None:
    with client(sandbox, GLOBEX_TOKEN) as api:
        account = next(t for t in trash_of(api, "globex") if t["object_type"] == "ObjectStorageAccount")
        get = api.get("/object_storage/uk-lon-1/buckets/globex-media")
        revoke = api.post("/object_storage/uk-lon-1/buckets/globex-media/revoke_presigned_urls")
    for refused in (get, revoke):
        error = error_of(refused, 406)
        assert (error["code"], error["detail"]) == ("object_in_trash", {"trash_object": account})


def test_restoring_the_account_makes_its_buckets_usable(sandbox: Sandbox) -> None:
    with client(sandbox, GLOBEX_TOKEN) as api:
        account = next(t for t in trash_of(api, "globex") if t["object_type"] == "ObjectStorageAccount")
        assert api.post(f"/trash_objects/{account['id']}/restore").status_code == 200
        assert api.post("/object_storage/uk-lon-1/buckets/globex-media/revoke_presigned_urls").json() == {
            "success": True
        }


def test_purging_the_account_deletes_it_with_its_buckets(sandbox: Sandbox) -> None:
    with client(sandbox, GLOBEX_TOKEN) as api:
        api.post("/organizations/_/trash_objects/purge_all", params={"organization[sub_domain]": "globex"})
        sandbox.clock.advance(1)
        gone = api.get("/object_storage/uk-lon-1/buckets/globex-media")
    assert error_of(gone, 404)["code"] == "object_storage_account_not_found"


def test_an_ambiguous_bucket_is_a_500(sandbox: Sandbox) -> None:
    sandbox.katapult.make_bucket_ambiguous("uk-lon-1", "acme-assets")
    with client(sandbox) as api:
        for response in (api.get(ASSETS), api.post(f"{ASSETS}/revoke_presigned_urls")):
            assert error_of(response, 500)["code"] == "multiple_object_storage_buckets_found"
        assert api.get("/object_storage/uk-lon-1/buckets/acme-backups").status_code == 200


def test_a_network_error_revokes_nothing_and_the_retry_succeeds(sandbox: Sandbox) -> None:
    sandbox.katapult.fail_next_revoke("uk-lon-1", "acme-assets")
    with client(sandbox) as api:
        failed = api.post(f"{ASSETS}/revoke_presigned_urls")
        assert sandbox.katapult.revocations("uk-lon-1", "acme-assets") == ()
        retried = api.post(f"{ASSETS}/revoke_presigned_urls")
    assert error_of(failed, 504)["code"] == "network_error"
    assert retried.json() == {"success": True}
    assert len(sandbox.katapult.revocations("uk-lon-1", "acme-assets")) == 1


def test_an_injected_504_on_revoke_carries_katapults_network_error(sandbox: Sandbox) -> None:
    sandbox.inject("katapult", Fault(method="POST", path="revoke_presigned_urls", status=504))
    with client(sandbox) as api:
        response = api.post(f"{ASSETS}/revoke_presigned_urls")
    assert response.status_code == 504
    assert response.json() == error_body(504)
    assert sandbox.katapult.revocations("uk-lon-1", "acme-assets") == ()
