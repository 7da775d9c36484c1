"""OAuth 2.1 resource server for the HTTP transports: who is calling, and what their token lets them do.

The SDK does the protocol: it requires a bearer token on the MCP endpoint, answers 401 with the
`WWW-Authenticate: Bearer … resource_metadata=…` challenge and serves the protected resource metadata
(RFC 9728). This module supplies what it cannot know:

- a `TokenVerifier`: JWT access tokens checked against the issuer's keys (found through its metadata:
  RFC 8414 or OpenID discovery), or each token asked about at the issuer's introspection endpoint
  (RFC 7662), which also catches revoked tokens;
- the scopes: `purgewarden:read` (read and preview tools, following runs) is required on every request,
  `purgewarden:delete` gives every destructive tool and stopping runs, `purgewarden:delete:<service>`
  one service's destructive tools;
- the principal: the token's subject, else its client id, which plans, runs and audit lines carry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl

from purgewarden.config import Settings
from purgewarden.safety.scopes import READ

if TYPE_CHECKING:
    from jwt import PyJWKSet

logger = logging.getLogger("purgewarden.auth")

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"}
)
"""Signatures an access token may carry: the issuer's public keys verify them. `none` and the HMAC
algorithms (a key shared with the issuer) are never accepted."""
KEYS_REFRESH_SECONDS = 30.0
"""An unknown key id fetches the issuer's keys again (a rotation), at most this often."""
KEYS_LIFETIME_SECONDS = 3600.0
"""Keys are fetched again after this long even when every key id is known (a key withdrawn)."""
HTTP_TIMEOUT = 10.0


# --- configuration ---------------------------------------------------------------------------------


def oauth_of(settings: Settings) -> tuple[AuthSettings, TokenVerifier] | None:
    """The SDK's auth settings and the token verifier for these settings; None without an issuer.

    Every request to the MCP endpoint needs a valid token for this resource carrying `purgewarden:read`;
    the tools a caller sees and may call depend on its other scopes. `Settings` has already checked that
    the audience is set and that introspection has its client credentials.
    """
    issuer = settings.oauth_issuer
    audience = settings.oauth_audience
    if issuer is None or audience is None:
        return None
    verifier: TokenVerifier
    if settings.oauth_introspection_url is not None:
        secret = settings.oauth_client_secret
        verifier = IntrospectionVerifier(
            settings.oauth_introspection_url,
            client_id=settings.oauth_client_id or "",
            client_secret=secret.get_secret_value() if secret is not None else "",
            issuer=issuer,
            audience=audience,
        )
    else:
        verifier = JwtVerifier(issuer=issuer, audience=audience)
    # From strings, so that AuthSettings keeps a path-less issuer without a trailing slash: issuers are
    # compared as strings, and the metadata must name the issuer exactly as its tokens do.
    auth = AuthSettings.model_validate(
        {
            "issuer_url": issuer,
            "resource_server_url": audience,
            "required_scopes": [READ],
            "validate_token_resource": True,
        }
    )
    return auth, verifier


def same_resource(a: str, b: str) -> bool:
    """Resource URLs compared as the SDK compares them: as URLs, a trailing slash aside."""
    try:
        return str(AnyHttpUrl(a)).removesuffix("/") == str(AnyHttpUrl(b)).removesuffix("/")
    except ValueError:
        return False


def audience_match(aud: object, audience: str) -> str | None:
    """The entry of a token's `aud` (a string or a list) that is this server's resource URL."""
    entries = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    return next((e for e in entries if isinstance(e, str) and same_resource(e, audience)), None)


def scopes_of(claims: Mapping[str, Any]) -> list[str]:
    """`scope` (RFC 9068, RFC 7662: space-separated), or `scp` (a list or a string, as some issuers write)."""
    value = claims.get("scope", claims.get("scp"))
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [s for s in value if isinstance(s, str)]
    return []


class HttpVerifier:
    """One pooled HTTP client per verifier, made on first use (inside the server's event loop)."""

    _http: httpx2.AsyncClient | None = None

    @property
    def http(self) -> httpx2.AsyncClient:
        if self._http is None:
            self._http = httpx2.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False)
        return self._http


class JwtVerifier(HttpVerifier):
    """JWT access tokens (RFC 9068) signed by the issuer: signature against its published keys, `iss`,
    `aud` (this server's resource URL) and `exp`. A JWT stays valid until it expires: revoking it at the
    issuer does not reach this server (introspection does)."""

    def __init__(self, *, issuer: str, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self._jwks_uri: str | None = None
        self._keys: PyJWKSet | None = None
        self._fetched = 0.0
        self._lock = anyio.Lock()

    async def verify_token(self, token: str) -> AccessToken | None:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            logger.info("access token refused: not a JWT")
            return None
        algorithm = header.get("alg")
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            logger.info("access token refused: signature algorithm %r is not accepted", algorithm)
            return None
        try:
            key = await self._key(str(header.get("kid") or ""))
        except (httpx2.HTTPError, ValueError, jwt.PyJWTError) as error:
            logger.warning("access token refused: the issuer's keys could not be read: %s", error)
            return None
        if key is None:
            logger.info("access token refused: signed with a key the issuer does not publish")
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "iss", "aud"], "strict_aud": False},
            )
        except jwt.PyJWTError as error:
            logger.info("access token refused: %s", error)
            return None
        return access_token(token, claims, self.audience)

    async def _key(self, kid: str) -> Any:
        """The issuer's key with this id (the only key when the token names none)."""
        async with self._lock:
            now = time.monotonic()
            stale = self._keys is None or now - self._fetched > KEYS_LIFETIME_SECONDS
            if stale or (self._find(kid) is None and now - self._fetched > KEYS_REFRESH_SECONDS):
                await self._fetch_keys()
            return self._find(kid)

    def _find(self, kid: str) -> Any:
        if self._keys is None:
            return None
        usable = [k for k in self._keys.keys if k.public_key_use in (None, "sig")]
        if not kid:
            return usable[0].key if len(usable) == 1 else None
        return next((k.key for k in usable if k.key_id == kid), None)

    async def _fetch_keys(self) -> None:
        from jwt import PyJWKSet

        if self._jwks_uri is None:
            self._jwks_uri = await self._discover()
        response = await self.http.get(self._jwks_uri)
        response.raise_for_status()
        self._keys = PyJWKSet.from_dict(response.json())
        self._fetched = time.monotonic()

    async def _discover(self) -> str:
        """`jwks_uri` from the issuer's metadata: RFC 8414's well-known URL, else OpenID discovery's."""
        for url in metadata_urls(self.issuer):
            response = await self.http.get(url)
            if response.status_code != 200:
                continue
            metadata = response.json()
            if metadata.get("issuer") != self.issuer:
                raise ValueError(f"the metadata at {url} is for issuer {metadata.get('issuer')!r}")
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise ValueError(f"the metadata at {url} has no jwks_uri")
            return jwks_uri
        raise ValueError(f"no authorization server metadata found for {self.issuer}")


def metadata_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata may be: RFC 8414 §3.1 (the well-known part before the issuer's path),
    then OpenID Connect Discovery (after it)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    origin = f"{parts.scheme}://{parts.netloc}"
    return [
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}{path}/.well-known/openid-configuration",
    ]


class IntrospectionVerifier(HttpVerifier):
    """Each token asked about at the issuer's introspection endpoint (RFC 7662), authenticated as this
    server's client: an opaque or revoked token is refused as soon as the issuer says it is not active."""

    def __init__(self, url: str, *, client_id: str, client_secret: str, issuer: str, audience: str) -> None:
        self.url = url
        self.auth = (client_id, client_secret)
        self.issuer = issuer
        self.audience = audience

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            response = await self.http.post(
                self.url,
                data={"token": token, "token_type_hint": "access_token"},
                auth=self.auth,
                headers={"Accept": "application/json"},
            )
            response.raise_for_status()
            claims = response.json()
        except (httpx2.HTTPError, ValueError) as error:
            logger.warning("access token refused: introspection failed: %s", error)
            return None
        if not isinstance(claims, dict) or claims.get("active") is not True:
            logger.info("access token refused: the issuer says it is not active")
            return None
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp < time.time():
            logger.info("access token refused: expired")
            return None
        if "iss" in claims and claims["iss"] != self.issuer:
            logger.info("access token refused: issued by %r", claims["iss"])
            return None
        return access_token(token, claims, self.audience)


def access_token(token: str, claims: Mapping[str, Any], audience: str) -> AccessToken | None:
    """The SDK's view of a verified token, or None when it is not for this server or names nobody."""
    resource = audience_match(claims.get("aud"), audience)
    if resource is None:
        logger.info("access token refused: its audience %r is not %s", claims.get("aud"), audience)
        return None
    subject = claims.get("sub") if isinstance(claims.get("sub"), str) else None
    client_id = claims.get("client_id", claims.get("azp"))
    client_id = client_id if isinstance(client_id, str) else subject
    if client_id is None:
        logger.info("access token refused: it names neither a subject nor a client")
        return None
    exp = claims.get("exp")
    return AccessToken(
        token=token,
        client_id=client_id,
        scopes=scopes_of(claims),
        expires_at=int(exp) if isinstance(exp, int | float) else None,
        resource=resource,
        subject=subject,
        claims=dict(claims),
    )
