"""Vault selections and batched deletes: what a delete target names now, and deleting it with exact accounting.

A target is explicit ids or a selection (every object of a state, optionally a Vault search) that is
resolved by paging the API with ids only. `Deletion` deletes approved ids in all-or-nothing bulk calls
of the max page size with bounded concurrency; a batch refused only because some of its ids are gone is
sent again without them, a lost answer is reconciled by reading the batch back, and a cancellation stops
between batches while in-flight ones finish.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.lowlevel
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

from purgewarden.clients.errors import ApiError
from purgewarden.clients.vault import BulkDeleteResult, Reason, SearchQuery, VaultClient
from purgewarden.safety.errors import explain
from purgewarden.safety.plans import Snapshot
from purgewarden.safety.text import quote

IDS_PER_LOOKUP = 250
"""Ids per `GET …/objects?ids=…`: 1,000 UUIDs would make a URL past common server limits (414)."""
OBJECT_NOT_FOUND = "PV3005"
"""A bulk delete's per-item error for an id that is not an object of the requested state (gone, or moved
to the other state)."""
NOT_ATTEMPTED = "PV3999"
"""The emulator's per-item mark for an id left alone because another item of the call failed."""

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

State = Literal["active", "archived"]
SCALARS = (str, int, float, bool)
FAILED_BATCHES_SHOWN = 20
"""Failed batches listed in an outcome (and lost-answer notes kept), so no result grows with the run."""


def normalize_ids(ids: Sequence[str]) -> list[str]:
    """Lower-cased, de-duplicated ids in their given order; refuses anything that is not a UUID."""
    lowered = [object_id.strip().lower() for object_id in ids]
    bad = [object_id for object_id in lowered if not _UUID.match(object_id)]
    if bad:
        shown = ", ".join(quote(b) for b in bad[:5])
        raise ToolError(
            f"{len(bad)} of the ids are not UUIDs (e.g. {shown}); Vault object ids look like "
            "497f6eca-6276-4993-bfeb-53cbbbba6f08. Fix the ids and call the tool again."
        )
    return list(dict.fromkeys(lowered))


def chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def ambiguous(error: ApiError) -> bool:
    """True when a delete may or may not have happened: only reading the state can tell.

    That is a lost or broken answer, a server error, or a success status whose body could not be read.
    """
    if error.kind == "response":
        status = error.status or 500
        return status >= 500 or status < 300
    return error.sent


def fatal(error: ApiError) -> bool:
    """A refusal every later batch would meet too (credential, capability, collection, request shape)."""
    return error.kind == "response" and error.status in (400, 401, 403, 404, 405, 410, 413, 414)


@dataclass(frozen=True)
class Target:
    """What a delete acts on: the arguments that decide what is destroyed, validated once."""

    collection: str
    state: State
    ids: list[str] | None
    query: SearchQuery | None

    @property
    def archived(self) -> bool:
        return self.state == "archived"

    def arguments(self) -> dict[str, Any]:
        selection: Any = (
            sorted(self.ids) if self.ids is not None else (self.query.body() if self.query else "all")
        )
        return {"collection": self.collection, "state": self.state, "selection": selection}

    def describe(self) -> str:
        if self.ids is not None:
            return f"{len(self.ids)} given ids"
        if self.query is None:
            return f"every {self.state} object"
        parts = [f"{k}={json.dumps(v)}" for k, v in self.query.match.items()]
        parts += [f"{k} in {json.dumps(v)}" for k, v in self.query.in_.items()]
        parts += [f"{k} like {json.dumps(v)}" for k, v in self.query.like.items()]
        return f"{self.state} objects where " + " and ".join(parts)


def target_of(
    collection: str,
    state: State,
    ids: list[str],
    match: dict[str, Any],
    match_any: dict[str, list[Any]],
    like: dict[str, str],
) -> Target:
    """The validated target; refuses, with the fix in words, what the Vault would reject or misread."""
    filters = bool(match or match_any or like)
    if ids and filters:
        raise ToolError(
            "Give either ids or a selection (match / match_any / like), not both. For a few known objects "
            "pass ids; to let the server find objects, pass the filters (or neither, for every object of the state)."
        )
    if ids:
        return Target(collection, state, normalize_ids(ids), None)
    if like and any(not pattern for pattern in like.values()):
        raise ToolError("A like pattern is empty; use * as the wildcard, e.g. *@example.com.")
    if match_any and any(not values for values in match_any.values()):
        raise ToolError("A match_any entry has no values; list at least one value per property.")
    values = [*match.values(), *(v for vs in match_any.values() for v in vs)]
    if any(not isinstance(value, SCALARS) for value in values):
        raise ToolError(
            "match and match_any values must be strings, numbers or booleans (one value per property in "
            'match, a list of them in match_any), e.g. match={"country": "DE"}.'
        )
    query = SearchQuery(match=match, in_=match_any, like=like) if filters else None
    return Target(collection, state, None, query)


@dataclass
class Resolved:
    """The ids a target names right now (in deletion order) and, for explicit ids, those that are absent."""

    ids: list[str]
    absent: list[str] = field(default_factory=list)

    def snapshot(self) -> Snapshot:
        return Snapshot(totals={"objects": len(self.ids)}, members=frozenset(self.ids))


async def present_ids(
    client: VaultClient,
    collection: str,
    ids: Sequence[str],
    *,
    archived: bool,
    reason: Reason,
    adhoc_reason: str | None,
) -> set[str]:
    """Which of `ids` exist in the given state (one read per few hundred ids, all at once)."""
    found: set[str] = set()

    async def look_up(chunk: Sequence[str]) -> None:
        page = await client.list_objects(
            collection, reason=reason, adhoc_reason=adhoc_reason, archived=archived, props=(), ids=chunk
        )
        found.update(str(row.get("id", "")).lower() for row in page.results)

    try:
        async with anyio.create_task_group() as group:
            for chunk in chunks(ids, IDS_PER_LOOKUP):
                group.start_soon(look_up, chunk)
    except* ApiError as failed:
        raise first_error(failed) from None
    return found


def first_error(group: BaseExceptionGroup[ApiError]) -> ApiError:
    """The failure that cancelled the other lookups: it alone says what went wrong."""
    first = group.exceptions[0]
    return first if isinstance(first, ApiError) else first_error(first)


async def resolve(
    client: VaultClient, target: Target, page_size: int, reason: Reason, adhoc_reason: str | None
) -> Resolved:
    """The ids the target names now: explicit ids that exist, or every page of the list/search."""
    if target.ids is not None:
        found = await present_ids(
            client,
            target.collection,
            target.ids,
            archived=target.archived,
            reason=reason,
            adhoc_reason=adhoc_reason,
        )
        return Resolved([i for i in target.ids if i in found], [i for i in target.ids if i not in found])
    ids: list[str] = []
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        if target.query is None:
            page = await client.list_objects(
                target.collection,
                reason=reason,
                adhoc_reason=adhoc_reason,
                archived=target.archived,
                page_size=page_size,
                cursor=cursor,
                props=(),
            )
        else:
            page = await client.search_objects(
                target.collection,
                target.query,
                reason=reason,
                adhoc_reason=adhoc_reason,
                archived=target.archived,
                page_size=page_size,
                cursor=cursor,
                props=(),
            )
        ids.extend(str(row["id"]).lower() for row in page.results if "id" in row)
        cursor = page.paging.cursor
        if not page.results or not page.paging.remaining_count or not cursor or cursor in seen:
            break
        seen.add(cursor)
    return Resolved(list(dict.fromkeys(ids)))


class FailedBatch(BaseModel):
    """A bulk call that failed: all-or-nothing, so its ids are untouched unless read back as gone."""

    batch: int
    not_deleted: int
    unknown: int
    deleted: int
    reason: str
    sample_ids: list[str]


def bulk_failure(result: BulkDeleteResult) -> tuple[str, dict[str, str]]:
    """A summary of an ok=false answer's per-item errors (rarest first: usually the cause) and each id's error."""
    counts: dict[str, int] = {}
    messages: dict[str, str] = {}
    per_id: dict[str, str] = {}
    for item in result.results:
        if item.error is None:
            continue
        code = item.error.error_code or "error"
        counts[code] = counts.get(code, 0) + 1
        messages.setdefault(code, item.error.message)
        if item.id:
            per_id[item.id.lower()] = f"{code}: {item.error.message}"
    parts = [
        f"{n} × {code} {json.dumps(messages[code])}"
        for code, n in sorted(counts.items(), key=lambda kv: kv[1])
    ]
    return "the Vault rejected the batch, so none of it was deleted: " + "; ".join(
        parts or ["no detail"]
    ), per_id


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
class Deletion:
    """One run of batched bulk deletes with its exact accounting (never counts a delete it did not see)."""

    ctx: Context
    client: VaultClient
    target: Target
    reason: Reason
    adhoc_reason: str | None
    ids: list[str]
    batch_size: int
    concurrency: int
    track_ids: bool
    deleted: int = 0
    not_deleted: int = 0
    unknown: int = 0
    vanished: int = 0
    """Approved ids that were no longer objects of the state when their batch was sent: not deleted here."""
    vanished_sample: list[str] = field(default_factory=list)
    failures: list[FailedBatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcome_of: dict[str, str] = field(default_factory=dict)
    """Per id (tracked for small requests only): "deleted", or why not, e.g. "not_deleted: PV3005 …"."""
    stop_error: ApiError | None = None

    @property
    def batches(self) -> int:
        return -(-len(self.ids) // self.batch_size)

    @property
    def settled(self) -> int:
        return self.deleted + self.not_deleted + self.unknown + self.vanished

    async def run(self) -> None:
        pending = enumerate(chunks(self.ids, self.batch_size), start=1)

        async def worker() -> None:
            while True:
                await anyio.lowlevel.checkpoint()  # a cancellation lands here, between batches
                if self.stop_error is not None:
                    return
                item = next(pending, None)
                if item is None:
                    return
                number, batch = item
                with anyio.CancelScope(shield=True):  # an in-flight batch always finishes and is counted
                    await self.run_batch(number, batch)
                await self.ctx.report_progress(
                    self.settled, len(self.ids), f"{self.deleted:,} of {len(self.ids):,} deleted"
                )

        async with anyio.create_task_group() as group:
            for _ in range(min(self.concurrency, self.batches)):
                group.start_soon(worker)

    async def run_batch(self, number: int, batch: Sequence[str], *, resent: bool = False) -> None:
        try:
            result = await self.client.delete_objects(
                self.target.collection,
                batch,
                reason=self.reason,
                adhoc_reason=self.adhoc_reason,
                archived=self.target.archived,
            )
        except ApiError as error:
            if ambiguous(error):
                await self.reconcile(number, batch, error)
                return
            if fatal(error) and self.stop_error is None:
                self.stop_error = error
            self.fail(number, batch, explain(error), {})
            return
        if result.ok:
            self.deleted += len(batch)
            if self.track_ids:
                for object_id in batch:
                    self.outcome_of[object_id] = "deleted"
            return
        gone = None if resent else vanished_in(result, batch)
        if gone is not None:
            # A failed call deleted nothing, so sending the rest once more can only delete approved ids.
            self.vanish([i for i in batch if i in gone])
            rest = [i for i in batch if i not in gone]
            if rest:
                await self.run_batch(number, rest, resent=True)
            return
        reason, per_id = bulk_failure(result)
        self.fail(number, batch, reason, per_id)

    def vanish(self, ids: Sequence[str]) -> None:
        self.vanished += len(ids)
        self.vanished_sample.extend(ids[: 5 - len(self.vanished_sample)])
        if self.track_ids:
            for object_id in ids:
                self.outcome_of[object_id] = (
                    f"absent: no longer {self.target.state} when its batch was sent; not deleted by this call"
                )

    def fail(self, number: int, batch: Sequence[str], reason: str, per_id: Mapping[str, str]) -> None:
        self.not_deleted += len(batch)
        self.failures.append(
            FailedBatch(
                batch=number,
                not_deleted=len(batch),
                unknown=0,
                deleted=0,
                reason=reason,
                sample_ids=list(batch[:5]),
            )
        )
        if self.track_ids:
            for object_id in batch:
                self.outcome_of[object_id] = f"not_deleted: {per_id.get(object_id, reason)}"

    async def reconcile(self, number: int, batch: Sequence[str], error: ApiError) -> None:
        """After an answer was lost, read the batch's ids back: all gone → deleted; any still there → none was."""
        what = f"batch {number}: {error.summary}"
        try:
            present = await present_ids(
                self.client,
                self.target.collection,
                batch,
                archived=self.target.archived,
                reason=self.reason,
                adhoc_reason=self.adhoc_reason,
            )
        except ApiError as lookup_error:
            self.unknown += len(batch)
            self.failures.append(
                FailedBatch(
                    batch=number,
                    not_deleted=0,
                    unknown=len(batch),
                    deleted=0,
                    reason=f"{what}; reading the ids back failed too ({lookup_error.summary})",
                    sample_ids=list(batch[:5]),
                )
            )
            if self.track_ids:
                for object_id in batch:
                    self.outcome_of[object_id] = f"unknown: {what}"
            return
        gone = [i for i in batch if i not in present]
        kept = [i for i in batch if i in present]
        if kept:
            # All or nothing: with some of its ids still there the call deleted none, so any that are gone
            # were removed elsewhere (e.g. since the preview) and are not counted as deleted here.
            self.vanish(gone)
            self.not_deleted += len(kept)
            self.failures.append(
                FailedBatch(
                    batch=number,
                    not_deleted=len(kept),
                    unknown=0,
                    deleted=0,
                    reason=f"{what}; read back: {len(gone)} gone, {len(kept)} still present"
                    + (
                        "; the all-or-nothing call deleted none, the gone ones were removed elsewhere"
                        if gone
                        else ""
                    ),
                    sample_ids=kept[:5],
                )
            )
            if self.track_ids:
                for object_id in kept:
                    self.outcome_of[object_id] = f"not_deleted: {what}"
            return
        self.deleted += len(gone)
        if len(self.notes) < FAILED_BATCHES_SHOWN:
            self.notes.append(
                f"Batch {number}: the answer was lost ({error.kind}); reading the ids back shows all "
                f"{len(gone)} are gone, so they are counted as deleted."
            )
        if self.track_ids:
            for object_id in gone:
                self.outcome_of[object_id] = "deleted"
