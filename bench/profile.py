"""Profiler evidence for the misses: the big tools run in-process under cProfile against the emulator process.

The server and an in-memory MCP client share this process (and its event loop thread, which cProfile
follows), so the profile shows where the server's own time goes; the emulators stay apart.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp import Client

from bench.bulk import COLLECTION, KATAPULT_ORGANIZATION
from bench.emulators import Emulators
from bench.harness import Scale, Sizes, call
from purgewarden.config import Settings
from purgewarden.server.app import create_app

TOP = 12


@dataclass
class Profile:
    tool: str
    dataset: str
    table: str


async def _profiled(
    client: Client, tool: str, arguments: dict[str, Any], dataset: str
) -> tuple[Any, Profile]:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        result = await call(client, tool, arguments, Sizes(), dataset)
    finally:
        profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.strip_dirs().sort_stats("tottime").print_stats(TOP)
    lines = stream.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
    total = next(line.strip() for line in lines if "function calls" in line)
    table = "\n".join([total, "", *(line for line in lines[start:] if line.strip())])
    return result, Profile(tool, dataset, table)


async def profiles(
    emulators: Emulators, environment: dict[str, str], scale: Scale, tmp: Path
) -> list[Profile]:
    """cProfile tables (top functions by own time) for the Katapult preview and the Vault delete."""
    settings = Settings.from_env({**environment, "PURGEWARDEN_STATE_DIR": str(tmp)})
    found = []
    async with Client(create_app(settings)) as client:
        emulators.reset("katapult")
        emulators.katapult_build(KATAPULT_ORGANIZATION, scale.katapult_trash)
        label = f"{scale.katapult_trash:,}+ trash objects"
        _, profile = await _profiled(
            client, "katapult_preview_purge_all_trash_objects", {"organization": KATAPULT_ORGANIZATION}, label
        )
        found.append(profile)
        emulators.reset("katapult")
        emulators.vault_build(COLLECTION, scale.vault_objects)
        label = f"{scale.vault_objects:,} Vault objects"
        plan = await call(client, "vault_preview_delete_objects", {"collection": COLLECTION}, Sizes(), label)
        _, profile = await _profiled(
            client,
            "vault_delete_objects",
            {"collection": COLLECTION, "confirm": plan["confirmation_token"]},
            label,
        )
        found.append(profile)
        if emulators.vault_count(COLLECTION):
            raise AssertionError("profiled vault_delete_objects left objects behind")
    return found
