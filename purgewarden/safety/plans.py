"""Plans and the confirmation tokens bound to them, and how a re-read state compares with a plan.

A preview's `confirmation_token` is an HMAC-signed, single-use, expiring handle bound to the
destructive tool, its canonical arguments, a fingerprint of the credential and a digest of the
previewed state. `check` verifies every binding without consuming it (so the human is asked only
about a token that will be honoured); `consume` burns it, once.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

from purgewarden.safety.text import quote

TOKEN_PREFIX = "pwc1"
MAX_REMEMBERED_PLANS = 512
REUSED = "Refused: this confirmation token was already used; each token works once."


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
            encoded = member.encode()
            h.update(len(encoded).to_bytes(4, "big") + encoded)  # length-prefixed: no id can pose as two
        return h.hexdigest()[:32]


Verdict = Literal["same", "shrunk", "grown"]


def compare(planned: Snapshot | None, planned_digest: str, current: Snapshot) -> Verdict:
    """How the state moved since the preview. Anything that cannot be shown to be smaller counts as grown.

    `planned` is the previewed snapshot when this server still holds it; without it only the digest
    can be compared, and any change counts as grown. `current.members` may be the planned ids
    themselves with smaller totals: a re-check that counted the state but did not list it again.
    """
    if planned is None:
        return "same" if current.digest == planned_digest else "grown"
    if planned.members:
        if dict(current.totals) == dict(planned.totals) and current.members == planned.members:
            return "same"  # what the planned digest covers, compared without hashing every id
    elif current.digest == planned_digest:
        return "same"
    if any(current.totals.get(k, 0) > planned.totals.get(k, 0) for k in current.totals):
        return "grown"
    if current.members and not current.members <= planned.members:
        return "grown"
    return "shrunk"


class Claims(BaseModel):
    """What a token carries. The plan's totals and ids stay on the server: the token stays short."""

    tool: str
    args: str
    credential: str
    state: str
    size: int
    """The plan's blast radius in items (for the typed confirmation and the operator's cap)."""
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
        self._asking: dict[str, float] = {}
        """Tokens whose human is being asked by one call, by nonce: no other call may ask about them."""
        self._plans: OrderedDict[str, Snapshot] = OrderedDict()
        """Previewed snapshots, by nonce (the token carries only their digest)."""
        self._lock = threading.Lock()

    def issue(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        credential: str,
        snapshot: Snapshot,
        summary: str,
        size: int,
    ) -> Issued:
        expires = self._clock() + self.ttl
        claims = Claims(
            tool=tool,
            args=canonical(arguments),
            credential=credential,
            state=snapshot.digest,
            size=size,
            summary=summary,
            expires=expires,
            nonce=secrets.token_urlsafe(12),
        )
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

    def check(
        self,
        token: str,
        *,
        tool: str,
        preview_tool: str,
        arguments: Mapping[str, Any],
        credential: str,
        asking: bool = False,
    ) -> Claims:
        """Every binding of the token, without consuming it: authentic, unexpired, this tool, these
        arguments, this credential, not used. Raises `Refusal` saying what is wrong and what to do.

        `asking`: the caller asked the human about this token; while that question holds the token
        (see `reserve`), an expiry that passed during the question does not refuse it."""
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
        if now >= claims.expires and not (asking and self.being_asked(claims)):
            raise Refusal(
                "expired_token",
                f"Refused: the confirmation token expired "
                f"{int(now - claims.expires)} s ago (tokens last {int(self.ttl)} s). {again}",
            )
        with self._lock:
            if claims.nonce in self._used:
                raise Refusal("reused_token", f"{REUSED} {again}")
        return claims

    def reserve(self, claims: Claims) -> bool:
        """Claim a checked token for one call's question, atomically; False when another call holds it
        (or it was used meanwhile). Held until consumed or released, at most one token lifetime past the
        token's expiry (a client that never comes back with the answer)."""
        now = self._clock()
        with self._lock:
            self._asking = {n: t for n, t in self._asking.items() if t > now}
            if claims.nonce in self._asking or claims.nonce in self._used:
                return False
            self._asking[claims.nonce] = claims.expires + self.ttl  # an answer may take its time
            return True

    def release(self, claims: Claims) -> None:
        """The question was answered no: the token may be asked about again."""
        with self._lock:
            self._asking.pop(claims.nonce, None)

    def being_asked(self, claims: Claims) -> bool:
        with self._lock:
            return self._asking.get(claims.nonce, 0.0) > self._clock()

    def consume(self, claims: Claims) -> Snapshot | None:
        """Burn a checked token, atomically: exactly one caller wins. Returns the previewed snapshot
        when this server still holds it."""
        now = self._clock()
        with self._lock:
            self._used = {n: t for n, t in self._used.items() if t > now}
            if claims.nonce in self._used:
                raise Refusal("reused_token", f"{REUSED} Preview again for a new token.")
            self._used[claims.nonce] = claims.expires
            self._asking.pop(claims.nonce, None)
            return self._plans.pop(claims.nonce, None)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def describe_totals(totals: Mapping[str, int]) -> str:
    """Totals in a sentence; keys are quoted, since some are API values (collection names)."""
    return ", ".join(f"{quote(k)}={v}" for k, v in sorted(totals.items())) or "nothing"
