"""`python -m purgewarden sandbox` as a user runs it: a real process, its printed URLs, a signal to stop."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest

from purgewarden.cli import build_parser, main
from purgewarden.sandbox import katapult, vault

ROOT = Path(__file__).resolve().parents[2]
EXPORTED = {
    "KATAPULT_API_URL",
    "KATAPULT_API_TOKEN",
    "PVAULT_URL",
    "PVAULT_API_KEY",
    "COCOON_ACCESS_SERVICE_URL",
    "COCOON_ACCESS_TOKEN",
    "COCOON_ORGANISATION_ID",
}


def read_lines(process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line.rstrip("\n"))


def wait_for_exports(lines: queue.Queue[str], timeout: float = 30.0) -> dict[str, str]:
    exports: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while set(exports) != EXPORTED:
        line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            exports[name] = value
    return exports


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sandbox_command_serves_all_three_and_stops_cleanly(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    command = [sys.executable, "-m", "purgewarden", "sandbox"]
    command += ["--katapult-port", "0", "--vault-port", "0", "--cocoon-port", "0"]
    with (tmp_path / "stderr").open("w+") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=read_lines, args=(process, lines), daemon=True)
        reader.start()
        try:
            env = wait_for_exports(lines)
            requests = [
                (f"{env['KATAPULT_API_URL']}{katapult.API_PREFIX}/organizations", env["KATAPULT_API_TOKEN"]),
                (f"{env['PVAULT_URL']}{vault.API_PREFIX}/ctl/collections", env["PVAULT_API_KEY"]),
                (
                    f"{env['COCOON_ACCESS_SERVICE_URL']}/api/v1/organisations/"
                    f"{env['COCOON_ORGANISATION_ID']}/recycle-bin/items",
                    env["COCOON_ACCESS_TOKEN"],
                ),
            ]
            for url, credential in requests:
                response = httpx2.get(url, headers={"Authorization": f"Bearer {credential}"})
                assert response.status_code == 200, (url, response.text)
            process.send_signal(stop_signal)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        reader.join(timeout=5)
        stderr.seek(0)
        assert "Traceback" not in stderr.read()
    assert "# sandbox stopped" in list(lines.queue)
    assert not _url_answers(env["COCOON_ACCESS_SERVICE_URL"])


def _url_answers(url: str) -> bool:
    try:
        httpx2.get(url, timeout=1)
    except httpx2.TransportError:
        return False
    return True


def test_sandbox_defaults_are_the_documented_ports() -> None:
    args = build_parser().parse_args(["sandbox"])
    assert (args.host, args.katapult_port, args.vault_port, args.cocoon_port, args.seed) == (
        "127.0.0.1",
        8787,
        8123,
        8788,
        0,
    )


@pytest.mark.parametrize(
    "argv", [[], ["sandbox", "--cocoon-port", "70000"], ["sandbox", "--vault-port", "x"]]
)
def test_bad_command_lines_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "usage: purgewarden" in capsys.readouterr().err


def test_a_busy_port_is_reported_without_leaving_servers_behind(capsys: pytest.CaptureFixture[str]) -> None:
    threads_before = set(threading.enumerate())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        status = main(["sandbox", "--katapult-port", "0", "--vault-port", "0", "--cocoon-port", busy])
    assert status == 1
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    assert set(threading.enumerate()) <= threads_before
