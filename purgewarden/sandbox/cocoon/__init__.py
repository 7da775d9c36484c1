"""Emulator of the Cocoon Data access-service's recycle-bin API (`/api/v1/...`); see `app.py` for its choices."""

from purgewarden.sandbox.cocoon.app import create_app, error_body
from purgewarden.sandbox.cocoon.seed import (
    COLLABORATOR_ACCESS_TOKEN,
    DEMO_ACCESS_TOKEN,
    DEMO_ORGANISATION_ID,
    OTHER_ORGANISATION_ACCESS_TOKEN,
    OTHER_ORGANISATION_ID,
    SECOND_ORIGINATOR_ACCESS_TOKEN,
)
from purgewarden.sandbox.cocoon.state import CocoonBackend, CocoonError, Item, ItemState, ItemType

__all__ = [
    "COLLABORATOR_ACCESS_TOKEN",
    "DEMO_ACCESS_TOKEN",
    "DEMO_ORGANISATION_ID",
    "OTHER_ORGANISATION_ACCESS_TOKEN",
    "OTHER_ORGANISATION_ID",
    "SECOND_ORIGINATOR_ACCESS_TOKEN",
    "CocoonBackend",
    "CocoonError",
    "Item",
    "ItemState",
    "ItemType",
    "create_app",
    "error_body",
]
