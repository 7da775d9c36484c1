"""Katapult object storage buckets, and revoking their presigned URLs (one call per bucket).

Katapult cannot list buckets, so the user names them (region and name). Revoking is reported bucket by
bucket: a failure on one does not hide the others' results.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal

import anyio
import anyio.lowlevel
from mcp.server.mcpserver import Context, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from purgewarden.clients.errors import ApiError
from purgewarden.clients.katapult import Bucket, KatapultClient
from purgewarden.safety.errors import explain
from purgewarden.safety.plans import HumanAnswer, Snapshot, ask_human
from purgewarden.safety.registry import app_state
from purgewarden.safety.text import OutcomeOutput, PlanOutput, ToolOutput, fence, human_bytes, quote
from purgewarden.tools.katapult.common import cancellation_audited, katapult_client, toolset

REVOKE = "katapult_revoke_presigned_urls"
PREVIEW_REVOKE = "katapult_preview_revoke_presigned_urls"
MAX_BUCKETS = 20
STOP_CODES = frozenset(
    {
        "missing_api_token",
        "invalid_api_token",
        "unauthorized_network_for_api_token",
        "invalid_capabilities_token",
        "scope_not_granted",
        "rate_limit_reached",
        "service_unavailable",
    }
)
"""Refusals that would hit every remaining bucket the same way, so revoking stops at the first."""

Region = Annotated[
    str,
    Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="e.g. uk-lon-1"),
]
BucketName = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"),
]


class BucketRef(BaseModel):
    region: Region
    name: BucketName

    @property
    def key(self) -> str:
        return f"{self.region}/{self.name}"


Buckets = Annotated[list[BucketRef], Field(min_length=1, max_length=MAX_BUCKETS)]


class BucketFacts(BaseModel):
    region: str
    name: str
    state: str
    object_count: int | None
    size: int | None = Field(description="Bytes")
    public_url: str | None
    public_read: bool = Field(description="Readable by anyone through public_url")

    @classmethod
    def of(cls, region: str, name: str, bucket: Bucket) -> BucketFacts:
        """Named as requested (the lookup matched it), so the name in texts is the caller's, not the API's."""
        return cls(
            region=region,
            name=name,
            state=bucket.state,
            object_count=bucket.object_count,
            size=bucket.size,
            public_url=bucket.public_url,
            public_read=bucket.access_control_list.public_read,
        )

    def line(self) -> str:
        count = "unknown" if self.object_count is None else self.object_count
        return (
            f"{quote(f'{self.region}/{self.name}')} state={quote(self.state)} "
            f"objects={count} size={human_bytes(self.size or 0)} public_url={quote(self.public_url or '')} "
            f"public_read={self.public_read}"
        )


class GetBucketOutput(ToolOutput):
    bucket: BucketFacts

    def render(self) -> str:
        return "\n".join([self.summary, fence([self.bucket.line()])])


@toolset.tool("read", "Get a Katapult object storage bucket")
async def katapult_get_bucket(ctx: Context, region: Region, name: BucketName) -> GetBucketOutput:
    """Get an object storage bucket by region and name (Katapult cannot list them). To revoke its
    presigned URLs, call katapult_preview_revoke_presigned_urls."""
    bucket = BucketFacts.of(region, name, await katapult_client(ctx).get_bucket(region, name))
    count = "an unknown number of" if bucket.object_count is None else f"{bucket.object_count}"
    return GetBucketOutput(summary=f"Bucket {region}/{name} holds {count} objects.", bucket=bucket)


# --- revoke presigned URLs -------------------------------------------------------------------------


class RevokePresignedUrlsPlan(PlanOutput):
    buckets: list[BucketFacts]

    def render(self) -> str:
        return "\n".join(filter(None, [super().render(), fence(b.line() for b in self.buckets)]))


class BucketResult(BaseModel):
    region: str
    name: str
    status: Literal["revoked", "not_revoked", "failed", "unknown", "not_attempted"] = Field(
        description="failed: refused, nothing changed; unknown: the answer was lost"
    )
    message: str | None = None


class RevokePresignedUrlsOutcome(OutcomeOutput):
    results: list[BucketResult]

    def render(self) -> str:
        lines = [
            f"{r.region}/{r.name}: {r.status}" + (f" — {r.message}" if r.message else "")
            for r in self.results
        ]
        return "\n".join([super().render(), *lines])


def bucket_keys(buckets: list[BucketRef]) -> list[str]:
    return sorted({b.key for b in buckets})


def bucket_failure(ctx: Context, key: str, error: ApiError) -> str:
    return f"Bucket {key}: {app_state(ctx).redactor.scrub(explain(error))}"


async def read_buckets(
    ctx: Context, client: KatapultClient, keys: list[str], *, skip_missing: bool
) -> list[BucketFacts]:
    """Read every bucket (a few at a time). A bucket that cannot be read fails the call with its name,
    except that deleted ones are left out when `skip_missing` (the plan then counts as shrunk)."""
    found: dict[str, BucketFacts] = {}
    failures: list[str] = []
    limiter = anyio.CapacityLimiter(app_state(ctx).settings.katapult_page_concurrency)

    async def read(key: str) -> None:
        region, name = key.split("/", 1)
        async with limiter:
            try:
                found[key] = BucketFacts.of(region, name, await client.get_bucket(region, name))
            except ApiError as error:
                if not (skip_missing and error.code == "object_storage_bucket_not_found"):
                    failures.append(bucket_failure(ctx, key, error))

    async with anyio.create_task_group() as group:
        for key in keys:
            group.start_soon(read, key)
    if failures:
        raise ToolError(" ".join(sorted(failures)))
    return [found[key] for key in keys if key in found]


def bucket_snapshot(buckets: list[BucketFacts]) -> Snapshot:
    return Snapshot(
        totals={"buckets": len(buckets), "objects": sum(b.object_count or 0 for b in buckets)},
        members=frozenset(f"{b.region}/{b.name}" for b in buckets),
    )


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def describe_revoke(buckets: list[BucketFacts]) -> str:
    names = ", ".join(f"{b.region}/{b.name}" for b in buckets)
    objects = sum(b.object_count or 0 for b in buckets)
    return (
        f"Revoke every presigned URL of {plural(len(buckets), 'Katapult object storage bucket')} ({names}; "
        f"{plural(objects, 'object')}): every link presigned so far stops working, which cannot be undone "
        "(links presigned afterwards work again)."
    )


@toolset.tool("preview", "Preview revoking presigned URLs of Katapult buckets")
async def katapult_preview_revoke_presigned_urls(ctx: Context, buckets: Buckets) -> RevokePresignedUrlsPlan:
    """Dry run of katapult_revoke_presigned_urls: reads each bucket and returns a confirmation_token.
    Show the plan to the user; once approved, call katapult_revoke_presigned_urls with the same buckets
    and the token."""
    client = katapult_client(ctx)
    keys = bucket_keys(buckets)
    facts = await read_buckets(ctx, client, keys, skip_missing=False)
    snapshot = bucket_snapshot(facts)
    warnings = [
        f"Bucket {b.region}/{b.name} is publicly readable: its objects stay readable through the public URL; "
        "revoking presigned URLs does not change that."
        for b in facts
        if b.public_read
    ]
    warnings += [
        f"Bucket {b.region}/{b.name} is not configured yet (see its state below)."
        for b in facts
        if b.state != "configured"
    ]
    summary = describe_revoke(facts)
    return app_state(ctx).guard.plan(
        RevokePresignedUrlsPlan,
        tool=REVOKE,
        arguments={"buckets": keys},
        credential=client.fingerprint,
        snapshot=snapshot,
        summary=summary,
        warnings=warnings,
        buckets=facts,
    )


@toolset.tool("destructive", "Revoke presigned URLs of Katapult buckets")
async def katapult_revoke_presigned_urls(
    ctx: Context,
    buckets: Buckets,
    confirm: Annotated[str, Field(description="The preview's confirmation_token, once the user approved")],
    human: Annotated[HumanAnswer, Resolve(ask_human)],
) -> RevokePresignedUrlsOutcome:
    """Revoke every presigned URL of each bucket, for good: links shared so far stop working. Needs the
    token of katapult_preview_revoke_presigned_urls for the same buckets; reports each bucket's result."""
    client = katapult_client(ctx)
    state = app_state(ctx)
    keys = bucket_keys(buckets)
    before: list[BucketFacts] = []

    async def current() -> Snapshot:
        before[:] = await read_buckets(ctx, client, keys, skip_missing=True)
        return bucket_snapshot(before)

    approval = await state.guard.approve(
        tool=REVOKE,
        preview_tool=PREVIEW_REVOKE,
        arguments={"buckets": keys},
        credential=client.fingerprint,
        confirm=confirm,
        human=human,
        current=current,
        summarize=lambda _: describe_revoke(before),
    )
    notes = list(approval.notes)
    targets = sorted(approval.snapshot.members)
    notes += [
        f"Bucket {key} no longer exists; it was skipped."
        for key in keys
        if key not in approval.snapshot.members
    ]
    results: list[BucketResult] = []
    stop: str | None = None
    revoked: list[str] = []
    with cancellation_audited(ctx, REVOKE, done=revoked):
        for number, key in enumerate(targets, 1):
            region, name = key.split("/", 1)
            await anyio.lowlevel.checkpoint()  # a cancellation stops here, between buckets
            if stop is not None:
                results.append(BucketResult(region=region, name=name, status="not_attempted", message=stop))
                continue
            with anyio.CancelScope(shield=True):
                result, code = await revoke_one(ctx, client, region, name)
            results.append(result)
            if result.status == "revoked":
                revoked.append(key)
            if result.status == "failed" and code in STOP_CODES:
                stop = f"Not attempted: {key} was refused for a reason that applies to every bucket."
            await ctx.report_progress(number, len(targets), f"{key}: {result.status}")
    return revoke_outcome(ctx, results, notes)


async def revoke_one(
    ctx: Context, client: KatapultClient, region: str, name: str
) -> tuple[BucketResult, str | None]:
    """Revoke one bucket's presigned URLs; the result, and the API's error code when it failed."""
    try:
        success = await client.revoke_presigned_urls(region, name)
    except ApiError as error:
        # Only a refusal (4xx, or 429/503 which Katapult turns away before acting) proves nothing changed.
        refused = error.not_carried_out or (error.kind == "response" and (error.status or 500) < 500)
        message = app_state(ctx).redactor.scrub(explain(error))
        if not refused:
            message += " It is unknown whether it was revoked; revoking again is harmless if still wanted."
        status: Literal["failed", "unknown"] = "failed" if refused else "unknown"
        return BucketResult(region=region, name=name, status=status, message=message), error.code
    if success:
        return BucketResult(region=region, name=name, status="revoked"), None
    message = "Katapult answered success=false for this bucket."
    return BucketResult(region=region, name=name, status="not_revoked", message=message), None


def revoke_outcome(ctx: Context, results: list[BucketResult], notes: list[str]) -> RevokePresignedUrlsOutcome:
    counts = Counter(r.status for r in results)
    if results and counts["revoked"] == 0 and counts["unknown"] == 0:
        # Nothing changed anywhere: that is a failure of the call, with every bucket's reason.
        app_state(ctx).audit.record(
            "failed",
            durable=True,
            tool=REVOKE,
            service="katapult",
            error="; ".join(r.message or r.status for r in results),
        )
        lines = "\n".join(f"- {r.region}/{r.name}: {r.message or r.status}" for r in results)
        raise ToolError(f"Nothing was revoked.\n{lines}")
    revoked = [f"{r.region}/{r.name}" for r in results if r.status == "revoked"]
    summary = f"Revoked the presigned URLs of {len(revoked)} of {len(results)} buckets" + (
        f" ({', '.join(revoked)})." if revoked else "."
    )
    others = len(results) - len(revoked)
    if others:
        summary += f" {others} were not revoked or are unknown; see each bucket's result."
    return RevokePresignedUrlsOutcome(
        summary=summary,
        totals={
            status: counts[status]
            for status in ("revoked", "not_revoked", "failed", "unknown", "not_attempted")
        },
        notes=notes,
        results=results,
    )
