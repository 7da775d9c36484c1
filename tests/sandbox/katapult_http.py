"""Talking to the Katapult emulator over real HTTP, shared by the `test_katapult*` modules."""

from __future__ import annotations

from typing import Any

import httpx2

from purgewarden.sandbox import Sandbox
from purgewarden.sandbox.katapult import API_PREFIX, DEMO_TOKEN


def client(sandbox: Sandbox, token: str | None = DEMO_TOKEN) -> httpx2.Client:
    """A client for `/core/v1` sending `token` as the bearer token (none at all when None)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.Client(base_url=sandbox.endpoints["katapult"].url + API_PREFIX, headers=headers)


def error_of(response: httpx2.Response, status: int) -> dict[str, Any]:
    """The unwrapped Katapult error of a response that must have `status`."""
    assert response.status_code == status, response.text
    assert response.headers["x-api-schema"] == "json-error"
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "description", "detail"}
    return error


def trash_of(api: httpx2.Client, sub_domain: str = "acme") -> list[dict[str, Any]]:
    """The organization's whole trash (up to 200 objects)."""
    response = api.get(
        "/organizations/_/trash_objects", params={"organization[sub_domain]": sub_domain, "per_page": 200}
    )
    assert response.status_code == 200, response.text
    objects: list[dict[str, Any]] = response.json()["trash_objects"]
    return objects
