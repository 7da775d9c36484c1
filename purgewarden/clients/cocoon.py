"""Client for the Cocoon Data access-service recycle-bin API (`<access-service>/api/v1`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from purgewarden.clients.base import ServiceClient

SortBy = Literal["name", "size", "time"]
OrderBy = Literal["asc", "desc"]


class RecycleBinItem(BaseModel):
    """One top-level item in a user's recycle bin (a folder stands for everything inside it)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    name: str
    type: Literal["object", "collection"]
    recycled_time: str = Field(alias="recycledTime")
    size: int = Field(alias="totalVersionSize", description="Bytes over all versions (a string on the wire)")
    requestor_email: str | None = Field(None, alias="requestorEmail")
    shared: bool = False
    organisation_id: str = Field(alias="organisationId")
    parent_id: str = Field("0", alias="parentId")
    owner_id: str | None = Field(None, alias="ownerId")
    days_to_purge: int | None = Field(None, alias="daysToPurge")


class RecycleBinPage(BaseModel):
    items: list[RecycleBinItem]
    count: int
    offset: int


_PAGE = TypeAdapter(RecycleBinPage)


_ANY_BODY: TypeAdapter[Any] = TypeAdapter(Any)
"""The empty call's answer has no documented body: anything readable will do, nothing unreadable."""


class CocoonClient(ServiceClient):
    service = "cocoon"
    api_prefix = "/api/v1"

    def _parse_error(self, body: Any) -> tuple[str | None, str | None, dict[str, Any]]:
        # No published error format: take a message from the usual places, never rely on a code.
        if isinstance(body, dict):
            message = body.get("message") or body.get("error_description") or body.get("error")
            return None, str(message) if message else None, {}
        return None, None, {}

    async def list_recycle_bin(
        self,
        organisation_id: str,
        *,
        limit: int,
        offset: int = 0,
        sort_by: SortBy = "time",
        order_by: OrderBy = "desc",
    ) -> RecycleBinPage:
        """One page of the caller's bin; `limit=0` returns everything."""
        return await self._call(
            "list_recycle_bin",
            "GET",
            f"/organisations/{self._path_segment('list_recycle_bin', organisation_id)}/recycle-bin/items",
            params={"limit": limit, "offset": offset, "sortBy": sort_by, "orderBy": order_by.upper()},
            adapter=_PAGE,
        )

    async def empty_recycle_bin(self, organisation_id: str) -> None:
        await self._call(
            "empty_recycle_bin",
            "DELETE",
            f"/organisations/{self._path_segment('empty_recycle_bin', organisation_id)}/recycle-bin/items",
            idempotent=False,
            adapter=_ANY_BODY,
        )
