"""`purgewarden --version`, and a checkout started by `uvx --from` that is rebuilt when its code changes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import purgewarden
from tests.hosts.support import ROOT


def test_version_prints_the_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "purgewarden", "--version"], capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == f"purgewarden {purgewarden.__version__}\n"


def test_cache_keys_cover_the_package() -> None:
    keys = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["cache-keys"]
    files = {key["file"] for key in keys}
    assert {"pyproject.toml", "purgewarden/**/*.py", "purgewarden/**/*.png"} <= files


def uvx_version(checkout: Path) -> str:
    proc = subprocess.run(
        ["uvx", "--offline", "--quiet", "--from", str(checkout), "purgewarden", "--version"],
        capture_output=True,
        timeout=300,
        env={**os.environ, "UV_NO_PROGRESS": "1"},
        check=False,
    )
    if proc.returncode != 0 and b"purgewarden" not in proc.stdout:
        pytest.skip(f"uvx could not install the checkout offline: {proc.stderr.decode()[-500:]}")
    return proc.stdout.decode().strip()


def test_uvx_rebuilds_a_checkout_when_its_code_changes(tmp_path: Path) -> None:
    """uv rebuilds a local directory only when a cache key changes; without `cache-keys` that is
    pyproject.toml alone, and a `git pull` that changes only code kept running the old code."""
    if shutil.which("uvx") is None:
        pytest.skip("uvx is not installed")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, checkout / name)
    shutil.copytree(
        ROOT / "purgewarden", checkout / "purgewarden", ignore=shutil.ignore_patterns("__pycache__")
    )
    assert uvx_version(checkout) == f"purgewarden {purgewarden.__version__}"
    init = checkout / "purgewarden" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{purgewarden.__version__}"', '"9.9.9-pulled"', 1))
    assert uvx_version(checkout) == "purgewarden 9.9.9-pulled"
