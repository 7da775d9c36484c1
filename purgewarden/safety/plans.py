"""Plans and the confirmation tokens bound to them, and how a re-read state compares with a plan.

A preview's `confirmation_token` is a short random handle to a plan kept in the store: the plan binds
it to the destructive tool, its canonical arguments, a fingerprint of the credential, the caller and
the previewed state (totals and ids). `check` verifies every binding without consuming it (so the
human is asked only about a token that will be honoured); `consume` burns it, once, in one atomic
step of the store, whichever replica redeems it.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel
from pydantic_core import from_json, to_json

from purgewarden.safety.text import quote
from purgewarden.store import Store

TOKEN_PREFIX = "pwc"
TOKEN_BYTES = 24
"""192 random bits: a token cannot be guessed, and stays short enough to copy (36 characters)."""
TOKEN_SHAPE = re.compile(rf"{TOKEN_PREFIX}_[A-Za-z0-9_-]{{{TOKEN_BYTES * 4 // 3}}}")
REUSED = "Refused: this confirmation token was already used; each token works once."


class Refusal(ToolError):
    """A destructive call that was not carried out; `reason` is a short code for the audit log."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Snapshot:
    """What a plan would destroy: totals (items, bytes, per-kind counts) and, where there are any, the ids.

    The ids come as a set (`members`) or already sorted, each once (`ordered`: a stored plan's, a
    listing sorted for its digest); the other form is built only when asked for. A plan of 100,000 ids
    is mostly stored, counted and acted on in order, and its set alone would take 4 MB.
    """

    def __init__(
        self,
        totals: Mapping[str, int],
        members: frozenset[str] = frozenset(),
        *,
        ordered: Sequence[str] | None = None,
    ) -> None:
        self.totals = totals
        self._members = None if ordered is not None else members
        self._ordered = ordered

    @property
    def members(self) -> frozenset[str]:
        if self._members is None:
            self._members = frozenset(self._ordered or ())
        return self._members

    @property
    def ordered(self) -> Sequence[str]:
        """The members sorted: what the digest hashes, what a plan stores, and an order to act on them in."""
        if self._ordered is None:
            self._ordered = tuple(sorted(self.members))
        return self._ordered

    @property
    def count(self) -> int:
        """How many ids, from whichever form is at hand."""
        return len(self._ordered if self._ordered is not None else self.members)

    def same_ids(self, other: Snapshot) -> bool:
        """Whether both name the same ids; a snapshot made from another's ids is told without sets."""
        if self._ordered is not None and self._ordered is other._ordered:
            return True
        return self.count == other.count and self.members == other.members

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Snapshot) and dict(self.totals) == dict(other.totals) and self.same_ids(other)
        )

    def __repr__(self) -> str:
        return f"Snapshot(totals={dict(self.totals)!r}, {self.count} ids)"

    @cached_property
    def encoded_ids(self) -> bytes:
        """The sorted ids as one JSON array: what a plan stores and what the digest hashes, encoded once
        (by pydantic's Rust encoder, in a fraction of a per-id loop's time). JSON quotes and escapes
        each id, so no id can pose as two and any id comes back exactly."""
        return to_json(self.ordered)

    @cached_property
    def digest(self) -> str:
        h = hashlib.sha256(json.dumps(dict(sorted(self.totals.items()))).encode())
        h.update(self.encoded_ids)
        return h.hexdigest()[:32]


Verdict = Literal["same", "shrunk", "grown"]


def compare(planned: Snapshot, current: Snapshot) -> Verdict:
    """How the state moved since the preview. Anything that cannot be shown to be smaller counts as grown.

    `current` may hold the planned ids themselves with smaller totals: a re-check that counted the
    state but did not list it again.
    """
    same_ids = current.same_ids(planned)
    if dict(current.totals) == dict(planned.totals) and same_ids:
        return "same"
    if any(current.totals.get(k, 0) > planned.totals.get(k, 0) for k in current.totals):
        return "grown"
    if current.count and not (same_ids or current.members <= planned.members):
        return "grown"
    return "shrunk"


class Claims(BaseModel):
    """A stored plan: everything its confirmation token is bound to, held by the server, never sent."""

    tool: str
    args: str
    credential: str
    state: str
    size: int
    """The plan's blast radius in items (for the typed confirmation and the operator's cap)."""
    summary: str
    expires: float
    principal: str | None = None
    """Who previewed it, where the transport says (an authenticated caller)."""
    totals: dict[str, int]
    key: str = ""
    """Where the store keeps it (a digest of the token): set on reading, never stored."""
    asking_until: float = 0.0
    """Until when a call's question held it, as read by `check`: set on reading, never stored."""


@dataclass
class Issued:
    token: str
    expires_at: str


def canonical(arguments: Mapping[str, Any]) -> str:
    """A digest of the arguments that decide what gets destroyed, independent of key order."""
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def store_key(token: str) -> str:
    """The store holds a digest of each token, so whoever reads the store cannot confirm a plan."""
    return hashlib.sha256(token.encode()).hexdigest()[:40]


class Confirmations:
    """Issues tokens for plans kept in the store, and redeems each once, whichever process asks."""

    def __init__(self, store: Store, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ttl = ttl
        self._clock = clock

    async def issue(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        credential: str,
        snapshot: Snapshot,
        summary: str,
        size: int,
        principal: str | None = None,
    ) -> Issued:
        now = self._clock()
        claims = Claims(
            tool=tool,
            args=canonical(arguments),
            credential=credential,
            state=snapshot.digest,
            size=size,
            summary=summary,
            expires=now + self.ttl,
            principal=principal,
            totals=dict(snapshot.totals),
        )
        token = f"{TOKEN_PREFIX}_{secrets.token_urlsafe(TOKEN_BYTES)}"
        # Kept one lifetime past expiry: a question asked just before it may be answered late, and a
        # late replay is told "already used" or "expired" rather than "unknown".
        body = claims.model_dump_json(exclude={"key", "asking_until"})
        # The ids go apart from the bindings, as one JSON text (any id comes back exactly): `check` does
        # not read 100,000 of them, and `consume` reads them once.
        await self.store.put_plan(
            store_key(token), body, claims.expires + self.ttl, now, ids=snapshot.encoded_ids
        )
        return Issued(
            token=token, expires_at=datetime.fromtimestamp(claims.expires, UTC).isoformat(timespec="seconds")
        )

    async def check(
        self,
        token: str,
        *,
        tool: str,
        preview_tool: str,
        arguments: Mapping[str, Any],
        credential: str,
        principal: str | None = None,
        asking: bool = False,
    ) -> Claims:
        """Every binding of the token, without consuming it: issued here, unexpired, this tool, these
        arguments, this credential, this caller, not used. Raises `Refusal` saying what is wrong and
        what to do.

        `asking`: the caller asked the human about this token; while that question holds the token
        (see `reserve`), an expiry that passed during the question does not refuse it."""
        again = (
            f"Call {preview_tool} with the arguments you intend to use, show the plan to the user, "
            f"then call {tool} with confirm set to the new confirmation_token."
        )
        token = token.strip()
        if not token:
            raise Refusal("missing_token", f"Refused: {tool} needs a confirmation token. {again}")
        slot = await self.store.get_plan(store_key(token)) if TOKEN_SHAPE.fullmatch(token) else None
        if slot is None:
            raise Refusal(
                "invalid_token",
                "Refused: this confirmation token is unknown here: it is mistyped, was not issued by this "
                f"server, or expired long ago. {again}",
            )
        claims = Claims.model_validate_json(slot.body)
        claims.key = store_key(token)
        claims.asking_until = slot.asking_until
        if claims.tool != tool:
            raise Refusal(
                "wrong_tool",
                f"Refused: the confirmation token was issued for {claims.tool}, not {tool}. {again}",
            )
        if claims.credential != credential:
            raise Refusal(
                "wrong_credential",
                "Refused: the confirmation token was issued under a different API "
                f"credential than the one in use now. {again}",
            )
        if claims.principal != principal:
            raise Refusal(
                "wrong_principal",
                "Refused: the confirmation token was issued to another caller; a plan can only be "
                f"confirmed by whoever previewed it. {again}",
            )
        if claims.args != canonical(arguments):
            raise Refusal(
                "wrong_arguments",
                "Refused: the confirmation token was issued for different arguments "
                f"(another target or selection). {again}",
            )
        if slot.used:
            raise Refusal("reused_token", f"{REUSED} {again}")
        now = self._clock()
        if now >= claims.expires and not (asking and slot.asking_until > now):
            raise Refusal(
                "expired_token",
                f"Refused: the confirmation token expired "
                f"{int(now - claims.expires)} s ago (tokens last {int(self.ttl)} s). {again}",
            )
        return claims

    async def reserve(self, claims: Claims) -> bool:
        """Claim a checked token for one call's question, atomically; False when another call holds it
        (or it was used meanwhile). Held until consumed or released, at most one token lifetime past the
        token's expiry (a client that never comes back with the answer)."""
        return await self.store.reserve(claims.key, claims.expires + self.ttl, self._clock())

    async def release(self, claims: Claims) -> None:
        """The question was answered no: the token may be asked about again."""
        await self.store.release(claims.key)

    def being_asked(self, claims: Claims) -> bool:
        """Whether a call's question held the token when it was checked (the plan is not read again);
        `consume` still lets exactly one caller through."""
        return claims.asking_until > self._clock()

    async def consume(self, claims: Claims) -> Snapshot:
        """Burn a checked token, atomically across every process sharing the store: exactly one caller
        wins. Returns the previewed snapshot, its ids as they were stored (sorted, each once)."""
        ids = await self.store.consume(claims.key)
        if ids is None:
            raise Refusal("reused_token", f"{REUSED} Preview again for a new token.")
        return Snapshot(claims.totals, ordered=from_json(ids, cache_strings=False))


def describe_totals(totals: Mapping[str, int]) -> str:
    """Totals in a sentence; keys are quoted, since some are API values (collection names)."""
    return ", ".join(f"{quote(k)}={v}" for k, v in sorted(totals.items())) or "nothing"
