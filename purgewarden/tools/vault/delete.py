"""Deleting Vault objects in bulk: the `DeleteObjects` operation (vault_preview_delete_objects and
vault_delete_objects).

The preview resolves the ids or the selection and binds its token to the resolved ids; the kernel
re-checks before anything is deleted (a whole state by one count when this server holds the previewed
ids; anything else by resolving again) and refuses growth. Deletion never goes beyond the previewed ids:
it runs in all-or-nothing batches of the max page size (`batches.Deletion`), accounting for every id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from purgewarden.clients.errors import ApiError
from purgewarden.safety.kernel import Call, Observation, Operation, Run
from purgewarden.safety.plans import Snapshot
from purgewarden.safety.text import SAMPLE_SIZE, OutcomeOutput, PlanOutput, fence, plural, quote
from purgewarden.tools.vault.batches import FAILED_BATCHES_SHOWN, Deletion, FailedBatch
from purgewarden.tools.vault.common import State, ids_text, toolset, vault_client
from purgewarden.tools.vault.selection import (
    DeleteObjectsInput,
    Resolved,
    Target,
    count_in_state,
    present_ids,
    resolve,
    selection_text,
)

SMALL_REQUEST = 50
"""Requests of at most this many ids get a per-id outcome list."""


class DeleteObjectsPlan(PlanOutput):
    selection: str
    count: int
    sample_ids: list[str]
    absent_ids: list[str] = Field(
        description=f"Up to {SAMPLE_SIZE} given ids that are not objects of the chosen state now; left out of the plan"
    )
    absent_count: int
    batches: int = Field(
        description="All-or-nothing bulk calls needed at the max page size; the last round's may be cut in a few more"
    )

    def render(self) -> str:
        lines = [f"sample ids: {ids_text(self.sample_ids)}"] if self.sample_ids else []
        if self.absent_ids:
            lines.append(f"absent ids: {ids_text(self.absent_ids)}")
        return "\n".join(filter(None, [super().render(), fence(lines)]))


class DeleteObjectsOutcome(OutcomeOutput):
    planned: int = Field(0, description="Approved ids that still existed")
    deleted: int = 0
    not_deleted: int = Field(0, description="In failed batches, untouched")
    unknown: int = Field(0, description="Could not be verified")
    not_attempted: int = 0
    batches: int = 0
    failed_batches: list[FailedBatch] = Field(
        default_factory=list, description=f"First {FAILED_BATCHES_SHOWN}"
    )
    failed_batch_count: int = 0
    outcomes: dict[str, str] = Field(
        default_factory=dict,
        description=f"Per id when at most {SMALL_REQUEST} ids: deleted, or not_deleted / unknown / "
        "not_attempted / absent (untouched) with why",
    )

    def render(self) -> str:
        lines = [
            f"batch {b.batch}: {b.not_deleted} not deleted, {b.unknown} unknown, {b.deleted} deleted — {b.reason} "
            f"(e.g. {ids_text(b.sample_ids)})"
            for b in self.failed_batches
        ]
        lines += [f"{quote(object_id)}: {outcome}" for object_id, outcome in self.outcomes.items()]
        return "\n".join(filter(None, [super().render(), fence(lines)]))


class DeleteObjects(Operation[DeleteObjectsInput, Resolved, DeleteObjectsPlan, DeleteObjectsOutcome]):
    """Delete the objects a selection names, in all-or-nothing batches, never beyond the previewed ids."""

    service = "vault"
    name = "delete_objects"
    title = "Delete Piiano Vault objects"
    preview_title = "Preview deleting Piiano Vault objects"
    description = """Permanently delete what vault_preview_delete_objects resolved for the same arguments;
    refused if it grew since. Deletes in all-or-nothing batches and reports what was deleted and, per failed
    batch, what was not and why."""
    preview_description = """Dry run of vault_delete_objects: resolves the ids, or the selection (every
    object of the state, narrowed by match, match_any, like), and returns a count, sample and
    confirmation_token. Show the plan to the user; once approved, call vault_delete_objects with the same
    arguments and the token."""
    Input = DeleteObjectsInput
    Plan = DeleteObjectsPlan
    Outcome = DeleteObjectsOutcome

    def target(self, call: Call, args: DeleteObjectsInput) -> dict[str, Any]:
        return Target.of(args).arguments()

    def typed_target(self, target: Mapping[str, Any]) -> str | None:
        return str(target["collection"])

    def blast_radius(self, totals: Mapping[str, int]) -> int:
        return totals.get("objects", 0)

    async def observe(self, call: Call, args: DeleteObjectsInput) -> Observation[Resolved]:
        page_size = call.settings.pvault_max_page_size
        resolved = await resolve(vault_client(call.state), Target.of(args), page_size, args)
        return Observation(resolved.snapshot(), resolved)

    async def recheck(
        self, call: Call, args: DeleteObjectsInput, held: Snapshot | None
    ) -> Observation[Resolved]:
        """A whole state whose previewed ids this server holds is re-checked by one count, not a listing.

        Deleting by id in the state's bulk calls can only remove previewed ids that are still objects of
        the state, so only growth needs a look: more objects than planned, and the full listing decides
        (and names the new plan's ids). Otherwise the snapshot is the plan's ids with the count now, so
        fewer reads as shrunk; which planned ids are gone, the batches tell.
        """
        target = Target.of(args)
        if held is None or not held.count or not target.whole_state:
            return await self.observe(call, args)
        now = await count_in_state(vault_client(call.state), target, args)
        if now > held.count:
            return await self.observe(call, args)
        # In id order (sorted for the plan's digest already): ids close together delete much faster.
        ids = held.ordered
        return Observation(Snapshot(totals={"objects": now}, ordered=ids), Resolved(list(ids)))

    def summary(self, target: Mapping[str, Any], observation: Observation[Resolved]) -> str:
        count = observation.snapshot.totals.get("objects", 0)
        return (
            f"Permanently delete {count:,} {target['state']} object{'' if count == 1 else 's'} from Piiano "
            f"Vault collection {quote(target['collection'])} (selection: {selection_text(target)})."
        )

    async def plan(
        self, call: Call, args: DeleteObjectsInput, observation: Observation[Resolved]
    ) -> tuple[list[str], dict[str, Any]]:
        target = Target.of(args)
        resolved = observation.data
        count = len(resolved.ids)
        settings = call.settings
        warnings = []
        if resolved.absent:
            warnings.append(await absent_warning(call, target, args, resolved.absent))
        if not count:
            warnings.append("Nothing matches: there is nothing to delete.")
        batches = -(-count // settings.pvault_max_page_size)
        if batches > 1:
            warnings.append(
                f"The Vault deletes at most {settings.pvault_max_page_size:,} objects per call, each call all or "
                f"nothing; this takes {batches} calls or a few more (the last round's ids are shared out so that its "
                "calls end together), run as many at a time as the Vault takes without queueing them (at most "
                f"{settings.vault_delete_concurrency})."
            )
        return warnings, {
            "selection": selection_text(target.arguments()),
            "count": count,
            "sample_ids": resolved.ids[:SAMPLE_SIZE],
            "absent_ids": resolved.absent[:SAMPLE_SIZE],
            "absent_count": len(resolved.absent),
            "batches": batches,
        }

    async def execute(self, run: Run[DeleteObjectsInput, Resolved]) -> DeleteObjectsOutcome:
        client = vault_client(run.call.state)
        settings = run.call.settings
        target = Target.of(run.args)
        # Never more than the approved ids: when only counted, exactly the previewed ones (the batches
        # tell which are gone); when resolved again, those that still exist (the kernel refused any other).
        ids = run.observation.data.ids
        requested = target.ids if target.ids is not None else ids
        deletion = Deletion(
            run=run,
            client=client,
            target=target,
            ids=ids,
            batch_size=settings.pvault_max_page_size,
            concurrency=settings.vault_delete_concurrency,
            track_ids=len(requested) <= SMALL_REQUEST,
        )
        await deletion.delete_all()
        if deletion.stop_error is not None and deletion.deleted == 0 and deletion.unknown == 0:
            raise deletion.stop_error  # nothing happened: the kernel reports the refusal with the accounting
        after: int | ApiError | None = None
        if target.whole_state:
            try:
                after = await count_in_state(client, target, run.args)
            except ApiError as error:
                after = error
        return outcome_of(run.call, deletion, requested, after)


async def absent_warning(call: Call, target: Target, args: DeleteObjectsInput, absent: list[str]) -> str:
    other: State = "active" if target.archived else "archived"
    elsewhere = await present_ids(
        vault_client(call.state),
        target.collection,
        absent,
        archived=not target.archived,
        reason=args.reason,
        adhoc_reason=args.adhoc,
    )
    text = (
        f"{len(absent)} of the given ids are not {target.state} objects of {quote(target.collection)} and are "
        "left out of the plan (one absent id would make a whole all-or-nothing bulk call fail)."
    )
    if elsewhere:
        text += f" {len(elsewhere)} of them are {other} objects: preview again with state={other} for those."
    return text


def outcome_of(
    call: Call, deletion: Deletion, requested: list[str], after: int | ApiError | None
) -> DeleteObjectsOutcome:
    """The outcome of a run; `after` is the state's count once it ended (whole-state selections only)."""
    target = deletion.target
    planned = len(deletion.ids) - deletion.vanished
    deleted, unknown = deletion.deleted, deletion.unknown
    not_deleted, not_attempted = deletion.not_deleted, deletion.not_attempted
    notes = deletion.notes_of_run()
    if isinstance(after, ApiError):
        notes.append(f"Counting what is left afterwards failed: {call.explain(after)}")
    where = f"{target.state} objects from Piiano Vault collection {quote(target.collection)}"
    summary = f"Deleted {deleted:,} of {planned:,} {where}."
    if deletion.vanished:
        one = deletion.vanished == 1
        summary += (
            f" {plural(deletion.vanished, 'approved object')} {'was' if one else 'were'} already gone (no "
            f"longer {target.state}) and not deleted by this call."
        )
    summary += deletion.summary_of_failures()
    if not_attempted:
        summary += f" {not_attempted:,} objects were not attempted."
    if not_deleted or unknown or not_attempted:
        summary += " Preview again (vault_preview_delete_objects) to see and delete what is left."
    # What is left of the plan is at most what was not deleted; anything more in the state is new.
    left_of_plan = not_deleted + unknown + not_attempted
    if isinstance(after, int) and after > left_of_plan:
        appeared = after - left_of_plan
        few = appeared == 1
        summary += (
            f" At least {plural(appeared, f'{target.state} object')} not in the approved plan appeared since "
            f"the preview and {'was' if few else 'were'} left alone ({after:,} {target.state} in the collection "
            f"now): preview again (vault_preview_delete_objects) to delete {'it' if few else 'them'}."
        )
    failures = sorted(deletion.failures, key=lambda b: b.batch)
    return DeleteObjectsOutcome(
        summary=summary,
        totals={"objects": deleted},
        notes=notes,
        planned=planned,
        deleted=deleted,
        not_deleted=not_deleted,
        unknown=unknown,
        not_attempted=not_attempted,
        batches=deletion.batches,
        failed_batches=failures[:FAILED_BATCHES_SHOWN],
        failed_batch_count=len(failures),
        outcomes=deletion.outcomes(requested),
    )


toolset.operation(DeleteObjects())
