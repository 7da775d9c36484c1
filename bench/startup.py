"""`python -m bench.startup`: the parts of `purgewarden serve`'s start-up after its imports, timed (P4 evidence).

Prints JSON: seconds `create_app` takes in a state directory without a kept tool listing (it imports every
tool module and builds each tool's schemas, as a first start does) and with one (as every later start
does, building the tools in the background after answering), and the number of tools.
"""

from __future__ import annotations

import json
import tempfile
import time

import anyio
from mcp import Client

from purgewarden.config import Settings
from purgewarden.server.app import create_app


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="purgewarden-startup-") as state_dir:
        settings = Settings.from_env(state_dir=state_dir)
        started = time.perf_counter()
        server = create_app(settings)
        built = time.perf_counter() - started
        async with Client(server) as client:
            tools = len((await client.list_tools()).tools)  # the first listing is kept for the next start
        started = time.perf_counter()
        create_app(settings)
        listed = time.perf_counter() - started
    print(json.dumps({"build": built - listed, "create_app": listed, "tools": tools}))


if __name__ == "__main__":
    anyio.run(main)
