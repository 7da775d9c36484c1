"""Pruning archived Vault data: the `PruneArchived` operation (vault_preview_prune_archived and
vault_prune_archived), built on the Vault's garbage collection.

GC deletes what has been archived past the retention period, at most 10,000 items a call, so the run
repeats it, but never past the plan: before each call a dry run shows what the call would take, and the
run stops when that exceeds what the plan has left per collection and type. Items are anonymous here,
so the ledger settles counts: a call's answer settles what it deleted, and a call whose answer was lost
is checked by a dry run (items gone are carried out; the rest stay unknown, because the Vault may yet
act on the call).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, Field

from purgewarden.clients.errors import ApiError, Fate
from purgewarden.clients.vault import GcCount, GcFilter, VaultClient
from purgewarden.safety.kernel import Call, Observation, Operation, Run
from purgewarden.safety.outcome import MAY_YET_HAPPEN, after_read_back
from purgewarden.safety.plans import Snapshot
from purgewarden.safety.text import OutcomeOutput, PlanOutput, fence, listed, plural, quote
from purgewarden.tools.vault.common import KNOWN_TYPES, MAINTENANCE, failure, toolset, vault_client

GC_CALL_LIMIT = 10_000
TYPE_NOUNS = {"TOKENS": "tokens", "TRANSACTION_IDS": "transaction ids"}
_PLAIN = re.compile(r"[A-Za-z0-9_-]{1,128}")

GcFilterParam = Annotated[GcFilter, Field(description="all = objects, tokens and orphaned transaction ids")]
Garbage = dict[str, int]
"""Counts keyed "collection/TYPE" (see `key`)."""


# --- counts keyed by collection and type -----------------------------------------------------------


def label(name: str) -> str:
    """A name the Vault reported, as part of a `totals` key: as is when plain, else quoted (one line, no
    markup, no "/"), so every text that shows a plan's totals, the kernel's included, shows it safely."""
    return name if _PLAIN.fullmatch(name) else quote(name).replace("/", "\\u002f")


def key(row: GcCount) -> str:
    """ "customers/PERSONS": the collection and the type of a GC count."""
    return f"{label(row.collection_name)}/{label(row.collection_type)}"


def gc_totals(counts: Sequence[GcCount]) -> Garbage:
    totals: Garbage = {}
    for row in counts:
        totals[key(row)] = totals.get(key(row), 0) + row.count
    return totals


def count_text(totals_key: str, count: int) -> str:
    """`"customers": 10 PERSONS objects`, from a key of `totals` (whose parts are plain or quoted)."""
    collection, _, kind = totals_key.rpartition("/")
    if kind in TYPE_NOUNS:
        noun = TYPE_NOUNS[kind]
    elif kind in KNOWN_TYPES:
        noun = f"{kind} objects"
    else:
        noun = f"items of type {shown(kind)}"
    return f"{shown(collection)}: {count:,} {noun}"


def shown(part: str) -> str:
    """A part of a `totals` key in text: quoted once (a plain one gets its quotes here)."""
    return part if part.startswith('"') else quote(part)


def lines(totals: Mapping[str, int], prefix: str = "") -> list[str]:
    return [f"{prefix}{count_text(k, n)}" for k, n in sorted(totals.items()) if n]


# --- the operation -------------------------------------------------------------------------------


class PruneArchivedInput(BaseModel):
    filter: GcFilterParam = "all"


class PruneArchivedPlan(PlanOutput):
    """`totals` holds the counts, keyed "collection/TYPE"."""

    total: int

    def render(self) -> str:
        return "\n".join(filter(None, [super().render(), fence(lines(self.totals))]))


class PruneArchivedOutcome(OutcomeOutput):
    """`totals` holds what was deleted, keyed "collection/TYPE" as in the plan."""

    deleted_total: int = 0
    calls: int = 0
    remaining: dict[str, int] = Field(
        default_factory=dict, description="Still eligible after the run, keyed as totals"
    )

    def render(self) -> str:
        listed = lines(self.totals, "deleted ") + lines(self.remaining, "still eligible ")
        return "\n".join(filter(None, [super().render(), fence(listed)]))


async def dry_run(client: VaultClient, gc_filter: GcFilter) -> Garbage:
    return gc_totals(
        await client.garbage_collection(
            reason=MAINTENANCE, adhoc_reason=None, gc_filter=gc_filter, dry_run=True
        )
    )


class PruneArchived(Operation[PruneArchivedInput, Garbage, PruneArchivedPlan, PruneArchivedOutcome]):
    """Delete what a dry run of the Vault's garbage collection counted, call after call, within the plan."""

    service = "vault"
    name = "prune_archived"
    title = "Prune archived Piiano Vault data"
    preview_title = "Preview pruning archived Piiano Vault data"
    description = """Permanently delete what vault_preview_prune_archived counted, repeating the Vault's
    garbage collection (at most 10,000 items a call) but never past the plan; refused if more became
    eligible."""
    preview_description = """Dry run of vault_prune_archived (the Vault's garbage collection): counts per
    collection what is archived past retention and the orphaned transaction ids, and returns a
    confirmation_token. Show the plan to the user; once approved, call vault_prune_archived with the same
    filter and the token."""
    Input = PruneArchivedInput
    Plan = PruneArchivedPlan
    Outcome = PruneArchivedOutcome

    def target(self, call: Call, args: PruneArchivedInput) -> dict[str, Any]:
        return {"filter": args.filter}

    def blast_radius(self, totals: Mapping[str, int]) -> int:
        return sum(totals.values())

    async def observe(self, call: Call, args: PruneArchivedInput) -> Observation[Garbage]:
        totals = await dry_run(vault_client(call.state), args.filter)
        return Observation(Snapshot(totals=totals), totals)

    def summary(self, target: Mapping[str, Any], observation: Observation[Garbage]) -> str:
        totals = observation.snapshot.totals
        total = sum(totals.values())
        if not total:
            return "Nothing in the Vault is archived past the retention period: there is nothing to prune."
        return (
            f"Permanently delete {total:,} Piiano Vault items archived past the retention period "
            f"({listed(lines(totals), sep='; ')})."
        )

    async def plan(
        self, call: Call, args: PruneArchivedInput, observation: Observation[Garbage]
    ) -> tuple[list[str], dict[str, Any]]:
        total = sum(observation.data.values())
        warnings = [
            f"Each Vault call deletes at most {GC_CALL_LIMIT:,} items; vault_prune_archived repeats the call "
            "until these counts are deleted, and never deletes more than this plan per collection and type."
        ]
        if total == GC_CALL_LIMIT:
            # Exactly the per-call cap: a Vault that caps its dry runs too may have more eligible than it shows.
            warnings.append(
                f"The dry run reached {GC_CALL_LIMIT:,} items, the per-call cap: more may be eligible than "
                "shown. This plan covers these counts only; preview again afterwards for the rest."
            )
        return warnings, {"total": total}

    async def execute(self, run: Run[PruneArchivedInput, Garbage]) -> PruneArchivedOutcome:
        pruning = Pruning(run, vault_client(run.call.state), dict(run.observation.data))
        await pruning.prune()
        return pruning.outcome()


@dataclass
class Pruning:
    """One run of GC calls. The ledger settles approved items by count; `unsettled` holds, per key, the
    approved items not settled yet, and `deleted` what the calls deleted (beyond the plan too)."""

    run: Run[PruneArchivedInput, Garbage]
    client: VaultClient
    unsettled: Garbage
    deleted: Garbage = field(default_factory=dict)
    calls: int = 0
    remaining: Garbage | None = None
    """What the last dry run showed eligible; None when it could not be read."""
    notes: list[str] = field(default_factory=list)

    @property
    def approved(self) -> int:
        return sum(self.run.observation.data.values())

    def count(self, gone: Mapping[str, int], fate: Fate = "carried_out") -> None:
        """Items the calls deleted (as answered, or as a dry run found them gone): approved ones settled as
        `fate`, up to what each key has unsettled; any more were beyond the plan."""
        for totals_key, n in gone.items():
            self.deleted[totals_key] = self.deleted.get(totals_key, 0) + n
            settled = min(n, self.unsettled.get(totals_key, 0))
            if settled:
                self.run.ledger.settle(fate, count=settled)
                self.unsettled[totals_key] -= settled

    def settle_rest(self, fate: Fate) -> None:
        rest = sum(self.unsettled.values())
        if rest:
            self.run.ledger.settle(fate, count=rest)
        self.unsettled = {}

    async def prune(self) -> None:
        ceiling = self.run.planned
        pending: Garbage = dict(self.unsettled)
        gc_filter = self.run.args.filter
        try:
            while sum(pending.values()):
                over = {
                    k: n for k, n in pending.items() if n and self.deleted.get(k, 0) + n > ceiling.get(k, 0)
                }
                if over:
                    self.notes.append(
                        f"Stopped before going past the plan: the next call would delete {sum(over.values()):,} "
                        f"items of {', '.join(count_text(k, n) for k, n in sorted(over.items()))}, more than "
                        "the plan has left for them (items became eligible since, e.g. transaction ids orphaned "
                        "by the tokens just deleted). Call vault_preview_prune_archived for the rest."
                    )
                    break
                await self.run.between_requests()
                async with self.run.sending(
                    "garbage-collect archived items", count=sum(pending.values())
                ) as answer:
                    try:
                        rows = await self.client.garbage_collection(
                            reason=MAINTENANCE, adhoc_reason=None, gc_filter=gc_filter
                        )
                    except ApiError as error:
                        if error.fate == "unknown":
                            await self.read_back(error, pending)
                            return
                        if not self.calls:
                            raise  # nothing happened: the kernel reports the refusal with the accounting
                        self.notes.append(
                            f"Stopped after a refusal; nothing more was deleted: {self.run.call.explain(error)}"
                        )
                        break
                    self.calls += 1
                    step = gc_totals(rows)
                    self.count(step)
                    answer.update(gc_call=self.calls, deleted=step)  # journaled with the answer
                done, planned = sum(self.deleted.values()), self.approved
                await self.run.call.progress(
                    min(done, planned), planned, f"{done:,} of {planned:,} items deleted"
                )
                if not sum(step.values()):
                    self.notes.append("The last call deleted nothing although items were pending; stopped.")
                    break
                try:
                    pending = await dry_run(self.client, gc_filter)
                except ApiError as error:
                    self.notes.append(
                        f"Counting what is left failed; stopped: {self.run.call.explain(error)}"
                    )
                    return
            self.remaining = pending
        finally:
            # Whatever is still unsettled was not sent for (a stop, a refusal, a cancellation): untouched.
            self.settle_rest("not_carried_out")

    async def read_back(self, error: ApiError, pending: Garbage) -> None:
        """After a call that may or may not have been carried out: a dry run tells what is gone (carried
        out); the approved items still eligible are unknown, as the Vault may yet act on the call."""
        waiting = sum(pending.values())
        lost = f"A garbage-collection call failed ambiguously ({failure(error)})"
        try:
            after = await dry_run(self.client, self.run.args.filter)
        except ApiError as lookup_error:
            self.notes.append(
                f"{lost} and the check afterwards failed too ({failure(lookup_error)}); what that call deleted "
                f"is unknown, and it may yet delete the {waiting:,} pending items. Preview again in a minute to "
                "see what is left."
            )
            self.settle_rest("unknown")
            return
        self.remaining = after
        if sum(after.values()) == GC_CALL_LIMIT:
            # Possibly a capped dry run: it would show the next call's worth, not what the lost call removed.
            self.notes.append(
                f"{lost}; with {waiting:,} items pending a dry run cannot tell what it deleted. Preview again "
                "in a minute to see what is left."
            )
            self.settle_rest("unknown")
            return
        gone = {k: n - after.get(k, 0) for k, n in pending.items() if n > after.get(k, 0)}
        self.count(gone, after_read_back(error.fate, still_present=False))
        note = (
            f"{lost}; a dry run afterwards shows {sum(gone.values()):,} of the {waiting:,} pending items gone, "
            "counted as deleted."
        )
        still = sum(self.unsettled.values())
        if still:
            note += f" {plural(still, 'approved item')} could not be shown gone: {MAY_YET_HAPPEN}."
        self.notes.append(note)
        self.settle_rest(after_read_back(error.fate, still_present=True))

    def outcome(self) -> PruneArchivedOutcome:
        ceiling = self.run.planned
        extra = {k: n - ceiling.get(k, 0) for k, n in self.deleted.items() if n > ceiling.get(k, 0)}
        notes = list(self.notes)
        if extra:
            notes.append(
                f"{sum(extra.values()):,} items beyond the plan became eligible between the last check and a "
                f"call, and were deleted with it ({'; '.join(lines(extra))})."
            )
        total = sum(self.deleted.values())
        unknown = self.run.ledger.counts["unknown"]
        summary = (
            f"Deleted {total:,} archived Piiano Vault items in {self.calls} garbage-collection "
            f"call{'' if self.calls == 1 else 's'}."
        )
        left = None if self.remaining is None else sum(self.remaining.values())
        if unknown:
            summary += (
                f" {plural(unknown, 'approved item')} may yet be deleted: the answer to a garbage-collection call "
                "was lost, and the Vault may still act on it. Wait a minute, then call "
                "vault_preview_prune_archived to see what is left."
            )
        elif left is None:
            summary += " What is left is unknown: call vault_preview_prune_archived to see it."
        elif left:
            summary += f" {left:,} items are eligible now: call vault_preview_prune_archived to prune them."
        else:
            summary += " Nothing more is eligible."
        return PruneArchivedOutcome(
            summary=summary,
            totals=self.deleted,
            notes=notes,
            deleted_total=total,
            calls=self.calls,
            remaining={k: n for k, n in sorted((self.remaining or {}).items()) if n},
        )


toolset.operation(PruneArchived())
