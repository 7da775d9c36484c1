"""The kernel: one flow for every destructive operation, and the two tools generated from each.

An `Operation` declares what is particular to it — its input model, how it observes the state, the
plan's summary, its re-check and its execution with per-item accounting — and nothing of the flow.
The kernel runs the flow in one order for all of them:

    validate input → check the token without consuming it → ask the human (only about a token that
    will be honoured, with a question built from the plan) → consume the token → re-check → execute,
    with progress, cancellation and a watch for items beyond the plan → classify every item (the
    `Ledger`) → audit → result

The operation supplies the reads a step needs (observe, re-check, the read-back after an ambiguous
request, the watch's looks); the kernel decides when they run and what they mean. Everything after
the token is consumed is audited here, with the accounting; refusals before it, the translation of
API failures into words and the scrubbing of every result, by the registry's wrapper.
"""

from __future__ import annotations

import contextlib
import inspect
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, ClassVar, Generic, TypeVar, cast

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.elicitation import AcceptedElicitation
from mcp.server.mcpserver import Context, Elicit, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo

from purgewarden.clients.errors import ApiError
from purgewarden.config import Settings
from purgewarden.safety.errors import explain
from purgewarden.safety.human import (
    CANNOT_ELICIT,
    TOKEN_BUSY,
    TOKEN_REFUSED,
    HumanAnswer,
    HumanApproval,
    NotAsked,
    Question,
    TypedApproval,
    refusal_for,
    was_asked,
)
from purgewarden.safety.outcome import BeyondPlan, Ledger
from purgewarden.safety.plans import Claims, Refusal, Snapshot, compare, describe_totals
from purgewarden.safety.runs import Journal, LiveRun, Replay, RunRecord, now_iso
from purgewarden.safety.scopes import principal_of
from purgewarden.safety.state import AppState, app_state
from purgewarden.safety.text import OutcomeOutput, PlanOutput, plural, quote
from purgewarden.store import StoreError

InputT = TypeVar("InputT", bound=BaseModel)
DataT = TypeVar("DataT")
PlanT = TypeVar("PlanT", bound=PlanOutput)
OutcomeT = TypeVar("OutcomeT", bound=OutcomeOutput)

COMMON_OUTCOME = frozenset(OutcomeOutput.model_fields)
"""Fields every outcome has; an operation's own (e.g. `organisation_id`) are filled from its target while running."""
CONFIRM_DESCRIPTION = "confirmation_token of the preview the user approved"


@dataclass
class Call:
    """One tool call's view of the server: what an operation may use, none of the flow."""

    ctx: Context
    state: AppState
    tool: str
    service: str
    started: float = field(default_factory=time.monotonic)
    live: LiveRun | None = None
    """Once the run goes on in the background: progress goes to whoever follows it, not to this call."""

    @classmethod
    def of(cls, ctx: Context, tool: str, service: str) -> Call:
        """The call this request makes; over OAuth, by the principal its access token speaks for (its
        subject, else the client it was issued to)."""
        return cls(ctx, app_state(ctx), tool, service, principal=principal_of(get_access_token()))

    @property
    def settings(self) -> Settings:
        return self.state.settings

    @cached_property
    def client(self) -> str | None:
        """The client application's name, read while the call's session is there."""
        params = self.ctx.request_context.session.client_params
        return params.client_info.name if params is not None else None

    principal: str | None = None
    """The authenticated caller (over HTTP with OAuth); None otherwise."""

    async def progress(self, done: float, total: float | None, message: str) -> None:
        if self.live is not None:
            await self.live.report(done, total, message)
        else:
            await self.ctx.report_progress(done, total, message)

    def explain(self, error: ApiError) -> str:
        """The error in words for the model (API text quoted), with no secret."""
        return self.state.redactor.scrub(explain(error))

    def audit(self, event: str, *, durable: bool = False, **fields: Any) -> None:
        self.state.audit.record(
            event,
            durable=durable,
            tool=self.tool,
            service=self.service,
            client=self.client,
            principal=self.principal,
            duration_ms=round((time.monotonic() - self.started) * 1000),
            **fields,
        )


@dataclass
class Observation(Generic[DataT]):
    """The state as read: the snapshot a plan is bound to, and what the operation keeps of the read."""

    snapshot: Snapshot
    data: DataT


@dataclass
class Run(Generic[InputT, DataT]):
    """A confirmed execution: what it may act on and where it accounts for every item."""

    call: Call
    args: InputT
    target: dict[str, Any]
    observation: Observation[DataT]
    """The re-checked state: at most what the user approved."""
    planned: Mapping[str, int]
    notes: list[str]
    ledger: Ledger
    journal: Journal
    beyond: BeyondPlan | None = None

    async def between_requests(self) -> None:
        """Where a cancellation lands: never inside a request that was sent."""
        await anyio.lowlevel.checkpoint()

    def sending(
        self, what: str, ids: Sequence[str] | None = None, count: int | None = None
    ) -> AbstractAsyncContextManager[dict[str, Any]]:
        """Wrap each destructive request, right after `between_requests`: journaled before it goes out
        (the `ids` it acts on, or the `count` it may destroy), carried through whatever happens, and its
        answer's settlements journaled after, with the facts put in the yielded dict (e.g. a task id)."""
        return self.journal.sending(what, ids, count)


class Operation(ABC, Generic[InputT, DataT, PlanT, OutcomeT]):
    """One destructive operation, declared once; the kernel makes its preview and destructive tools."""

    service: ClassVar[str]
    name: ClassVar[str]
    """`empty_recycle_bin` → tools `cocoon_preview_empty_recycle_bin` and `cocoon_empty_recycle_bin`."""
    title: ClassVar[str]
    preview_title: ClassVar[str]
    description: ClassVar[str]
    preview_description: ClassVar[str]
    Input: type[InputT]
    Plan: type[PlanT]
    Outcome: type[OutcomeT]
    empties_everything: ClassVar[bool] = False
    """The API offers only "destroy everything": the kernel watches for items arriving during the call."""
    destructive_fields: ClassVar[tuple[str, ...]] = ()
    """Input fields only the destructive tool takes (e.g. `wait`)."""

    @property
    def tool(self) -> str:
        return f"{self.service}_{self.name}"

    @property
    def preview_tool(self) -> str:
        return f"{self.service}_preview_{self.name}"

    def credential(self, call: Call) -> str:
        """The fingerprint of the credential in use: what a token is bound to instead of the secret."""
        return call.state.client(self.service).fingerprint

    @abstractmethod
    def target(self, call: Call, args: InputT) -> dict[str, Any]:
        """The canonical arguments that decide what is destroyed: what the token is bound to."""

    def typed_target(self, target: Mapping[str, Any]) -> str | None:
        """What the user types to approve a large plan; None: the item count."""
        return None

    @abstractmethod
    def blast_radius(self, totals: Mapping[str, int]) -> int:
        """How many items a plan destroys (for the typed confirmation and the operator's cap)."""

    @abstractmethod
    async def observe(self, call: Call, args: InputT) -> Observation[DataT]:
        """Read the state the operation would act on now."""

    async def recheck(self, call: Call, args: InputT, held: Snapshot | None) -> Observation[DataT]:
        """Re-read the state right before acting; `held` is the previewed snapshot when this server has it."""
        return await self.observe(call, args)

    @abstractmethod
    def summary(self, target: Mapping[str, Any], observation: Observation[DataT]) -> str:
        """One sentence naming what would be destroyed (API values only through `quote`): the plan's
        summary and the question put to the human."""

    @abstractmethod
    async def plan(
        self, call: Call, args: InputT, observation: Observation[DataT]
    ) -> tuple[list[str], dict[str, Any]]:
        """The preview's warnings and its own fields of `Plan`."""

    @abstractmethod
    async def execute(self, run: Run[InputT, DataT]) -> OutcomeT:
        """Carry out the run, settling every item in `run.ledger` (fates from `ApiError.fate`)."""

    def watch(self, run: Run[InputT, DataT]) -> Watch:
        """For `empties_everything`: how to look at the state while this run's call is in flight."""
        raise NotImplementedError

    async def resume(self, state: AppState, record: RunRecord, told: Replay, journal: Journal) -> None:
        """A run of this operation whose process died, taken over: settle in `journal.ledger` what can
        still be known (a queued task followed to its end). Most operations have nothing to add."""


@dataclass(frozen=True)
class Look:
    """What one look at the state saw: the items outside the plan, and whether planned ones remained."""

    outside: Mapping[str, str]
    """id → what the API tells about the item (quoted)."""
    planned_remain: bool


class Watch(ABC):
    """Looks at the state during one "empty everything" run; holds whatever that run's looks need."""

    @abstractmethod
    async def look(self, *, final: bool) -> Look:
        """The state now. `final`: the call is over, so look thoroughly; others may be cheap."""


# --- the flow --------------------------------------------------------------------------------------


def validated(op: Operation[InputT, Any, Any, Any], arguments: Mapping[str, Any]) -> InputT:
    try:
        return op.Input.model_validate(dict(arguments))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ToolError(f"Invalid arguments: {problems}. Fix them and call the tool again.") from None


def question_for(
    op: Operation[Any, Any, Any, Any], claims: Claims, target: Mapping[str, Any], settings: Settings
) -> Question:
    """The question about a checked token (whose target `check` proved is this call's)."""
    size = claims.size
    if size <= settings.typed_confirmation_over:
        return Question(claims.summary)
    typed = op.typed_target(target)
    if typed is None:
        return Question(claims.summary, expected=str(size), expected_is_count=True)
    return Question(claims.summary, expected=typed)


def over_cap(size: int, settings: Settings) -> str | None:
    cap = settings.max_items
    if cap is None or size <= cap:
        return None
    return (
        f"This plan destroys {size:,} items, more than this server's cap of {cap:,} (PURGEWARDEN_MAX_ITEMS): it "
        "cannot be confirmed. Narrow the selection, or ask the operator to raise the cap."
    )


def refuse_over_cap(size: int, settings: Settings) -> None:
    capped = over_cap(size, settings)
    if capped is not None:
        raise Refusal("over_cap", f"Refused: {capped} Nothing was deleted.")


async def issue_plan(
    op: Operation[InputT, DataT, PlanT, Any],
    call: Call,
    args: InputT,
    target: dict[str, Any],
    observation: Observation[DataT],
) -> PlanT:
    """A plan of the observed state for the user, with a token unless it is beyond the operator's cap;
    audits the preview."""
    warnings, fields = await op.plan(call, args, observation)
    warnings = [*await call.state.runs.warnings_for(op.tool, target), *warnings]
    snapshot = observation.snapshot
    summary = op.summary(target, observation)
    size = op.blast_radius(snapshot.totals)
    capped = over_cap(size, call.settings)
    token: str | None = None
    expires: str | None = None
    if capped is None:
        issued = await call.state.confirmations.issue(
            op.tool, target, op.credential(call), snapshot, summary, size, call.principal
        )
        token, expires = issued.token, issued.expires_at
    else:
        warnings = [*warnings, capped]
    call.audit(
        "preview",
        plan_for=op.tool,
        target=target,
        plan_digest=snapshot.digest,
        counts=dict(snapshot.totals),
        confirmable=capped is None,
    )
    return op.Plan(
        summary=summary,
        totals=dict(snapshot.totals),
        warnings=warnings,
        confirmation_token=token,
        expires_at=expires,
        **fields,
    )


async def preview(op: Operation[InputT, Any, PlanT, Any], call: Call, args: InputT) -> PlanT:
    return await issue_plan(op, call, args, op.target(call, args), await op.observe(call, args))


async def checked(
    op: Operation[InputT, Any, Any, Any], call: Call, args: InputT, confirm: str, *, asking: bool = False
) -> tuple[dict[str, Any], Claims]:
    """Every binding of the token, without consuming it; `asking`: this call put the question about it."""
    target = op.target(call, args)
    claims = await call.state.confirmations.check(
        confirm,
        tool=op.tool,
        preview_tool=op.preview_tool,
        arguments=target,
        credential=op.credential(call),
        principal=call.principal,
        asking=asking,
    )
    refuse_over_cap(claims.size, call.settings)
    return target, claims


async def carry_out(
    op: Operation[InputT, DataT, PlanT, OutcomeT], call: Call, args: InputT, confirm: str, human: HumanAnswer
) -> OutcomeT:
    """The destructive tool's body: the human's answer honoured, the token consumed, then the run."""
    confirmations = call.state.confirmations
    asked = was_asked(human)
    # A question this call asked may be answered after the token's expiry: the reservation it holds
    # keeps the token good for it, so the user is never asked about a token that is then refused.
    target, claims = await checked(op, call, args, confirm, asking=asked)
    try:
        await gate(op, call, target, claims, human, asked)
        held = await confirmations.consume(claims)
    except BaseException:
        if asked:
            with anyio.CancelScope(shield=True):
                await confirmations.release(claims)  # refused, failed or cancelled before anything happened
        raise
    try:
        run = await prepared(op, call, args, target, claims, held)
    except ApiError as error:
        call.audit(
            "failed", durable=True, target=target, error=error.summary, status=error.status, code=error.code
        )
        raise ToolError(f"Nothing was deleted: {call.explain(error)}") from None
    except anyio.get_cancelled_exc_class():
        call.audit("cancelled", durable=True, target=target, accounting=Ledger().totals())
        raise
    return await follow(op, run)


async def gate(
    op: Operation[Any, Any, Any, Any],
    call: Call,
    target: Mapping[str, Any],
    claims: Claims,
    human: HumanAnswer,
    asked: bool,
) -> None:
    """Refuse unless the human's side allows the call: nobody else is asking about this token, and the
    answer (or the absence of a question) lets it go ahead."""
    data = human.data if isinstance(human, AcceptedElicitation) else None
    busy = isinstance(data, NotAsked) and data.why == TOKEN_BUSY
    if busy or (not asked and call.state.confirmations.being_asked(claims)):
        raise Refusal(
            "token_busy",
            "Refused: this confirmation token is already used by another call, which is asking the user about "
            "it right now; each token works once. Wait for that call's result, or preview again.",
        )
    settings = call.settings
    refusal = refusal_for(
        human, question_for(op, claims, target, settings), require_human=settings.require_human, tool=op.tool
    )
    if refusal is not None:
        raise refusal


async def prepared(
    op: Operation[InputT, DataT, PlanT, OutcomeT],
    call: Call,
    args: InputT,
    target: dict[str, Any],
    claims: Claims,
    held: Snapshot,
) -> Run[InputT, DataT]:
    """After the token is consumed: re-check against the plan, then record the run before anything is
    sent. Refuses when the state grew beyond the plan, or when the run cannot be journaled."""
    observation = await op.recheck(call, args, held)
    verdict = compare(held, observation.snapshot)
    planned = describe_totals(held.totals)
    now = observation.snapshot.totals
    if verdict == "grown":
        fresh = await issue_plan(op, call, args, target, observation)
        offer = (
            f'if they approve it, call {op.tool} again with the same arguments and confirm="{fresh.confirmation_token}" '
            f"(expires {fresh.expires_at})."
            if fresh.confirmation_token
            else "it cannot be confirmed: " + fresh.warnings[-1]
        )
        raise Refusal(
            "state_grew",
            f"Refused: the state changed since the preview and the operation would now destroy more than the "
            f"user approved (planned {planned}; now {describe_totals(now)}). Nothing was "
            f"deleted. New plan: {fresh.summary} Show the user this new plan; {offer}",
        )
    size = op.blast_radius(now)
    refuse_over_cap(size, call.settings)
    notes = []
    if verdict == "shrunk":
        notes.append(
            f"The state shrank since the preview (planned {planned}; now "
            f"{describe_totals(now)}); only what still exists was acted on."
        )
    record = RunRecord(
        id=f"run_{secrets.token_urlsafe(9)}",
        tool=op.tool,
        service=op.service,
        target=target,
        summary=claims.summary,
        size=size,
        principal=call.principal,
        client=call.client,
        owner=call.state.runs.owner,
        started_at=now_iso(),
    )
    try:  # both records exist before anything is sent, or nothing is
        call.audit(
            "confirmed",
            durable=True,
            target=target,
            run=record.id,
            plan_digest=claims.state,
            counts=dict(now),
            verdict=verdict,
        )
    except OSError as error:
        raise Refusal(
            "audit_unwritable",
            f"Refused: the audit log could not be written ({error.strerror or error}), and nothing is deleted "
            "without its record. Nothing was deleted. Ask the operator to check the audit log "
            "(PURGEWARDEN_AUDIT_LOG), then preview again.",
        ) from None
    ledger = Ledger()
    try:
        with anyio.CancelScope(shield=True):  # a run recorded is a run launched: never one without the other
            live = await call.state.runs.start(record, ledger)
    except StoreError as error:
        raise Refusal(
            "journal_unwritable",
            f"Refused: the run could not be journaled ({error}), and nothing is deleted without its record. "
            "Nothing was deleted. Ask the operator to check the store (PURGEWARDEN_STORE_URL), then preview again.",
        ) from None
    run = Run(call, args, target, observation, held.totals, notes, ledger, live.journal)
    call.live = live
    return run


async def follow(op: Operation[InputT, DataT, PlanT, OutcomeT], run: Run[InputT, DataT]) -> OutcomeT:
    """Carry the run out in the background of the server and follow it for `follow_seconds`, relaying its
    progress: its outcome if it ends by then, else `running` with the counts so far. A call that goes
    away (a client's timeout) leaves the run going; `purgewarden_cancel_run` stops it."""
    call = run.call
    live = call.live
    assert live is not None
    call.state.runs.launch(live, lambda: executed(op, run), lambda live, record: finished(run, live, record))
    live.follower = call.ctx.report_progress
    try:
        with anyio.move_on_after(call.settings.follow_seconds):
            await live.done.wait()
    finally:
        live.follower = None
    if not live.done.is_set():
        return running(op, run, live)
    if live.failure is not None:
        raise live.failure
    if live.stopped_by is not None:
        raise ToolError(stopped(run, live.stopped_by))
    outcome: OutcomeT = live.outcome
    return outcome


def running(op: Operation[Any, Any, Any, OutcomeT], run: Run[Any, Any], live: LiveRun) -> OutcomeT:
    counts = run.ledger.counts
    record = live.record
    seconds = round(time.monotonic() - run.call.started)
    return op.Outcome(
        summary=(
            f"Still running after {seconds} s: {counts['carried_out']:,} of {record.size:,} items carried out so "
            f'far. The run goes on in the server. Call purgewarden_get_run with run_id="{record.id}" to follow '
            "it (or read its resource); purgewarden_cancel_run stops it between requests."
        ),
        totals={},
        notes=list(run.notes),
        accounting=run.ledger.totals(),
        run_id=record.id,
        state="running",
        **{k: v for k, v in run.target.items() if k in op.Outcome.model_fields and k not in COMMON_OUTCOME},
    )


async def executed(op: Operation[InputT, DataT, PlanT, OutcomeT], run: Run[InputT, DataT]) -> OutcomeT:
    """The run's body, in the background: execute and account; every way out is audited."""
    call = run.call

    def record(event: str, **fields: Any) -> None:
        call.audit(
            event,
            durable=True,
            target=run.target,
            run=run.journal.run_id,
            accounting=run.ledger.totals(),
            **fields,
        )

    try:
        outcome = await watched(op, run) if op.empties_everything else await op.execute(run)
    except anyio.get_cancelled_exc_class():
        record("cancelled")
        raise
    except ApiError as error:
        record("failed", error=error.summary, status=error.status, code=error.code, fate=error.fate)
        raise ToolError(unfinished(run, error)) from None
    except ToolError as error:
        record("failed", error=str(error))
        raise
    except (StoreError, BaseExceptionGroup) as error:  # concurrent requests (batches) fail as a group
        lost = journal_failure(error)
        if lost is None:
            raise
        # The journal stopped the run between requests: say what was done so far.
        record("failed", error=f"journal: {lost}")
        raise ToolError(unfinished(run, lost)) from None
    outcome.accounting = run.ledger.totals()
    if run.beyond is not None and run.beyond.count:
        outcome.notes.append(run.beyond.note())
    outcome.notes[:0] = run.notes
    outcome.run_id = run.journal.run_id
    record(
        "outcome",
        outcome=outcome.summary,
        counts=outcome.totals,
        examples=run.ledger.samples,
        notes=outcome.notes,
        beyond_plan=dict(run.beyond.items) if run.beyond else {},
    )
    return outcome


def finished(run: Run[Any, Any], live: LiveRun, record: RunRecord) -> None:
    """The run's record once it ended: its result in words, its totals and exact accounting."""
    record.accounting = run.ledger.totals()
    if live.outcome is not None:
        record.result = live.outcome.summary
        record.totals = dict(live.outcome.totals)
        record.notes = list(live.outcome.notes)
    elif live.stopped_by is not None:
        record.result = stopped(run, live.stopped_by)
        record.notes = list(run.notes)
    else:
        record.result = str(live.failure)
        record.notes = list(run.notes)


def stopped(run: Run[Any, Any], how: str) -> str:
    counts = run.ledger.counts
    why = (
        "Cancelled on request, between requests"
        if how == "cancelled"
        else "Interrupted: the server stopped, between requests"
    )
    return (
        f"{why}: {counts['carried_out']:,} carried out, {counts['not_carried_out']:,} not carried out, "
        f"{counts['unknown']:,} unknown."
    )


def journal_failure(error: BaseException) -> StoreError | None:
    """The store's failure behind `error` (itself, or inside a group of concurrent requests' failures)."""
    if isinstance(error, StoreError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := journal_failure(inner)) is not None:
                return found
    return None


def unfinished(run: Run[Any, Any], error: ApiError | StoreError) -> str:
    """The words for a run that an API or journal failure stopped: what failed, what is known of each item
    so far, and what the run noted on the way."""
    why = (
        run.call.explain(error)
        if isinstance(error, ApiError)
        else f"its journal could not be written ({error})."
    )
    counts = run.ledger.counts
    known = (
        f"Accounting so far: {counts['carried_out']:,} carried out, {counts['not_carried_out']:,} not carried "
        f"out, {counts['unknown']:,} unknown."
    )
    if counts["unknown"]:
        known += " Items counted unknown may yet be deleted: read the state again before acting on this."
    where = f" at {error.operation}" if isinstance(error, ApiError) else ""
    return " ".join([f"The run stopped{where}: {why} {known}", *run.notes])


async def watched(op: Operation[InputT, DataT, Any, OutcomeT], run: Run[InputT, DataT]) -> OutcomeT:
    """Execute an "empty everything" run while watching for items that arrive meanwhile; afterwards,
    report those that were destroyed beyond the plan."""
    interval = run.call.settings.watch_interval
    watch = op.watch(run)
    met = Sighting()
    with contextlib.suppress(ApiError):  # one look before the request goes out, not beside it
        met.saw(await watch.look(final=False))

    async def keep_looking() -> None:
        while True:
            await anyio.sleep(interval)
            with contextlib.suppress(ApiError):  # a missed look only narrows what can be reported
                met.saw(await watch.look(final=False))

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(keep_looking)
            try:
                outcome = await op.execute(run)
            finally:
                group.cancel_scope.cancel()
    except BaseExceptionGroup as failed:  # the watch never raises: the failure is the execution's
        raise failed.exceptions[0] from None
    if not met.outside:
        run.beyond = BeyondPlan({})
        return outcome
    try:
        left = (await watch.look(final=True)).outside
    except ApiError as error:
        run.notes.append(
            f"{plural(len(met.outside), 'item')} outside the plan arrived during the call; whether it went with "
            f"the rest could not be checked ({run.call.explain(error)})."
        )
        return outcome
    run.beyond = BeyondPlan({quote(i): what for i, what in met.outside.items() if i not in left})
    return outcome


@dataclass
class Sighting:
    """The items outside the plan in the last look that still showed planned ones: what the call met.

    An item that came and went before the planned ones did is not in it; one that arrived and was
    destroyed between two looks is not seen at all (the limit of watching from outside)."""

    outside: Mapping[str, str] = field(default_factory=dict)

    def saw(self, look: Look) -> None:
        if look.planned_remain:
            self.outside = look.outside


# --- the tools -------------------------------------------------------------------------------------


def _parameter(name: str, info: FieldInfo) -> inspect.Parameter:
    """A tool parameter with the input model field's type, constraints, description and default."""
    metadata = [*info.metadata]
    if info.description:
        metadata.append(Field(description=info.description))
    if info.default_factory is not None:
        # Kept a factory, as the model has it: a literal default (`[]`) would show in the schema beside,
        # and contradict, constraints such as minItems.
        metadata.append(Field(default_factory=info.default_factory))
    annotation: Any = Annotated[(info.annotation, *metadata)] if metadata else info.annotation
    if info.default_factory is not None or info.is_required():
        default = inspect.Parameter.empty
    else:
        default = info.default
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _generated(
    name: str, body: Callable[..., Awaitable[Any]], params: list[inspect.Parameter], returns: Any
) -> Any:
    """Give `body(**kwargs)` the signature the SDK reads to build a tool's schema (or a resolver's inputs)."""
    body.__name__ = body.__qualname__ = name
    body.__signature__ = inspect.Signature(params, return_annotation=returns)  # type: ignore[attr-defined]
    body.__annotations__ = {
        p.name: p.annotation for p in params if p.annotation is not inspect.Parameter.empty
    }
    body.__annotations__["return"] = returns
    return body


def _context_parameter() -> inspect.Parameter:
    return inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)


def preview_tool(op: Operation[Any, Any, Any, Any]) -> Callable[..., Awaitable[PlanOutput]]:
    fields = {n: f for n, f in op.Input.model_fields.items() if n not in op.destructive_fields}

    async def run(ctx: Context, **arguments: Any) -> PlanOutput:
        call = Call.of(ctx, op.preview_tool, op.service)
        return await preview(op, call, validated(op, arguments))

    run.__doc__ = op.preview_description

    params = [_context_parameter(), *(_parameter(n, f) for n, f in fields.items())]
    return cast(Callable[..., Awaitable[PlanOutput]], _generated(op.preview_tool, run, params, op.Plan))


def destructive_tool(op: Operation[Any, Any, Any, Any]) -> Callable[..., Awaitable[OutcomeOutput]]:
    fields = op.Input.model_fields
    by_name = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in fields]

    async def ask(
        ctx: Context, confirm: str, **arguments: Any
    ) -> HumanApproval | TypedApproval | NotAsked | Elicit[Any]:
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.elicitation is None:
            return NotAsked(why=CANNOT_ELICIT)
        call = Call.of(ctx, op.tool, op.service)
        continuation = bool(ctx.request_state)  # 2026-07-28: the same call, back with the answer
        try:
            target, claims = await checked(op, call, validated(op, arguments), confirm, asking=continuation)
        except ToolError:
            return NotAsked(why=TOKEN_REFUSED)  # the tool body refuses it, with the reason
        # A first round claims the token for its question; a later round (2026-07-28: the answer comes
        # back with the request state this call was given) is the same call asking again.
        if not continuation and not await call.state.confirmations.reserve(claims):
            return NotAsked(why=TOKEN_BUSY)
        question = question_for(op, claims, target, call.settings)
        return Elicit(call.state.redactor.scrub(question.message), question.schema)

    resolver = _generated(
        f"ask_human_{op.tool}",
        ask,
        [_context_parameter(), inspect.Parameter("confirm", inspect.Parameter.KEYWORD_ONLY), *by_name],
        HumanApproval | TypedApproval | NotAsked | Elicit[Any],
    )

    async def run(ctx: Context, confirm: str, human: HumanAnswer, **arguments: Any) -> OutcomeOutput:
        call = Call.of(ctx, op.tool, op.service)
        return await carry_out(op, call, validated(op, arguments), confirm, human)

    run.__doc__ = op.description

    required = [_parameter(n, f) for n, f in fields.items() if f.is_required()]
    optional = [_parameter(n, f) for n, f in fields.items() if not f.is_required()]
    confirm = inspect.Parameter(
        "confirm",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[str, Field(description=CONFIRM_DESCRIPTION)],
    )
    human = inspect.Parameter(
        "human", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[HumanAnswer, Resolve(resolver)]
    )
    params = [_context_parameter(), *required, confirm, human, *optional]
    return cast(Callable[..., Awaitable[OutcomeOutput]], _generated(op.tool, run, params, op.Outcome))


__all__ = [
    "Call",
    "Look",
    "Observation",
    "Operation",
    "Run",
    "Watch",
    "destructive_tool",
    "preview_tool",
]
