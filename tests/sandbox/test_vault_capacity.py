"""The Vault emulator's capacity model over real HTTP: workers, a FIFO queue, 429 beyond it, its controls.

Requests are started one at a time and each is seen to hold a worker or wait (the counters) before the
next starts, so who is served and who is refused does not depend on thread timing; the only clock facts
asserted are orders (who finished first), never durations.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest

from purgewarden.cli import main
from purgewarden.sandbox import Capacity, CapacityStats, Sandbox
from purgewarden.sandbox.vault import error_body
from tests.sandbox.test_cli_sandbox import read_lines, wait_for_exports
from tests.sandbox.test_vault_deletes import REASON, client

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "capacity"
BULK = f"/data/collections/{COLLECTION}/bulk/objects"


@pytest.fixture
def vault(sandbox: Sandbox) -> Iterator[httpx2.Client]:
    with client(sandbox) as http:
        yield http


@pytest.fixture
def control(sandbox: Sandbox) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=sandbox.endpoints["vault"].url + "/_sandbox", timeout=30) as http:
        yield http


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as pool:
        yield pool


def batches(sandbox: Sandbox, n: int, size: int) -> list[list[str]]:
    ids = sandbox.vault.build_large(COLLECTION, n * size)
    return [ids[i * size : (i + 1) * size] for i in range(n)]


def bulk_delete(vault: httpx2.Client, ids: list[str]) -> httpx2.Response:
    return vault.request("DELETE", BULK, params=REASON, json=[{"id": i} for i in ids])


def present(sandbox: Sandbox, ids: list[str]) -> int:
    objects = sandbox.vault.stores[COLLECTION].objects
    return sum(object_id in objects for object_id in ids)


def wait_until(sandbox: Sandbox, **expected: int) -> None:
    """Poll the counters until they read `expected` (the last request holds its worker or waits its turn)."""
    deadline = time.monotonic() + 5
    while any(getattr(sandbox.capacity_stats("vault"), k) != v for k, v in expected.items()):
        assert time.monotonic() < deadline, sandbox.capacity_stats("vault")
        time.sleep(0.002)


def assert_overloaded(response: httpx2.Response, retry_after: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == retry_after
    assert response.json() == error_body(429)
    assert response.json()["message"] == "This request exceeds the rate limits. Try again later."


def test_capacity_is_off_by_default(
    sandbox: Sandbox, vault: httpx2.Client, control: httpx2.Client, background: ThreadPoolExecutor
) -> None:
    assert control.get("/capacity").json() == {
        "capacity": None,
        "stats": {"served": 0, "rejected": 0, "max_queue": 0, "busy": 0, "waiting": 0},
    }
    burst = batches(sandbox, 16, 5)
    responses = list(background.map(lambda ids: bulk_delete(vault, ids), burst))
    assert [r.status_code for r in responses] == [200] * 16
    assert present(sandbox, [i for ids in burst for i in ids]) == 0


def test_requests_beyond_the_workers_and_the_queue_get_429_and_delete_nothing(
    sandbox: Sandbox, vault: httpx2.Client, control: httpx2.Client, background: ThreadPoolExecutor
) -> None:
    served, refused = batches(sandbox, 3, 10), batches(sandbox, 3, 10)
    before = len(sandbox.vault.stores[COLLECTION].objects)
    # 10 ids hold a worker for about 0.25 s: long enough for the refused three to arrive meanwhile.
    capacity = {"workers": 2, "queue_limit": 1, "item_seconds": 0.025, "retry_after": 2.5}
    assert control.put("/capacity", json=capacity).status_code == 200

    admitted: list[Future[httpx2.Response]] = []
    for ids, held in zip(served, ({"busy": 1}, {"busy": 2}, {"waiting": 1}), strict=True):
        admitted.append(background.submit(bulk_delete, vault, ids))
        wait_until(sandbox, **held)
    rejected = list(background.map(lambda ids: bulk_delete(vault, ids), refused))

    for response in rejected:
        assert_overloaded(response, "2.5")
    for future in admitted:
        assert future.result().json()["ok"] is True
    assert [present(sandbox, ids) for ids in refused] == [10, 10, 10]
    assert len(sandbox.vault.stores[COLLECTION].objects) == before - 30
    stats = control.get("/capacity").json()["stats"]
    assert stats == {"served": 3, "rejected": 3, "max_queue": 1, "busy": 0, "waiting": 0}


def test_requests_beyond_the_workers_wait_their_turn_and_delete_after_their_cost(
    sandbox: Sandbox, vault: httpx2.Client, background: ThreadPoolExecutor
) -> None:
    work = batches(sandbox, 3, 5)
    sandbox.set_capacity("vault", Capacity(workers=1, queue_limit=5, item_seconds=0.03))
    finished: list[int] = []

    def delete(n: int) -> httpx2.Response:
        response = bulk_delete(vault, work[n])
        finished.append(n)
        return response

    futures = [background.submit(delete, 0)]
    wait_until(sandbox, busy=1)
    assert present(sandbox, work[0]) == 5  # holding its worker, it has not deleted yet
    for n in (1, 2):
        futures.append(background.submit(delete, n))
        wait_until(sandbox, waiting=n)

    assert [f.result().status_code for f in futures] == [200, 200, 200]
    assert finished == [0, 1, 2]
    assert sandbox.capacity_stats("vault") == CapacityStats(
        served=3, rejected=0, max_queue=2, busy=0, waiting=0
    )
    assert present(sandbox, [i for ids in work for i in ids]) == 0


API_CALLS: list[tuple[str, str, Any]] = [
    ("GET", "/ctl/collections", None),
    ("GET", "/data/collections/customers/objects", None),
    ("GET", "/data/collections/customers/objects/00000000-0000-0000-0000-000000000000", None),
    ("GET", "/data/collections/customers/count/objects", None),
    ("POST", "/data/collections/customers/query/objects", {"match": {"country": "US"}}),
    ("DELETE", "/data/collections/customers/objects/00000000-0000-0000-0000-000000000000", None),
    ("DELETE", "/data/collections/customers/bulk/objects", []),
    ("POST", "/system/admin/lifecycle/gc", None),
]


def test_every_api_route_but_health_is_throttled_and_the_controls_never_are(
    sandbox: Sandbox, vault: httpx2.Client, control: httpx2.Client, background: ThreadPoolExecutor
) -> None:
    (holder,) = batches(sandbox, 1, 1)
    sandbox.set_capacity("vault", Capacity(workers=1, queue_limit=0, item_seconds=0.3))
    held = background.submit(bulk_delete, vault, holder)
    wait_until(sandbox, busy=1)

    for method, path, body in API_CALLS:
        assert_overloaded(vault.request(method, path, params=REASON, json=body), "1")
    # A request with a bad key is refused for want of a worker before its key is even read.
    assert_overloaded(vault.get("/ctl/collections", headers={"Authorization": "Bearer nope"}), "1")
    assert vault.get("/data/info/health").status_code == 200
    assert control.get("/capacity").status_code == 200
    assert control.get("/faults").status_code == 200
    assert control.post("/clock", json={"seconds": 0}).status_code == 200
    assert sandbox.capacity_stats("vault").busy == 1, "the holder finished before the probes did"

    assert held.result().status_code == 200
    assert sandbox.capacity_stats("vault").rejected == len(API_CALLS) + 1


INVALID_BODIES = [
    b"not json",
    b"[]",
    b"{}",
    b'{"workers": 0}',
    b'{"workers": 2, "item_seconds": -1}',
    b'{"workers": 2, "queue_limit": -1}',
    b'{"workers": 2, "spare": 1}',
]


def test_an_invalid_capacity_is_refused_and_the_setting_kept(control: httpx2.Client) -> None:
    assert control.put("/capacity", json={"workers": 3}).status_code == 200
    for body in INVALID_BODIES:
        response = control.put("/capacity", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"] == "invalid capacity"
        assert response.json()["detail"]
    assert control.get("/capacity").json()["capacity"] == Capacity(workers=3).model_dump()


def test_delete_turns_it_off_and_reset_also_zeroes_the_counters(
    sandbox: Sandbox, vault: httpx2.Client, control: httpx2.Client
) -> None:
    shown = control.put("/capacity", json={"workers": 2, "request_seconds": 0}).json()
    assert shown["capacity"] == Capacity(workers=2, request_seconds=0).model_dump()
    assert vault.get("/ctl/collections").status_code == 200

    assert control.delete("/capacity").status_code == 204
    state = control.get("/capacity").json()
    assert state["capacity"] is None
    assert state["stats"]["served"] == 1
    assert vault.get("/ctl/collections").status_code == 200
    assert control.get("/capacity").json()["stats"]["served"] == 1  # off: nothing counted

    control.put("/capacity", json={"workers": 2})
    assert control.post("/reset").status_code == 204
    assert sandbox.throttles["vault"].capacity is None
    assert sandbox.capacity_stats("vault") == CapacityStats(0, 0, 0, 0, 0)


def test_only_the_vault_has_a_capacity_model(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="katapult emulator has no capacity model"):
        sandbox.set_capacity("katapult", Capacity(workers=1))
    assert httpx2.get(sandbox.endpoints["katapult"].url + "/_sandbox/capacity").status_code == 404


def test_the_sandbox_command_starts_the_vault_with_a_capacity(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "purgewarden", "sandbox", "--vault-workers", "3"]
    command += ["--vault-item-ms", "2", "--vault-queue", "7"]
    command += ["--katapult-port", "0", "--vault-port", "0", "--cocoon-port", "0"]
    with (tmp_path / "stderr").open("w+") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=read_lines, args=(process, lines), daemon=True).start()
        try:
            vault_url = wait_for_exports(lines)["PVAULT_URL"]
            shown: dict[str, Any] = httpx2.get(vault_url + "/_sandbox/capacity").json()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert shown["capacity"] == Capacity(workers=3, item_seconds=0.002, queue_limit=7).model_dump()


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--vault-queue", "3"], "--vault-workers: Field required"),
        (["--vault-workers", "0"], "--vault-workers: Input should be greater than or equal to 1"),
        (["--vault-workers", "2", "--vault-item-ms", "-1"], "--vault-item-ms: Input should be greater"),
    ],
)
def test_bad_capacity_options_are_refused_before_anything_starts(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sandbox", *argv]) == 2
    assert f"purgewarden sandbox: {error}" in capsys.readouterr().err


def test_a_window_tells_each_deletes_time_in_the_database_then_starts_again(
    sandbox: Sandbox, vault: httpx2.Client, background: ThreadPoolExecutor
) -> None:
    work = batches(sandbox, 3, 5)
    sandbox.set_capacity("vault", Capacity(workers=1, queue_limit=5, request_seconds=0, item_seconds=0.02))
    vault.get("/data/collections/capacity/count/objects", params=REASON)  # a read: served, not a delete
    futures = [background.submit(bulk_delete, vault, work[0])]
    wait_until(sandbox, busy=1)
    for n in (1, 2):
        futures.append(background.submit(bulk_delete, vault, work[n]))
        wait_until(sandbox, waiting=n)
    assert [f.result().status_code for f in futures] == [200, 200, 200]

    window = sandbox.capacity_window("vault")
    assert (window.served, window.rejected, window.max_queue) == (4, 0, 2)
    # each waited for the ones before it: its time in the database includes their work
    first, second, third = window.delete_seconds
    assert 0 < first < second < third
    assert third > 2 * first
    again = sandbox.capacity_window("vault")
    assert (again.served, again.delete_seconds) == (0, ())
