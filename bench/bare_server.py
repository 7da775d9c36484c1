"""The baseline server of P1 and P4: a bare `MCPServer` with one empty tool, over stdio.

It is configured like purgewarden's (same SDK, same log level, structured output), so the difference
measured is what purgewarden adds: its imports, settings, clients, tools and per-call wrapper.
"""

from __future__ import annotations

from mcp.server import MCPServer

server = MCPServer("bare", log_level="WARNING")


@server.tool()
async def empty() -> str:
    """Do nothing and say so."""
    return "ok"


if __name__ == "__main__":
    server.run()
