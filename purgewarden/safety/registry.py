"""Tools as values: each service module declares its tools into a `Toolset`; the app decides which to serve.

The kind of a tool fixes its annotations (the single source of truth for read-only mode), and the
wrapper installed here is where every tool's failures are translated and audited, once.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations

from purgewarden.clients.errors import ApiError
from purgewarden.safety.errors import explain
from purgewarden.safety.plans import Refusal
from purgewarden.safety.state import AppState
from purgewarden.safety.text import OutcomeOutput, ToolOutput

Kind = Literal["read", "preview", "destructive"]
ToolFn = Callable[..., Awaitable[ToolOutput]]
logger = logging.getLogger("purgewarden.tools")


def annotations_for(kind: Kind) -> ToolAnnotations:
    """The tool's title is set on the tool itself; the hints follow from its kind alone."""
    destructive = kind == "destructive"
    return ToolAnnotations(
        read_only_hint=not destructive,
        destructive_hint=destructive,
        idempotent_hint=not destructive,
        open_world_hint=True,
    )


@dataclass(frozen=True)
class ToolSpec:
    fn: ToolFn
    service: str
    kind: Kind
    title: str

    @property
    def name(self) -> str:
        return self.fn.__name__

    @property
    def annotations(self) -> ToolAnnotations:
        return annotations_for(self.kind)


@dataclass
class Toolset:
    service: str
    specs: list[ToolSpec] = field(default_factory=list)

    def tool(self, kind: Kind, title: str) -> Callable[[ToolFn], ToolFn]:
        def register(fn: ToolFn) -> ToolFn:
            self.specs.append(ToolSpec(fn, self.service, kind, title))
            return fn

        return register


def app_state(ctx: Context) -> AppState:
    return cast(AppState, ctx.request_context.lifespan_context)


def client_name(ctx: Context) -> str | None:
    params = ctx.request_context.session.client_params
    return params.client_info.name if params is not None else None


def instrumented(spec: ToolSpec) -> Callable[..., Awaitable[CallToolResult]]:
    """Wrap a tool: render its text, translate `ApiError` into words, audit refusals and outcomes."""

    @functools.wraps(spec.fn)
    async def run(*args: Any, **kwargs: Any) -> CallToolResult:
        ctx: Context = kwargs["ctx"]
        state = app_state(ctx)
        started = time.monotonic()

        def audit(event: str, durable: bool = False, **fields: Any) -> None:
            state.audit.record(
                event,
                durable=durable,
                tool=spec.name,
                service=spec.service,
                client=client_name(ctx),
                duration_ms=round((time.monotonic() - started) * 1000),
                **fields,
            )

        try:
            result = await spec.fn(*args, **kwargs)
        except Refusal as refusal:
            audit("refused", reason=refusal.reason, message=str(refusal))
            raise
        except ApiError as error:
            message = state.redactor.scrub(explain(error))
            logger.info("%s failed: %s", spec.name, state.redactor.scrub(error.summary))
            if spec.kind == "destructive":
                audit("failed", durable=True, error=error.summary, status=error.status, code=error.code)
            raise ToolError(message) from None
        if isinstance(result, OutcomeOutput):
            audit("outcome", durable=True, outcome=result.summary, counts=result.totals, notes=result.notes)
        return CallToolResult(
            content=[TextContent(type="text", text=result.render())],
            structured_content=result.model_dump(mode="json", by_alias=True),
        )

    return run
