"""A real HAProxy for tests: a generated configuration, validated with `haproxy -c`, run in the
foreground on loopback in front of the given HTTP servers, and stopped after.

`running_haproxy(tmp_dir, {"r1": 8001, ...}, sticky=True)` yields a `Balancer`: its URL, the
configuration it runs, and per-server request counts read from its stats page. Every response carries
`X-Served-By: <server name>`, so a client can tell which server answered each request. With `sticky`,
a request carrying an `Mcp-Session-Id` goes to the server that issued that session (what MCP
2025-11-25 clients, which keep a session on one server, need behind a balancer); without it, plain
round robin.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.client import HTTPException
from pathlib import Path

from tests.processes import free_port, stop

ATTEMPTS = 3
SERVED_BY = "X-Served-By"
"""The response header naming the server (as named in the configuration) that answered."""


def haproxy_binary() -> str | None:
    """haproxy on PATH, else Debian's /usr/sbin/haproxy (sbin is often not on a user's PATH), or None."""
    found = shutil.which("haproxy")
    if found is not None:
        return found
    return "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None


def configuration(port: int, stats_port: int, servers: Mapping[str, int], *, sticky: bool) -> str:
    """HAProxy 2.6 configuration: HTTP on `127.0.0.1:port`, round robin over `servers` (name → port on
    loopback), sticky on the MCP session header when asked; stats as CSV on `stats_port`."""
    stickiness = (
        [
            "    # MCP 2025-11-25 sessions live in one server: keep each session where it was issued.",
            "    stick-table type string len 128 size 100k expire 30m",
            "    stick store-response res.hdr(mcp-session-id)",
            "    stick on req.hdr(mcp-session-id)",
        ]
        if sticky
        else []
    )
    lines = [
        "global",
        "    maxconn 512",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    # Long enough for SSE streams and for a tool call that follows its run.",
        "    timeout server 60s",
        "    timeout http-keep-alive 10s",
        "    # One server connection per request: nothing ties a later request to the last server.",
        "    option http-server-close",
        "",
        "frontend mcp",
        f"    bind 127.0.0.1:{port}",
        "    default_backend replicas",
        "",
        "backend replicas",
        "    balance roundrobin",
        *stickiness,
        f"    http-response set-header {SERVED_BY} %[srv_name]",
        *(f"    server {name} 127.0.0.1:{server_port}" for name, server_port in servers.items()),
        "",
        "frontend stats",
        f"    bind 127.0.0.1:{stats_port}",
        "    stats enable",
        "    stats uri /stats",
        "    stats refresh 0",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Balancer:
    url: str
    """`http://127.0.0.1:PORT`: the frontend."""
    config: str
    """The configuration it runs."""
    stats_url: str
    pid: int
    """The master process's, from its pid file."""

    def requests_by_server(self) -> dict[str, int]:
        """HTTP requests each server was sent so far (the stats' `stot`: with `http-server-close`,
        one server connection per request)."""
        with urllib.request.urlopen(self.stats_url + ";csv", timeout=5) as response:
            text = response.read().decode()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            row["svname"]: int(row["stot"] or 0)
            for row in rows
            if row["pxname"] == "replicas" and row["svname"] not in ("FRONTEND", "BACKEND")
        }


def check_configuration(binary: str, path: Path) -> None:
    """`haproxy -c`: raise with HAProxy's own words when the configuration is not valid."""
    checked = subprocess.run(
        [binary, "-c", "-q", "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    if checked.returncode != 0:
        raise RuntimeError(f"haproxy -c refused {path}:\n{checked.stdout}{checked.stderr}")


@contextmanager
def running_haproxy(
    tmp_dir: Path, servers: Mapping[str, int], *, sticky: bool = True, port: int | None = None
) -> Iterator[Balancer]:
    """Yield a `Balancer` in front of `servers` (name → loopback port) on `port` (default: a free one,
    retried if another process takes it first); stop HAProxy on exit."""
    binary = haproxy_binary()
    if binary is None:
        raise RuntimeError("haproxy is not installed")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    log = tmp_dir / "haproxy.log"
    chosen = port
    for _ in range(ATTEMPTS if chosen is None else 1):  # a free port may be taken before HAProxy binds it
        port, stats_port = chosen or free_port(), free_port()
        config = configuration(port, stats_port, servers, sticky=sticky)
        path = tmp_dir / "haproxy.cfg"
        path.write_text(config)
        check_configuration(binary, path)
        pid_file = tmp_dir / "haproxy.pid"
        with log.open("ab") as output:
            # -W -db: master-worker in the foreground (the master is the process we started, and it
            # stops its worker with it); -p: the master writes its pid there.
            proxy = subprocess.Popen(
                [binary, "-W", "-db", "-f", str(path), "-p", str(pid_file)],
                cwd=tmp_dir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        balancer = Balancer(
            url=f"http://127.0.0.1:{port}",
            config=config,
            stats_url=f"http://127.0.0.1:{stats_port}/stats",
            pid=proxy.pid,
        )
        try:
            if serving(proxy, balancer):
                yield replace(balancer, pid=written_pid(pid_file))
                return
        finally:
            stop(proxy)
    raise RuntimeError(f"haproxy did not start:\n{log.read_text(errors='replace')[-2000:]}")


def serving(process: subprocess.Popen[bytes], balancer: Balancer) -> bool:
    """Wait until this HAProxy's stats page lists its servers (True: it bound every port, the frontend's
    too, or it would have exited), or it exits or 10 s pass (False)."""
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if balancer.requests_by_server():
                return process.poll() is None
        except (OSError, HTTPException, ValueError, KeyError):  # not listening yet, or not HAProxy's answer
            pass
        time.sleep(0.02)
    return False


def written_pid(pid_file: Path) -> int:
    """The pid HAProxy wrote (it may still be writing it when the ports already listen)."""
    deadline = time.monotonic() + 5
    while not (text := pid_file.read_text() if pid_file.exists() else "").strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"haproxy wrote no pid to {pid_file}")
        time.sleep(0.02)
    return int(text.split()[0])
