"""The safety model: plans, confirmation tokens bound to them, the re-check, and the human in the loop.

A preview reads the state and returns a plan with a `confirmation_token`: an HMAC-signed, single-use,
expiring handle bound to the destructive tool, its canonical arguments, a fingerprint of the
credential and a digest of the previewed state. The destructive tool redeems it, asks the human
(when the client can elicit), re-reads the state and refuses if the blast radius grew.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal, TypeVar

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, Elicit
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from purgewarden.safety.audit import AuditLog
from purgewarden.safety.text import PlanOutput

PlanT = TypeVar("PlanT", bound=PlanOutput)
TOKEN_PREFIX = "pwc1"
MAX_REMEMBERED_PLANS = 512


class Refusal(ToolError):
    """A destructive call that was not carried out; `reason` is a short code for the audit log."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Snapshot:
    """What a plan would destroy: totals (items, bytes, per-kind counts) and, where there are any, the ids."""

    totals: Mapping[str, int]
    members: frozenset[str] = frozenset()

    @cached_property
    def ordered(self) -> tuple[str, ...]:
        """The members sorted: what the digest hashes, and an order to act on them in."""
        return tuple(sorted(self.members))

    @cached_property
    def digest(self) -> str:
        h = hashlib.sha256(json.dumps(dict(sorted(self.totals.items()))).encode())
        for member in self.ordered:
            h.update(b"\0" + member.encode())
        return h.hexdigest()[:32]


Verdict = Literal["same", "shrunk", "grown"]


def compare(
    planned_totals: Mapping[str, int],
    planned_digest: str,
    planned_members: frozenset[str] | None,
    current: Snapshot,
) -> Verdict:
    """How the state moved since the preview. Anything that cannot be shown to be smaller counts as grown.

    `current.members` may be the planned ids themselves with smaller totals: a re-check that counted the
    state but did not list it again (what is acted on is then still at most the planned ids).
    """
    if planned_members is None:
        if current.digest == planned_digest:
            return "same"
    elif dict(current.totals) == dict(planned_totals) and current.members == planned_members:
        return "same"  # what the planned digest covers, compared without hashing every id
    if any(current.totals.get(k, 0) > planned_totals.get(k, 0) for k in current.totals):
        return "grown"
    if current.members and (planned_members is None or not current.members <= planned_members):
        return "grown"
    return "shrunk"


class Claims(BaseModel):
    tool: str
    args: str
    credential: str
    state: str
    totals: dict[str, int]
    summary: str
    expires: float
    nonce: str


@dataclass
class Issued:
    token: str
    expires_at: str


def canonical(arguments: Mapping[str, Any]) -> str:
    """A digest of the arguments that decide what gets destroyed, independent of key order."""
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Confirmations:
    """Issues and redeems confirmation tokens; remembers used nonces and previewed id sets in memory."""

    def __init__(self, key: bytes | None, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self._key = key or secrets.token_bytes(32)
        self.ttl = ttl
        self._clock = clock
        self._used: dict[str, float] = {}
        self._plans: OrderedDict[str, Snapshot] = OrderedDict()
        """Previewed snapshots with members, by nonce (the token carries only their digest)."""
        self._lock = threading.Lock()

    def issue(
        self, tool: str, arguments: Mapping[str, Any], credential: str, snapshot: Snapshot, summary: str
    ) -> Issued:
        expires = self._clock() + self.ttl
        claims = Claims(
            tool=tool,
            args=canonical(arguments),
            credential=credential,
            state=snapshot.digest,
            totals=dict(snapshot.totals),
            summary=summary,
            expires=expires,
            nonce=secrets.token_urlsafe(12),
        )
        if snapshot.members:
            with self._lock:
                self._plans[claims.nonce] = snapshot
                while len(self._plans) > MAX_REMEMBERED_PLANS:
                    self._plans.popitem(last=False)
        payload = _b64(claims.model_dump_json().encode())
        token = f"{TOKEN_PREFIX}.{payload}.{self._sign(payload)}"
        return Issued(
            token=token, expires_at=datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds")
        )

    def peek(self, token: str) -> Claims | None:
        """The claims of a well-formed, correctly signed token, or None; checks nothing else."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            return None
        if not hmac.compare_digest(self._sign(parts[1]), parts[2]):
            return None
        try:
            return Claims.model_validate_json(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            return None

    def redeem(
        self, token: str, *, tool: str, preview_tool: str, arguments: Mapping[str, Any], credential: str
    ) -> tuple[Claims, Snapshot | None]:
        """Check every binding and burn the token; returns its claims and, if this server still holds it,
        the previewed snapshot with its members. Raises `Refusal` saying what is wrong and what to do."""
        again = (
            f"Call {preview_tool} with the arguments you intend to use, show the plan to the user, "
            f"then call {tool} with confirm set to the new confirmation_token."
        )
        claims = self.peek(token.strip())
        if claims is None:
            if not token.strip():
                raise Refusal("missing_token", f"Refused: {tool} needs a confirmation token. {again}")
            raise Refusal(
                "invalid_token",
                "Refused: the confirmation token is malformed, altered, or was not "
                f"issued by this server. {again}",
            )
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
        if claims.args != canonical(arguments):
            raise Refusal(
                "wrong_arguments",
                "Refused: the confirmation token was issued for different arguments "
                f"(another target or selection). {again}",
            )
        now = self._clock()
        if now >= claims.expires:
            raise Refusal(
                "expired_token",
                f"Refused: the confirmation token expired "
                f"{int(now - claims.expires)} s ago (tokens last {int(self.ttl)} s). {again}",
            )
        with self._lock:
            self._used = {n: t for n, t in self._used.items() if t > now}
            if claims.nonce in self._used:
                raise Refusal(
                    "reused_token",
                    f"Refused: this confirmation token was already used; each token works once. {again}",
                )
            self._used[claims.nonce] = claims.expires
            planned = self._plans.pop(claims.nonce, None)
        return claims, planned

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- the human in the loop -----------------------------------------------------------------------


class HumanApproval(BaseModel):
    """What the user is asked: a single yes/no (elicitation allows flat primitive fields only)."""

    approve: bool = Field(description="Yes, permanently carry this out. It cannot be undone.")


class NotAsked(BaseModel):
    """The resolver's answer when the user could not be asked (no elicitation, or an unusable token)."""

    why: str


async def ask_human(ctx: Context, confirm: str) -> HumanApproval | NotAsked | Elicit[HumanApproval]:
    """Resolver for every destructive tool: asks the user to approve the signed plan summary."""
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.elicitation is None:
        return NotAsked(why="client cannot elicit")
    lifespan: Any = ctx.request_context.lifespan_context  # AppState; typed loosely to avoid an import cycle
    confirmations: Confirmations = lifespan.confirmations
    claims = confirmations.peek(confirm.strip())
    if claims is None:
        return NotAsked(why="token unusable")
    return Elicit(f"{claims.summary} This cannot be undone. Approve?", HumanApproval)


HumanAnswer = ElicitationResult[HumanApproval | NotAsked]


def human_refusal(answer: HumanAnswer, *, require_human: bool, tool: str) -> Refusal | None:
    """None when the call may go ahead as far as the human is concerned."""
    if isinstance(answer, AcceptedElicitation):
        data = answer.data
        if isinstance(data, NotAsked):
            if require_human and data.why == "client cannot elicit":
                return Refusal(
                    "human_required",
                    f"Refused: this server runs with --require-human and this client "
                    f"cannot ask the user to approve {tool} (no elicitation support). "
                    "Use a client that supports elicitation, or ask the operator.",
                )
            return None
        if data.approve:
            return None
        return Refusal(
            "human_declined",
            "Refused: the user did not approve the operation. Nothing was deleted. "
            "Ask the user what they want to do instead.",
        )
    return Refusal(
        "human_declined",
        f"Refused: the user {'declined' if answer.action == 'decline' else 'cancelled'} the confirmation "
        "prompt. Nothing was deleted. Ask the user what they want to do instead.",
    )


# --- the preview → confirm → re-check flow shared by every destructive tool ----------------------


@dataclass
class Approval:
    """A destructive call that passed every check; `snapshot` is the state it may act on."""

    snapshot: Snapshot
    verdict: Verdict
    planned_totals: dict[str, int]
    planned_members: frozenset[str] | None = None
    notes: list[str] = field(default_factory=list)


def describe_totals(totals: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(totals.items())) or "nothing"


class Guard:
    """The checks every destructive tool runs before it touches anything, with their audit lines."""

    def __init__(self, confirmations: Confirmations, audit: AuditLog, *, require_human: bool) -> None:
        self.confirmations = confirmations
        self.audit = audit
        self.require_human = require_human

    def plan(
        self,
        output: type[PlanT],
        *,
        tool: str,
        arguments: Mapping[str, Any],
        credential: str,
        snapshot: Snapshot,
        summary: str,
        warnings: Sequence[str] = (),
        **fields: Any,
    ) -> PlanT:
        """A preview's result: the plan's common fields and token, plus the tool's own `fields`."""
        issued = self._issue(
            tool=tool, arguments=arguments, credential=credential, snapshot=snapshot, summary=summary
        )
        return output(
            summary=summary,
            totals=dict(snapshot.totals),
            warnings=list(warnings),
            confirmation_token=issued.token,
            expires_at=issued.expires_at,
            **fields,
        )

    def _issue(
        self, *, tool: str, arguments: Mapping[str, Any], credential: str, snapshot: Snapshot, summary: str
    ) -> Issued:
        """Issue a plan's token, and audit the preview."""
        issued = self.confirmations.issue(tool, arguments, credential, snapshot, summary)
        self.audit.record(
            "preview",
            tool=tool,
            target=dict(arguments),
            plan_digest=snapshot.digest,
            counts=dict(snapshot.totals),
            credential=credential,
        )
        return issued

    async def approve(
        self,
        *,
        tool: str,
        preview_tool: str,
        arguments: Mapping[str, Any],
        credential: str,
        confirm: str,
        human: HumanAnswer,
        current: Callable[[], Awaitable[Snapshot]],
        summarize: Callable[[Snapshot], str],
        recheck: Callable[[Snapshot], Awaitable[Snapshot | None]] | None = None,
    ) -> Approval:
        """Redeem the token, honour the human's answer, re-read the state and compare it with the plan.

        `recheck`, given the previewed snapshot with its members (when this server still holds it), may
        re-read the state more cheaply than `current`; it returns None when it cannot show the state did
        not grow.
        """
        claims, planned = self.confirmations.redeem(
            confirm, tool=tool, preview_tool=preview_tool, arguments=arguments, credential=credential
        )
        refusal = human_refusal(human, require_human=self.require_human, tool=tool)
        if refusal is not None:
            raise refusal
        members = planned.members if planned is not None else None
        snapshot = await recheck(planned) if recheck is not None and planned is not None else None
        if snapshot is None:
            snapshot = await current()
        verdict = compare(claims.totals, claims.state, members, snapshot)
        if verdict != "grown":
            self.audit.record(
                "confirmed",
                durable=True,
                tool=tool,
                target=dict(arguments),
                plan_digest=claims.state,
                counts=dict(snapshot.totals),
                verdict=verdict,
                credential=credential,
            )
            notes = []
            if verdict == "shrunk":
                notes.append(
                    f"The state shrank since the preview (planned {describe_totals(claims.totals)}; now "
                    f"{describe_totals(snapshot.totals)}); only what still exists was acted on."
                )
            return Approval(snapshot, verdict, claims.totals, members, notes)
        summary = summarize(snapshot)
        fresh = self._issue(
            tool=tool, arguments=arguments, credential=credential, snapshot=snapshot, summary=summary
        )
        raise Refusal(
            "state_grew",
            (
                f"Refused: the state changed since the preview and the operation would now destroy more than the user "
                f"approved (planned {describe_totals(claims.totals)}; now {describe_totals(snapshot.totals)}). "
                f"Nothing was deleted. New plan: {summary} Show the user this new plan; if they approve it, call {tool} "
                f'again with the same arguments and confirm="{fresh.token}" (expires {fresh.expires_at}).'
            ),
        )
