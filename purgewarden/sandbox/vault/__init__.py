"""Piiano Vault emulator: collections, objects in active/archived states, tokens, API keys with
capabilities and tenants, all-or-nothing bulk delete and the 10,000-item GC."""

from purgewarden.sandbox.vault.app import API_PREFIX, create_app, error_body
from purgewarden.sandbox.vault.seed import ACME_API_KEY, DELETER_API_KEY, DEMO_API_KEY, READER_API_KEY
from purgewarden.sandbox.vault.state import GC_LIMIT, MAX_PAGE_SIZE, VaultBackend, VaultError

__all__ = [
    "ACME_API_KEY",
    "API_PREFIX",
    "DELETER_API_KEY",
    "DEMO_API_KEY",
    "GC_LIMIT",
    "MAX_PAGE_SIZE",
    "READER_API_KEY",
    "VaultBackend",
    "VaultError",
    "create_app",
    "error_body",
]
