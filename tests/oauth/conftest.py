"""A real authorization server (oidc-provider, on Node) and real `purgewarden serve` subprocesses over
streamable HTTP, started for this directory's tests.

Two issuers sign with one key, so a token from the other issuer fails on its `iss` alone. Issuer A knows
three resources: the JWT-verifying server's `/mcp`, another resource on the same origin (the wrong
audience), and the introspecting server's `/mcp`, whose tokens are opaque (JWTs cannot be revoked).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from purgewarden.safety.scopes import DELETE, READ, service_scope
from purgewarden.sandbox import Sandbox
from tests.processes import free_port, stop, wait_answering

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "authorization-server.mjs"
EVERY_SCOPE = " ".join([READ, DELETE, *(service_scope(s) for s in ("katapult", "vault", "cocoon"))])
RS_CLIENT = ("purgewarden-rs", "rs-secret-0123456789abcdef")
CLIENTS: dict[str, dict[str, Any]] = {
    "reader": {"scope": READ},
    "alice": {"scope": f"{READ} {DELETE}"},
    "bob": {"scope": f"{READ} {DELETE}"},
    "vault-cleaner": {"scope": f"{READ} {service_scope('vault')}"},
    "no-read": {"scope": DELETE},
    "short-lived": {"scope": READ, "ttl": 1},
}
"""Each client's allowed scopes (what a token gets when it asks for them all) and token lifetime."""


def secret_of(client: str) -> str:
    return f"{client}-secret-0123456789abcdef"


def node_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (Node >= 20 runs the test authorization server)"
    version = subprocess.run(["node", "-p", "process.versions.node"], capture_output=True, text=True).stdout
    if int(version.split(".")[0] or 0) < 20:
        return f"node {version.strip()} is too old: oidc-provider needs Node >= 20"
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        return "oidc-provider is not installed: run `npm ci --prefix tests/oauth`"
    return None


@dataclass
class AuthorizationServer:
    issuer: str
    proc: subprocess.Popen[bytes]

    def token(self, client: str, resource: str, scope: str = EVERY_SCOPE) -> str:
        """An access token for `client` from the client_credentials grant (scopes cut to the client's)."""
        asked = [s for s in scope.split() if s in CLIENTS[client]["scope"].split()]
        response = httpx2.post(
            self.issuer + "/token",
            auth=(client, secret_of(client)),
            data={"grant_type": "client_credentials", "scope": " ".join(asked), "resource": resource},
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def revoke(self, client: str, token: str) -> None:
        response = httpx2.post(
            self.issuer + "/token/revocation",
            auth=(client, secret_of(client)),
            data={"token": token, "token_type_hint": "access_token"},
        )
        response.raise_for_status()


def start_authorization_server(
    resources: dict[str, dict[str, str]], signing_key: dict[str, Any], log: Path
) -> AuthorizationServer:
    clients = [
        {"client_id": name, "client_secret": secret_of(name), **details} for name, details in CLIENTS.items()
    ]
    clients.append({"client_id": RS_CLIENT[0], "client_secret": RS_CLIENT[1]})
    config = {"signing_key": signing_key, "resources": resources, "clients": clients}
    proc = subprocess.Popen(
        ["node", str(SCRIPT)],
        cwd=HERE,
        env={"PATH": os.environ.get("PATH", ""), "AS_CONFIG": json.dumps(config)},
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else b""
    if not line:
        proc.kill()
        raise AssertionError(f"the authorization server did not start: {log.read_text()}")
    return AuthorizationServer(json.loads(line)["issuer"], proc)


@dataclass
class Purgewarden:
    """A `purgewarden serve --transport streamable-http` subprocess; its stderr and audit log in files."""

    base: str
    proc: subprocess.Popen[bytes]
    audit_log: Path
    log: Path
    logged: int = field(default=0)

    @property
    def url(self) -> str:
        return self.base + "/mcp"

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_log.read_text().splitlines() if line.strip()]

    def new_log(self) -> str:
        """What the server logged since the last look."""
        text = self.log.read_text()
        new, self.logged = text[self.logged :], len(text)
        return new


def start_purgewarden(
    port: int, sandbox: Sandbox, state_dir: Path, oauth: dict[str, str]
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    state_dir.mkdir(parents=True)
    audit_log = state_dir / "audit.jsonl"
    log = state_dir / "server.log"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        **sandbox.server_environment(),
        "PURGEWARDEN_AUDIT_LOG": str(audit_log),
        "PURGEWARDEN_STATE_DIR": str(state_dir),
        "PURGEWARDEN_LOG_LEVEL": "INFO",
        "PURGEWARDEN_FOLLOW_SECONDS": "30",
        **oauth,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "purgewarden", "serve", "--transport", "streamable-http", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    return proc, audit_log, log


@dataclass
class World:
    issuer: AuthorizationServer
    other_issuer: AuthorizationServer
    jwt: Purgewarden
    """Verifies JWT access tokens against issuer A's keys."""
    introspecting: Purgewarden
    """Asks issuer A about each (opaque) token."""
    wrong_audience: str


@pytest.fixture(scope="module")
def world(running_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    missing = node_missing()
    if missing is not None:
        pytest.skip(f"OAuth tests need a real authorization server: {missing}")
    root = tmp_path_factory.mktemp("oauth")
    jwt_port, introspecting_port = free_port(), free_port()
    jwt_base, introspecting_base = f"http://127.0.0.1:{jwt_port}", f"http://127.0.0.1:{introspecting_port}"
    key = RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048), as_dict=True)
    key["kid"] = "shared-test-key"
    stopping: list[subprocess.Popen[bytes]] = []
    try:
        issuer = start_authorization_server(
            {
                jwt_base + "/mcp": {"scope": EVERY_SCOPE},
                jwt_base + "/other": {"scope": EVERY_SCOPE},
                introspecting_base + "/mcp": {"scope": EVERY_SCOPE, "format": "opaque"},
            },
            key,
            root / "issuer.log",
        )
        stopping.append(issuer.proc)
        other_issuer = start_authorization_server(
            {jwt_base + "/mcp": {"scope": EVERY_SCOPE}}, key, root / "other-issuer.log"
        )
        stopping.append(other_issuer.proc)
        jwt_proc, jwt_audit, jwt_log = start_purgewarden(
            jwt_port,
            running_sandbox,
            root / "jwt",
            {"PURGEWARDEN_OAUTH_ISSUER": issuer.issuer, "PURGEWARDEN_OAUTH_AUDIENCE": jwt_base + "/mcp"},
        )
        stopping.append(jwt_proc)
        introspecting_proc, introspecting_audit, introspecting_log = start_purgewarden(
            introspecting_port,
            running_sandbox,
            root / "introspecting",
            {
                "PURGEWARDEN_OAUTH_ISSUER": issuer.issuer,
                "PURGEWARDEN_OAUTH_AUDIENCE": introspecting_base + "/mcp",
                "PURGEWARDEN_OAUTH_INTROSPECTION_URL": issuer.issuer + "/token/introspection",
                "PURGEWARDEN_OAUTH_CLIENT_ID": RS_CLIENT[0],
                "PURGEWARDEN_OAUTH_CLIENT_SECRET": RS_CLIENT[1],
            },
        )
        stopping.append(introspecting_proc)
        wait_answering(jwt_proc, jwt_base + "/", jwt_log.read_text)
        wait_answering(introspecting_proc, introspecting_base + "/", introspecting_log.read_text)
        yield World(
            issuer=issuer,
            other_issuer=other_issuer,
            jwt=Purgewarden(jwt_base, jwt_proc, jwt_audit, jwt_log),
            introspecting=Purgewarden(
                introspecting_base, introspecting_proc, introspecting_audit, introspecting_log
            ),
            wrong_audience=jwt_base + "/other",
        )
    finally:
        for proc in reversed(stopping):
            stop(proc)
