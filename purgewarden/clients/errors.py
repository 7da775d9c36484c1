"""The one error type every API client raises.

    ApiError                      any failed call to Katapult, Vault or Cocoon
      kind="response"             the API answered with a non-2xx status (code/message from its body)
      kind="timeout"              no answer in time: the request may or may not have been carried out
      kind="connection"           the connection failed or broke; `sent` says whether the request left

It is data only: `safety/errors.py` turns it into words for the model, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ErrorKind = Literal["response", "timeout", "connection"]


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
    """False only when the request provably never reached the API (connect failed)."""

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
        """True when the API guarantees nothing happened, so even a destructive call may be re-sent."""
        if self.kind == "connection":
            return not self.sent
        # 429 and Katapult's service_unavailable both mean the request was turned away before any work.
        return self.kind == "response" and (self.status == 429 or self.code == "service_unavailable")

    @property
    def retryable(self) -> bool:
        """True for failures worth another try after a pause (for reads; writes also need `not_carried_out`)."""
        return self.kind != "response" or self.status in (429, 503, 504)
