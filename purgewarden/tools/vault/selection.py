"""What a delete acts on: its input (ids, or a selection the server resolves), and what that names now.

A target is explicit ids or a selection (every object of a state, optionally narrowed by a Vault
search) that is resolved by paging the API with ids only, so 100,000 ids never pass through the model.
The input model refuses, before anything is sent, what the Vault would reject or misread.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any

import anyio
from pydantic import BaseModel, Field, field_validator, model_validator

from purgewarden.clients.errors import ApiError
from purgewarden.clients.vault import Reason, SearchQuery, VaultClient
from purgewarden.safety.plans import Snapshot
from purgewarden.safety.text import quote
from purgewarden.tools.vault.common import (
    AdhocReason,
    CollectionName,
    ReasonParam,
    State,
    StateParam,
    literal,
)

IDS_PER_LOOKUP = 250
"""Ids per `GET …/objects?ids=…`: 1,000 UUIDs would make a URL past common server limits (414)."""
SCALARS = (str, int, float, bool)
SELECTORS = ("ids", "match", "match_any", "like")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PLAIN_PROPERTY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

# No Python defaults here: `default_factory` keeps these optional without a null branch in the schema.
Ids = Annotated[
    list[str],
    Field(
        default_factory=list,
        min_length=1,
        max_length=1000,
        description="A few object UUIDs, instead of a selection",
    ),
]
Match = Annotated[dict[str, Any], Field(default_factory=dict, description="Select: property = value")]
MatchAny = Annotated[
    dict[str, list[Any]], Field(default_factory=dict, description="Select: property in values")
]
Like = Annotated[
    dict[str, str], Field(default_factory=dict, description="Select: property like *@example.com")
]


class DeleteObjectsInput(BaseModel):
    """The arguments of vault_preview_delete_objects and vault_delete_objects, checked as a whole."""

    collection: CollectionName
    ids: Ids
    match: Match
    match_any: MatchAny
    like: Like
    state: StateParam = "active"
    reason: ReasonParam = "Maintenance"
    adhoc_reason: AdhocReason = ""

    @model_validator(mode="before")
    @classmethod
    def _empty_is_not_given(cls, data: Any) -> Any:
        """The tools pass every parameter, an omitted one as its default (`[]`, `{}`): that is no selection
        by ids (an explicit `ids=[]` is refused by the tool's schema before this model sees it)."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (k in SELECTORS and v in ([], {}))}
        return data

    @field_validator("ids")
    @classmethod
    def _uuids(cls, ids: list[str]) -> list[str]:
        """Lower-cased, de-duplicated ids in their given order; anything that is not a UUID is refused."""
        lowered = [object_id.strip().lower() for object_id in ids]
        bad = [object_id for object_id in lowered if not _UUID.match(object_id)]
        if bad:
            raise ValueError(
                f"{len(bad)} of the ids are not UUIDs (e.g. {', '.join(quote(b) for b in bad[:5])}); Vault "
                "object ids look like 497f6eca-6276-4993-bfeb-53cbbbba6f08. Fix the ids and call the tool again"
            )
        return list(dict.fromkeys(lowered))

    @model_validator(mode="after")
    def _one_selection(self) -> DeleteObjectsInput:
        if self.reason == "Other" and not self.adhoc_reason.strip():
            raise ValueError(
                "reason Other needs adhoc_reason: a short free-text purpose recorded in the Vault's audit "
                "log. Call the tool again with adhoc_reason set, or choose one of the listed reasons"
            )
        if self.ids and self.filtered:
            raise ValueError(
                "Give either ids or a selection (match / match_any / like), not both. For a few known objects "
                "pass ids; to let the server find objects, pass the filters (or neither, for every object of "
                "the state)"
            )
        if any(not pattern for pattern in self.like.values()):
            raise ValueError("A like pattern is empty; use * as the wildcard, e.g. *@example.com")
        if any(not values for values in self.match_any.values()):
            raise ValueError("A match_any entry has no values; list at least one value per property")
        values = [*self.match.values(), *(v for vs in self.match_any.values() for v in vs)]
        if any(not isinstance(value, SCALARS) for value in values):
            raise ValueError(
                "match and match_any values must be strings, numbers or booleans (one value per property in "
                'match, a list of them in match_any), e.g. match={"country": "DE"}'
            )
        return self

    @property
    def filtered(self) -> bool:
        return bool(self.match or self.match_any or self.like)

    @property
    def adhoc(self) -> str | None:
        """The ad-hoc reason to send, if any."""
        return self.adhoc_reason.strip() or None


@dataclass(frozen=True)
class Target:
    """What a delete acts on, from validated input: a collection, a state, and ids or a search (or neither)."""

    collection: str
    state: State
    ids: list[str] | None
    query: SearchQuery | None

    @classmethod
    def of(cls, args: DeleteObjectsInput) -> Target:
        if args.ids:
            return cls(args.collection, args.state, args.ids, None)
        query = SearchQuery(match=args.match, in_=args.match_any, like=args.like) if args.filtered else None
        return cls(args.collection, args.state, None, query)

    @property
    def archived(self) -> bool:
        return self.state == "archived"

    @property
    def whole_state(self) -> bool:
        """Every object of a state (no ids, no search): a count measures it exactly."""
        return self.ids is None and self.query is None

    def arguments(self) -> dict[str, Any]:
        """The canonical arguments that decide what is destroyed: what a token is bound to."""
        selection: Any = (
            sorted(self.ids) if self.ids is not None else (self.query.body() if self.query else "all")
        )
        return {"collection": self.collection, "state": self.state, "selection": selection}


def selection_text(target: Mapping[str, Any]) -> str:
    """The selection of canonical arguments (`Target.arguments()`) in words; values written as literals."""
    selection = target["selection"]
    if isinstance(selection, list):
        return f"{len(selection)} given ids"
    if not isinstance(selection, dict):
        return f"every {target['state']} object"

    def name(prop: str) -> str:
        return prop if _PLAIN_PROPERTY.fullmatch(prop) else quote(prop)

    parts = [f"{name(k)}={literal(v)}" for k, v in selection.get("match", {}).items()]
    parts += [f"{name(k)} in [{', '.join(map(literal, vs))}]" for k, vs in selection.get("in", {}).items()]
    parts += [f"{name(k)} like {literal(v)}" for k, v in selection.get("like", {}).items()]
    return f"{target['state']} objects where " + " and ".join(parts)


@dataclass
class Resolved:
    """The ids a target names, each once (in deletion order), and, for explicit ids, those that are absent now."""

    ids: list[str]
    absent: list[str] = field(default_factory=list)

    def snapshot(self) -> Snapshot:
        return Snapshot(totals={"objects": len(self.ids)}, ordered=sorted(self.ids))


def chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def first_error(group: BaseExceptionGroup[ApiError]) -> ApiError:
    """The failure that cancelled the other lookups: it alone says what went wrong."""
    first = group.exceptions[0]
    return first if isinstance(first, ApiError) else first_error(first)


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


async def resolve(client: VaultClient, target: Target, page_size: int, args: DeleteObjectsInput) -> Resolved:
    """The ids the target names now: explicit ids that exist, or every page of the list or search."""
    reason, adhoc = args.reason, args.adhoc
    if target.ids is not None:
        found = await present_ids(
            client, target.collection, target.ids, archived=target.archived, reason=reason, adhoc_reason=adhoc
        )
        return Resolved([i for i in target.ids if i in found], [i for i in target.ids if i not in found])
    ids: list[str] = []
    cursor: str | None = None
    seen: set[str] = set()
    pages = (
        partial(client.list_objects, target.collection)
        if target.query is None
        else partial(client.search_objects, target.collection, target.query)
    )
    while True:
        page = await pages(
            reason=reason,
            adhoc_reason=adhoc,
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


async def count_in_state(client: VaultClient, target: Target, args: DeleteObjectsInput) -> int:
    count = await client.count_objects(target.collection, reason=args.reason, adhoc_reason=args.adhoc)
    return count.archived if target.archived else count.active
