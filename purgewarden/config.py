"""Settings from the environment (and CLI flags), read once at start-up.

The variables read are exactly those in `ENVIRONMENT` (and the README's configuration table, which a
test keeps equal to it): the vendors' own names for their credentials and URLs, `PURGEWARDEN_*` for ours.
Nothing is guessed from field names, so a documented variable cannot silently go unread.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Mapping, Set
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, ValidationInfo, field_validator

Service = Literal["katapult", "vault", "cocoon"]
ALL_TOOLSETS: tuple[Service, ...] = ("katapult", "vault", "cocoon")


def default_state_dir() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "purgewarden"


class Settings(BaseModel):
    """Everything the server needs to know; secrets are `SecretStr` so they never print by accident."""

    katapult_api_url: str = "https://api.katapult.io"
    katapult_api_token: SecretStr | None = None
    pvault_url: str = "http://localhost:8123"
    pvault_api_key: SecretStr | None = None
    pvault_max_page_size: int = Field(1000, ge=1, le=10_000)
    cocoon_access_service_url: str | None = None
    cocoon_access_token: SecretStr | None = None
    cocoon_organisation_id: str | None = None

    toolsets: tuple[Service, ...] = ALL_TOOLSETS
    read_only: bool = False
    require_human: bool = False
    secret: SecretStr | None = Field(
        None, description="HMAC key for confirmation tokens; random per process if unset"
    )
    confirmation_ttl: float = Field(300.0, gt=0)
    typed_confirmation_over: int = Field(
        1000, ge=0, description="Plans destroying more items make the human type the target or the count"
    )
    max_items: int | None = Field(None, ge=0, description="Plans destroying more items cannot be confirmed")
    state_dir: Path = Field(
        default_factory=default_state_dir, description="The audit log and the embedded store live here"
    )
    audit_log: Path = Field(None, validate_default=True, description="Default: state_dir/audit.jsonl")
    store_url: str | None = Field(
        None, description="redis://… for replicas; default: the SQLite file state_dir/purgewarden.db"
    )
    follow_seconds: float = Field(
        40.0, gt=0, description="How long a destructive tool follows its run before answering `running`"
    )
    http_token: SecretStr | None = Field(None, description="Bearer token required on the MCP HTTP endpoint")
    allowed_hosts: tuple[str, ...] = Field((), description="Host headers accepted over HTTP off loopback")
    log_level: str = "WARNING"
    log_format: Literal["text", "json"] = Field("text", description="stderr log lines: text, or JSON lines")

    http_timeout: float = Field(30.0, gt=0)
    retry_attempts: int = Field(5, ge=1)
    retry_base_delay: float = Field(0.5, ge=0)
    vault_delete_concurrency: int = Field(
        32,
        ge=1,
        le=64,
        description="Most bulk deletes in flight; how many below it is learned from the Vault",
    )
    katapult_page_concurrency: int = Field(
        16,
        ge=1,
        le=32,
        description="Most Katapult reads in flight; how many below it is learned from Katapult",
    )
    katapult_task_poll_interval: float = Field(1.0, gt=0)
    watch_interval: float = Field(
        1.0, gt=0, description="Seconds between looks at the state while an empty-everything call runs"
    )
    oauth_audience: str | None = Field(
        None, description="This server's resource URL as clients reach it: the audience its OAuth tokens name"
    )
    oauth_introspection_url: str | None = Field(
        None, description="Ask the issuer about each token (RFC 7662) instead of verifying JWTs locally"
    )
    oauth_client_id: str | None = Field(
        None, description="This server's client id at the introspection endpoint"
    )
    oauth_client_secret: SecretStr | None = Field(None, description="Its client secret")
    oauth_issuer: str | None = Field(
        None, validate_default=True, description="OAuth authorization server whose access tokens are required"
    )
    """Last of the OAuth settings: its validator checks them together."""

    @field_validator("audit_log", mode="before")
    @classmethod
    def _audit_log_in_the_state_dir(cls, value: Any, info: ValidationInfo) -> Any:
        return info.data["state_dir"] / "audit.jsonl" if value is None and "state_dir" in info.data else value

    @field_validator("toolsets", mode="before")
    @classmethod
    def _toolsets_from_text(cls, value: Any) -> Any:
        return parse_toolsets(value) if isinstance(value, str) else value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _hosts_from_text(cls, value: Any) -> Any:
        return tuple(h.strip() for h in value.split(",") if h.strip()) if isinstance(value, str) else value

    @field_validator("oauth_issuer")
    @classmethod
    def _oauth_complete(cls, issuer: str | None, info: ValidationInfo) -> str | None:
        problem = oauth_problem(issuer, info.data)
        if problem is not None:
            raise ValueError(problem)
        return issuer

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from the variables in `ENVIRONMENT` (an empty one counts as unset), then `overrides`.

        A bad value raises `ConfigError` naming the variable it came from.
        """
        env = os.environ if environ is None else environ
        from_env = {field: env[name] for name, field in ENVIRONMENT.items() if env.get(name)}
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls.model_validate({**from_env, **given})
        except ValidationError as exc:
            raise ConfigError(_problems(exc, from_env.keys() - given.keys())) from None

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction."""
        found = [
            self.katapult_api_token,
            self.pvault_api_key,
            self.cocoon_access_token,
            self.secret,
            self.http_token,
            self.oauth_client_secret,
        ]
        return [s.get_secret_value() for s in found if s is not None and s.get_secret_value()]


ENVIRONMENT: Mapping[str, str] = {
    "KATAPULT_API_TOKEN": "katapult_api_token",
    "KATAPULT_API_URL": "katapult_api_url",
    "PVAULT_API_KEY": "pvault_api_key",
    "PVAULT_URL": "pvault_url",
    "PVAULT_MAX_PAGE_SIZE": "pvault_max_page_size",
    "COCOON_ACCESS_TOKEN": "cocoon_access_token",
    "COCOON_ACCESS_SERVICE_URL": "cocoon_access_service_url",
    "COCOON_ORGANISATION_ID": "cocoon_organisation_id",
    "PURGEWARDEN_TOOLSETS": "toolsets",
    "PURGEWARDEN_READ_ONLY": "read_only",
    "PURGEWARDEN_REQUIRE_HUMAN": "require_human",
    "PURGEWARDEN_SECRET": "secret",
    "PURGEWARDEN_CONFIRMATION_TTL": "confirmation_ttl",
    "PURGEWARDEN_TYPED_CONFIRMATION_OVER": "typed_confirmation_over",
    "PURGEWARDEN_MAX_ITEMS": "max_items",
    "PURGEWARDEN_AUDIT_LOG": "audit_log",
    "PURGEWARDEN_STATE_DIR": "state_dir",
    "PURGEWARDEN_STORE_URL": "store_url",
    "PURGEWARDEN_FOLLOW_SECONDS": "follow_seconds",
    "PURGEWARDEN_HTTP_TOKEN": "http_token",
    "PURGEWARDEN_ALLOWED_HOSTS": "allowed_hosts",
    "PURGEWARDEN_LOG_LEVEL": "log_level",
    "PURGEWARDEN_HTTP_TIMEOUT": "http_timeout",
    "PURGEWARDEN_RETRY_ATTEMPTS": "retry_attempts",
    "PURGEWARDEN_VAULT_DELETE_CONCURRENCY": "vault_delete_concurrency",
    "PURGEWARDEN_KATAPULT_PAGE_CONCURRENCY": "katapult_page_concurrency",
    "PURGEWARDEN_WATCH_INTERVAL": "watch_interval",
    "PURGEWARDEN_LOG_FORMAT": "log_format",
    "PURGEWARDEN_OAUTH_ISSUER": "oauth_issuer",
    "PURGEWARDEN_OAUTH_AUDIENCE": "oauth_audience",
    "PURGEWARDEN_OAUTH_INTROSPECTION_URL": "oauth_introspection_url",
    "PURGEWARDEN_OAUTH_CLIENT_ID": "oauth_client_id",
    "PURGEWARDEN_OAUTH_CLIENT_SECRET": "oauth_client_secret",
}
"""Every environment variable the server reads, and the setting it sets. `retry_base_delay` and
`katapult_task_poll_interval` are left out on purpose: they tune tests, not deployments."""

VARIABLE_OF_FIELD = {field: name for name, field in ENVIRONMENT.items()}


class ConfigError(ValueError):
    """A setting's value is not valid; the message names the variable (or flag) it came from."""


def _problems(exc: ValidationError, from_env: Set[str]) -> str:
    """Each bad value with the variable it came from (else its setting); a secret's value is never shown."""
    problems = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        where = VARIABLE_OF_FIELD[field] if field in from_env else f"setting {field}"
        secret = SecretStr in get_args(Settings.model_fields[field].annotation) if field else False
        shown = "" if secret else f" (got {str(error.get('input'))[:60]!r})"
        problems.append(f"{where}: {error['msg']}{shown}")
    return "; ".join(problems)


def parse_toolsets(text: str) -> tuple[Service, ...]:
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in ALL_TOOLSETS]
    if unknown:
        raise ValueError(f"unknown toolset(s) {', '.join(unknown)}; choose from {', '.join(ALL_TOOLSETS)}")
    return tuple(n for n in ALL_TOOLSETS if n in names)


def oauth_problem(issuer: str | None, given: Mapping[str, Any]) -> str | None:
    """What is wrong with the OAuth settings taken together (`given`: the settings validated before
    `oauth_issuer`), in words naming the variables; None when they make sense."""
    audience = given.get("oauth_audience")
    introspection = given.get("oauth_introspection_url")
    client = given.get("oauth_client_id") is not None or given.get("oauth_client_secret") is not None
    if issuer is None:
        stray = [
            name
            for name, value in (
                ("PURGEWARDEN_OAUTH_AUDIENCE", audience),
                ("PURGEWARDEN_OAUTH_INTROSPECTION_URL", introspection),
                ("PURGEWARDEN_OAUTH_CLIENT_ID", given.get("oauth_client_id")),
                ("PURGEWARDEN_OAUTH_CLIENT_SECRET", given.get("oauth_client_secret")),
            )
            if value is not None
        ]
        return f"{' and '.join(stray)} need PURGEWARDEN_OAUTH_ISSUER" if stray else None
    if given.get("http_token") is not None:
        return (
            "PURGEWARDEN_HTTP_TOKEN and PURGEWARDEN_OAUTH_ISSUER are both set: choose one, a static bearer "
            "token or OAuth access tokens"
        )
    if audience is None:
        return (
            "PURGEWARDEN_OAUTH_ISSUER needs PURGEWARDEN_OAUTH_AUDIENCE: this server's resource URL as clients "
            "reach it, e.g. https://purgewarden.example.com/mcp"
        )
    if introspection is not None and (
        given.get("oauth_client_id") is None or given.get("oauth_client_secret") is None
    ):
        return (
            "PURGEWARDEN_OAUTH_INTROSPECTION_URL needs PURGEWARDEN_OAUTH_CLIENT_ID and "
            "PURGEWARDEN_OAUTH_CLIENT_SECRET (this server's client at the introspection endpoint)"
        )
    if introspection is None and client:
        return (
            "PURGEWARDEN_OAUTH_CLIENT_ID and PURGEWARDEN_OAUTH_CLIENT_SECRET are only used with "
            "PURGEWARDEN_OAUTH_INTROSPECTION_URL"
        )
    for name, url in (
        ("PURGEWARDEN_OAUTH_ISSUER", issuer),
        ("PURGEWARDEN_OAUTH_AUDIENCE", audience),
        ("PURGEWARDEN_OAUTH_INTROSPECTION_URL", introspection),
    ):
        problem = url_problem(url) if url is not None else None
        if problem is not None:
            return f"{name}: {problem}"
    return None


def url_problem(url: str) -> str | None:
    """An OAuth URL must be absolute, and https unless it is on loopback (where tests and tunnels live)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an absolute http(s) URL"
    if parts.query or parts.fragment:
        return f"{url!r} may not have a query or a fragment"
    host = parts.hostname
    loopback = host == "localhost"
    with contextlib.suppress(ValueError):
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    if parts.scheme == "http" and not loopback:
        return f"{url!r} must use https (plain http is accepted on loopback only)"
    return None
