"""What the Vault tools share: the toolset, the client, argument types, and how API values are written.

Every string the Vault returns (collection names, ids, types, per-item errors, object values) is data:
in text it goes through `quote` (or `literal`, for any JSON value), and listings go inside `fence`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import AfterValidator, Field

from purgewarden.clients.errors import ApiError
from purgewarden.clients.vault import Reason, VaultClient
from purgewarden.safety.registry import Toolset
from purgewarden.safety.state import AppState
from purgewarden.safety.text import quote

toolset = Toolset("vault")

MAINTENANCE: Reason = "Maintenance"
"""The access reason of the reads and of garbage collection (which is maintenance by nature). Only the
object deletion tools take one: their purpose (e.g. an erasure request) belongs in the Vault's audit log,
and the ten-value enum costs bytes in every schema that has it."""

State = Literal["active", "archived"]


def _one_path_segment(name: str) -> str:
    """Refuses the names a URL would resolve away: `/collections/../count` is `/count`, another route."""
    if name in (".", ".."):
        raise ValueError(
            f'a collection cannot be named "{name}": in a URL it would address another route, not a '
            "collection. Call vault_list_collections for the collections' names."
        )
    return name


CollectionName = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_one_path_segment)]
ReasonParam = Annotated[Reason, Field(description="For the Vault's audit log; erasures: DataSubjectRequest")]
AdhocReason = Annotated[str, Field(max_length=500, description="Required with reason Other")]
StateParam = Annotated[State, Field(description="archived = soft-deleted objects")]


def vault_client(state: AppState) -> VaultClient:
    if state.vault is None:
        raise ToolError("Piiano Vault is not configured on this server (PVAULT_API_KEY).")
    return state.vault


# --- API values in text ---------------------------------------------------------------------------

KNOWN_TYPES = frozenset({"PERSONS", "DATA", "TOKENS", "TRANSACTION_IDS"})
"""The collection and garbage-collection types the Vault documents: shown as they are, anything else quoted."""


def kind(value: str) -> str:
    """A type the Vault reported (PERSONS, DATA, ...): a documented one as is, anything else quoted."""
    return value if value in KNOWN_TYPES else quote(value)


def literal(value: Any) -> str:
    """Any JSON value for text: strings (and lists, objects) quoted, numbers, booleans and null as JSON."""
    if isinstance(value, str):
        return quote(value)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return quote(json.dumps(value, ensure_ascii=False, default=str))


def ids_text(ids: list[str]) -> str:
    """A few ids (which come from the API) for text: each quoted."""
    return ", ".join(quote(i) for i in ids)


def failure(error: ApiError) -> str:
    """What went wrong with one request, in a few words (API codes quoted), for per-batch reasons."""
    if error.kind == "timeout":
        return "no answer came in time"
    if error.kind == "connection":
        return "the connection broke" if error.sent else "the connection could not be made"
    if error.kind == "malformed":
        return "the answer could not be read"
    if error.kind == "invalid_request":
        return "the request could not be sent"
    code = f" {quote(error.code)}" if error.code else ""
    return f"HTTP {error.status}{code}"
