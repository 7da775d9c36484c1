"""What the server says on stderr: text or JSON lines, secrets redacted, and one warning per service left out."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from pydantic import SecretStr

from purgewarden.config import Settings
from purgewarden.server.transports import configure_logging
from tests.ops.conftest import SERVE, ServeHttp, base_env

REQUIRED_KEYS = {"time", "level", "logger", "message"}
KATAPULT_ONLY = {"KATAPULT_API_TOKEN": "katapult-token-for-the-ops-tests"}
VAULT_MISSING = "vault: PVAULT_API_KEY is not set; its tools are not served"
COCOON_MISSING = (
    "cocoon: COCOON_ACCESS_TOKEN and COCOON_ACCESS_SERVICE_URL are not set; its tools are not served"
)


def stdio_start(env: dict[str, str], *flags: str) -> str:
    """Start the stdio server with stdin at its end: it starts, logs, and stops. Its stderr."""
    proc = subprocess.run([*SERVE, *flags], env=env, input=b"", capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b""
    return proc.stderr.decode()


def json_lines(text: str) -> list[dict[str, str]]:
    """Every line parsed as a JSON object with exactly the documented keys (plus `exception`)."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    for entry in lines:
        assert REQUIRED_KEYS <= entry.keys() <= {*REQUIRED_KEYS, "exception"}, entry
    return lines


def test_json_logs_are_one_object_per_line(tmp_path: Path, serve_http: ServeHttp) -> None:
    env = {**base_env(tmp_path), **KATAPULT_ONLY, "PURGEWARDEN_LOG_FORMAT": "json"}
    served = serve_http({**env, "PURGEWARDEN_LOG_LEVEL": "INFO"})
    assert httpx2.get(served.base + "/healthz").status_code == 200
    served.stop()
    lines = json_lines(served.stderr())
    warnings = [(e["logger"], e["message"]) for e in lines if e["level"] == "WARNING"]
    assert ("purgewarden", VAULT_MISSING) in warnings
    assert ("purgewarden", COCOON_MISSING) in warnings
    assert any(entry["logger"].startswith("uvicorn") for entry in lines)  # the HTTP server's lines too
    assert all(entry["time"].endswith("+00:00") for entry in lines)
    assert KATAPULT_ONLY["KATAPULT_API_TOKEN"] not in served.stderr()


def test_text_logs_by_default(tmp_path: Path) -> None:
    stderr = stdio_start({**base_env(tmp_path), **KATAPULT_ONLY})
    lines = stderr.splitlines()
    assert lines[0].endswith(f" WARNING purgewarden: {VAULT_MISSING}"), lines
    assert lines[1].endswith(f" WARNING purgewarden: {COCOON_MISSING}"), lines
    with pytest.raises(ValueError):  # noqa: PT011 (any JSON decoding error)
        json.loads(lines[0])


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_json_logs_redact_secrets_in_messages_and_tracebacks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret = "pvault-key-that-must-never-be-logged"
    configure_logging(Settings(pvault_api_key=SecretStr(secret), log_format="json", state_dir=tmp_path))
    logger = logging.getLogger("purgewarden.test")
    logger.warning("calling with %s", secret)
    try:
        raise RuntimeError(f"the API said: bad key {secret}")
    except RuntimeError:
        logger.exception("a failure")
    err = capsys.readouterr().err
    assert secret not in err
    message, failure = json_lines(err)
    assert message["message"] == "calling with [REDACTED]"
    assert failure["message"] == "a failure"
    assert "RuntimeError: the API said: bad key [REDACTED]" in failure["exception"]


@pytest.mark.parametrize(
    ("extra_env", "flags", "expected"),
    [
        ({}, (), [VAULT_MISSING, COCOON_MISSING]),
        ({"PURGEWARDEN_TOOLSETS": "katapult"}, (), []),
        ({}, ("--toolsets", "katapult,vault"), [VAULT_MISSING]),
        (
            {"COCOON_ACCESS_TOKEN": "cocoon-token-without-a-url", "PURGEWARDEN_TOOLSETS": "katapult,cocoon"},
            (),
            ["cocoon: COCOON_ACCESS_SERVICE_URL is not set; its tools are not served"],
        ),
    ],
)
def test_one_warning_per_selected_service_without_credentials(
    tmp_path: Path, extra_env: dict[str, str], flags: tuple[str, ...], expected: list[str]
) -> None:
    stderr = stdio_start({**base_env(tmp_path), **KATAPULT_ONLY, **extra_env}, *flags)
    warned = [line.split(" purgewarden: ", 1)[1] for line in stderr.splitlines() if " WARNING " in line]
    assert warned == expected
    assert "cocoon-token-without-a-url" not in stderr
