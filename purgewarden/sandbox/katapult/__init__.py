"""Emulator of the Katapult Core API v1: the routes under `/core/v1`, an in-memory backend, demo data.

`app.py` lists the behaviours chosen where Katapult's documentation is silent; `seed.py` the demo
organizations, buckets and tokens.
"""

from purgewarden.sandbox.katapult.app import API_PREFIX, create_app, error_body
from purgewarden.sandbox.katapult.seed import (
    DEMO_TOKEN,
    GLOBEX_TOKEN,
    INITECH_TOKEN,
    NO_PURGE_TOKEN,
    OAUTH_TOKEN,
    OFFICE_ONLY_TOKEN,
    READ_ONLY_TOKEN,
    UMBRELLA_TOKEN,
)
from purgewarden.sandbox.katapult.state import KatapultBackend

__all__ = [
    "API_PREFIX",
    "DEMO_TOKEN",
    "GLOBEX_TOKEN",
    "INITECH_TOKEN",
    "NO_PURGE_TOKEN",
    "OAUTH_TOKEN",
    "OFFICE_ONLY_TOKEN",
    "READ_ONLY_TOKEN",
    "UMBRELLA_TOKEN",
    "KatapultBackend",
    "create_app",
    "error_body",
]
