"""The runs of destructive tools, whichever process carries them out: follow one, list them, stop one."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from purgewarden.safety.registry import Toolset
from purgewarden.safety.runs import IN_FLIGHT, RunRecord, RunState, describe_accounting
from purgewarden.safety.state import app_state
from purgewarden.safety.text import ToolOutput, quote

toolset = Toolset("purgewarden")
RECENT = 10
RunId = Annotated[
    str, Field(min_length=1, max_length=64, description="A run_id from a destructive tool's result")
]


class RunView(BaseModel):
    run_id: str
    tool: str
    state: RunState
    target: dict[str, Any]
    plan: str = Field(description="The approved plan's summary")
    started_at: str
    finished_at: str | None
    result: str | None
    accounting: dict[str, int] = Field(description="Approved items carried_out, not_carried_out, unknown")
    in_flight: list[str] = Field(description="Ids whose request was in flight when the run's server stopped")
    notes: list[str]
    principal: str | None = Field(description="Who confirmed it, when the caller was authenticated")

    @classmethod
    def of(cls, record: RunRecord) -> RunView:
        """What a caller may see of a run's record (not its owner or checkpoints)."""
        shared = record.model_dump(include=set(cls.model_fields) - {"run_id", "plan"})
        return cls(run_id=record.id, plan=record.summary, **shared)

    def line(self) -> str:
        told = f"{self.run_id} {self.tool} {self.state} since {self.started_at}: {describe_accounting(self.accounting)}"
        if self.result:
            told += f". {self.result}"
        if self.in_flight:
            told += f" In flight: {', '.join(quote(i) for i in self.in_flight)}."
        return told


class RunsOutput(ToolOutput):
    runs: list[RunView]

    def render(self) -> str:
        return "\n".join([self.summary, *(run.line() for run in self.runs)])


def describe(record: RunRecord) -> str:
    head = f"Run {record.id} ({record.tool}) is {record.state}: {describe_accounting(record.accounting)}."
    if record.in_flight_count:
        head += f" {record.in_flight_count:,} items were {IN_FLIGHT}."
    if record.state == "running":
        head += " Call purgewarden_get_run again to follow it."
    return head


async def found(ctx: Context, run_id: str) -> RunRecord:
    record = await app_state(ctx).runs.get(run_id.strip())
    if record is None:
        raise ToolError(
            f"No run {quote(run_id)} is known to this server's store. Call purgewarden_get_run without run_id "
            "to list the recent runs."
        )
    return record


@toolset.tool("read", "Follow purgewarden runs")
async def purgewarden_get_run(ctx: Context, run_id: RunId | None = None) -> RunsOutput:
    """A destructive tool's run (running, finished, failed, cancelled or interrupted) with its exact
    accounting; without run_id, the recent runs."""
    if run_id is not None:
        record = await found(ctx, run_id)
        return RunsOutput(summary=describe(record), runs=[RunView.of(record)])
    records = await app_state(ctx).runs.recent(RECENT)
    running = sum(r.state == "running" for r in records)
    summary = f"The {len(records)} most recent runs ({running} running)." if records else "No runs yet."
    return RunsOutput(summary=summary, runs=[RunView.of(r) for r in records])


@toolset.tool("control", "Stop a purgewarden run")
async def purgewarden_cancel_run(ctx: Context, run_id: RunId) -> RunsOutput:
    """Stop a run between requests (those already sent finish), then say exactly what was done."""
    record = await found(ctx, run_id)
    state = app_state(ctx)
    if record.state != "running":
        return RunsOutput(
            summary=f"Run {record.id} is already {record.state}; nothing to cancel. {record.result or ''}".strip(),
            runs=[RunView.of(record)],
        )
    live = await state.runs.cancel(record.id)
    with anyio.move_on_after(state.settings.follow_seconds):
        if live is not None:
            await live.done.wait()
        else:  # carried out by another process: it stops at its next beat
            while (record := await found(ctx, run_id)).state == "running":  # noqa: ASYNC110 (in another process)
                await anyio.sleep(0.2)
    record = await found(ctx, run_id)
    if record.state == "running":
        summary = (
            f"Asked run {record.id} to stop; it is still finishing the requests it had sent. Call "
            "purgewarden_get_run to see it stop."
        )
    else:
        summary = describe(record) + (f" {record.result}" if record.result else "")
    return RunsOutput(summary=summary, runs=[RunView.of(record)])


async def run_resource(run_id: str, ctx: Context) -> str:
    """A run as JSON: what a destructive tool's result links to."""
    record = await found(ctx, run_id)
    return RunView.of(record).model_dump_json()
