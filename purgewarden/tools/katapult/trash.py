"""Katapult organizations, the trash, and purging it all (a background task followed to the end).

The purge queues a task that Katapult carries out in the background; the tool follows it with MCP
progress and then verifies the result by listing the trash. When the answer to the purge request is
lost, it finds out from the trash whether the purge is happening, and says only what it verified.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Literal

import anyio
from mcp.server.mcpserver import Context, Resolve
from pydantic import BaseModel, Field

from purgewarden.clients.errors import ApiError
from purgewarden.clients.katapult import (
    KatapultClient,
    Organization,
    Task,
    TaskStatus,
    TrashObject,
    organization_lookup,
)
from purgewarden.safety.errors import explain
from purgewarden.safety.plans import HumanAnswer, Snapshot, ask_human
from purgewarden.safety.registry import app_state
from purgewarden.safety.text import OutcomeOutput, PlanOutput, ToolOutput, fence, quote
from purgewarden.tools.katapult.common import (
    SAMPLE_SIZE,
    OrganizationRef,
    cancellation_audited,
    iso,
    katapult_client,
    toolset,
)

PURGE = "katapult_purge_all_trash_objects"
PREVIEW_PURGE = "katapult_preview_purge_all_trash_objects"
PURGE_SOON_SECONDS = 3600
MAX_TASK_WAIT_SECONDS = 600.0
"""How long the purge tool follows its task before handing back the task id to check later."""
RECONCILE_POLLS = 30
"""After a lost answer to the purge request, how many poll intervals to watch the trash for."""
PLAIN_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
"""An object type that may appear in a plan summary (which is also the question put to the user)."""


def trash_line(trash_object: TrashObject) -> str:
    return (
        f"{quote(trash_object.object_type)} {quote(trash_object.object_id)} id={quote(trash_object.id)} "
        f"keep_until={iso(trash_object.keep_until)}"
    )


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
    organizations = await katapult_client(ctx).list_organizations()
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
    found = await katapult_client(ctx).list_trash_objects(
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
    task = await katapult_client(ctx).get_task(task_id)
    return GetTaskOutput(summary=task_summary(task), task=TaskState.of(task), name=task.name)


def task_summary(task: Task) -> str:
    if task.status == "completed":
        return f"Task {task.id} completed at {iso(task.finished_at)}."
    if task.status == "failed":
        return f"Task {task.id} failed at {task.progress}% ({iso(task.finished_at)})."
    return f"Task {task.id} is {task.status}, {task.progress}% done."


# --- purge all trash objects -----------------------------------------------------------------------


class PurgeAllTrashObjectsPlan(PlanOutput):
    by_type: dict[str, int] = Field(description="Objects per type")
    sample: list[TrashObject] = Field(description=f"Up to {SAMPLE_SIZE}, oldest first")

    def render(self) -> str:
        return "\n".join(filter(None, [super().render(), fence(trash_line(t) for t in self.sample)]))


class PurgeAllTrashObjectsOutcome(OutcomeOutput):
    status: Literal["completed", "failed", "queued", "running", "unknown", "nothing_to_purge"] = Field(
        description="queued/running: check later with katapult_get_task"
    )
    task: TaskState | None = Field(description="Null when Katapult's answer was lost")


async def whole_trash(ctx: Context, client: KatapultClient, organization: str) -> list[TrashObject]:
    concurrency = app_state(ctx).settings.katapult_page_concurrency
    return await client.list_all_trash_objects(organization_lookup(organization), concurrency=concurrency)


def trash_snapshot(objects: Iterable[TrashObject]) -> Snapshot:
    ids = frozenset(t.id for t in objects)
    return Snapshot(totals={"objects": len(ids)}, members=ids)


def describe_purge(organization: str, objects: list[TrashObject]) -> str:
    kinds: Counter[str] = Counter()
    for kind, n in Counter(t.object_type for t in objects).items():  # a regex per type, not per object
        kinds[kind if PLAIN_TYPE.fullmatch(kind) else "other"] += n
    detail = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    return (
        f"Permanently purge all {len(objects)} objects ({detail or 'none'}) from the trash of Katapult "
        f"organization {organization}; they can no longer be restored."
    )


async def running_purge_warning(client: KatapultClient, organization: str) -> str | None:
    task_id = client.started_purges.get(organization)
    if task_id is None:
        return None
    try:
        task = await client.get_task(task_id)
    except ApiError:
        return None
    if task.status in ("completed", "failed"):
        return None
    return (
        f"A purge of this trash that this server started (task {task.id}) is still {task.status} "
        f"({task.progress}%); purging again returns that same task."
    )


@toolset.tool("preview", "Preview purging a Katapult organization's trash")
async def katapult_preview_purge_all_trash_objects(
    ctx: Context, organization: OrganizationRef
) -> PurgeAllTrashObjectsPlan:
    """Dry run of katapult_purge_all_trash_objects: counts the organization's trash by type, with a
    sample and warnings, and returns a confirmation_token. Show the plan to the user; once approved, call
    katapult_purge_all_trash_objects with the same organization and the token."""
    client = katapult_client(ctx)
    objects = await whole_trash(ctx, client, organization)
    snapshot = trash_snapshot(objects)
    warnings = []
    soon = sum(1 for t in objects if t.keep_until <= time.time() + PURGE_SOON_SECONDS)
    if soon:
        warnings.append(f"{soon} objects would be purged automatically within the hour anyway (keep_until).")
    accounts = sum(1 for t in objects if t.object_type == "ObjectStorageAccount")
    if accounts:
        warnings.append(
            f"{accounts} object storage accounts are in the trash: purging one deletes every bucket and "
            "object in it."
        )
    running = await running_purge_warning(client, organization)
    if running:
        warnings.append(running)
    if not objects:
        warnings.append("The trash is empty: there is nothing to purge.")
    summary = describe_purge(organization, objects)
    return app_state(ctx).guard.plan(
        PurgeAllTrashObjectsPlan,
        tool=PURGE,
        arguments={"organization": organization},
        credential=client.fingerprint,
        snapshot=snapshot,
        summary=summary,
        warnings=warnings,
        by_type=dict(Counter(t.object_type for t in objects)),
        sample=objects[:SAMPLE_SIZE],
    )


@toolset.tool("destructive", "Purge a Katapult organization's trash")
async def katapult_purge_all_trash_objects(
    ctx: Context,
    organization: OrganizationRef,
    confirm: Annotated[str, Field(description="The preview's confirmation_token, once the user approved")],
    human: Annotated[HumanAnswer, Resolve(ask_human)],
    wait: Annotated[
        bool,
        Field(description="Follow the task to the end and verify (false: return once queued)"),
    ] = True,
) -> PurgeAllTrashObjectsOutcome:
    """Permanently purge the organization's whole trash (no restore). Needs the token of
    katapult_preview_purge_all_trash_objects; refused if the trash grew since. Follows the purge task,
    then verifies by listing the trash."""
    client = katapult_client(ctx)
    state = app_state(ctx)
    lookup = organization_lookup(organization)
    before: list[TrashObject] = []

    async def current() -> Snapshot:
        before[:] = await whole_trash(ctx, client, organization)
        return trash_snapshot(before)

    approval = await state.guard.approve(
        tool=PURGE,
        preview_tool=PREVIEW_PURGE,
        arguments={"organization": organization},
        credential=client.fingerprint,
        confirm=confirm,
        human=human,
        current=current,
        summarize=lambda _: describe_purge(organization, before),
    )
    notes = list(approval.notes)
    approved = approval.snapshot.members
    if not approved:
        return PurgeAllTrashObjectsOutcome(
            summary=f"The trash of organization {organization} is already empty; nothing was purged.",
            totals={"purged": 0},
            notes=notes,
            status="nothing_to_purge",
            task=None,
        )
    await ctx.report_progress(0, 100, "queueing the purge")
    try:
        # Once sent, the answer is worth waiting for even if the caller cancels: it names the task.
        with anyio.CancelScope(shield=True):
            task = await client.purge_all_trash_objects(lookup)
    except ApiError as error:
        if error.not_carried_out or (error.kind == "response" and (error.status or 500) < 500):
            raise
        with cancellation_audited(
            ctx, PURGE, done="purge requested; the answer was lost, so whether it runs is unknown"
        ):
            return await reconcile_lost_purge(ctx, client, organization, approved, error, notes, watch=wait)
    client.started_purges[organization] = task.id
    if not wait:
        return PurgeAllTrashObjectsOutcome(
            summary=f"Queued purge task {task.id} for the {len(approved)} objects in the trash of organization "
            f"{organization}. Check it with katapult_get_task; nothing is verified as purged yet.",
            totals={"queued": len(approved)},
            notes=notes,
            status="queued",
            task=TaskState.of(task),
        )
    with cancellation_audited(
        ctx, PURGE, done=f"purge task {task.id} was queued and keeps running in Katapult"
    ):
        task = await follow_task(ctx, client, task, notes)
    if task.status not in ("completed", "failed"):
        return PurgeAllTrashObjectsOutcome(
            summary=f"Purge task {task.id} is still {task.status} ({task.progress}%). Check it later with "
            f"katapult_get_task, then list the trash to see what was purged.",
            totals={"queued": len(approved)},
            notes=notes,
            status="running",
            task=TaskState.of(task),
        )
    after = await whole_trash(ctx, client, organization)
    left = {t.id for t in after}
    purged = len(approved - left)
    kept = len(approved & left)
    late = len(left - approved)
    if late:
        notes.append(
            f"{late} objects were trashed after the purge was approved; they are still in the trash."
        )
    if task.status == "failed":
        summary = (
            f"Purge task {task.id} FAILED at {task.progress}%. Listing the trash shows {purged} of the "
            f"{len(approved)} approved objects purged and {kept} still there. Tell the user; to retry, "
            "preview again."
        )
    else:
        summary = (
            f"Purged {purged} of the {len(approved)} approved objects from the trash of organization "
            f"{organization} (task {task.id}, verified by listing the trash); {len(after)} objects remain."
        )
        if kept:
            notes.append(f"{kept} approved objects are still in the trash although the task completed.")
    return PurgeAllTrashObjectsOutcome(
        summary=summary,
        totals={"purged": purged, "remaining": len(after)},
        notes=notes,
        status="failed" if task.status == "failed" else "completed",
        task=TaskState.of(task),
    )


async def follow_task(ctx: Context, client: KatapultClient, task: Task, notes: list[str]) -> Task:
    """Poll the task until it finishes or the wait runs out, reporting its progress on every poll."""
    interval = app_state(ctx).settings.katapult_task_poll_interval
    deadline = time.monotonic() + MAX_TASK_WAIT_SECONDS
    while True:
        await ctx.report_progress(
            task.progress, 100, f"purge task {task.id}: {task.status}, {task.progress}%"
        )
        if task.status in ("completed", "failed") or time.monotonic() >= deadline:
            return task
        await anyio.sleep(interval)
        try:
            task = await client.get_task(task.id)
        except ApiError as error:
            notes.append(
                f"Lost track of the task while polling it: {app_state(ctx).redactor.scrub(explain(error))}"
            )
            return task


async def reconcile_lost_purge(
    ctx: Context,
    client: KatapultClient,
    organization: str,
    approved: frozenset[str],
    error: ApiError,
    notes: list[str],
    *,
    watch: bool,
) -> PurgeAllTrashObjectsOutcome:
    """The purge request went out but its answer was lost: find out from the trash whether it is emptying."""
    notes.append(
        f"The answer to the purge request was lost ({app_state(ctx).redactor.scrub(error.summary)}); "
        "what follows was found by listing the trash."
    )
    lookup = organization_lookup(organization)
    interval = app_state(ctx).settings.katapult_task_poll_interval
    polls = RECONCILE_POLLS if watch else 0
    for poll in range(polls):
        count = (await client.list_trash_objects(lookup, per_page=1)).pagination.total
        await ctx.report_progress(poll + 1, polls, f"checking the trash: {count} objects left")
        if count == 0:
            break
        await anyio.sleep(interval)
    after = await whole_trash(ctx, client, organization)
    left = {t.id for t in after}
    purged = len(approved - left)
    kept = len(approved & left)
    if kept == 0:
        status: Literal["completed", "running", "unknown"] = "completed"
        summary = (
            f"The answer to the purge request was lost, but Katapult carried it out: all {purged} approved "
            f"objects are gone from the trash of organization {organization} (verified by listing it)."
        )
    elif purged:
        status = "running"
        summary = (
            f"The answer to the purge request was lost, but a purge is evidently under way: {purged} of the "
            f"{len(approved)} approved objects are gone and {kept} are still in the trash. List the trash again "
            "in a few minutes; do not request another purge unless it stops shrinking."
        )
    else:
        status = "unknown"
        waited = f" after watching it for {polls * interval:.0f} s" if polls else ""
        summary = (
            f"The answer to the purge request was lost, and it is unknown whether Katapult queued the purge: "
            f"all {kept} approved objects are still in the trash of organization {organization}{waited}. "
            "Nothing is verified as purged. List the trash again in a few minutes; if the objects are still "
            "there, preview again and retry."
        )
    return PurgeAllTrashObjectsOutcome(
        summary=summary,
        totals={"purged": purged, "remaining": len(after)},
        notes=notes,
        status=status,
        task=None,
    )
