"""The ways clients start the server: an installed wheel's script, `uvx`, and `python -m purgewarden`.

Slow (a wheel build, a fresh virtualenv, packages from the index), so the wheel is built once per run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import StdioServerParameters

from tests.hosts.support import ROOT, tool_names_over_stdio

pytestmark = pytest.mark.slow


def uv_binary() -> str:
    found = os.environ.get("UV") or shutil.which("uv")  # `uv run` sets UV to its own binary
    if found is None:
        pytest.skip("uv is not installed")
    return found


def run(*command: str | Path) -> None:
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(uv_binary(), "build", "--wheel", "--out-dir", out, ROOT)
    (built,) = out.glob("purgewarden-*.whl")
    return built


async def test_wheel_installed_in_a_fresh_venv_serves_every_tool(
    wheel: Path, tmp_path: Path, server_env: dict[str, str]
) -> None:
    venv = tmp_path / "venv"
    run(uv_binary(), "venv", "--quiet", "--python", sys.executable, venv)
    run(uv_binary(), "pip", "install", "--quiet", "--python", venv / "bin" / "python", wheel)
    script = venv / "bin" / "purgewarden"
    names = await tool_names_over_stdio(
        StdioServerParameters(command=str(script), args=["serve"], env=server_env)
    )
    assert len(names) == 20


async def test_uvx_from_the_wheel_serves_every_tool(wheel: Path, server_env: dict[str, str]) -> None:
    # `uvx --from <wheel> purgewarden serve`; `uv tool run` is the same command where only uv is installed.
    params = StdioServerParameters(
        command=uv_binary(),
        args=["tool", "run", "--quiet", "--from", str(wheel), "purgewarden", "serve"],
        env=server_env,
    )
    assert len(await tool_names_over_stdio(params)) == 20


async def test_python_dash_m_serves_every_tool(server_env: dict[str, str]) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "purgewarden", "serve"], env=server_env
    )
    assert len(await tool_names_over_stdio(params)) == 20


async def test_sandbox_flag_needs_no_environment(tmp_path: Path) -> None:
    """`purgewarden serve --sandbox`, the docs' first try, starts with demo credentials and nothing else."""
    env = {"PURGEWARDEN_STATE_DIR": str(tmp_path)}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "purgewarden", "serve", "--sandbox"], env=env
    )
    assert len(await tool_names_over_stdio(params)) == 20
