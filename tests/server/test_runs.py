"""Runs through the SDK client: a call that outlives its follow budget answers `running` and the run finishes in
the server with exact accounting; results link to their run; runs are listed, read as resources, cancelled,
warned about by the next preview, and recorded as interrupted when their server stops."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.types import ResourceLink, TextResourceContents

from purgewarden.config import Settings
from purgewarden.sandbox import Fault, Sandbox
from tests.redis_server import redis_binary, running_redis
from tests.server.support import CANCEL_RUN, GET_RUN, audit_lines, ended_run, error, ok, run_of, text
from tests.server.vault_support import DELETE, ids_in, preview

LEADS = {"collection": "leads", "state": "archived"}
Connect = Any


def archived_leads(sandbox: Sandbox, n: int) -> list[str]:
    return sorted(sandbox.vault.build_large("leads", n, archived=n))


def slow_batches(sandbox: Sandbox, seconds: float = 0.15) -> None:
    sandbox.inject("vault", Fault(method="DELETE", path="bulk", latency=seconds, times=None))


async def test_a_call_longer_than_the_follow_budget_answers_running_and_the_run_finishes_exactly(
    connect: Connect, sandbox: Sandbox, settings: Settings
) -> None:
    archived_leads(sandbox, 6_000)
    progress: list[float] = []

    async def heard(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with connect(toolsets=("vault",), vault_delete_concurrency=1, follow_seconds=0.4) as client:
        plan = await preview(client, **LEADS)
        slow_batches(sandbox)
        result = await client.call_tool(
            DELETE, {**LEADS, "confirm": plan["confirmation_token"]}, progress_callback=heard
        )
        started = ok(result)
        assert started["state"] == "running"
        assert started["run_id"] in text(result)
        assert "purgewarden_get_run" in started["summary"]
        # Answered while the run went on: it had not carried everything out yet.
        assert started["accounting"]["carried_out"] < 6_000
        assert ids_in(sandbox, "leads", "archived")
        assert progress  # the call relayed the run's progress while it followed it
        run = await ended_run(client, started["run_id"])
    assert run["state"] == "finished"
    assert run["accounting"] == {"carried_out": 6_000, "not_carried_out": 0, "unknown": 0}
    assert ids_in(sandbox, "leads", "archived") == set()
    outcome = [line for line in audit_lines(settings.audit_log) if line["event"] == "outcome"]
    assert [line["run"] for line in outcome] == [started["run_id"]]


async def test_a_result_links_to_its_run_which_reads_as_a_resource(
    connect: Connect, sandbox: Sandbox
) -> None:
    archived_leads(sandbox, 30)
    async with connect(toolsets=("vault",)) as client:
        plan = await preview(client, **LEADS)
        result = await client.call_tool(DELETE, {**LEADS, "confirm": plan["confirmation_token"]})
        outcome = ok(result)
        links = [c for c in result.content if isinstance(c, ResourceLink)]
        assert [str(link.uri) for link in links] == [f"purgewarden://runs/{outcome['run_id']}"]
        read = await client.read_resource(str(links[0].uri))
    contents = read.contents[0]
    assert isinstance(contents, TextResourceContents)
    run = json.loads(contents.text)
    assert run["run_id"] == outcome["run_id"]
    assert run["state"] == "finished"
    assert (
        run["accounting"] == outcome["accounting"] == {"carried_out": 30, "not_carried_out": 0, "unknown": 0}
    )
    assert run["target"]["collection"] == "leads"


async def test_runs_are_listed_newest_first_and_an_unknown_run_is_a_clear_error(
    connect: Connect, sandbox: Sandbox
) -> None:
    archived_leads(sandbox, 20)
    async with connect(toolsets=("vault",)) as client:
        ids = sorted(ids_in(sandbox, "leads", "archived"))
        run_ids = []
        for batch in (ids[:5], ids[5:10]):
            plan = await preview(client, collection="leads", state="archived", ids=batch)
            run_ids.append(
                ok(
                    await client.call_tool(
                        DELETE, {**LEADS, "ids": batch, "confirm": plan["confirmation_token"]}
                    )
                )["run_id"]
            )
        listed = ok(await client.call_tool(GET_RUN, {}))
        missing = error(await client.call_tool(GET_RUN, {"run_id": "run_doesnotexist"}))
        done = ok(await client.call_tool(CANCEL_RUN, {"run_id": run_ids[0]}))
    assert [run["run_id"] for run in listed["runs"]][:2] == run_ids[::-1]
    assert "2 most recent runs (0 running)" in listed["summary"]
    assert "No run" in missing
    assert "purgewarden_get_run without run_id" in missing
    assert "already finished" in done["summary"]
    assert len(ids_in(sandbox, "leads", "archived")) == 10


async def test_a_preview_warns_about_a_run_still_going_on_the_same_target(
    connect: Connect, sandbox: Sandbox
) -> None:
    archived_leads(sandbox, 4_000)
    async with connect(toolsets=("vault",), vault_delete_concurrency=1, follow_seconds=0.2) as client:
        plan = await preview(client, **LEADS)
        slow_batches(sandbox)
        started = ok(await client.call_tool(DELETE, {**LEADS, "confirm": plan["confirmation_token"]}))
        again = await preview(client, **LEADS)
        other = await preview(client, collection="customers", state="archived")
        await ended_run(client, started["run_id"])
    assert any(started["run_id"] in w and "still running" in w for w in again["warnings"])
    assert not any(started["run_id"] in w for w in other["warnings"])


async def test_a_server_that_stops_records_its_run_as_interrupted_with_exact_accounting(
    connect: Connect, sandbox: Sandbox, settings: Settings
) -> None:
    archived_leads(sandbox, 5_000)
    async with connect(toolsets=("vault",), vault_delete_concurrency=1, follow_seconds=0.3) as client:
        plan = await preview(client, **LEADS)
        slow_batches(sandbox, 0.2)
        started = ok(await client.call_tool(DELETE, {**LEADS, "confirm": plan["confirmation_token"]}))
    # The session (and with it the server) stopped: the run stopped between batches and says so.
    left = ids_in(sandbox, "leads", "archived")
    async with connect(toolsets=("vault",)) as client:
        run = await run_of(client, started["run_id"])
        warned = await preview(client, **LEADS)
    assert run["state"] == "interrupted"
    assert run["accounting"] == {"carried_out": 5_000 - len(left), "not_carried_out": len(left), "unknown": 0}
    assert 0 < len(left) < 5_000
    assert any(started["run_id"] in w and "interrupted" in w for w in warned["warnings"])


async def test_a_failed_run_is_recorded_with_its_reason(connect: Connect, sandbox: Sandbox) -> None:
    archived_leads(sandbox, 10)
    async with connect(toolsets=("vault",)) as client:
        plan = await preview(client, **LEADS)
        sandbox.inject("vault", Fault(method="DELETE", path="bulk", status=403, times=None))
        message = error(await client.call_tool(DELETE, {**LEADS, "confirm": plan["confirmation_token"]}))
        run = (ok(await client.call_tool(GET_RUN, {})))["runs"][0]
    assert run["state"] == "failed"
    assert run["accounting"] == {"carried_out": 0, "not_carried_out": 10, "unknown": 0}
    assert run["result"]
    assert run["result"] in message
    assert len(ids_in(sandbox, "leads", "archived")) == 10


needs_redis = pytest.mark.skipif(
    redis_binary() is None,
    reason="redis-server is not installed: apt-get install redis-server (bash .ci/run does) to run this test",
)


@needs_redis
async def test_a_store_that_fails_after_the_preview_refuses_before_anything_is_deleted(
    connect: Connect, sandbox: Sandbox, tmp_path: Path
) -> None:
    archived_leads(sandbox, 10)
    with contextlib.ExitStack() as redis:
        url = redis.enter_context(running_redis(tmp_path / "redis"))
        async with connect(toolsets=("vault",), store_url=url) as client:
            plan = await preview(client, **LEADS)
            redis.close()  # the store goes away between the preview and the confirmation
            message = error(await client.call_tool(DELETE, {**LEADS, "confirm": plan["confirmation_token"]}))
    assert "store" in message
    assert "Nothing was deleted" in message
    assert len(ids_in(sandbox, "leads", "archived")) == 10


@needs_redis
async def test_a_journal_lost_mid_run_stops_it_between_requests_with_exact_accounting(
    connect: Connect, sandbox: Sandbox, settings: Settings, tmp_path: Path
) -> None:
    archived_leads(sandbox, 6_000)
    with contextlib.ExitStack() as redis:
        url = redis.enter_context(running_redis(tmp_path / "redis"))
        async with connect(
            toolsets=("vault",), store_url=url, vault_delete_concurrency=1, follow_seconds=0.3
        ) as client:
            plan = await preview(client, **LEADS)
            slow_batches(sandbox)
            started = ok(await client.call_tool(DELETE, {**LEADS, "confirm": plan["confirmation_token"]}))
            assert started["state"] == "running"
            redis.close()  # the store goes away in the middle of the run
            with anyio.fail_after(15):
                while not [line for line in audit_lines(settings.audit_log) if line["event"] == "failed"]:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
    failed = [line for line in audit_lines(settings.audit_log) if line["event"] == "failed"]
    left = len(ids_in(sandbox, "leads", "archived"))
    assert len(failed) == 1
    assert failed[0]["run"] == started["run_id"]
    assert failed[0]["error"].startswith("journal:")
    # It stopped: not everything was deleted, and the audit line accounts for each item as the Vault shows.
    assert 0 < left < 6_000
    assert failed[0]["accounting"]["carried_out"] == 6_000 - left
    assert failed[0]["accounting"]["unknown"] == 0
