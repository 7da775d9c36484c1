"""Settings from the environment (and CLI flags), read once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

Toolset = Literal["katapult", "vault", "cocoon"]
ALL_TOOLSETS: tuple[Toolset, ...] = ("katapult", "vault", "cocoon")


def default_audit_log() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "purgewarden" / "audit.jsonl"


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

    toolsets: tuple[Toolset, ...] = ALL_TOOLSETS
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
    audit_log: Path = Field(default_factory=default_audit_log)
    http_token: SecretStr | None = Field(None, description="Bearer token required on the MCP HTTP endpoint")
    allowed_hosts: tuple[str, ...] = Field((), description="Host headers accepted over HTTP off loopback")
    log_level: str = "WARNING"

    http_timeout: float = Field(30.0, gt=0)
    retry_attempts: int = Field(5, ge=1)
    retry_base_delay: float = Field(0.5, ge=0)
    vault_delete_concurrency: int = Field(8, ge=1, le=32)
    katapult_page_concurrency: int = Field(8, ge=1, le=16)
    katapult_task_poll_interval: float = Field(1.0, gt=0)
    watch_interval: float = Field(
        1.0, gt=0, description="Seconds between looks at the state while an empty-everything call runs"
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.model_fields:
            # Vendor settings use the vendors' own variable names; ours carry the PURGEWARDEN_ prefix.
            vendor = name.startswith(("katapult_", "pvault_", "cocoon_"))
            key = name.upper() if vendor else f"PURGEWARDEN_{name.upper()}"
            if env.get(key):
                values[name] = env[key]
        if "toolsets" in values:
            values["toolsets"] = parse_toolsets(str(values["toolsets"]))
        if "allowed_hosts" in values:
            values["allowed_hosts"] = tuple(
                h.strip() for h in str(values["allowed_hosts"]).split(",") if h.strip()
            )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction."""
        found = [
            self.katapult_api_token,
            self.pvault_api_key,
            self.cocoon_access_token,
            self.secret,
            self.http_token,
        ]
        return [s.get_secret_value() for s in found if s is not None and s.get_secret_value()]


def parse_toolsets(text: str) -> tuple[Toolset, ...]:
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in ALL_TOOLSETS]
    if unknown:
        raise ValueError(f"unknown toolset(s) {', '.join(unknown)}; choose from {', '.join(ALL_TOOLSETS)}")
    return tuple(n for n in ALL_TOOLSETS if n in names)
