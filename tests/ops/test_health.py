"""`/healthz` and `/readyz` on real HTTP servers (Streamable HTTP and SSE), as a load balancer sees them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx2
import pytest

from purgewarden.sandbox import Sandbox
from tests.ops.conftest import SERVE, ServeHttp, base_env
from tests.processes import free_port
from tests.redis_server import redis_binary, running_redis

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "ops", "version": "1"},
    },
}


def assert_no_secret(body: str, env: dict[str, str]) -> None:
    for name in ("KATAPULT_API_TOKEN", "PVAULT_API_KEY", "COCOON_ACCESS_TOKEN", "PURGEWARDEN_SECRET"):
        if env.get(name):
            assert env[name] not in body, name


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_alive_and_ready_with_services_and_a_store(
    server_env: dict[str, str], serve_http: ServeHttp, transport: str
) -> None:
    env = {**server_env, "PURGEWARDEN_SECRET": "ops-test-secret-value"}
    served = serve_http(env, transport)
    alive = httpx2.get(served.base + "/healthz")
    assert (alive.status_code, alive.text) == (200, "ok")
    assert alive.headers["cache-control"] == "no-store"
    ready = httpx2.get(served.base + "/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "services": ["katapult", "vault", "cocoon"]}
    assert_no_secret(ready.text, env)
    assert httpx2.head(served.base + "/readyz").status_code == 200


def test_not_ready_without_any_service(tmp_path: Path, serve_http: ServeHttp) -> None:
    served = serve_http(base_env(tmp_path))
    assert httpx2.get(served.base + "/healthz").status_code == 200
    ready = httpx2.get(served.base + "/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert "no service is configured" in ready.json()["reason"]


def test_not_ready_while_the_store_is_down(
    sandbox: Sandbox, tmp_path: Path, server_env: dict[str, str], serve_http: ServeHttp
) -> None:
    if redis_binary() is None:
        pytest.skip("redis-server is not installed: apt-get install redis-server (bash .ci/run does)")
    with running_redis(tmp_path / "redis") as url:
        served = serve_http({**server_env, "PURGEWARDEN_STORE_URL": url})
        assert httpx2.get(served.base + "/readyz").status_code == 200
    # Redis is stopped: the process is alive, but must not get traffic.
    assert httpx2.get(served.base + "/healthz").status_code == 200
    ready = httpx2.get(served.base + "/readyz", timeout=30)
    assert ready.status_code == 503
    reason = ready.json()["reason"]
    assert reason.startswith("the store does not answer"), reason
    assert "127.0.0.1" in reason  # which store, without credentials
    assert_no_secret(ready.text, server_env)


def test_health_answers_whatever_the_host_header(server_env: dict[str, str], serve_http: ServeHttp) -> None:
    """A balancer probes by address (`Host: 10.0.0.7:8000`): the DNS-rebinding checks guard the MCP
    endpoint, and the probes answer anyway."""
    served = serve_http(server_env)
    headers = {"Host": "10.0.0.7:8000"}
    assert httpx2.get(served.base + "/healthz", headers=headers).status_code == 200
    assert httpx2.get(served.base + "/readyz", headers=headers).status_code == 200


def test_health_needs_no_bearer_token(server_env: dict[str, str], serve_http: ServeHttp) -> None:
    token = "ops-test-http-token-0123456789"
    served = serve_http({**server_env, "PURGEWARDEN_HTTP_TOKEN": token})
    assert httpx2.post(served.base + "/mcp", json={}).status_code == 401  # the MCP endpoint stays closed
    assert httpx2.get(served.base + "/healthz").status_code == 200
    ready = httpx2.get(served.base + "/readyz")
    assert ready.status_code == 200
    assert token not in ready.text


@pytest.mark.parametrize("transport", ["streamable-http", "sse", "stdio"])
def test_a_server_that_cannot_open_its_store_stops_and_says_why(tmp_path: Path, transport: str) -> None:
    """Not a process that answers its health check while every call fails: a balancer would keep sending
    it traffic, and a supervisor would never restart it."""
    (tmp_path / "a-file").write_text("")
    env = {**base_env(tmp_path), "PURGEWARDEN_STORE_URL": f"sqlite://{tmp_path}/a-file/purgewarden.db"}
    flags = [] if transport == "stdio" else ["--transport", transport, "--port", str(free_port())]
    proc = subprocess.Popen(
        [*SERVE, *flags], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None
    if transport == "stdio":  # it opens what it holds when a client comes
        proc.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
        proc.stdin.flush()
    try:
        _, stderr = proc.communicate(timeout=60)  # stdin stays open until it has exited by itself
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr.decode(errors="replace")[-2000:]
    said = stderr.decode(errors="replace").splitlines()[-1]
    assert said.startswith(
        "purgewarden serve: stopped: it could not be prepared to serve calls: the store at "
        f"{tmp_path}/a-file/purgewarden.db failed: [Errno "
    ), said
