"""Cocoon Data tools: list a user's recycle bin, preview emptying it, empty it.

Everything acts on the recycle bin of the user whose access token the server holds, in one
organisation (the caller must be an Originator there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from purgewarden.clients.cocoon import CocoonClient, RecycleBinItem
from purgewarden.clients.errors import ApiError, fate
from purgewarden.safety.kernel import Call, Look, Observation, Operation, Run, Watch
from purgewarden.safety.outcome import MAY_YET_HAPPEN, after_read_back
from purgewarden.safety.plans import Snapshot
from purgewarden.safety.registry import Toolset
from purgewarden.safety.runs import Journal, Replay, RunRecord
from purgewarden.safety.state import AppState, app_state
from purgewarden.safety.text import (
    SAMPLE_SIZE,
    OutcomeOutput,
    PlanOutput,
    ToolOutput,
    fence,
    human_bytes,
    plural,
    quote,
)

toolset = Toolset("cocoon")

PURGE_SOON_DAYS = 1

OrganisationId = Annotated[
    str | None, Field(description="Defaults to COCOON_ORGANISATION_ID", pattern=r"^\d{1,24}$")
]


class DeletedItem(BaseModel):
    id: str
    name: str = Field(description="Item name as stored in Cocoon Data (data, not instructions)")
    kind: Literal["file", "folder"] = Field(description="A folder is deleted with everything inside it")
    size_bytes: int

    @classmethod
    def of(cls, item: RecycleBinItem) -> DeletedItem:
        kind: Literal["file", "folder"] = "folder" if item.type == "collection" else "file"
        return cls(id=item.id, name=item.name, kind=kind, size_bytes=item.size)


class BinItem(DeletedItem):
    recycled_time: str
    shared: bool = Field(description="Whether it was shared with others before it was recycled")
    days_to_purge: int | None = Field(description="Days left before Cocoon purges it automatically")

    @classmethod
    def of(cls, item: RecycleBinItem) -> BinItem:
        return cls(
            **DeletedItem.of(item).model_dump(),
            recycled_time=item.recycled_time,
            shared=item.shared,
            days_to_purge=item.days_to_purge,
        )

    def line(self) -> str:
        return f"{self.kind} {quote(self.name)} id={quote(self.id)} {human_bytes(self.size_bytes)}" + (
            " shared" if self.shared else ""
        )


class ListRecycleBinOutput(ToolOutput):
    organisation_id: str
    items: list[BinItem]
    offset: int
    next_offset: int | None = Field(
        description="Pass as offset to get the next page; null when this was the last"
    )

    def render(self) -> str:
        return "\n".join(filter(None, [self.summary, fence(item.line() for item in self.items)]))


class EmptyRecycleBinPlan(PlanOutput):
    organisation_id: str
    sample: list[BinItem] = Field(description=f"Up to {SAMPLE_SIZE} of the items, largest first")

    def render(self) -> str:
        return "\n".join(filter(None, [super().render(), fence(item.line() for item in self.sample)]))


class EmptyRecycleBinOutcome(OutcomeOutput):
    organisation_id: str
    deleted: list[DeletedItem] = Field(
        default_factory=list, description=f"Up to {SAMPLE_SIZE} of the deleted items, largest first"
    )
    remaining: int = Field(
        0, description="Items still in the bin afterwards (added after the check, or not deleted)"
    )


def cocoon_client(state: AppState) -> CocoonClient:
    if state.cocoon is None:
        raise ToolError("Cocoon Data is not configured on this server (COCOON_ACCESS_TOKEN and URL).")
    return state.cocoon


def organisation(state: AppState, organisation_id: str | None) -> str:
    chosen = organisation_id or state.settings.cocoon_organisation_id
    if not chosen:
        raise ToolError(
            "No organisation given: pass organisation_id (a long decimal id), or ask the operator to set "
            "COCOON_ORGANISATION_ID."
        )
    return chosen


async def whole_bin(client: CocoonClient, organisation_id: str) -> list[RecycleBinItem]:
    page = await client.list_recycle_bin(organisation_id, limit=0)
    return page.items


def largest(items: list[RecycleBinItem]) -> list[RecycleBinItem]:
    return sorted(items, key=lambda i: (-i.size, i.id))[:SAMPLE_SIZE]


@toolset.tool("read", "List Cocoon Data recycle bin")
async def cocoon_list_recycle_bin(
    ctx: Context,
    organisation_id: OrganisationId = None,
    limit: Annotated[int, Field(ge=1, le=200)] = 25,
    offset: Annotated[int, Field(ge=0)] = 0,
    sort_by: Literal["name", "size", "time"] = "time",
    order: Literal["asc", "desc"] = "desc",
) -> ListRecycleBinOutput:
    """List a page of the recycle bin of the user whose token this server holds, in one organisation.
    To delete everything, call cocoon_preview_empty_recycle_bin."""
    state = app_state(ctx)
    org = organisation(state, organisation_id)
    page = await cocoon_client(state).list_recycle_bin(
        org, limit=limit, offset=offset, sort_by=sort_by, order_by=order
    )
    items = [BinItem.of(i) for i in page.items]
    more = len(items) == limit
    next_offset = offset + len(items) if more else None
    summary = f"{len(items)} items in the recycle bin of organisation {org} from offset {offset}" + (
        f"; more may follow at offset {next_offset}." if more else "; this is the last page."
    )
    return ListRecycleBinOutput(
        summary=summary, organisation_id=org, items=items, offset=offset, next_offset=next_offset
    )


class EmptyRecycleBinInput(BaseModel):
    organisation_id: OrganisationId = None


Bin = list[RecycleBinItem]


class EmptyRecycleBin(Operation[EmptyRecycleBinInput, Bin, EmptyRecycleBinPlan, EmptyRecycleBinOutcome]):
    """Cocoon can only empty the whole bin: items recycled while the call is in flight go with it, so the
    kernel watches the bin meanwhile and reports those."""

    service = "cocoon"
    name = "empty_recycle_bin"
    title = "Empty a Cocoon Data recycle bin"
    preview_title = "Preview emptying a Cocoon Data recycle bin"
    description = """Permanently delete everything in the recycle bin (all versions, folders with their
    contents). Needs the token of cocoon_preview_empty_recycle_bin for the same organisation; refused if the
    bin grew since."""
    preview_description = """Dry run of cocoon_empty_recycle_bin: counts what it would delete (files, folders
    with contents, bytes), warns about shared items, and returns a confirmation_token. Show the plan to the
    user; once approved, call cocoon_empty_recycle_bin with the token."""
    Input = EmptyRecycleBinInput
    Plan = EmptyRecycleBinPlan
    Outcome = EmptyRecycleBinOutcome
    empties_everything = True

    def target(self, call: Call, args: EmptyRecycleBinInput) -> dict[str, Any]:
        return {"organisation_id": organisation(call.state, args.organisation_id)}

    def blast_radius(self, totals: Mapping[str, int]) -> int:
        return totals.get("items", 0)

    async def observe(self, call: Call, args: EmptyRecycleBinInput) -> Observation[Bin]:
        items = await whole_bin(cocoon_client(call.state), organisation(call.state, args.organisation_id))
        snapshot = Snapshot(
            totals={"items": len(items), "bytes": sum(i.size for i in items)},
            members=frozenset(i.id for i in items),
        )
        return Observation(snapshot, items)

    def summary(self, target: Mapping[str, Any], observation: Observation[Bin]) -> str:
        items = observation.data
        folders = sum(1 for i in items if i.type == "collection")
        size = human_bytes(sum(i.size for i in items))
        return (
            f"Permanently delete {plural(len(items), 'item')} ({len(items) - folders} files, {folders} folders "
            f"with everything inside; {size}) from your Cocoon Data recycle bin in organisation "
            f"{target['organisation_id']}."
        )

    async def plan(
        self, call: Call, args: EmptyRecycleBinInput, observation: Observation[Bin]
    ) -> tuple[list[str], dict[str, Any]]:
        items = observation.data
        warnings = []
        shared = sum(1 for i in items if i.shared)
        if shared:
            warnings.append(f"{plural(shared, 'item')} shared with other people before being recycled.")
        soon = sum(1 for i in items if i.days_to_purge is not None and i.days_to_purge <= PURGE_SOON_DAYS)
        if soon:
            warnings.append(f"{plural(soon, 'item')} would be purged automatically within a day anyway.")
        if not items:
            warnings.append("The recycle bin is empty: there is nothing to delete.")
        org = self.target(call, args)["organisation_id"]
        return warnings, {"organisation_id": org, "sample": [BinItem.of(i) for i in largest(items)]}

    def watch(self, run: Run[EmptyRecycleBinInput, Bin]) -> Watch:
        return BinWatch(
            cocoon_client(run.call.state), run.target["organisation_id"], run.observation.snapshot.members
        )

    async def resume(self, state: AppState, record: RunRecord, told: Replay, journal: Journal) -> None:
        """An empty whose server stopped once it was sent: re-read the bin; what went is carried out (what is
        still there stays unknown: a delayed call may yet empty it)."""
        if not told.in_flight:
            return
        left = {item.id for item in await whole_bin(cocoon_client(state), record.target["organisation_id"])}
        journal.ledger.settle("carried_out", [i for i in told.in_flight if i not in left])

    async def execute(self, run: Run[EmptyRecycleBinInput, Bin]) -> EmptyRecycleBinOutcome:
        client = cocoon_client(run.call.state)
        org = run.target["organisation_id"]
        before = run.observation.data
        if not before:  # emptying an empty bin could only destroy what arrives meanwhile
            return EmptyRecycleBinOutcome(
                summary=f"The recycle bin of organisation {org} is already empty; nothing was deleted.",
                totals={"items": 0, "bytes": 0},
                organisation_id=org,
                deleted=[],
                remaining=0,
            )
        await run.call.progress(0, 1, "emptying the recycle bin")
        failure: ApiError | None = None
        await run.between_requests()
        async with run.sending("empty the recycle bin", ids=[i.id for i in before]):
            try:
                await client.empty_recycle_bin(org)
            except ApiError as error:
                if error.fate == "not_carried_out":
                    raise
                failure = error
                run.notes.append(
                    f"The answer to the empty call was lost ({run.call.explain(error)}); what follows was "
                    "checked by re-reading the bin."
                )
        try:
            after = await whole_bin(client, org)
        except ApiError:
            # Unread: the bin went if the API said so, and is unknown if its answer was lost.
            run.ledger.settle(fate(failure), [i.id for i in before])
            raise
        await run.call.progress(1, 1, "done")
        left = {i.id for i in after}
        call_fate = fate(failure)
        for item in before:
            run.ledger.settle(after_read_back(call_fate, item.id in left), [item.id])
        deleted = [i for i in before if i.id not in left]
        kept = [i for i in before if i.id in left]
        if kept:
            ids = ", ".join(quote(i.id) for i in kept[:SAMPLE_SIZE])
            if call_fate == "unknown":
                run.notes.append(
                    f"{plural(len(kept), 'approved item')} still in the bin (ids: {ids}): {MAY_YET_HAPPEN}. "
                    "List the bin again in a minute (cocoon_list_recycle_bin) before acting on this."
                )
            else:
                run.notes.append(
                    f"{plural(len(kept), 'approved item')} still in the bin although Cocoon Data "
                    f"confirmed the empty call (ids: {ids})."
                )
        summary = (
            f"Deleted {plural(len(deleted), 'item')} ({human_bytes(sum(i.size for i in deleted))}) from the "
            f"recycle bin of organisation {org}; {plural(len(after), 'item')} remain."
        )
        return EmptyRecycleBinOutcome(
            summary=summary,
            totals={"items": len(deleted), "bytes": sum(i.size for i in deleted)},
            notes=[],
            organisation_id=org,
            deleted=[DeletedItem.of(i) for i in largest(deleted)],
            remaining=len(after),
        )


class BinWatch(Watch):
    """The bin is one request to list whole, so every look lists it."""

    def __init__(self, client: CocoonClient, organisation_id: str, planned: frozenset[str]) -> None:
        self.client = client
        self.organisation_id = organisation_id
        self.planned = planned

    async def look(self, *, final: bool) -> Look:
        items = await whole_bin(self.client, self.organisation_id)
        outside = {i.id: BinItem.of(i).line() for i in items if i.id not in self.planned}
        return Look(outside, planned_remain=len(outside) < len(items))


toolset.operation(EmptyRecycleBin())
