"""Big-data figures: P2 bulk delete (with its concurrency sweep), P3 large previews, P5 memory and sizes.

Three conditions for P2: `loopback` (the sandbox as it is: no network between the processes),
`network` (every request to the emulator delayed by a fixed round trip, what a real deployment always
has and what concurrency exists to hide) and `capacity` (a Vault whose database serves a fixed number
of requests at once, queues the rest and refuses beyond its queue, as a real one does: more in flight
than it serves only lengthens its queue). P3 runs in the first two.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio
import httpx2
from mcp import Client

from bench.emulators import Emulators
from bench.harness import (
    Scale,
    Sizes,
    call,
    children_named,
    median,
    peak_rss_mb,
    purgewarden_stdio,
    vault_http,
)

Condition = Literal["loopback", "network", "capacity"]
CONDITIONS: tuple[Condition, ...] = ("loopback", "network", "capacity")
PREVIEW_CONDITIONS: tuple[Condition, ...] = ("loopback", "network")
VAULT_CAPACITY = {"workers": 12, "request_seconds": 0.002, "item_seconds": 0.0005, "queue_limit": 12}
"""The capacity condition's database: 12 workers, a 1,000-id batch costs 0.5 s of one, 12 may wait.
A batch long beside the emulator's own CPU per batch (parsing 1,000 ids), so the database's workers are
what runs out, not the emulator's event loop."""
COLLECTION = "bench_bulk"
"""A collection of its own, so the demo data never mixes into the counts."""
MAX_PAGE_SIZE = 1000
KATAPULT_ORGANIZATION = "acme"
SERIAL_PAGE_CONCURRENCY = 1
"""P3's second server (PURGEWARDEN_KATAPULT_PAGE_CONCURRENCY): the tool one page at a time, to tell its
own work per object from what pages in flight buy."""


# --- P2: bulk delete --------------------------------------------------------------------------------


@dataclass
class Arm:
    """Timings of one way of deleting at one concurrency: resolving the ids, then deleting them; in the
    capacity condition also what the database saw of the deleting (429s, its batch latencies)."""

    resolve: list[float] = field(default_factory=list)
    delete: list[float] = field(default_factory=list)
    database: list[DatabaseView] = field(default_factory=list)

    def delete_rate(self, n: int) -> float:
        return n / median(self.delete)

    def total_rate(self, n: int) -> float:
        return n / median([r + d for r, d in zip(self.resolve, self.delete, strict=True)])


@dataclass(frozen=True)
class DatabaseView:
    """The capacity-limited Vault's counters over one delete: requests served and refused (429), and its
    time per bulk delete (waiting for a worker + being served), median and 99th percentile."""

    served: int
    rejected: int
    p50: float
    p99: float


@dataclass
class Timeline:
    """One destructive call as its progress told it: (seconds into the call, objects settled, the
    in-flight limit the server had then)."""

    points: list[tuple[float, int, int]] = field(default_factory=list)


@dataclass
class Sweep:
    """P2 in one condition: the tool at default settings, and the hand-written client at every level."""

    condition: Condition
    n: int
    tool: Arm = field(default_factory=Arm)
    hand: dict[int, Arm] = field(default_factory=dict)
    peak_rss: float = 0.0
    timelines: list[Timeline] = field(default_factory=list)


async def hand_list_ids(http: httpx2.AsyncClient, collection: str) -> list[str]:
    """Every active id, by cursor (the Vault has no offsets, so no client can fetch these pages at once)."""
    ids: list[str] = []
    cursor = ""
    while True:
        params: dict[str, str | int] = {"reason": "Maintenance", "page_size": MAX_PAGE_SIZE}
        if cursor:
            params["cursor"] = cursor
        response = await http.get(f"/data/collections/{collection}/objects", params=params)
        response.raise_for_status()
        page = response.json()
        ids.extend(row["id"] for row in page["results"])
        cursor = page["paging"]["cursor"]
        if not page["paging"]["remaining_count"] or not cursor:
            return ids


def batches(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), MAX_PAGE_SIZE):
        yield ids[start : start + MAX_PAGE_SIZE]


async def hand_delete(http: httpx2.AsyncClient, collection: str, ids: Sequence[str], concurrency: int) -> int:
    """Max-size all-or-nothing batches, `concurrency` at a time, each answer checked, a 429 sent again
    after its Retry-After (it deleted nothing); returns ids deleted."""
    pending = batches(ids)
    deleted = 0

    async def worker() -> None:
        nonlocal deleted
        for batch in pending:
            while True:
                response = await http.request(
                    "DELETE",
                    f"/data/collections/{collection}/bulk/objects",
                    params={"reason": "Maintenance"},
                    content=json.dumps([{"id": object_id} for object_id in batch]),
                    headers={"Content-Type": "application/json"},
                )
                if response.status_code != 429:
                    break
                await anyio.sleep(float(response.headers.get("retry-after", "1")))
            response.raise_for_status()
            if not response.json()["ok"]:
                raise AssertionError("a hand-written bulk delete was refused")
            deleted += len(batch)

    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)
    return deleted


LIMIT_IN_PROGRESS = re.compile(r"up to (\d+) batches in flight")


async def tool_rep(
    client: Client,
    emulators: Emulators,
    n: int,
    sizes: Sizes,
    arm: Arm,
    timeline: Timeline | None = None,
    *,
    capacity: bool = False,
) -> None:
    emulators.vault_build(COLLECTION, n)
    label = f"{n:,} Vault objects"
    started = time.perf_counter()
    plan = await call(client, "vault_preview_delete_objects", {"collection": COLLECTION}, sizes, label)
    previewed = time.perf_counter()

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        found = LIMIT_IN_PROGRESS.search(message or "")
        if timeline is not None and found:
            timeline.points.append((time.perf_counter() - previewed, int(progress), int(found.group(1))))

    if capacity:
        emulators.vault_capacity_window()
    outcome = await call(
        client,
        "vault_delete_objects",
        {"collection": COLLECTION, "confirm": plan["confirmation_token"]},
        sizes,
        label,
        progress,
    )
    done = time.perf_counter()
    left = emulators.vault_count(COLLECTION)
    if plan["count"] != n or outcome["deleted"] != n or left:
        raise AssertionError(
            f"P2 tool run: planned {plan['count']}, deleted {outcome['deleted']}, {left} left of {n}"
        )
    arm.resolve.append(previewed - started)
    arm.delete.append(done - previewed)
    if capacity:
        arm.database.append(database_view(emulators))


async def hand_rep(
    http: httpx2.AsyncClient, emulators: Emulators, n: int, concurrency: int, arm: Arm, capacity: bool
) -> None:
    emulators.vault_build(COLLECTION, n)
    started = time.perf_counter()
    ids = await hand_list_ids(http, COLLECTION)
    listed = time.perf_counter()
    if capacity:
        emulators.vault_capacity_window()
    deleted = await hand_delete(http, COLLECTION, ids, concurrency)
    done = time.perf_counter()
    if capacity:
        arm.database.append(database_view(emulators))
    left = emulators.vault_count(COLLECTION)
    if len(ids) != n or deleted != n or left:
        raise AssertionError(f"P2 hand-written run: listed {len(ids)}, deleted {deleted}, {left} left of {n}")
    arm.resolve.append(listed - started)
    arm.delete.append(done - listed)


def database_view(emulators: Emulators) -> DatabaseView:
    """What the capacity-limited Vault saw since the last window: its counters and delete latencies."""
    window = emulators.vault_capacity_window()
    return DatabaseView(int(window["served"]), int(window["rejected"]), window["p50"], window["p99"])


async def bulk_delete(
    emulators: Emulators, environment: dict[str, str], scale: Scale, sizes: Sizes, condition: Condition
) -> Sweep:
    """P2 in one condition: one server at default settings (its in-flight limit learned as it goes, so
    its first repetition starts cold and the next ones where the last left off) and the hand-written client
    at every fixed level, interleaved, each on a freshly built set of n objects."""
    n = scale.vault_objects
    sweep = Sweep(condition, n)
    capacity = condition == "capacity"
    levels = scale.capacity_levels if capacity else scale.concurrency_levels
    emulators.latency("vault", scale.latency if condition == "network" else 0.0)
    if capacity:
        emulators.vault_capacity(**VAULT_CAPACITY)
    try:
        async with Client(purgewarden_stdio(environment)) as client:
            await call(client, "vault_list_collections", {}, sizes, "demo")  # connect before timing
            for rep in range(scale.reps):
                timeline = Timeline()
                await tool_rep(client, emulators, n, sizes, sweep.tool, timeline, capacity=capacity)
                sweep.timelines.append(timeline)
                for concurrency in levels[rep % len(levels) :] + levels[: rep % len(levels)]:
                    arm = sweep.hand.setdefault(concurrency, Arm())
                    # A client per run: a pool idle while the others ran holds connections the emulator
                    # closes after 5 s, and a DELETE sent on one as it closes is lost (httpx2.ReadError).
                    async with vault_http(environment, concurrency) as http:
                        await http.get("/data/info/health")  # connected before timing
                        await hand_rep(http, emulators, n, concurrency, arm, capacity)
            servers = children_named("purgewarden")
            if len(servers) != 1:
                raise AssertionError(f"expected one purgewarden server child, found {servers}")
            sweep.peak_rss = peak_rss_mb(servers[0])
    finally:
        emulators.latency("vault", 0.0)
        if capacity:
            emulators.vault_capacity(None)
    return sweep


# --- P3: large previews -----------------------------------------------------------------------------


@dataclass
class Previews:
    """Preview timings per dataset: the tool and the hand-written client doing the same reads."""

    condition: Condition
    katapult_tool: list[float] = field(default_factory=list)
    katapult_tool_serial: list[float] = field(default_factory=list)
    """The same preview on a server with SERIAL_PAGE_CONCURRENCY pages in flight."""
    katapult_hand: list[float] = field(default_factory=list)
    katapult_remaining: list[int] = field(default_factory=list)
    """X-Ratelimit-Remaining after each repetition: above 0 means no request was over the limit."""
    katapult_permitted: int = 0
    cocoon_tool: list[float] = field(default_factory=list)
    cocoon_hand: list[float] = field(default_factory=list)


async def hand_walk_trash(http: httpx2.AsyncClient, organization: str) -> int:
    """The baseline of P3: every page of the trash, one after another."""
    page, seen, total_pages = 1, 0, 1
    while page <= total_pages:
        response = await http.get(
            "/organizations/_/trash_objects",
            params={"organization[sub_domain]": organization, "page": page, "per_page": 200},
        )
        response.raise_for_status()
        body = response.json()
        seen += len(body["trash_objects"])
        total_pages = body["pagination"]["total_pages"]
        page += 1
    return seen


async def previews(
    emulators: Emulators, environment: dict[str, str], scale: Scale, sizes: Sizes, condition: Condition
) -> Previews:
    """P3 for Katapult (tool vs sequential walk) and Cocoon (tool vs the one request it needs), plus the
    default listings of P5 on these big datasets."""
    result = Previews(condition)
    latency = scale.latency if condition == "network" else 0.0
    n_trash, n_items = scale.katapult_trash, scale.cocoon_items
    katapult = httpx2.AsyncClient(
        base_url=environment["KATAPULT_API_URL"] + "/core/v1",
        headers={"Authorization": f"Bearer {environment['KATAPULT_API_TOKEN']}"},
        timeout=60,
    )
    cocoon = httpx2.AsyncClient(
        base_url=environment["COCOON_ACCESS_SERVICE_URL"] + "/api/v1",
        headers={"Authorization": f"Bearer {environment['COCOON_ACCESS_TOKEN']}"},
        timeout=60,
    )
    bin_path = f"/organisations/{environment['COCOON_ORGANISATION_ID']}/recycle-bin/items"
    serial = {**environment, "PURGEWARDEN_KATAPULT_PAGE_CONCURRENCY": str(SERIAL_PAGE_CONCURRENCY)}
    async with (
        katapult,
        cocoon,
        Client(purgewarden_stdio(environment)) as client,
        Client(purgewarden_stdio(serial)) as serial_client,
    ):
        emulators.reset("cocoon")
        emulators.cocoon_build(n_items)
        for rep in range(scale.reps):
            # A fresh rate-limit window per repetition: two previews and a walk stay under 1,000/min.
            emulators.reset("katapult")
            emulators.latency("katapult", latency)
            emulators.latency("cocoon", latency)
            demo = await trash_count(katapult)
            emulators.katapult_build(KATAPULT_ORGANIZATION, n_trash - demo)
            label = f"{n_trash:,} trash objects"
            timings = {
                "tool": result.katapult_tool,
                "serial": result.katapult_tool_serial,
                "hand": result.katapult_hand,
            }
            names = list(timings)
            for name in names[rep % 3 :] + names[: rep % 3]:
                started = time.perf_counter()
                if name == "hand":
                    seen = await hand_walk_trash(katapult, KATAPULT_ORGANIZATION)
                else:
                    seen = await katapult_preview(client if name == "tool" else serial_client, sizes, label)
                elapsed = time.perf_counter() - started
                if seen != n_trash:
                    raise AssertionError(f"P3 katapult {name}: saw {seen} of {n_trash} trash objects")
                timings[name].append(elapsed)
            check = await katapult.get("/organizations")
            result.katapult_permitted = int(check.headers["x-ratelimit-permitted"])
            result.katapult_remaining.append(int(check.headers["x-ratelimit-remaining"]))

            bin_label = f"{n_items:,} recycle-bin items"
            started = time.perf_counter()
            plan = await call(client, "cocoon_preview_empty_recycle_bin", {}, sizes, bin_label)
            result.cocoon_tool.append(time.perf_counter() - started)
            started = time.perf_counter()
            response = await cocoon.get(bin_path, params={"limit": 0})
            response.raise_for_status()
            listed = len(response.json()["items"])
            result.cocoon_hand.append(time.perf_counter() - started)
            if plan["totals"]["items"] < n_items or listed != plan["totals"]["items"]:
                raise AssertionError(f"P3 cocoon: planned {plan['totals']['items']}, listed {listed}")
        # P5's default listings on the big datasets (sizes only).
        await call(
            client, "katapult_list_trash_objects", {"organization": KATAPULT_ORGANIZATION}, sizes, label
        )
        await call(client, "cocoon_list_recycle_bin", {}, sizes, bin_label)
        emulators.vault_build(COLLECTION, scale.vault_objects)
        vault_label = f"{scale.vault_objects:,} Vault objects"
        await call(client, "vault_list_objects", {"collection": COLLECTION}, sizes, vault_label)
        await call(client, "vault_count_objects", {"collection": COLLECTION}, sizes, vault_label)
        emulators.reset("vault")
    for service in ("katapult", "cocoon"):
        emulators.latency(service, 0.0)
    emulators.reset("katapult")
    emulators.reset("cocoon")
    return result


async def trash_count(http: httpx2.AsyncClient) -> int:
    response = await http.get(
        "/organizations/_/trash_objects",
        params={"organization[sub_domain]": KATAPULT_ORGANIZATION, "per_page": 1},
    )
    response.raise_for_status()
    return int(response.json()["pagination"]["total"])


async def katapult_preview(client: Client, sizes: Sizes, label: str) -> int:
    plan = await call(
        client,
        "katapult_preview_purge_all_trash_objects",
        {"organization": KATAPULT_ORGANIZATION},
        sizes,
        label,
    )
    return int(plan["totals"]["objects"])
