"""Tools as values: each service module declares its tools into a `Toolset`; the app decides which to serve.

A read tool is a function; a destructive operation is an `Operation`, from which the kernel makes the
preview and the destructive tool. The kind of a tool fixes its annotations (the single source of truth
for read-only mode), and the wrapper installed here renders every result, scrubs it of secrets, turns
an `ApiError` into words and audits refusals, once for all tools (the kernel audits a confirmed run).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ContentBlock, ResourceLink, TextContent, ToolAnnotations

from purgewarden.clients.errors import ApiError
from purgewarden.safety.errors import explain
from purgewarden.safety.kernel import Call, Operation, destructive_tool, preview_tool
from purgewarden.safety.plans import Refusal
from purgewarden.safety.runs import RUN_URI
from purgewarden.safety.scopes import caller_lacks
from purgewarden.safety.text import OutcomeOutput, ToolOutput
from purgewarden.store import StoreError

Kind = Literal["read", "preview", "control", "destructive"]
"""`control`: changes no data, but is not read-only either (stopping a run)."""
ToolFn = Callable[..., Awaitable[ToolOutput]]
logger = logging.getLogger("purgewarden.tools")


def annotations_for(kind: Kind) -> ToolAnnotations:
    """The tool's title is set on the tool itself; the hints follow from its kind alone."""
    destructive = kind == "destructive"
    return ToolAnnotations(
        read_only_hint=kind in ("read", "preview"),
        destructive_hint=destructive,
        idempotent_hint=not destructive,
        open_world_hint=kind != "control",
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
    operations: list[Operation[Any, Any, Any, Any]] = field(default_factory=list)

    def tool(self, kind: Kind, title: str) -> Callable[[ToolFn], ToolFn]:
        def register(fn: ToolFn) -> ToolFn:
            self.specs.append(ToolSpec(fn, self.service, kind, title))
            return fn

        return register

    def operation(self, op: Operation[Any, Any, Any, Any]) -> None:
        """Serve a destructive operation as its two tools: the preview and the destructive one."""
        self.operations.append(op)
        self.specs.append(ToolSpec(preview_tool(op), self.service, "preview", op.preview_title))
        self.specs.append(ToolSpec(destructive_tool(op), self.service, "destructive", op.title))


STRUCTURED_CHARS = 1000
"""Longest string value in structured content (bar the token): API values can be floods, results may not."""


def presented(data: Any, scrub: Callable[[str], str], key: str = "") -> Any:
    """Structured content as it may leave the server: every string (keys too: some are API values, such
    as object types) scrubbed of secrets, and cut short when long, as `quote` cuts them in text."""
    if isinstance(data, str):
        text = scrub(data)
        if len(text) > STRUCTURED_CHARS and key != "confirmation_token":
            return f"{text[:STRUCTURED_CHARS]}…[{len(text) - STRUCTURED_CHARS} more characters]"
        return text
    if isinstance(data, dict):
        return {presented(k, scrub): presented(v, scrub, k) for k, v in data.items()}
    if isinstance(data, list):
        return [presented(item, scrub, key) for item in data]
    return data


def run_link(run_id: str) -> ResourceLink:
    """Where a destructive tool's run can be read later (it may go on after the call returned)."""
    return ResourceLink(
        type="resource_link", name=run_id, uri=RUN_URI.format(run_id=run_id), mime_type="application/json"
    )


def refuse_without_scope(spec: ToolSpec) -> None:
    """Over OAuth, a caller whose access token lacks the tool's scope is refused, the scope named (the tool
    is not in its tools/list either)."""
    scope = caller_lacks(spec.kind, spec.service)
    if scope is not None:
        raise Refusal(
            "missing_scope",
            f"Refused: {spec.name} needs the OAuth scope {scope}, which your access token does not carry. "
            "Nothing was done. Ask whoever runs the authorization server to grant it, then sign in again.",
        )


def instrumented(spec: ToolSpec) -> Callable[..., Awaitable[CallToolResult]]:
    """Wrap a tool: render its text, translate `ApiError` into words, scrub secrets, audit refusals."""

    @functools.wraps(spec.fn)
    async def run(*args: Any, **kwargs: Any) -> CallToolResult:
        call = Call.of(kwargs["ctx"], spec.name, spec.service)
        scrub = call.state.redactor.scrub

        try:
            refuse_without_scope(spec)
            result = await spec.fn(*args, **kwargs)
        except Refusal as refusal:
            call.audit("refused", reason=refusal.reason, message=str(refusal))
            raise ToolError(scrub(str(refusal))) from None
        except ApiError as error:
            logger.info("%s failed: %s", spec.name, scrub(error.summary))
            if spec.kind == "destructive":
                # Raised before anything was sent (token, re-check): nothing was destroyed.
                call.audit("failed", durable=True, error=error.summary, status=error.status, code=error.code)
            raise ToolError(scrub(explain(error))) from None
        except ToolError as error:
            raise ToolError(scrub(str(error))) from None
        except StoreError as error:
            logger.error("%s: the store failed: %s", spec.name, scrub(str(error)))
            raise ToolError(
                scrub(
                    f"The server's store of plans and runs failed ({error}). Nothing was deleted. Ask the operator "
                    "to check PURGEWARDEN_STORE_URL (or the state directory), then call the tool again."
                )
            ) from None
        structured = presented(result.model_dump(mode="json", by_alias=True), scrub)
        content: list[ContentBlock] = [TextContent(type="text", text=scrub(result.render()))]
        if isinstance(result, OutcomeOutput) and result.run_id:
            content.append(run_link(result.run_id))
        return CallToolResult(content=content, structured_content=structured)

    return run
