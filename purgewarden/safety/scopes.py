"""What an OAuth caller may do: the scopes each kind of tool needs, and who a token speaks for.

`purgewarden:read` lists, reads and previews; `purgewarden:delete` (or `purgewarden:delete:<service>`) carries
out destructive tools; stopping a run of any service needs `purgewarden:delete`. Without OAuth (stdio, a
static bearer token) there is no access token, and every served tool is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

READ = "purgewarden:read"
DELETE = "purgewarden:delete"


def service_scope(service: str) -> str:
    return f"{DELETE}:{service}"


def scopes_supported(destructive_services: Iterable[str]) -> list[str]:
    """What the protected resource metadata advertises, so that clients ask for all of it (the
    authorization server decides what each caller is granted)."""
    services = list(dict.fromkeys(destructive_services))
    return [READ, *([DELETE] if services else []), *(service_scope(s) for s in services)]


def missing_scope(kind: str, service: str, scopes: Iterable[str]) -> str | None:
    """The scope a tool of this kind and service needs that `scopes` lack, in words; None: allowed.

    read, preview: `purgewarden:read`. destructive: `purgewarden:delete` or `purgewarden:delete:<service>`.
    control (stopping a run of any service): `purgewarden:delete`.
    """
    held = set(scopes)
    if kind in ("read", "preview"):
        return None if READ in held else READ
    if kind == "destructive":
        return None if {DELETE, service_scope(service)} & held else f"{DELETE} (or {service_scope(service)})"
    return None if DELETE in held else DELETE


def caller_lacks(kind: str, service: str) -> str | None:
    """The scope this request's caller lacks for such a tool; None when allowed or not over OAuth."""
    token = get_access_token()
    return None if token is None else missing_scope(kind, service, token.scopes)


def principal_of(token: AccessToken | None) -> str | None:
    """Who the token speaks for: its subject (the resource owner), else the client it was issued to."""
    if token is None:
        return None
    return token.subject or token.client_id
