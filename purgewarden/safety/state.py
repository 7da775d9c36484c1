"""What the server holds for its lifetime, handed to tools through the lifespan context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from purgewarden.config import Settings
from purgewarden.safety.audit import AuditLog
from purgewarden.safety.plans import Confirmations
from purgewarden.safety.redact import Redactor

if TYPE_CHECKING:
    from purgewarden.clients.cocoon import CocoonClient
    from purgewarden.clients.katapult import KatapultClient
    from purgewarden.clients.vault import VaultClient


@dataclass
class AppState:
    settings: Settings
    redactor: Redactor
    audit: AuditLog
    confirmations: Confirmations
    katapult: KatapultClient | None = None
    vault: VaultClient | None = None
    cocoon: CocoonClient | None = None
