"""DNS-rebinding protection on every bind address, through real HTTP to a real `purgewarden serve`.

A page on `evil.example` whose name an attacker re-points at the server's address makes the browser send
`Host: evil.example` (and `Origin: http://evil.example`). The server must refuse both, whichever address it
binds: every address in 127.0.0.0/8 is loopback, not only 127.0.0.1 (the SDK guards only 127.0.0.1,
localhost and ::1 by itself), and a non-loopback bind too. The refusals are the SDK's: 421 for a foreign
Host, 403 for a foreign Origin. The Host naming the bind address (and, on loopback, localhost) is served.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
import pytest

from tests.processes import INITIALIZE, MCP_HEADERS
from tests.rebinding.conftest import TOKEN, Served, ServeOn, can_bind, non_loopback_address

EVIL_ORIGIN = "http://evil.example"

NON_LOOPBACK = non_loopback_address()


def binds() -> list[object]:
    return [
        pytest.param("127.0.0.1", id="127.0.0.1"),
        pytest.param("127.0.0.2", id="127.0.0.2"),
        pytest.param("127.45.6.7", id="127.45.6.7"),
        pytest.param(
            "::1", id="::1", marks=pytest.mark.skipif(not can_bind("::1"), reason="no IPv6 loopback here")
        ),
        pytest.param("localhost", id="localhost"),
        pytest.param(
            NON_LOOPBACK or "192.0.2.1",
            id="non-loopback",
            marks=pytest.mark.skipif(
                NON_LOOPBACK is None, reason="this machine has no non-loopback IPv4 address"
            ),
        ),
    ]


TRANSPORTS = pytest.mark.parametrize("transport", ["streamable-http", "sse"])


def start(serve_on: ServeOn, transport: str, host: str) -> Served:
    """Loopback binds without a token (what the issue found open); a non-loopback bind needs one."""
    needs_token = host not in ("localhost", "::1") and not host.startswith("127.")
    return serve_on(transport, host, env={"PURGEWARDEN_HTTP_TOKEN": TOKEN} if needs_token else {})


@contextmanager
def sse_session(served: Served, http: httpx2.Client, host: str) -> Iterator[str]:
    """Open the SSE stream with a right Host; yield the URL its `endpoint` event names for POSTs."""
    with http.stream("GET", served.base + "/sse", headers=served.headers(Host=host)) as stream:
        assert stream.status_code == 200, stream.read()
        lines = stream.iter_lines()
        for line in lines:
            if line.startswith("data:"):
                yield served.base + line.removeprefix("data:").strip()
                return
        raise AssertionError("the SSE stream ended before its endpoint event")


def post(http: httpx2.Client, url: str, served: Served, **headers: str) -> httpx2.Response:
    return http.post(url, json=INITIALIZE, headers=served.headers(**MCP_HEADERS, **headers))


def assert_guarded(served: Served, right_hosts: list[str]) -> None:
    """`initialize` with a foreign Host → 421, with a foreign Origin → 403, with each right Host → 200
    (Streamable HTTP) or 202 (SSE, whose answer travels on the stream)."""
    evil_host = f"evil.example:{served.port}"
    right = right_hosts[0]
    with httpx2.Client(timeout=10) as http:
        if served.transport == "streamable-http":
            url = served.base + "/mcp"
            assert post(http, url, served, Host=evil_host).status_code == 421
            assert post(http, url, served, Host="evil.example").status_code == 421
            refused = post(http, url, served, Host=right, Origin=EVIL_ORIGIN)
            assert refused.status_code == 403, refused.text
            for host in right_hosts:
                answered = post(http, url, served, Host=host)
                assert answered.status_code == 200, (host, answered.text)
                assert '"serverInfo"' in answered.text
                origin = post(http, url, served, Host=host, Origin=f"http://{host}")
                assert origin.status_code == 200, (host, origin.text)
            return
        stream = http.get(served.base + "/sse", headers=served.headers(Host=evil_host))
        assert stream.status_code == 421
        stream = http.get(served.base + "/sse", headers=served.headers(Host=right, Origin=EVIL_ORIGIN))
        assert stream.status_code == 403
        with sse_session(served, http, right) as messages:
            assert post(http, messages, served, Host=evil_host).status_code == 421
            assert post(http, messages, served, Host=right, Origin=EVIL_ORIGIN).status_code == 403
            for host in right_hosts:
                answered = post(http, messages, served, Host=host)
                assert answered.status_code == 202, (host, answered.text)


@TRANSPORTS
@pytest.mark.parametrize("host", binds())
def test_a_foreign_host_or_origin_is_refused_on_every_bind_address(
    serve_on: ServeOn, transport: str, host: str
) -> None:
    served = start(serve_on, transport, host)
    right = [served.own_host]
    if host in ("localhost", "::1") or host.startswith("127."):
        right += [f"localhost:{served.port}", f"127.0.0.1:{served.port}"]
    assert_guarded(served, list(dict.fromkeys(right)))


@TRANSPORTS
def test_allowed_hosts_replace_the_defaults_on_loopback(serve_on: ServeOn, transport: str) -> None:
    """PURGEWARDEN_ALLOWED_HOSTS is honoured on loopback too (a same-host reverse proxy's public name):
    that name is served, and the bind address's own name no longer is."""
    served = serve_on(transport, "127.0.0.2", env={"PURGEWARDEN_ALLOWED_HOSTS": "mcp.example.test:8443"})
    assert_guarded(served, ["mcp.example.test:8443"])
    with httpx2.Client(timeout=10) as http:
        if transport == "streamable-http":
            direct = post(http, served.base + "/mcp", served, Host=served.own_host)
        else:
            direct = http.get(served.base + "/sse", headers={"Host": served.own_host})
        assert direct.status_code == 421


def test_a_wildcard_bind_needs_the_allowed_hosts(serve_on: ServeOn) -> None:
    """On 0.0.0.0 the server cannot know its own names: it refuses to start without
    PURGEWARDEN_ALLOWED_HOSTS, and with them it serves those names only."""
    with pytest.raises(AssertionError, match="PURGEWARDEN_ALLOWED_HOSTS"):
        serve_on("streamable-http", "0.0.0.0", env={"PURGEWARDEN_HTTP_TOKEN": TOKEN})
    served = serve_on(
        "streamable-http",
        "0.0.0.0",
        env={
            "PURGEWARDEN_HTTP_TOKEN": TOKEN,
            "PURGEWARDEN_ALLOWED_HOSTS": "mcp.example.test, mcp.example.test:8000",
        },
    )
    assert_guarded(served, ["mcp.example.test", "mcp.example.test:8000"])
