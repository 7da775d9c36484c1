"""A reverse proxy on the same host: real nginx in front of a real `purgewarden serve` on loopback.

Clients reach the proxy by its public name (`purgewarden.test:<port>` here, sent as the Host header to
nginx on loopback), and nginx passes that Host on, as a reverse proxy must. It is not the server's own
name: without PURGEWARDEN_ALLOWED_HOSTS every request is refused with 421 (documented in the README);
with the public host:port in it, an MCP session works through the proxy, over Streamable HTTP and over
SSE (whose stream nginx must not buffer), and a foreign Host is still refused.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tests.processes import INITIALIZE, MCP_HEADERS, free_port
from tests.rebinding.conftest import ServeOn
from tests.rebinding.nginx import nginx_binary, running_nginx

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        nginx_binary() is None,
        reason="nginx not installed: the reverse-proxy tests start a real nginx. "
        "Install it with `apt-get install nginx-light` (`bash .ci/run` does).",
    ),
]

ENDPOINT = {"streamable-http": "/mcp", "sse": "/sse"}


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_a_same_host_proxy_works_with_the_allowed_hosts(
    serve_on: ServeOn, tmp_path: Path, transport: str
) -> None:
    port = free_port("127.0.0.1")
    public = f"purgewarden.test:{port}"
    served = serve_on(transport, "127.0.0.1", env={"PURGEWARDEN_ALLOWED_HOSTS": public})
    with running_nginx(tmp_path / "nginx", port, served.port) as proxy:
        url = proxy + ENDPOINT[transport]
        async with httpx2.AsyncClient(timeout=30, headers={"Host": public}) as http:
            if transport == "sse":
                async with Client(sse_client(url, headers={"Host": public}), mode="legacy") as client:
                    tools = (await client.list_tools()).tools
                foreign = await http.get(url, headers={"Host": "evil.example"})
            else:
                async with Client(streamable_http_client(url, http_client=http)) as client:
                    tools = (await client.list_tools()).tools
                foreign = await http.post(
                    url, json=INITIALIZE, headers={**MCP_HEADERS, "Host": "evil.example"}
                )
            assert tools
            assert foreign.status_code == 421
            origin = f"https://{public}"
            if transport == "streamable-http":  # a browser client on the public origin is served too
                answered = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Origin": origin})
                assert answered.status_code == 200


async def test_without_the_allowed_hosts_a_same_host_proxy_gets_421(
    serve_on: ServeOn, tmp_path: Path
) -> None:
    port = free_port("127.0.0.1")
    served = serve_on("streamable-http", "127.0.0.1")
    with running_nginx(tmp_path / "nginx", port, served.port) as proxy:
        async with httpx2.AsyncClient(timeout=30) as http:
            for public in (f"purgewarden.test:{port}", f"127.0.0.1:{port}"):
                refused = await http.post(
                    proxy + "/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "Host": public}
                )
                assert refused.status_code == 421, public
            direct = await http.post(served.base + "/mcp", json=INITIALIZE, headers=MCP_HEADERS)
            assert direct.status_code == 200
