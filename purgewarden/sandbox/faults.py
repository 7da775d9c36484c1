"""Runtime fault injection for the emulators: latency, chosen errors, dropped connections, slow bodies.

A `FaultInjector` is ASGI middleware around one emulator. Faults are added from Python
(`injector.add(Fault(...))`) or over HTTP (`POST /_sandbox/faults` with the same fields as JSON);
`/_sandbox/...` routes are never faulted. Which faults fire is decided by a seeded RNG, so a run
with the same seed and the same requests fails the same way.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Callable
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ErrorBodyFactory = Callable[[int], Any]
"""Builds the service's own error body for an injected status (so a 503 looks like that API's 503)."""


class Fault(BaseModel):
    """One rule. It matches a request by method and path regex and fires for `times` requests
    (None: until cleared) with the given probability."""

    method: str | None = Field(default=None, description="HTTP method to match; any when unset")
    path: str | None = Field(default=None, description="Regex searched in the request path; any when unset")
    times: int | None = Field(default=1, ge=1, description="How many matching requests it fires for")
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    latency: float = Field(default=0.0, ge=0.0, description="Seconds to wait before handling")
    status: int | None = Field(default=None, ge=100, le=599, description="Answer with this status")
    body: Any = Field(default=None, description="JSON body for `status`; the service's own error when unset")
    headers: dict[str, str] = Field(default_factory=dict)
    drop: Literal["before", "after"] | None = Field(
        default=None,
        description="Drop the connection before the request is handled (nothing happened) "
        "or after it was handled (the change happened, the answer is lost)",
    )
    slow_body: float = Field(default=0.0, ge=0.0, description="Seconds to stall between body chunks")


class _Rule:
    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.remaining = fault.times
        self.pattern = re.compile(fault.path) if fault.path else None
        self.fired = 0

    def matches(self, method: str, path: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.fault.method and self.fault.method.upper() != method:
            return False
        return not (self.pattern and not self.pattern.search(path))


class ConnectionDropped(Exception):
    """Raised inside the app to make the server abort the connection mid-response."""


class FaultInjector:
    """ASGI middleware applying the active faults to one emulator."""

    def __init__(
        self,
        app: ASGIApp,
        error_body: ErrorBodyFactory,
        seed: int = 0,
        error_headers: dict[str, str] | None = None,
    ) -> None:
        self.app = app
        self.error_body = error_body
        self.error_headers = error_headers or {}
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._seed = seed
        self._random = random.Random(seed)

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._rules.append(_Rule(fault))

    def clear(self, seed: int | None = None) -> None:
        with self._lock:
            self._rules.clear()
            self._random = random.Random(self._seed if seed is None else seed)

    def active(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {**r.fault.model_dump(), "remaining": r.remaining, "fired": r.fired}
                for r in self._rules
                if r.remaining is None or r.remaining > 0
            ]

    def _pick(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path) and self._random.random() < rule.fault.probability:
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    rule.fired += 1
                    return rule.fault
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        fault = self._pick(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.latency:
            # The body is read first: a request whose client gave up meanwhile is still carried out, late.
            receive = await _buffered(receive)
            await anyio.sleep(fault.latency)
        if fault.drop == "before":
            await _drop(send)
        if fault.status is not None:
            await self._respond(fault, send)
            return
        if fault.drop == "after":
            await self.app(scope, receive, _discard)
            await _drop(send)
        await self.app(scope, receive, _slowed(send, fault.slow_body) if fault.slow_body else send)

    async def _respond(self, fault: Fault, send: Send) -> None:
        body = fault.body if fault.body is not None else self.error_body(fault.status or 500)
        payload = json.dumps(body).encode()
        headers = {"content-type": "application/json", **self.error_headers, **fault.headers}
        await send(
            {
                "type": "http.response.start",
                "status": fault.status,
                "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            }
        )
        if fault.slow_body:
            for i in range(0, len(payload), 16):
                await anyio.sleep(fault.slow_body)
                await send({"type": "http.response.body", "body": payload[i : i + 16], "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.body", "body": payload})


async def _buffered(receive: Receive) -> Receive:
    """Read the whole request body now, and hand it to the app later as if it were arriving then."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


async def _discard(message: Message) -> None:
    return None


async def _drop(send: Send) -> None:
    """Start an answer and abort it: the server closes the socket and the client sees a broken read."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1024")]})
    await send({"type": "http.response.body", "body": b"{", "more_body": True})
    raise ConnectionDropped("fault injected: connection dropped")


def _slowed(send: Send, delay: float) -> Send:
    async def slow_send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            body: bytes = message["body"]
            more = message.get("more_body", False)
            for i in range(0, len(body), 64):
                await anyio.sleep(delay)
                last = i + 64 >= len(body)
                await send(
                    {"type": "http.response.body", "body": body[i : i + 64], "more_body": more or not last}
                )
            return
        await send(message)

    return slow_send
