"""Katapult object storage buckets, and revoking their presigned URLs (one call per bucket).

Katapult cannot list buckets, so the user names them (region and name). Revoking is one `Operation`
whose flow the safety kernel runs; each bucket is an item of the run and ends by the one rule,
`ApiError.fate`: revoked, refused (nothing changed), or unknown (the answer was lost or unreadable, so
it may have been revoked). A failure on one bucket does not hide the others' results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from purgewarden.clients.errors import ApiError, Fate
from purgewarden.clients.katapult import Bucket, KatapultClient
from purgewarden.safety.kernel import Call, Observation, Operation, Run
from purgewarden.safety.outcome import MAY_YET_HAPPEN
from purgewarden.safety.plans import Snapshot
from purgewarden.safety.state import app_state
from purgewarden.safety.text import OutcomeOutput, PlanOutput, ToolOutput, fence, human_bytes, plural, quote
from purgewarden.tools.katapult.common import katapult_client, toolset

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

    @property
    def key(self) -> str:
        return f"{self.region}/{self.name}"

    def line(self) -> str:
        count = "unknown" if self.object_count is None else self.object_count
        return (
            f"{quote(self.key)} state={quote(self.state)} "
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
    bucket = BucketFacts.of(region, name, await katapult_client(app_state(ctx)).get_bucket(region, name))
    count = "an unknown number of" if bucket.object_count is None else f"{bucket.object_count}"
    return GetBucketOutput(summary=f"Bucket {quote(bucket.key)} holds {count} objects.", bucket=bucket)


# --- revoke presigned URLs -------------------------------------------------------------------------


class RevokePresignedUrlsPlan(PlanOutput):
    buckets: list[BucketFacts]

    def render(self) -> str:
        return "\n".join(filter(None, [super().render(), fence(b.line() for b in self.buckets)]))


BucketStatus = Literal["revoked", "not_revoked", "failed", "unknown", "not_attempted"]
FATE_OF: Mapping[BucketStatus, Fate] = {
    "revoked": "carried_out",
    "not_revoked": "not_carried_out",
    "failed": "not_carried_out",
    "unknown": "unknown",
    "not_attempted": "not_carried_out",
}


class BucketResult(BaseModel):
    region: str
    name: str
    status: BucketStatus = Field(description="failed: refused, nothing changed; unknown: the answer was lost")
    message: str | None = None

    @property
    def key(self) -> str:
        return f"{self.region}/{self.name}"


class RevokePresignedUrlsOutcome(OutcomeOutput):
    results: list[BucketResult] = Field(default_factory=list)

    def render(self) -> str:
        lines = [
            f"{quote(r.key)}: {r.status}" + (f" — {r.message}" if r.message else "") for r in self.results
        ]
        return "\n".join([super().render(), *lines])


class RevokePresignedUrlsInput(BaseModel):
    buckets: Buckets


def bucket_keys(buckets: list[BucketRef]) -> list[str]:
    return sorted({b.key for b in buckets})


async def read_buckets(call: Call, keys: list[str], *, skip_missing: bool) -> list[BucketFacts]:
    """Read every bucket (a few at a time). A bucket that cannot be read fails the call with its name,
    except that deleted ones are left out when `skip_missing` (the plan then counts as shrunk)."""
    client = katapult_client(call.state)
    found: dict[str, BucketFacts] = {}
    failures: list[str] = []
    limit = client.limit_for("get_bucket", call.settings.katapult_page_concurrency)

    async def read(key: str) -> None:
        region, name = key.split("/", 1)
        async with limit.slot() as slot:
            try:
                found[key] = BucketFacts.of(region, name, await client.get_bucket(region, name, slot=slot))
            except ApiError as error:
                if not (skip_missing and error.code == "object_storage_bucket_not_found"):
                    failures.append(f"Bucket {quote(key)}: {call.explain(error)}")

    async with anyio.create_task_group() as group:
        for key in keys:
            group.start_soon(read, key)
    if failures:
        raise ToolError(" ".join(sorted(failures)))
    return [found[key] for key in keys if key in found]


def describe_revoke(buckets: list[BucketFacts]) -> str:
    names = ", ".join(quote(b.key) for b in buckets)
    objects = sum(b.object_count or 0 for b in buckets)
    return (
        f"Revoke every presigned URL of {plural(len(buckets), 'Katapult object storage bucket')} ({names}; "
        f"{plural(objects, 'object')}): every link presigned so far stops working, which cannot be undone "
        "(links presigned afterwards work again)."
    )


Facts = list[BucketFacts]


class RevokePresignedUrls(
    Operation[RevokePresignedUrlsInput, Facts, RevokePresignedUrlsPlan, RevokePresignedUrlsOutcome]
):
    """One revoke call per bucket; the kernel's re-check refuses buckets that grew since the preview."""

    service = "katapult"
    name = "revoke_presigned_urls"
    title = "Revoke presigned URLs of Katapult buckets"
    preview_title = "Preview revoking presigned URLs of Katapult buckets"
    description = """Revoke every presigned URL of each bucket, for good: links shared so far stop working.
    Needs the token of katapult_preview_revoke_presigned_urls for the same buckets; reports each bucket's
    result."""
    preview_description = """Dry run of katapult_revoke_presigned_urls: reads each bucket and returns a
    confirmation_token. Show the plan to the user; once approved, call katapult_revoke_presigned_urls with the
    same buckets and the token."""
    Input = RevokePresignedUrlsInput
    Plan = RevokePresignedUrlsPlan
    Outcome = RevokePresignedUrlsOutcome

    def target(self, call: Call, args: RevokePresignedUrlsInput) -> dict[str, Any]:
        return {"buckets": bucket_keys(args.buckets)}

    def blast_radius(self, totals: Mapping[str, int]) -> int:
        return totals.get("buckets", 0)

    async def observe(self, call: Call, args: RevokePresignedUrlsInput) -> Observation[Facts]:
        return observed(await read_buckets(call, bucket_keys(args.buckets), skip_missing=False))

    async def recheck(
        self, call: Call, args: RevokePresignedUrlsInput, held: Snapshot | None
    ) -> Observation[Facts]:
        return observed(await read_buckets(call, bucket_keys(args.buckets), skip_missing=True))

    def summary(self, target: Mapping[str, Any], observation: Observation[Facts]) -> str:
        return describe_revoke(observation.data)

    async def plan(
        self, call: Call, args: RevokePresignedUrlsInput, observation: Observation[Facts]
    ) -> tuple[list[str], dict[str, Any]]:
        facts = observation.data
        warnings = [
            f"Bucket {quote(b.key)} is publicly readable: its objects stay readable through the public URL; "
            "revoking presigned URLs does not change that."
            for b in facts
            if b.public_read
        ]
        warnings += [
            f"Bucket {quote(b.key)} is not configured yet (see its state below)."
            for b in facts
            if b.state != "configured"
        ]
        return warnings, {"buckets": facts}

    async def execute(self, run: Run[RevokePresignedUrlsInput, Facts]) -> RevokePresignedUrlsOutcome:
        call = run.call
        client = katapult_client(call.state)
        targets = run.observation.snapshot.ordered
        run.notes += [
            f"Bucket {quote(key)} no longer exists; it was skipped."
            for key in run.target["buckets"]
            if key not in run.observation.snapshot.members
        ]
        results: list[BucketResult] = []
        refusals: list[ApiError] = []
        stop: str | None = None
        sending: str | None = None
        try:
            for number, key in enumerate(targets, 1):
                await run.between_requests()
                region, name = key.split("/", 1)
                if stop is not None:
                    result = BucketResult(region=region, name=name, status="not_attempted", message=stop)
                    run.ledger.settle(FATE_OF[result.status], [key], why=result.message or "")
                else:
                    async with run.sending(f"revoke the presigned URLs of bucket {key}", ids=[key]):
                        sending = key
                        result, error = await revoke_one(call, client, region, name)
                        run.ledger.settle(FATE_OF[result.status], [key], why=result.message or "")
                    if error is not None and error.fate == "not_carried_out":
                        refusals.append(error)
                        if error.code in STOP_CODES:
                            stop = (
                                f"Not attempted: {quote(key)} was refused for a reason that applies to every "
                                "bucket."
                            )
                results.append(result)
                sending = None
                await call.progress(number, len(targets), f"{key}: {result.status}")
        finally:
            rest = targets[len(results) :]
            if sending is not None:  # sent, and no answer came back to this code: it may have happened
                run.ledger.settle("unknown", rest[:1], why=MAY_YET_HAPPEN)
                rest = rest[1:]
            if rest:  # stopped between buckets: these were never sent
                run.ledger.settle("not_carried_out", rest, why="not attempted: the run stopped before it")
        if refusals and run.ledger.counts["carried_out"] == run.ledger.counts["unknown"] == 0:
            raise refusals[0]  # nothing changed anywhere: the call failed, for the first bucket's reason
        return revoke_outcome(results)


def observed(facts: Facts) -> Observation[Facts]:
    snapshot = Snapshot(
        totals={"buckets": len(facts), "objects": sum(b.object_count or 0 for b in facts)},
        members=frozenset(b.key for b in facts),
    )
    return Observation(snapshot, facts)


async def revoke_one(
    call: Call, client: KatapultClient, region: str, name: str
) -> tuple[BucketResult, ApiError | None]:
    """Revoke one bucket's presigned URLs: its result, and the error when the call failed."""
    try:
        success = await client.revoke_presigned_urls(region, name)
    except ApiError as error:
        message = call.explain(error)
        if error.fate == "unknown":  # lost, a server error, or an answer that could not be read
            message += " It is unknown whether it was revoked; revoking again is harmless if still wanted."
            return BucketResult(region=region, name=name, status="unknown", message=message), error
        return BucketResult(region=region, name=name, status="failed", message=message), error
    if success:
        return BucketResult(region=region, name=name, status="revoked"), None
    message = "Katapult answered success=false for this bucket."
    return BucketResult(region=region, name=name, status="not_revoked", message=message), None


def revoke_outcome(results: list[BucketResult]) -> RevokePresignedUrlsOutcome:
    counts = Counter(r.status for r in results)
    revoked = [r.key for r in results if r.status == "revoked"]
    summary = f"Revoked the presigned URLs of {len(revoked)} of {len(results)} buckets" + (
        f" ({', '.join(quote(key) for key in revoked)})." if revoked else "."
    )
    others = len(results) - len(revoked)
    if others:
        summary += f" {others} were not revoked or are unknown; see each bucket's result."
    return RevokePresignedUrlsOutcome(
        summary=summary,
        totals={status: counts[status] for status in FATE_OF},
        results=results,
    )


toolset.operation(RevokePresignedUrls())
