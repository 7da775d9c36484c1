"""Katapult organizations, the trash and tasks: the read tools (purging the trash is in `purge.py`).

Every value Katapult returns (names, sub-domains, ids, object types, task names) is quoted in text and
listed inside a fence.
"""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from purgewarden.clients.katapult import (
    KatapultClient,
    Organization,
    Task,
    TaskStatus,
    TrashObject,
    organization_lookup,
)
from purgewarden.safety.state import AppState, app_state
from purgewarden.safety.text import ToolOutput, fence, quote
from purgewarden.tools.katapult.common import OrganizationRef, iso, katapult_client, toolset


def trash_line(trash_object: TrashObject) -> str:
    return (
        f"{quote(trash_object['object_type'])} {quote(trash_object['object_id'])} "
        f"id={quote(trash_object['id'])} keep_until={iso(trash_object['keep_until'])}"
    )


async def whole_trash(state: AppState, client: KatapultClient, organization: str) -> dict[str, TrashObject]:
    """The organization's whole trash, by id in the API's order."""
    concurrency = state.settings.katapult_page_concurrency
    return await client.list_all_trash_objects(organization_lookup(organization), concurrency=concurrency)


class OrganizationItem(BaseModel):
    id: str
    name: str
    sub_domain: str
    state: Literal["active", "suspended", "not_activated"]

    @classmethod
    def of(cls, o: Organization) -> OrganizationItem:
        state = "suspended" if o.suspended else "not_activated" if o.activated_at is None else "active"
        return cls(id=o.id, name=o.name, sub_domain=o.sub_domain, state=state)


class ListOrganizationsOutput(ToolOutput):
    organizations: list[OrganizationItem]

    def render(self) -> str:
        lines = [
            f"{quote(o.sub_domain)} id={quote(o.id)} name={quote(o.name)} {o.state}"
            for o in self.organizations
        ]
        return "\n".join(filter(None, [self.summary, fence(lines)]))


class ListTrashObjectsOutput(ToolOutput):
    trash_objects: list[TrashObject]
    total: int | None = Field(description="Objects in the whole trash, when Katapult counts them")
    next_page: int | None = Field(description="Pass as page for more; null on the last page")

    def render(self) -> str:
        return "\n".join(filter(None, [self.summary, fence(trash_line(t) for t in self.trash_objects)]))


class TaskState(BaseModel):
    id: str
    status: TaskStatus
    progress: int = Field(description="Percent")

    @classmethod
    def of(cls, task: Task) -> TaskState:
        return cls(id=task.id, status=task.status, progress=task.progress)


class GetTaskOutput(ToolOutput):
    task: TaskState
    name: str

    def render(self) -> str:
        return "\n".join([self.summary, fence([f"name={quote(self.name)}"])])


@toolset.tool("read", "List Katapult organizations")
async def katapult_list_organizations(ctx: Context) -> ListOrganizationsOutput:
    """List the Katapult organizations this token can see; pass one's id or sub-domain as organization
    to the trash tools."""
    organizations = await katapult_client(app_state(ctx)).list_organizations()
    return ListOrganizationsOutput(
        summary=f"{len(organizations)} Katapult organizations are visible to this API token.",
        organizations=[OrganizationItem.of(o) for o in organizations],
    )


@toolset.tool("read", "List Katapult trash objects")
async def katapult_list_trash_objects(
    ctx: Context,
    organization: OrganizationRef,
    page: Annotated[int, Field(ge=1)] = 1,
    per_page: Annotated[int, Field(ge=1, le=200)] = 50,
) -> ListTrashObjectsOutput:
    """List a page of an organization's trash: deleted resources, restorable until keep_until. To purge
    it all, call katapult_preview_purge_all_trash_objects."""
    found = await katapult_client(app_state(ctx)).list_trash_objects(
        organization_lookup(organization), page=page, per_page=per_page
    )
    pagination = found.pagination
    more = (
        page < pagination.total_pages
        if pagination.total_pages is not None
        else len(found.trash_objects) == per_page
    )
    next_page = page + 1 if more else None
    total = f" of {pagination.total}" if pagination.total is not None else ""
    summary = (
        f"Page {page}: {len(found.trash_objects)}{total} trash objects of organization {organization}"
        + (f"; more on page {next_page}." if more else "; this is the last page.")
    )
    return ListTrashObjectsOutput(
        summary=summary, trash_objects=found.trash_objects, total=pagination.total, next_page=next_page
    )


@toolset.tool("read", "Get a Katapult task")
async def katapult_get_task(
    ctx: Context,
    task_id: Annotated[
        str,
        Field(pattern=r"^[A-Za-z0-9_-]{1,128}$"),
    ],
) -> GetTaskOutput:
    """Get a task's status and progress, e.g. the purge katapult_purge_all_trash_objects queued."""
    task = await katapult_client(app_state(ctx)).get_task(task_id)
    return GetTaskOutput(summary=task_summary(task), task=TaskState.of(task), name=task.name)


def task_summary(task: Task) -> str:
    if task.status == "completed":
        return f"Task {quote(task.id)} completed at {iso(task.finished_at)}."
    if task.status == "failed":
        return f"Task {quote(task.id)} failed at {task.progress}% ({iso(task.finished_at)})."
    return f"Task {quote(task.id)} is {task.status}, {task.progress}% done."
