"""Every client configuration in the docs, tried as a new user would: it parses, and its command starts a server.

The snippets are read from README.md: each JSON config (`mcpServers` for Claude Desktop and
Cursor, `servers` for VS Code) and each `claude mcp add` command. Stdio entries are started with their exact
command and arguments, the checkout standing in for /path/to/purgewarden and the sandbox for the services;
HTTP entries must name the /mcp endpoint and send a bearer token (.ci/clients.sh runs those against a server).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from typing import Any

import pytest
from mcp import StdioServerParameters

from tests.hosts.support import ROOT, tool_names_over_stdio

pytestmark = pytest.mark.slow

DOCS = [ROOT / "README.md"]
CHECKOUT = "/path/to/purgewarden"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
HEADING = re.compile(r"^#{2,4} (.+)$", re.M)


@dataclass(frozen=True)
class Setup:
    """One server entry of one snippet: a command to start, or a URL with headers."""

    where: str
    command: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def read_only(self) -> bool:
        return "--read-only" in self.command or dict(self.env).get("PURGEWARDEN_READ_ONLY") == "true"


def snippets() -> list[tuple[str, str, str]]:
    """(heading, language, text) of every fenced block, under the heading that precedes it."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for block in FENCE.finditer(text):
            headings = HEADING.findall(text[: block.start()])
            found.append((f"{path.name}: {headings[-1] if headings else ''}", block.group(1), block.group(2)))
    return found


def from_json(where: str, config: dict[str, Any]) -> list[Setup]:
    entries = config.get("mcpServers") or config.get("servers") or {}
    setups = []
    for name, entry in entries.items():
        label = f"{where} [{name}]"
        if "url" in entry:
            setups.append(Setup(label, url=entry["url"], headers=entry.get("headers", {})))
        else:
            command = (entry["command"], *entry.get("args", []))
            setups.append(Setup(label, command, tuple(entry.get("env", {}).items())))
    return setups


def from_claude_mcp_add(where: str, text: str) -> list[Setup]:
    setups = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words[:3] != ["claude", "mcp", "add"]:
            continue
        if "--" in words:
            options, command = words[3 : words.index("--")], words[words.index("--") + 1 :]
            env = tuple(tuple(options[i + 1].split("=", 1)) for i, word in enumerate(options) if word == "-e")
            setups.append(Setup(where, tuple(command), env))  # type: ignore[arg-type]
        else:
            url = next(word for word in words if word.startswith("https://"))
            header = words[words.index("--header") + 1]
            name, _, value = header.partition(": ")
            setups.append(Setup(where, url=url, headers={name: value}))
    return setups


def documented_setups() -> list[Setup]:
    setups: list[Setup] = []
    for where, language, text in snippets():
        if language == "json" and ('"mcpServers"' in text or '"servers"' in text):
            setups += from_json(where, json.loads(text))
        elif "claude mcp add" in text:
            setups += from_claude_mcp_add(where, text)
    return setups


SETUPS = documented_setups()
STDIO = [setup for setup in SETUPS if setup.command and "mcp-remote" not in " ".join(setup.command)]
REMOTE = [setup for setup in SETUPS if setup not in STDIO]


def test_the_docs_configure_every_client() -> None:
    places = " ".join(setup.where for setup in SETUPS)
    for client in ("Claude Desktop", "Claude Code", "VS Code", "Cursor"):
        assert client in places, f"no configuration for {client}"
    assert len(STDIO) >= 4
    assert len(REMOTE) >= 4, "each client needs its HTTP variant"


@pytest.mark.parametrize("setup", REMOTE, ids=[setup.where for setup in REMOTE])
def test_http_variant_sends_a_bearer_token_to_the_mcp_endpoint(setup: Setup) -> None:
    if setup.command:  # mcp-remote: the URL and header are arguments, the token comes from the environment
        url = next(arg for arg in setup.command if arg.startswith("https://"))
        header = setup.command[setup.command.index("--header") + 1]
        assert header == "Authorization:${AUTH_HEADER}"
        assert dict(setup.env)["AUTH_HEADER"].startswith("Bearer ")
    else:
        url, header = setup.url, setup.headers["Authorization"]
        assert header.startswith("Bearer ")
    assert url.endswith("/mcp")


def launch(setup: Setup, server_env: dict[str, str]) -> StdioServerParameters:
    """The snippet's command as a client runs it, with the sandbox standing in for every service."""
    command = [str(ROOT) if word == CHECKOUT else word for word in setup.command]
    if command[0] == "uvx" and shutil.which("uvx") is None:
        command[:1] = [os.environ.get("UV") or "uv", "tool", "run"]
    documented = dict(setup.env)
    switches = {k: v for k, v in documented.items() if k.startswith("PURGEWARDEN_")}
    # Every service variable is documented with a placeholder (<…>, ${input:…}, ${env:…}); the sandbox fills it.
    assert all(k in server_env for k in documented if k not in switches), documented
    return StdioServerParameters(command=command[0], args=command[1:], env={**server_env, **switches})


@pytest.mark.parametrize("setup", STDIO, ids=[setup.where for setup in STDIO])
async def test_documented_command_starts_the_server(setup: Setup, server_env: dict[str, str]) -> None:
    assert setup.command[0] in ("uvx", "purgewarden", "python"), "launch with the documented tools"
    assert "serve" in setup.command
    names = await tool_names_over_stdio(launch(setup, server_env))
    assert len(names) == (13 if setup.read_only else 20)


async def test_read_only_variant_serves_no_destructive_tool(server_env: dict[str, str]) -> None:
    """The docs' read-only variant: `--read-only` after `serve` in any of the commands above."""
    setup = STDIO[0]
    read_only = Setup(setup.where, (*setup.command, "--read-only"), setup.env)
    names = await tool_names_over_stdio(launch(read_only, server_env))
    assert len(names) == 13
    assert not {"katapult_purge_all_trash_objects", "vault_delete_objects", "cocoon_empty_recycle_bin"} & set(
        names
    )
