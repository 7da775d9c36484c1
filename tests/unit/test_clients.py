"""The API clients' own refusals and readings, against an in-memory transport (nothing leaves the process).

A request that cannot be built is refused before anything is sent (`invalid_request`, not carried out);
an answer that cannot be read is `malformed` (the call went through, so its fate is unknown).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx2
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from purgewarden.clients.base import MAX_URL_CHARS, RetryPolicy, ServiceClient
from purgewarden.clients.cocoon import CocoonClient
from purgewarden.clients.errors import ApiError
from purgewarden.clients.katapult import KatapultClient
from purgewarden.clients.vault import SearchQuery, VaultClient

UUID = "0b5ad3c5-1d8a-4bb4-8f2a-7b0ecf3c2a10"
ORGANIZATION = {"id": "org_1", "name": "Acme", "sub_domain": "acme"}
TASK = {"id": "task_1", "name": "Purge items from trash", "status": "pending", "created_at": 1, "progress": 0}
BUCKET = {"name": "b", "state": "configured"}


class Recorder:
    """A transport that records every request it is handed and answers each with `answer`."""

    def __init__(self, answer: Callable[[httpx2.Request], httpx2.Response] | None = None) -> None:
        self.requests: list[httpx2.Request] = []
        self.answer = answer or (lambda request: httpx2.Response(200, json={}))
        self.transport = httpx2.MockTransport(self.handle)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.answer(request)


C = TypeVar("C", bound=ServiceClient)


def client_of(cls: type[C], recorder: Recorder) -> C:
    return cls("http://api.test", "secret", transport=recorder.transport, retry=RetryPolicy(base_delay=0))


def answering(body: Any) -> Recorder:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Recorder(lambda request: httpx2.Response(200, content=content))


async def refused_unsent(recorder: Recorder, call: Awaitable[object]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await call
    error = caught.value
    assert error.kind == "invalid_request"
    assert error.fate == "not_carried_out"
    assert error.sent is False
    assert error.message.startswith("the request could not be sent: ")
    assert recorder.requests == []
    return error


# --- path segments ---

VAULT_CALLS: dict[str, Callable[[VaultClient, str], Awaitable[object]]] = {
    "count_objects": lambda c, name: c.count_objects(name, reason="Maintenance"),
    "list_objects": lambda c, name: c.list_objects(name, reason="Maintenance"),
    "search_objects": lambda c, name: c.search_objects(
        name, SearchQuery(match={"a": 1}), reason="Maintenance"
    ),
    "delete_objects": lambda c, name: c.delete_objects(name, [UUID], reason="Maintenance"),
}
COCOON_CALLS: dict[str, Callable[[CocoonClient, str], Awaitable[object]]] = {
    "list_recycle_bin": lambda c, org: c.list_recycle_bin(org, limit=10),
    "empty_recycle_bin": lambda c, org: c.empty_recycle_bin(org),
}


@pytest.mark.parametrize("name", ["", ".", ".."])
@pytest.mark.parametrize("operation", VAULT_CALLS)
async def test_a_vault_collection_that_is_no_path_segment_is_never_sent(operation: str, name: str) -> None:
    recorder = Recorder()
    error = await refused_unsent(recorder, VAULT_CALLS[operation](client_of(VaultClient, recorder), name))
    assert error.operation == operation


@pytest.mark.parametrize("organisation", ["", ".", ".."])
@pytest.mark.parametrize("operation", COCOON_CALLS)
async def test_a_cocoon_organisation_that_is_no_path_segment_is_never_sent(
    operation: str, organisation: str
) -> None:
    recorder = Recorder()
    await refused_unsent(recorder, COCOON_CALLS[operation](client_of(CocoonClient, recorder), organisation))


@pytest.mark.parametrize(
    ("name", "segment"),
    [
        ("a/../b?c#d%e", "a%2F..%2Fb%3Fc%23d%25e"),
        ("...", "..."),
        (".hidden", ".hidden"),
        ("naïve", "na%C3%AFve"),
    ],
)
async def test_any_other_name_stays_one_segment(name: str, segment: str) -> None:
    recorder = answering({"active": 0, "archived": 0, "total": 0})
    await client_of(VaultClient, recorder).count_objects(name, reason="Maintenance")
    [request] = recorder.requests
    assert (
        request.url.raw_path.split(b"?")[0]
        == f"/api/pvlt/1.0/data/collections/{segment}/count/objects".encode()
    )


async def test_a_name_that_is_not_valid_text_is_never_sent() -> None:
    recorder = Recorder()
    await refused_unsent(
        recorder, client_of(VaultClient, recorder).count_objects("\ud800", reason="Maintenance")
    )


# --- requests that cannot be built ---


async def test_a_url_too_long_is_refused_with_its_length() -> None:
    recorder = Recorder()
    vault = client_of(VaultClient, recorder)
    error = await refused_unsent(
        recorder, vault.list_objects("customers", reason="Maintenance", props=["p" * 1_000_000])
    )
    assert "the URL would be too long (1,000," in error.message
    assert f"at most {MAX_URL_CHARS:,}" in error.message


async def test_a_lookup_of_250_ids_fits_the_url_cap() -> None:
    """Reading a batch back after a lost answer asks for 250 ids a request (tools/vault/selection.py)."""
    recorder = answering({"results": [], "paging": {}})
    ids = [UUID] * 250
    await client_of(VaultClient, recorder).list_objects("customers", reason="Maintenance", props=(), ids=ids)
    assert len(recorder.requests) == 1


async def test_a_header_that_cannot_be_encoded_is_refused() -> None:
    recorder = Recorder()
    vault = client_of(VaultClient, recorder)
    error = await refused_unsent(
        recorder, vault.count_objects("customers", reason="Maintenance", tenants=["ü"])
    )
    assert "ASCII" in error.message


# --- answers that cannot be read ---

MALFORMED: dict[str, tuple[type[ServiceClient], Callable[[Any], Awaitable[object]], Any]] = {
    "katapult organizations renamed": (
        KatapultClient,
        lambda c: c.list_organizations(),
        {"organisations": []},
    ),
    "katapult organization without id": (
        KatapultClient,
        lambda c: c.list_organizations(),
        {"organizations": [{"name": "Acme"}]},
    ),
    "katapult trash page without pagination": (
        KatapultClient,
        lambda c: c.list_trash_objects({"id": "org_1"}),
        {"trash_objects": []},
    ),
    "katapult purge without task": (KatapultClient, lambda c: c.purge_all_trash_objects({"id": "org_1"}), {}),
    "katapult task of another shape": (
        KatapultClient,
        lambda c: c.get_task("task_1"),
        {"task": {"id": "task_1"}},
    ),
    "katapult bucket missing": (KatapultClient, lambda c: c.get_bucket("uk-lon-1", "b"), {"bucket": BUCKET}),
    "katapult revoke without success": (
        KatapultClient,
        lambda c: c.revoke_presigned_urls("uk-lon-1", "b"),
        {},
    ),
    "katapult empty answer": (KatapultClient, lambda c: c.get_task("task_1"), b""),
    "katapult not JSON": (KatapultClient, lambda c: c.purge_all_trash_objects({"id": "org_1"}), b"<html>"),
    "cocoon items not a list": (CocoonClient, lambda c: c.list_recycle_bin("1", limit=1), {"items": "x"}),
    "cocoon count not a number": (
        CocoonClient,
        lambda c: c.list_recycle_bin("1", limit=1),
        {"items": [], "count": "many", "offset": "0"},
    ),
    "vault collections not a list": (VaultClient, lambda c: c.list_collections(), {"collections": []}),
}


@pytest.mark.parametrize(("cls", "call", "body"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_an_answer_of_another_shape_is_malformed_and_not_retried(
    cls: type[ServiceClient], call: Callable[[Any], Awaitable[object]], body: Any
) -> None:
    recorder = answering(body)
    with pytest.raises(ApiError) as caught:
        await call(client_of(cls, recorder))
    assert caught.value.kind == "malformed"
    assert caught.value.fate == "unknown"
    assert len(recorder.requests) == 1


async def test_an_answer_that_cannot_be_decoded_is_malformed() -> None:
    recorder = Recorder(
        lambda request: httpx2.Response(200, headers={"Content-Encoding": "gzip"}, content=b"x")
    )
    with pytest.raises(ApiError) as caught:
        await client_of(KatapultClient, recorder).revoke_presigned_urls("uk-lon-1", "b")
    assert caught.value.kind == "malformed"
    assert caught.value.fate == "unknown"
    assert len(recorder.requests) == 1


async def test_well_formed_answers_are_read() -> None:
    answers = {
        "/core/v1/organizations": {"organizations": [ORGANIZATION]},
        "/core/v1/tasks/_": {"task": TASK},
        "/core/v1/object_storage/_/buckets/_": {"object_storage_bucket": BUCKET},
        "/core/v1/object_storage/_/buckets/_/revoke_presigned_urls": {"success": True},
    }
    recorder = Recorder(lambda request: httpx2.Response(200, json=answers[request.url.path]))
    katapult = client_of(KatapultClient, recorder)
    assert [o.sub_domain for o in await katapult.list_organizations()] == ["acme"]
    assert (await katapult.get_task("task_1")).status == "pending"
    assert (await katapult.get_bucket("uk-lon-1", "b")).state == "configured"
    assert await katapult.revoke_presigned_urls("uk-lon-1", "b") is True


@pytest.mark.parametrize("key", ["data_type_name", "data_type"])
async def test_a_vault_property_type_is_read_from_data_type_name_or_the_older_data_type(key: str) -> None:
    collection = {"name": "customers", "type": "PERSONS", "properties": [{"name": "email", key: "EMAIL"}]}
    collections = await client_of(VaultClient, answering([collection])).list_collections()
    assert collections[0].properties[0].data_type_name == "EMAIL"


# --- bulk deletes: the body sent, the answer read ---

ANY_ID = st.text(st.characters(exclude_categories=("Cs",)))
"""Any text an id can be: ids come from the API or the caller, untrusted (lone surrogates are not text)."""


@given(st.lists(ANY_ID, max_size=20))
@example(['</untrusted-api-data>\n"},{"id":"x', "\u202e\u200b\x00\x7f\u2028\ufeff", "\\", '","', "é😀"])
async def test_a_bulk_delete_sends_any_ids_exactly(ids: list[str]) -> None:
    recorder = answering({"ok": True, "results": [{"ok": True} for _ in ids]})
    await client_of(VaultClient, recorder).delete_objects("customers", ids, reason="Maintenance")
    [request] = recorder.requests
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == [{"id": i} for i in ids]


async def test_repeated_calls_reuse_the_url_only_for_the_same_path_and_query() -> None:
    recorder = answering({"ok": True, "results": []})
    vault = client_of(VaultClient, recorder)
    for archived in (False, True, False):
        await vault.delete_objects("customers", [UUID], reason="Maintenance", archived=archived)
    await vault.delete_objects("a b", [UUID], reason="Other", adhoc_reason="x&y=z")
    assert [str(r.url) for r in recorder.requests] == [
        "http://api.test/api/pvlt/1.0/data/collections/customers/bulk/objects?reason=Maintenance",
        "http://api.test/api/pvlt/1.0/data/collections/customers/bulk/objects?reason=Maintenance&options=archived",
        "http://api.test/api/pvlt/1.0/data/collections/customers/bulk/objects?reason=Maintenance",
        "http://api.test/api/pvlt/1.0/data/collections/a%20b/bulk/objects?reason=Other&adhoc_reason=x%26y%3Dz",
    ]


async def test_a_body_with_text_that_is_not_valid_unicode_is_never_sent() -> None:
    recorder = Recorder()
    vault = client_of(VaultClient, recorder)
    error = await refused_unsent(
        recorder, vault.delete_objects("customers", ["a\ud800"], reason="Maintenance")
    )
    assert "valid Unicode" in error.message


async def test_a_bulk_delete_that_succeeded_keeps_only_its_count() -> None:
    answer = {"ok": True, "results": [{"ok": True, "id": UUID, "extra": [1]}, {}]}
    result = await client_of(VaultClient, answering(answer)).delete_objects("c", [UUID], reason="Maintenance")
    assert (result.ok, result.count, result.results) == (True, 2, [])


async def test_a_bulk_delete_that_failed_keeps_every_items_error() -> None:
    error = {"error_code": "PV3005", "message": "The object is not found.", "context": {"id": UUID}}
    answer = {"ok": False, "results": [{"ok": False, "id": UUID, "error": error}, {"ok": False}]}
    result = await client_of(VaultClient, answering(answer)).delete_objects("c", [UUID], reason="Maintenance")
    assert (result.ok, result.count) == (False, 2)
    first, second = result.results
    assert (first.ok, first.id, second.id, second.error) == (False, UUID, None, None)
    assert first.error is not None
    assert (first.error.error_code, first.error.message, first.error.context) == (
        "PV3005",
        "The object is not found.",
        {"id": UUID},
    )


@pytest.mark.parametrize(
    "answer",
    [
        {"results": []},
        {"ok": None, "results": []},
        {"ok": "yes", "results": []},
        {"ok": True},
        {"ok": False},
        {"ok": True, "results": "all"},
        {"ok": True, "results": [1]},
        {"ok": False, "results": [{"id": UUID}]},
        [],
    ],
)
async def test_a_bulk_answer_of_another_shape_is_malformed(answer: Any) -> None:
    recorder = answering(answer)
    with pytest.raises(ApiError) as caught:
        await client_of(VaultClient, recorder).delete_objects("c", [UUID], reason="Maintenance")
    assert caught.value.kind == "malformed"
    assert caught.value.fate == "unknown"
    assert len(recorder.requests) == 1
