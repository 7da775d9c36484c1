"""A minimal HTTP/1.1 keep-alive load generator, so the client is never the bottleneck of an emulator figure.

httpx2 costs more per request than the emulators do; raw asyncio streams cost a fraction of it.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit


async def _worker(host: str, port: int, request: bytes, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line.startswith(b"HTTP/1.1 2"):
                raise RuntimeError(f"unexpected answer {status_line!r}")
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            done += 1
    finally:
        writer.close()
        counts.append(done)


async def _run(url: str, headers: dict[str, str], seconds: float, connections: int) -> float:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    counts: list[int] = []
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_worker(host, port, request, deadline, counts) for _ in range(connections)))
    return sum(counts) / (time.perf_counter() - started)


def requests_per_second(
    url: str, headers: dict[str, str], seconds: float = 3.0, connections: int = 8
) -> float:
    """Sustained GET rate against `url` over keep-alive connections (run in a process apart from the server)."""
    return asyncio.run(_run(url, headers, seconds, connections))
