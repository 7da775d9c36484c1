"""The one error type every API client raises.

    ApiError                      any failed call to Katapult, Vault or Cocoon
      kind="response"             the API answered with a non-2xx status (code/message from its body)
      kind="timeout"              no answer in time: the request may or may not have been carried out
      kind="connection"           the connection failed or broke; `sent` says whether the request left
      kind="malformed"            a success status with a body that is not JSON or not of the expected shape
      kind="invalid_request"      the request could not be built or was refused here, so it was never sent

Whether the request it answers was carried out is one rule, `fate`, with three answers.

It is data only: `safety/errors.py` turns it into words for the model, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ErrorKind = Literal["response", "timeout", "connection", "malformed", "invalid_request"]
Fate = Literal["carried_out", "not_carried_out", "unknown"]


@dataclass
class ApiError(Exception):
    """A call to a vendor API that did not succeed."""

    service: str
    operation: str
    kind: ErrorKind
    status: int | None = None
    code: str | None = None
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    retry_after: float | None = None
    sent: bool = True
    """False only when the request provably never reached the API (connect failed, or never sent)."""

    def __post_init__(self) -> None:
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        where = f"{self.service} {self.operation}"
        if self.kind != "response":
            return f"{where}: {self.kind} error: {self.message}"
        return f"{where}: HTTP {self.status} {self.code or ''} {self.message}".rstrip()

    @property
    def not_carried_out(self) -> bool:
        return self.fate == "not_carried_out"

    @property
    def fate(self) -> Fate:
        """Whether the request this error answers was carried out: "not_carried_out" or "unknown".

        A refusal (4xx, 429, Katapult's service_unavailable, a connection that never opened, a request
        never sent) proves nothing happened. A lost answer, a server error or an unreadable success body
        proves nothing either way: only a read-back can tell, and even that may come before a late execution.
        """
        if self.kind == "invalid_request":
            return "not_carried_out"
        if self.kind == "connection":
            return "unknown" if self.sent else "not_carried_out"
        if self.kind != "response":
            return "unknown"
        refused = (self.status or 500) < 500 or self.code == "service_unavailable"
        return "not_carried_out" if refused else "unknown"

    @property
    def retryable(self) -> bool:
        """True for failures worth another try after a pause (for reads; writes also need `not_carried_out`).

        Not a request that cannot be sent, nor an answer that cannot be read: the same call would fail alike.
        """
        return self.kind in ("timeout", "connection") or self.status in (429, 503, 504)


def fate(error: ApiError | None) -> Fate:
    """The one answer to "did it happen?" for a call that ended with `error` (None: it succeeded)."""
    return "carried_out" if error is None else error.fate
