"""purgewarden: an MCP server for previewed, confirmed, audited data cleanups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["ApiError", "Settings", "create_app"]

if TYPE_CHECKING:
    from purgewarden.clients.errors import ApiError
    from purgewarden.config import Settings
    from purgewarden.server.app import create_app


def __getattr__(name: str) -> Any:
    # Lazy, so `purgewarden sandbox` and `--help` do not pay for importing the MCP SDK.
    if name == "create_app":
        from purgewarden.server.app import create_app

        return create_app
    if name == "Settings":
        from purgewarden.config import Settings

        return Settings
    if name == "ApiError":
        from purgewarden.clients.errors import ApiError

        return ApiError
    raise AttributeError(name)
