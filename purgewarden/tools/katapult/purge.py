"""Purging a Katapult organization's whole trash: one `Operation`, whose flow the safety kernel runs.

Katapult's purge_all queues a task that purges whatever is in the trash, so objects trashed after the
re-check can go with it: the operation `empties_everything`, and the kernel watches the trash meanwhile
and reports what was destroyed beyond the plan. A look mostly costs one request (the trash's count): the
trash, which can hold tens of thousands of objects, is listed again only when the count says it is worth it.

The tool follows the task with MCP progress, then verifies by listing the trash. When the answer to the
purge request is lost or unreadable, it finds out from the trash whether the purge is happening: an
approved object still there is unknown, never "not purged", since the purge may yet run.
"""

from __future__ import annotations

import heapq
import re
import time
from collections import Counter
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field

from purgewarden.clients.errors import ApiError, Fate
from purgewarden.clients.katapult import KatapultClient, Task, TrashObject, organization_lookup
from purgewarden.safety.kernel import Call, Look, Observation, Operation, Run, Watch
from purgewarden.safety.outcome import MAY_YET_HAPPEN, Ledger, after_read_back
from purgewarden.safety.plans import Snapshot
from purgewarden.safety.runs import Journal, Replay, RunRecord
from purgewarden.safety.state import AppState
from purgewarden.safety.text import SAMPLE_SIZE, OutcomeOutput, PlanOutput, fence, listed, plural, quote
from purgewarden.tools.katapult.common import OrganizationRef, katapult_client, toolset
from purgewarden.tools.katapult.trash import TaskState, trash_line, whole_trash

PURGE_SOON_SECONDS = 3600
MAX_TASK_WAIT_SECONDS = 600.0
"""How long the purge tool follows its task before handing back the task id to check later."""
RECONCILE_POLLS = 30
"""After a lost answer to the purge request, how many poll intervals to watch the trash for."""
PLAIN_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
"""An object type that may appear (quoted) in a plan summary, which is also the question put to the user."""


@dataclass(frozen=True)
class Trash:
    """An organization's whole trash as observed, by id in the API's order, with its count by type: made
    once, since the plan and its summary both need it and the trash can hold tens of thousands."""

    objects: dict[str, TrashObject]
    by_type: Counter[str]

    @classmethod
    def of(cls, objects: dict[str, TrashObject]) -> Trash:
        return cls(objects, Counter(map(itemgetter("object_type"), objects.values())))


class PurgeAllTrashObjectsInput(BaseModel):
    organization: OrganizationRef
    wait: bool = Field(True, description="Follow the task to the end and verify (false: return once queued)")


TYPES_SHOWN = 50
"""Types counted one by one in a plan; a trash of thousands of types counts the rest together."""


class PurgeAllTrashObjectsPlan(PlanOutput):
    by_type: dict[str, int] = Field(description="Objects per type")
    sample: list[TrashObject] = Field(description=f"Up to {SAMPLE_SIZE}, oldest first")

    def render(self) -> str:
        return "\n".join(filter(None, [super().render(), fence(trash_line(t) for t in self.sample)]))


class PurgeAllTrashObjectsOutcome(OutcomeOutput):
    status: Literal["completed", "failed", "queued", "running", "unknown", "nothing_to_purge"] = Field(
        "running", description="queued/running: check later with katapult_get_task"
    )
    task: TaskState | None = Field(None, description="Null when Katapult's answer was lost")


def describe_purge(organization: str, trash: Trash) -> str:
    kinds: Counter[str] = Counter()
    for kind, n in trash.by_type.items():  # a regex per type, not per object
        kinds[quote(kind) if PLAIN_TYPE.fullmatch(kind) else "other"] += n
    detail = listed([f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))])
    return (
        f"Permanently purge all {len(trash.objects)} objects ({detail or 'none'}) from the trash of Katapult "
        f"organization {quote(organization)}; they can no longer be restored."
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
        f"A purge of this trash that this server started (task {quote(task.id)}) is still {task.status} "
        f"({task.progress}%); purging again returns that same task."
    )


class PurgeAllTrashObjects(
    Operation[PurgeAllTrashObjectsInput, Trash, PurgeAllTrashObjectsPlan, PurgeAllTrashObjectsOutcome]
):
    """Katapult purges the whole trash: objects trashed while the request is in flight may go with it."""

    service = "katapult"
    name = "purge_all_trash_objects"
    title = "Purge a Katapult organization's trash"
    preview_title = "Preview purging a Katapult organization's trash"
    description = """Permanently purge the organization's whole trash (no restore). Needs the token of
    katapult_preview_purge_all_trash_objects; refused if the trash grew since. Follows the purge task,
    then verifies by listing the trash."""
    preview_description = """Dry run of katapult_purge_all_trash_objects: counts the organization's trash by
    type, with a sample and warnings, and returns a confirmation_token. Show the plan to the user; once
    approved, call katapult_purge_all_trash_objects with the same organization and the token."""
    Input = PurgeAllTrashObjectsInput
    Plan = PurgeAllTrashObjectsPlan
    Outcome = PurgeAllTrashObjectsOutcome
    empties_everything = True
    destructive_fields = ("wait",)

    def target(self, call: Call, args: PurgeAllTrashObjectsInput) -> dict[str, Any]:
        return {"organization": args.organization}

    def typed_target(self, target: Mapping[str, Any]) -> str | None:
        return str(target["organization"])

    def blast_radius(self, totals: Mapping[str, int]) -> int:
        return totals.get("objects", 0)

    async def observe(self, call: Call, args: PurgeAllTrashObjectsInput) -> Observation[Trash]:
        objects = await whole_trash(call.state, katapult_client(call.state), args.organization)
        # Each id once already, so sorted for the digest without a set of tens of thousands of them.
        snapshot = Snapshot(totals={"objects": len(objects)}, ordered=sorted(objects))
        return Observation(snapshot, Trash.of(objects))

    def summary(self, target: Mapping[str, Any], observation: Observation[Trash]) -> str:
        return describe_purge(str(target["organization"]), observation.data)

    async def plan(
        self, call: Call, args: PurgeAllTrashObjectsInput, observation: Observation[Trash]
    ) -> tuple[list[str], dict[str, Any]]:
        trash = observation.data
        objects = trash.objects
        warnings = []
        # One clock reading for the whole trash: tens of thousands of objects.
        purged_anyway_by = time.time() + PURGE_SOON_SECONDS
        soon = sum(
            1
            for keep_until in map(itemgetter("keep_until"), objects.values())
            if keep_until <= purged_anyway_by
        )
        if soon:
            warnings.append(
                f"{soon} objects would be purged automatically within the hour anyway (keep_until)."
            )
        counts = trash.by_type
        accounts = counts["ObjectStorageAccount"]
        if accounts:
            warnings.append(
                f"{accounts} object storage accounts are in the trash: purging one deletes every bucket and "
                "object in it."
            )
        running = await running_purge_warning(katapult_client(call.state), args.organization)
        if running:
            warnings.append(running)
        if not objects:
            warnings.append("The trash is empty: there is nothing to purge.")
        by_type = dict(counts.most_common(TYPES_SHOWN))
        if len(counts) > TYPES_SHOWN:
            by_type["(other types)"] = len(objects) - sum(by_type.values())
        oldest = heapq.nsmallest(SAMPLE_SIZE, objects.values(), key=itemgetter("keep_until"))
        return warnings, {"by_type": by_type, "sample": oldest}

    async def resume(self, state: AppState, record: RunRecord, told: Replay, journal: Journal) -> None:
        """A purge whose server stopped after Katapult queued it: follow the task to its end, then tell
        each object that was in flight by the trash."""
        task_id = told.checkpoints.get("task")
        if not isinstance(task_id, str) or not told.in_flight:
            return
        client = katapult_client(state)
        deadline = time.monotonic() + MAX_TASK_WAIT_SECONDS
        task = await client.get_task(task_id)
        while task.status not in ("completed", "failed") and time.monotonic() < deadline:
            await anyio.sleep(state.settings.katapult_task_poll_interval)
            task = await client.get_task(task_id)
        await journal.checkpoint(task_status=task.status)
        if task.status not in ("completed", "failed"):
            return
        after = await whole_trash(state, client, record.target["organization"])
        account_by_trash(journal.ledger, told.in_flight, after, task)
        record.notes.append(
            f"After the restart, purge task {quote(task_id)} was followed to its end ({task.status}) and the "
            "trash re-read."
        )

    def watch(self, run: Run[PurgeAllTrashObjectsInput, Trash]) -> Watch:
        return TrashWatch(run.call.state, run.target["organization"], run.observation.snapshot.members)

    async def execute(self, run: Run[PurgeAllTrashObjectsInput, Trash]) -> PurgeAllTrashObjectsOutcome:
        approved = run.observation.snapshot.ordered
        organization = run.target["organization"]
        if not approved:
            return PurgeAllTrashObjectsOutcome(
                summary=f"The trash of organization {quote(organization)} is already empty; nothing was purged.",
                totals={"purged": 0},
                status="nothing_to_purge",
                task=None,
            )
        client = katapult_client(run.call.state)
        sent = False
        try:
            await run.call.progress(0, 100, "queueing the purge")
            await run.between_requests()
            lost: ApiError | None = None
            async with run.sending("purge the whole trash", ids=approved) as answer:
                sent = True
                try:
                    task = await client.purge_all_trash_objects(organization_lookup(organization))
                    answer["task"] = task.id  # journaled with the answer: a restart follows the task
                except ApiError as error:
                    if error.fate == "not_carried_out":
                        run.ledger.settle("not_carried_out", approved, why="Katapult refused the purge")
                        raise
                    lost = error
            if lost is not None:
                return await reconcile(run, client, lost)
            client.started_purges[organization] = task.id
            if not run.args.wait:
                run.ledger.settle(
                    "unknown", approved, why=f"queued in task {quote(task.id)}, not verified yet"
                )
                return PurgeAllTrashObjectsOutcome(
                    summary=f"Queued purge task {quote(task.id)} for the {len(approved)} objects in the trash of "
                    f"organization {quote(organization)}. Check it with katapult_get_task; nothing is verified "
                    "as purged yet.",
                    totals={"queued": len(approved)},
                    status="queued",
                    task=TaskState.of(task),
                )
            task = await follow_task(run, client, task)
            if task.status not in ("completed", "failed"):
                run.ledger.settle("unknown", approved, why=f"task {quote(task.id)} still {task.status}")
                return PurgeAllTrashObjectsOutcome(
                    summary=f"Purge task {quote(task.id)} is still {task.status} ({task.progress}%). Check it "
                    "later with katapult_get_task, then list the trash to see what was purged.",
                    totals={"queued": len(approved)},
                    status="running",
                    task=TaskState.of(task),
                )
            return await verified(run, client, task)
        except BaseException:
            if run.ledger.settled == 0:  # stopped before a fate was known: sent means it may still happen
                run.ledger.settle(
                    "unknown" if sent else "not_carried_out",
                    approved,
                    why=MAY_YET_HAPPEN if sent else "the purge was never requested",
                )
            raise


async def follow_task(run: Run[PurgeAllTrashObjectsInput, Trash], client: KatapultClient, task: Task) -> Task:
    """Poll the task until it finishes or the wait runs out, reporting its progress on every poll."""
    interval = run.call.settings.katapult_task_poll_interval
    deadline = time.monotonic() + MAX_TASK_WAIT_SECONDS
    while True:
        await run.call.progress(
            task.progress, 100, f"purge task {quote(task.id)}: {task.status}, {task.progress}%"
        )
        if task.status in ("completed", "failed") or time.monotonic() >= deadline:
            return task
        await anyio.sleep(interval)
        try:
            task = await client.get_task(task.id)
        except ApiError as error:
            run.notes.append(f"Lost track of the task while polling it: {run.call.explain(error)}")
            return task


async def verified(
    run: Run[PurgeAllTrashObjectsInput, Trash], client: KatapultClient, task: Task
) -> PurgeAllTrashObjectsOutcome:
    """The task finished: list the trash, and account for every approved object by what is left."""
    approved = run.observation.snapshot.ordered
    organization = run.target["organization"]
    try:
        after = await whole_trash(run.call.state, client, organization)
    except ApiError:
        # Unread: Katapult's word is all there is (a failed task may have purged some).
        fate: Fate = "carried_out" if task.status == "completed" else "unknown"
        run.ledger.settle(
            fate, approved, why=f"task {quote(task.id)} {task.status}; the trash could not be re-read"
        )
        raise
    gone, kept = account_by_trash(run.ledger, approved, after, task)
    late = len(after) - len(kept)
    if late:
        run.notes.append(
            f"{late} objects were trashed after the purge was approved; they are still in the trash."
        )
    task_name = quote(task.id)
    if task.status == "failed":
        summary = (
            f"Purge task {task_name} FAILED at {task.progress}%. Listing the trash shows {len(gone)} of the "
            f"{len(approved)} approved objects purged and {len(kept)} still there. Tell the user; to retry, "
            "preview again."
        )
    else:
        summary = (
            f"Purged {len(gone)} of the {len(approved)} approved objects from the trash of organization "
            f"{quote(organization)} (task {task_name}, verified by listing the trash); {len(after)} objects "
            "remain."
        )
        if kept:
            run.notes.append(
                f"{len(kept)} approved objects are still in the trash although the task completed."
            )
    return PurgeAllTrashObjectsOutcome(
        summary=summary,
        totals={"purged": len(gone), "remaining": len(after)},
        status="failed" if task.status == "failed" else "completed",
        task=TaskState.of(task),
    )


def account_by_trash(
    ledger: Ledger, approved: Sequence[str], left: Container[str], task: Task
) -> tuple[list[str], list[str]]:
    """The task is over: an approved object gone from the trash was purged; one still there stays there."""
    gone = [i for i in approved if i not in left]
    kept = [i for i in approved if i in left]
    ledger.settle("carried_out", gone)
    ledger.settle(
        "not_carried_out", kept, why=f"still in the trash after task {quote(task.id)} {task.status}"
    )
    return gone, kept


async def reconcile(
    run: Run[PurgeAllTrashObjectsInput, Trash], client: KatapultClient, error: ApiError
) -> PurgeAllTrashObjectsOutcome:
    """The purge request went out but its answer was lost or unreadable: find out from the trash whether
    it is emptying. An approved object still there may yet be purged, so it stays unknown."""
    call = run.call
    organization = run.target["organization"]
    approved = run.observation.snapshot.ordered
    run.notes.append(
        f"The answer to the purge request was lost or unreadable ({call.explain(error)}) What follows was found "
        "by listing the trash."
    )
    lookup = organization_lookup(organization)
    interval = call.settings.katapult_task_poll_interval
    polls = RECONCILE_POLLS if run.args.wait else 0
    for poll in range(polls):
        count = (await client.list_trash_objects(lookup, per_page=1)).pagination.total
        shown = "an uncounted number of" if count is None else str(count)
        await call.progress(poll + 1, polls, f"checking the trash: {shown} objects left")
        if count == 0:
            break
        await anyio.sleep(interval)
    after = await whole_trash(call.state, client, organization)
    gone = [i for i in approved if i not in after]
    kept = [i for i in approved if i in after]
    run.ledger.settle(after_read_back("unknown", still_present=False), gone)
    run.ledger.settle(after_read_back("unknown", still_present=True), kept, why=MAY_YET_HAPPEN)
    where = f"the trash of organization {quote(organization)}"
    if not kept:
        status: Literal["completed", "running", "unknown"] = "completed"
        summary = (
            f"The answer to the purge request was lost, but Katapult carried it out: all {len(gone)} approved "
            f"objects are gone from {where} (verified by listing it)."
        )
    elif gone:
        status = "running"
        summary = (
            f"The answer to the purge request was lost, but a purge is evidently under way: {len(gone)} of the "
            f"{len(approved)} approved objects are gone and {len(kept)} are still in {where}. List the trash "
            "again in a few minutes; do not request another purge unless it stops shrinking."
        )
    else:
        status = "unknown"
        waited = f" after watching it for {polls * interval:.0f} s" if polls else ""
        summary = (
            f"The answer to the purge request was lost, and it is unknown whether Katapult queued the purge: "
            f"all {len(kept)} approved objects are still in {where}{waited}. Nothing is verified as purged, "
            f"and {plural(len(kept), 'object')} may yet be purged. List the trash again in a few minutes; if "
            "the objects are still there, preview again and retry."
        )
    return PurgeAllTrashObjectsOutcome(
        summary=summary,
        totals={"purged": len(gone), "remaining": len(after)},
        status=status,
        task=None,
    )


toolset.operation(PurgeAllTrashObjects())


class TrashWatch(Watch):
    """Looks at a trash that may hold tens of thousands of objects while it is purged.

    A look costs one request (the trash's count). The trash is listed again only when that tells something
    a listing would show: the count grew (something arrived), or it fell while objects outside the plan
    were in view (are they still there?). A drop and an arrival between two looks can cancel out; the final
    look lists the trash in any case. Only objects outside the plan are described: those in it cannot be
    beyond it, and quoting tens of thousands of lines per look would stall the loop.
    """

    def __init__(self, state: AppState, organization: str, planned: frozenset[str]) -> None:
        self.state = state
        self.organization = organization
        self.planned = planned
        self.count = len(planned)
        """The re-check's listing is the first look."""
        self.outside: dict[str, str] = {}

    async def look(self, *, final: bool) -> Look:
        client = katapult_client(self.state)
        if not final:
            page = await client.list_trash_objects(organization_lookup(self.organization), per_page=1)
            count = page.pagination.total
            if count is not None and (count == self.count or (count < self.count and not self.outside)):
                self.count = count
                return Look(self.outside, planned_remain=count > len(self.outside))
        objects = await whole_trash(self.state, client, self.organization)
        self.count = len(objects)
        self.outside = {i: trash_line(t) for i, t in objects.items() if i not in self.planned}
        return Look(self.outside, planned_remain=self.count > len(self.outside))
