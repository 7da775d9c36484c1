"""The bundle and the server agree with the README: platforms, and one icon for both."""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.hosts.support import ROOT

MANIFEST: dict[str, Any] = json.loads((ROOT / "manifest.json").read_text())
PLATFORMS = {"macOS": "darwin", "Linux": "linux", "Windows": "win32"}


def test_readme_and_manifest_name_the_same_platforms() -> None:
    said = re.search(r"it runs on ([\w ,]+?)\.", (ROOT / "README.md").read_text())
    assert said, "the README no longer says where the bundle runs"
    names = re.split(r", | and ", said.group(1))
    assert {PLATFORMS[name] for name in names} == set(MANIFEST["compatibility"]["platforms"])


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG, after checking its signature, its IHDR and every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, kinds = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        kinds.append(kind)
        offset += 12 + length
    assert (kinds[0], kinds[-1]) == (b"IHDR", b"IEND")
    assert b"IDAT" in kinds
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_bundle_icon_is_a_png_of_its_declared_size() -> None:
    icon = ROOT / MANIFEST["icon"]
    width, height = png_size(icon.read_bytes())
    assert width == height == 512  # what `mcpb validate` recommends for Claude Desktop
    assert MANIFEST["icons"] == [{"src": MANIFEST["icon"], "size": f"{width}x{height}"}]


def test_bundle_packs_the_icons() -> None:
    """`mcpb pack` leaves out what .mcpbignore matches; neither icon may be among it (the server's is read
    from the package at run time)."""
    patterns = [
        line.strip().rstrip("/")
        for line in (ROOT / ".mcpbignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for icon in (MANIFEST["icon"], "purgewarden/icon-48.png"):
        for pattern in patterns:
            assert not any(fnmatch.fnmatch(part, pattern) for part in Path(icon).parts), pattern
            assert not fnmatch.fnmatch(icon, pattern), pattern


SERVER_ICON_LIMIT = 1024
"""Bytes of the server's icon at most: on 2026-07-28 it rides, base64-encoded, in the `serverInfo` stamped on
every result."""


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_server_shows_its_icon(tmp_path: Path, mode: str) -> None:
    """`initialize` (legacy) or `server/discover` and each result's stamp (2026-07-28) carry the shield."""
    env = {"PURGEWARDEN_STATE_DIR": str(tmp_path)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "purgewarden", "serve"], env=env)
    async with Client(params, mode=mode) as client:
        info = client.server_info
    assert info is not None
    assert info.icons is not None
    [icon] = info.icons
    prefix = "data:image/png;base64,"
    assert icon.mime_type == "image/png"
    assert icon.src.startswith(prefix)
    png = base64.b64decode(icon.src.removeprefix(prefix), validate=True)
    width, height = png_size(png)
    assert icon.sizes == [f"{width}x{height}"]
    assert width == height == 48
    assert len(png) <= SERVER_ICON_LIMIT
    assert png == (ROOT / "purgewarden" / "icon-48.png").read_bytes()
