"""A real nginx for tests: a generated configuration, checked with `nginx -t`, run in the foreground on
loopback as a same-host reverse proxy in front of one purgewarden, and stopped after.

The proxy passes the client's Host header on (`proxy_set_header Host $http_host`), as a reverse proxy
must for the server to see the name clients use; that is what makes PURGEWARDEN_ALLOWED_HOSTS necessary.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def nginx_binary() -> str | None:
    """nginx on PATH, else Debian's /usr/sbin/nginx (sbin is often not on a user's PATH), or None."""
    found = shutil.which("nginx")
    if found is not None:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def configuration(prefix: Path, port: int, upstream_port: int) -> str:
    return f"""
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


@contextmanager
def running_nginx(prefix: Path, port: int, upstream_port: int) -> Iterator[str]:
    """Yield `http://127.0.0.1:PORT` of an nginx proxying to `127.0.0.1:upstream_port`; stop it on exit."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed")
    prefix.mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(configuration(prefix, port, upstream_port))
    base = [binary, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
    checked = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True, timeout=30)
    if checked.returncode != 0:
        raise RuntimeError(f"nginx -t refused {config}:\n{checked.stdout}{checked.stderr}")
    proxy = subprocess.Popen(
        [*base, "-g", "daemon off;"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proxy.poll() is not None or time.monotonic() > deadline:
                    log = (prefix / "error.log").read_text(errors="replace")
                    raise RuntimeError(f"nginx did not start:\n{log[-2000:]}") from None
                time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        if proxy.poll() is None:
            proxy.send_signal(signal.SIGTERM)  # nginx's fast shutdown; its workers exit with it
        try:
            proxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()
