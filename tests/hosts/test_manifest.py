"""manifest.json (the Claude Desktop bundle) agrees with the server it launches.

The official packer validates the schema in CI (.ci/clients.sh); these tests check what it cannot: the
tools, the environment mapping and the versions match the code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import Tool

import purgewarden
from purgewarden.config import ENVIRONMENT, Settings
from purgewarden.sandbox import Sandbox, cocoon
from purgewarden.server.app import create_app
from tests.hosts.support import PYPROJECT, ROOT

MANIFEST: dict[str, Any] = json.loads((ROOT / "manifest.json").read_text())
SERVER = MANIFEST["server"]
USER_CONFIG: dict[str, dict[str, Any]] = MANIFEST["user_config"]
ENV: dict[str, str] = SERVER["mcp_config"]["env"]
PLACEHOLDER = re.compile(r"\$\{user_config\.([^}]+)\}")


def host_env(values: Mapping[str, str | bool]) -> dict[str, str]:
    """The server's environment as the bundle host builds it (mcpb's getMcpConfigForManifest).

    Defaults first, then the user's values; booleans become "true"/"false"; a placeholder without a value
    would stay in the text as is, which is why every entry has a default.
    """
    merged: dict[str, str | bool] = {k: v["default"] for k, v in USER_CONFIG.items() if "default" in v}
    merged.update(values)
    as_text = {k: ("true" if v else "false") if isinstance(v, bool) else str(v) for k, v in merged.items()}
    return {
        name: PLACEHOLDER.sub(lambda m: as_text.get(m.group(1), m.group(0)), value)
        for name, value in ENV.items()
    }


def sandbox_values(sandbox: Sandbox) -> dict[str, str | bool]:
    endpoints = sandbox.endpoints
    return {
        "katapult_api_token": endpoints["katapult"].credential,
        "katapult_api_url": endpoints["katapult"].url,
        "pvault_api_key": endpoints["vault"].credential,
        "pvault_url": endpoints["vault"].url,
        "cocoon_access_token": endpoints["cocoon"].credential,
        "cocoon_access_service_url": endpoints["cocoon"].url,
        "cocoon_organisation_id": cocoon.DEMO_ORGANISATION_ID,
    }


async def tools_for(env: dict[str, str], tmp_audit: str) -> list[Tool]:
    settings = Settings.from_env(
        {**env, "PURGEWARDEN_AUDIT_LOG": tmp_audit, "PURGEWARDEN_STATE_DIR": str(Path(tmp_audit).parent)}
    )
    async with Client(create_app(settings)) as client:
        return (await client.list_tools()).tools


async def test_manifest_names_exactly_the_tools_the_server_lists(listed_tools: list[Tool]) -> None:
    names = [tool["name"] for tool in MANIFEST["tools"]]
    assert len(names) == len(set(names)), "a tool is listed twice in manifest.json"
    assert sorted(names) == sorted(tool.name for tool in listed_tools)
    assert len(names) == 20
    assert all(tool.get("description") for tool in MANIFEST["tools"])


def test_every_user_config_entry_reaches_the_environment() -> None:
    used = {key for value in ENV.values() for key in PLACEHOLDER.findall(value)}
    assert used == set(USER_CONFIG), "user_config keys and the env placeholders differ"
    unknown = set(ENV) - set(ENVIRONMENT)
    assert not unknown, f"the server never reads {sorted(unknown)}"


def test_secrets_are_sensitive_and_every_entry_has_a_default() -> None:
    for key, entry in USER_CONFIG.items():
        secret = key.endswith(("_token", "_key"))
        assert entry.get("sensitive", False) == secret, key
        # Every service is optional (one without credentials exposes no tools), and a default keeps an
        # unset entry from reaching the server as the literal text "${user_config.…}".
        assert entry.get("required", False) is False, key
        assert "default" in entry, key


def test_defaults_are_the_servers_own() -> None:
    defaults = Settings()
    assert USER_CONFIG["katapult_api_url"]["default"] == defaults.katapult_api_url
    assert USER_CONFIG["pvault_url"]["default"] == defaults.pvault_url
    assert USER_CONFIG["read_only"]["type"] == "boolean"
    assert USER_CONFIG["read_only"]["default"] is defaults.read_only


def test_versions_and_python_requirement_match_the_project() -> None:
    project = PYPROJECT["project"]
    assert MANIFEST["manifest_version"] == "0.4"
    assert MANIFEST["version"] == project["version"] == purgewarden.__version__
    assert MANIFEST["name"] == project["name"]
    assert MANIFEST["license"] == project["license"]
    assert MANIFEST["compatibility"]["runtimes"]["python"] == project["requires-python"]


def test_launches_the_projects_own_serve_command_over_stdio() -> None:
    assert SERVER["type"] == "uv"
    assert (ROOT / SERVER["entry_point"]).is_file()
    args = SERVER["mcp_config"]["args"]
    assert SERVER["mcp_config"]["command"] == "uv"
    assert args[:3] == ["run", "--directory", "${__dirname}"]
    assert args[-2:] == ["purgewarden", "serve"], "stdio is serve's default transport: no --transport"
    assert "purgewarden" in PYPROJECT["project"]["scripts"]


async def test_configured_bundle_serves_every_tool(sandbox: Sandbox, tmp_path: Any) -> None:
    env = host_env(sandbox_values(sandbox))
    assert not any("${" in value for value in env.values())
    tools = await tools_for(env, str(tmp_path / "audit.jsonl"))
    assert len(tools) == 20


async def test_read_only_switch_removes_every_destructive_tool(sandbox: Sandbox, tmp_path: Any) -> None:
    env = host_env({**sandbox_values(sandbox), "read_only": True})
    assert env["PURGEWARDEN_READ_ONLY"] == "true"
    tools = await tools_for(env, str(tmp_path / "audit.jsonl"))
    assert len(tools) == 13
    assert all(tool.annotations and tool.annotations.read_only_hint for tool in tools)


@pytest.mark.parametrize(
    ("service", "keys"),
    [
        ("katapult", ["katapult_api_token"]),
        ("vault", ["pvault_api_key"]),
        ("cocoon", ["cocoon_access_token", "cocoon_access_service_url", "cocoon_organisation_id"]),
    ],
)
async def test_a_service_left_empty_exposes_no_tools(
    sandbox: Sandbox, tmp_path: Any, service: str, keys: list[str]
) -> None:
    values = sandbox_values(sandbox)
    for key in keys:
        values[key] = ""
    tools = await tools_for(host_env(values), str(tmp_path / "audit.jsonl"))
    assert tools
    assert not [tool.name for tool in tools if tool.name.startswith(f"{service}_")]


async def test_nothing_configured_starts_with_no_tools(tmp_path: Any) -> None:
    env = host_env({})
    assert not any("${" in value for value in env.values())
    assert await tools_for(env, str(tmp_path / "audit.jsonl")) == []
