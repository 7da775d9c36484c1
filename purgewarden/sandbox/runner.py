"""Serve ASGI apps on loopback sockets from a background thread, so tests and the demo get real HTTP."""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn
from starlette.types import ASGIApp


class LoopbackServer:
    """One uvicorn server on 127.0.0.1, in a daemon thread with its own event loop."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this; asyncio skips it for proto 0 sockets, and without it Nagle's
        # algorithm plus delayed ACKs hold every response for 40 ms.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(app, log_config=None, log_level="critical", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"sandbox:{self.port}", daemon=True)
        self._started = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        # uvicorn's own runner picks uvloop and httptools when installed: the emulators must outpace any client.
        self._server.run(sockets=[self._socket])

    def start(self) -> None:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"sandbox server on port {self.port} failed to start")
            self._started.wait(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()


# uvicorn logs every injected dropped connection as an error; that is the point of the fault, not news.
logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
