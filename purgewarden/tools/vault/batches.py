"""Deleting approved ids in all-or-nothing bulk calls, settling every id in the run's ledger.

Batches of the max page size run with an adaptive limit on how many are in flight; the last round of a
long run is cut in equal shares, one per place in flight (`Batches`). What each id became follows one rule,
`ApiError.fate`: an answer settles its batch (ok → carried out; ok=false or a refusal → not carried
out, a failed call deleting nothing), and a batch whose request may or may not have been carried out is
read back (`after_read_back`): ids gone are carried out, ids still there stay unknown, because the Vault
may yet act on the request. A batch refused only because some of its ids are gone is sent once more
without them. A cancellation stops between batches; in-flight ones finish and are settled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import anyio
from pydantic import BaseModel

from purgewarden.clients.errors import ApiError, Fate
from purgewarden.clients.limits import Slot
from purgewarden.clients.vault import BulkDeleteResult, VaultClient
from purgewarden.safety.kernel import Run
from purgewarden.safety.outcome import MAY_YET_HAPPEN, after_read_back
from purgewarden.safety.text import plural, quote
from purgewarden.tools.vault.common import failure
from purgewarden.tools.vault.selection import (
    DeleteObjectsInput,
    Resolved,
    Target,
    present_ids,
)

OBJECT_NOT_FOUND = "PV3005"
"""A bulk delete's per-item error for an id that is not an object of the requested state (gone, or moved
to the other state)."""
NOT_ATTEMPTED = "PV3999"
"""The emulator's per-item mark for an id left alone because another item of the call failed."""
FAILED_BATCHES_SHOWN = 20
"""Failed batches listed in an outcome (and lost-answer notes kept), so no result grows with the run."""
EXAMPLES = 5
"""Ids named per failed batch or per kind of note."""
SMALLEST_SHARE = 0.1
"""Of a max-size batch: a last share smaller than this would cost a call for too little."""


def fatal(error: ApiError) -> bool:
    """A refusal every later batch would meet too (credential, capability, collection, request shape)."""
    return error.kind == "invalid_request" or (
        error.kind == "response" and error.status in (400, 401, 403, 404, 405, 410, 413, 414)
    )


class FailedBatch(BaseModel):
    """A bulk call that did not delete all its ids: all-or-nothing, so the others are untouched."""

    batch: int
    not_deleted: int
    unknown: int
    deleted: int
    reason: str
    sample_ids: list[str]


def bulk_failure(result: BulkDeleteResult) -> tuple[str, dict[str, str]]:
    """An ok=false answer's per-item errors, quoted (rarest first: usually the cause), and each id's error."""
    counts: dict[str, int] = {}
    messages: dict[str, str] = {}
    per_id: dict[str, str] = {}
    for item in result.results:
        if item.error is None:
            continue
        code = item.error.error_code or "error"
        said = quote(f"{code}: {item.error.message}")
        counts[code] = counts.get(code, 0) + 1
        messages.setdefault(code, said)
        if item.id:
            per_id[item.id.lower()] = said
    parts = [f"{n} × {messages[code]}" for code, n in sorted(counts.items(), key=lambda kv: kv[1])]
    summary = "the Vault rejected the batch, so none of it was deleted: " + "; ".join(parts or ["no detail"])
    return summary, per_id


def vanished_in(result: BulkDeleteResult, batch: Sequence[str]) -> set[str] | None:
    """The ids an ok=false answer failed only because they are not objects of the state (any more), when
    that is the whole reason; None when any item failed otherwise or its id cannot be told."""
    positional = len(result.results) == len(batch)
    members = set(batch)
    gone: set[str] = set()
    for index, item in enumerate(result.results):
        if item.error is None or item.error.error_code == NOT_ATTEMPTED:
            continue
        if item.error.error_code != OBJECT_NOT_FOUND:
            return None
        object_id = item.id.lower() if item.id else (batch[index] if positional else "")
        if object_id not in members:
            return None
        gone.add(object_id)
    return gone or None


@dataclass
class Batches:
    """The approved ids cut into batches as places in flight free up: max-size batches while the ids
    left fill whole rounds (a batch for every place), then the last round in equal shares, one per
    place. It then ends together instead of on a few batches while the other places idle: 4,000 ids
    left for 12 places are 12 shares of 334, a third of a batch's time rather than a whole one."""

    ids: Sequence[str]
    size: int
    cut: int = 0
    """Batches cut so far."""
    _start: int = 0
    _share: int | None = None

    @property
    def count(self) -> int:
        """The batches cut so far and those the ids not cut yet take."""
        return self.cut + -(-(len(self.ids) - self._start) // (self._share or self.size))

    def next(self, places: int) -> tuple[int, Sequence[str]] | None:
        """The next batch and its number, for a run with `places` in flight now; None when all are cut.
        A round starts every `places` batches; a run of one round or less is not shared out, its
        batches already go out at once. (`places` is the client's limit, which runs at once share: each
        then gets fewer, and its last round's shares take two turns.)"""
        left = len(self.ids) - self._start
        if not left:
            return None
        last_round = self.cut > 0 and self.cut % places == 0 and left < places * self.size
        if self._share is None and last_round:
            self._share = max(-(-left // places), math.ceil(self.size * SMALLEST_SHARE))
        batch = self.ids[self._start : self._start + (self._share or self.size)]
        self._start += len(batch)
        self.cut += 1
        return self.cut, batch

    def uncut(self) -> Sequence[str]:
        """The ids no batch was cut for (a stop, a cancellation); still counted in `count`."""
        return self.ids[self._start :]


@dataclass
class Deletion:
    """One run of batched bulk deletes. The run's ledger holds the accounting; this keeps what the outcome
    tells beyond it: which batches failed and why, and why approved ids were not deleted."""

    run: Run[DeleteObjectsInput, Resolved]
    client: VaultClient
    target: Target
    ids: list[str]
    batch_size: int
    concurrency: int
    track_ids: bool
    not_deleted: int = 0
    """Approved ids in batches the Vault refused (definitely untouched)."""
    vanished: int = 0
    """Approved ids that were no longer objects of the state when their batch was sent: not deleted here."""
    vanished_sample: list[str] = field(default_factory=list)
    not_attempted: int = 0
    failures: list[FailedBatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcome_of: dict[str, str] = field(default_factory=dict)
    """Per id (tracked for small requests only): "deleted", or what else and why."""
    stop_error: ApiError | None = None
    pending: Batches = field(init=False)

    def __post_init__(self) -> None:
        self.pending = Batches(self.ids, self.batch_size)

    @property
    def batches(self) -> int:
        """Bulk calls made or due: the batches cut and those the ids not cut take (a batch sent once more
        without vanished ids counts once)."""
        return self.pending.count

    @property
    def deleted(self) -> int:
        return self.run.ledger.counts["carried_out"]

    @property
    def unknown(self) -> int:
        return self.run.ledger.counts["unknown"]

    async def delete_all(self) -> None:
        """Every batch, as many at a time as the Vault takes without queueing them (at most
        `concurrency`); whatever is not sent (a stop, a cancellation) is settled as not carried out."""
        try:
            async with anyio.create_task_group() as group:
                for _ in range(min(self.concurrency, self.batches)):
                    group.start_soon(self.worker)
        finally:
            uncut = self.pending.uncut()
            if uncut:
                self.not_attempted += len(uncut)
                self.settle("not_carried_out", uncut, "not_attempted")

    async def worker(self) -> None:
        limit = self.client.limit_for("delete_objects", self.concurrency)
        while True:
            async with limit.slot() as slot:
                await self.run.between_requests()
                if self.stop_error is not None:
                    return
                item = self.pending.next(places=limit.limit)
                if item is None:
                    return
                number, batch = item
                async with self.run.sending(f"delete batch {number}", ids=batch):  # finishes, and is settled
                    await self.send(number, batch, slot)
            total = len(self.ids)
            told = f"{self.deleted:,} of {total:,} deleted"
            if self.batches > 1:
                told += f", up to {limit.limit} batches in flight"
            await self.run.call.progress(self.run.ledger.settled, total, told)

    def settle(self, fate: Fate, ids: Sequence[str], word: str, why: str = "") -> None:
        """Record what became of `ids`: `fate` in the ledger, `word` (and why) in the per-id outcomes."""
        self.run.ledger.settle(fate, ids, why=why)
        if self.track_ids:
            said = f"{word}: {why}" if why else word
            for object_id in ids:
                self.outcome_of[object_id] = said

    async def send(self, number: int, batch: Sequence[str], slot: Slot, *, resent: bool = False) -> None:
        args = self.run.args
        slot.comparable = len(batch) == self.batch_size
        try:
            result = await self.client.delete_objects(
                self.target.collection,
                batch,
                reason=args.reason,
                adhoc_reason=args.adhoc,
                archived=self.target.archived,
                slot=slot,
            )
        except ApiError as error:
            if error.fate == "unknown":
                await self.read_back(number, batch, error)
                return
            if fatal(error) and self.stop_error is None:
                self.stop_error = error
            self.refused(number, batch, self.run.call.explain(error), {})
            return
        if result.ok:
            self.settle("carried_out", batch, "deleted")
            return
        gone = None if resent else vanished_in(result, batch)
        if gone is not None:
            # A failed call deleted nothing, so sending the rest once more can only delete approved ids.
            self.vanish([i for i in batch if i in gone])
            rest = [i for i in batch if i not in gone]
            if rest:
                await self.send(number, rest, slot, resent=True)
            return
        reason, per_id = bulk_failure(result)
        self.refused(number, batch, reason, per_id)

    def vanish(self, ids: Sequence[str]) -> None:
        self.vanished += len(ids)
        self.vanished_sample.extend(ids[: EXAMPLES - len(self.vanished_sample)])
        why = f"no longer {self.target.state} when its batch was sent; not deleted by this call"
        self.settle("not_carried_out", ids, "absent", why)

    def refused(self, number: int, batch: Sequence[str], reason: str, per_id: Mapping[str, str]) -> None:
        """The Vault answered that the batch was not carried out: none of its ids was deleted."""
        self.not_deleted += len(batch)
        self.failures.append(
            FailedBatch(
                batch=number,
                not_deleted=len(batch),
                unknown=0,
                deleted=0,
                reason=reason,
                sample_ids=list(batch[:EXAMPLES]),
            )
        )
        if not (per_id and self.track_ids):
            self.settle("not_carried_out", batch, "not_deleted", reason)
            return
        for object_id in batch:
            self.settle("not_carried_out", [object_id], "not_deleted", per_id.get(object_id, reason))

    async def read_back(self, number: int, batch: Sequence[str], error: ApiError) -> None:
        """After a request that may or may not have been carried out: ids gone are carried out; ids still
        there are unknown (the Vault may yet act on the request), and so is every id if the read fails."""
        what = f"{failure(error)}, so it may or may not have been carried out"
        args = self.run.args
        try:
            present = await present_ids(
                self.client,
                self.target.collection,
                batch,
                archived=self.target.archived,
                reason=args.reason,
                adhoc_reason=args.adhoc,
            )
        except ApiError as lookup_error:
            self.unsure(
                number, batch, [], f"{what}; reading the ids back failed too ({failure(lookup_error)})"
            )
            return
        gone = [i for i in batch if i not in present]
        kept = [i for i in batch if i in present]
        # Gone is carried out (the one rule), even when some ids are still there: all or nothing, the call
        # then was not carried out (yet) and they went elsewhere, or it was, between the reads of the batch.
        elsewhere = "" if not kept else "gone when read back (deleted by this call, or elsewhere)"
        self.settle(after_read_back(error.fate, still_present=False), gone, "deleted", elsewhere)
        if not kept:
            if len(self.notes) < FAILED_BATCHES_SHOWN:
                self.notes.append(
                    f"Batch {number}: the answer was lost or unreadable ({failure(error)}); reading the ids "
                    f"back shows all {len(gone)} are gone, so they are counted as deleted."
                )
            return
        reason = f"{what}; read back: {len(gone)} gone, {len(kept)} still present"
        self.unsure(number, kept, gone, reason)

    def unsure(self, number: int, kept: Sequence[str], gone: Sequence[str], reason: str) -> None:
        fate = after_read_back("unknown", still_present=True)
        self.failures.append(
            FailedBatch(
                batch=number,
                not_deleted=0,
                unknown=len(kept),
                deleted=len(gone),
                reason=reason,
                sample_ids=list(kept[:EXAMPLES]),
            )
        )
        self.settle(fate, kept, "unknown", f"{reason}; {MAY_YET_HAPPEN}")

    def summary_of_failures(self) -> str:
        """The failed batches in one sentence (empty when none failed)."""
        if not self.failures:
            return ""
        parts = []
        if self.not_deleted:
            parts.append(f"{self.not_deleted:,} objects were not deleted (a failed batch deletes nothing)")
        if self.unknown:
            parts.append(
                f"{self.unknown:,} could not be verified and may yet be deleted (the Vault may still act on "
                "a request whose answer was lost): count them again in a minute (vault_count_objects or "
                "vault_list_objects) before acting on this"
            )
        return f" {len(self.failures)} of {self.batches} batches failed: {' and '.join(parts)}."

    def notes_of_run(self) -> list[str]:
        """What the outcome notes, besides the kernel's: vanished ids, a stop, failures not listed."""
        notes = []
        if self.vanished:
            one = self.vanished == 1
            notes.append(
                f"The state shrank since the preview: {plural(self.vanished, 'approved object')} "
                f"{'was' if one else 'were'} no longer {self.target.state} when {'its' if one else 'their'} "
                f"batch was sent (deleted or changed elsewhere; e.g. "
                f"{', '.join(quote(i) for i in self.vanished_sample)}), so this call did not delete "
                f"{'it' if one else 'them'}; a batch refused only for such ids was sent once more without them."
            )
        notes += self.notes
        if self.stop_error is not None:
            notes.append(
                f"Stopped launching batches after a refusal: {self.run.call.explain(self.stop_error)}"
            )
        if len(self.failures) > FAILED_BATCHES_SHOWN:
            notes.append(f"{len(self.failures) - FAILED_BATCHES_SHOWN} more failed batches are not listed.")
        return notes

    def outcomes(self, requested: Sequence[str]) -> dict[str, str]:
        """Per requested id, when ids were tracked: what became of it ("absent" if it was not in the run)."""
        if not self.track_ids:
            return {}
        return {i: self.outcome_of.get(i, "absent") for i in requested}
