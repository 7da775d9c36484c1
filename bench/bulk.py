"""Big-data figures: P2 bulk delete (with its concurrency sweep), P3 large previews, P5 memory and sizes.

Two conditions: `loopback` (the sandbox as it is: no network between the processes) and `network`
(every request to the emulator delayed by a fixed round trip, what a real deployment always has and
what concurrency exists to hide).
"""

from __future__ import annotations

import json
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

Condition = Literal["loopback", "network"]
CONDITIONS: tuple[Condition, ...] = ("loopback", "network")
COLLECTION = "bench_bulk"
"""A collection of its own, so the demo data never mixes into the counts."""
MAX_PAGE_SIZE = 1000
KATAPULT_ORGANIZATION = "acme"
WIDE_PAGE_CONCURRENCY = 8
"""P3's second server (PURGEWARDEN_KATAPULT_PAGE_CONCURRENCY), to show what more pages in flight buy."""


# --- P2: bulk delete --------------------------------------------------------------------------------


@dataclass
class Arm:
    """Timings of one way of deleting at one concurrency: resolving the ids, then deleting them."""

    resolve: list[float] = field(default_factory=list)
    delete: list[float] = field(default_factory=list)

    def delete_rate(self, n: int) -> float:
        return n / median(self.delete)

    def total_rate(self, n: int) -> float:
        return n / median([r + d for r, d in zip(self.resolve, self.delete, strict=True)])


@dataclass
class Sweep:
    """P2 at every concurrency level, in one condition: the tools and the hand-written client."""

    condition: Condition
    n: int
    tool: dict[int, Arm] = field(default_factory=dict)
    hand: dict[int, Arm] = field(default_factory=dict)
    peak_rss: dict[int, float] = field(default_factory=dict)


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
    """Max-size all-or-nothing batches, `concurrency` at a time, each answer checked; returns ids deleted."""
    pending = batches(ids)
    deleted = 0

    async def worker() -> None:
        nonlocal deleted
        for batch in pending:
            response = await http.request(
                "DELETE",
                f"/data/collections/{collection}/bulk/objects",
                params={"reason": "Maintenance"},
                content=json.dumps([{"id": object_id} for object_id in batch]),
                headers={"Content-Type": "application/json"},
            )
            response.raise_for_status()
            if not response.json()["ok"]:
                raise AssertionError("a hand-written bulk delete was refused")
            deleted += len(batch)

    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)
    return deleted


async def tool_rep(client: Client, emulators: Emulators, n: int, sizes: Sizes, arm: Arm) -> None:
    emulators.vault_build(COLLECTION, n)
    label = f"{n:,} Vault objects"
    started = time.perf_counter()
    plan = await call(client, "vault_preview_delete_objects", {"collection": COLLECTION}, sizes, label)
    previewed = time.perf_counter()
    outcome = await call(
        client,
        "vault_delete_objects",
        {"collection": COLLECTION, "confirm": plan["confirmation_token"]},
        sizes,
        label,
    )
    done = time.perf_counter()
    left = emulators.vault_count(COLLECTION)
    if plan["count"] != n or outcome["deleted"] != n or left:
        raise AssertionError(
            f"P2 tool run: planned {plan['count']}, deleted {outcome['deleted']}, {left} left of {n}"
        )
    arm.resolve.append(previewed - started)
    arm.delete.append(done - previewed)


async def hand_rep(
    http: httpx2.AsyncClient, emulators: Emulators, n: int, concurrency: int, arm: Arm
) -> None:
    emulators.vault_build(COLLECTION, n)
    started = time.perf_counter()
    ids = await hand_list_ids(http, COLLECTION)
    listed = time.perf_counter()
    deleted = await hand_delete(http, COLLECTION, ids, concurrency)
    done = time.perf_counter()
    left = emulators.vault_count(COLLECTION)
    if len(ids) != n or deleted != n or left:
        raise AssertionError(f"P2 hand-written run: listed {len(ids)}, deleted {deleted}, {left} left of {n}")
    arm.resolve.append(listed - started)
    arm.delete.append(done - listed)


async def bulk_delete(
    emulators: Emulators, environment: dict[str, str], scale: Scale, sizes: Sizes, condition: Condition
) -> Sweep:
    """P2 at each concurrency level: a fresh server per level (the knob is read at start-up), tool and
    hand-written runs interleaved, each on a freshly built set of n objects."""
    n = scale.vault_objects
    sweep = Sweep(condition, n)
    emulators.latency("vault", scale.latency if condition == "network" else 0.0)
    try:
        for concurrency in scale.concurrency_levels:
            env = {**environment, "PURGEWARDEN_VAULT_DELETE_CONCURRENCY": str(concurrency)}
            tool, hand = Arm(), Arm()
            async with Client(purgewarden_stdio(env)) as client, vault_http(env, concurrency) as http:
                await call(client, "vault_list_collections", {}, sizes, "demo")  # connect before timing
                await http.get("/data/info/health")
                for rep in range(scale.reps):
                    if rep % 2:
                        await hand_rep(http, emulators, n, concurrency, hand)
                        await tool_rep(client, emulators, n, sizes, tool)
                    else:
                        await tool_rep(client, emulators, n, sizes, tool)
                        await hand_rep(http, emulators, n, concurrency, hand)
                servers = children_named("purgewarden")
                if len(servers) != 1:
                    raise AssertionError(f"expected one purgewarden server child, found {servers}")
                sweep.peak_rss[concurrency] = peak_rss_mb(servers[0])
            sweep.tool[concurrency] = tool
            sweep.hand[concurrency] = hand
    finally:
        emulators.latency("vault", 0.0)
    return sweep


# --- P3: large previews -----------------------------------------------------------------------------


@dataclass
class Previews:
    """Preview timings per dataset: the tool and the hand-written client doing the same reads."""

    condition: Condition
    katapult_tool: list[float] = field(default_factory=list)
    katapult_tool_wide: list[float] = field(default_factory=list)
    """The same preview on a server with WIDE_PAGE_CONCURRENCY pages in flight."""
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
    wide = {**environment, "PURGEWARDEN_KATAPULT_PAGE_CONCURRENCY": str(WIDE_PAGE_CONCURRENCY)}
    async with (
        katapult,
        cocoon,
        Client(purgewarden_stdio(environment)) as client,
        Client(purgewarden_stdio(wide)) as wide_client,
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
                "wide": result.katapult_tool_wide,
                "hand": result.katapult_hand,
            }
            names = list(timings)
            for name in names[rep % 3 :] + names[: rep % 3]:
                started = time.perf_counter()
                if name == "hand":
                    seen = await hand_walk_trash(katapult, KATAPULT_ORGANIZATION)
                else:
                    seen = await katapult_preview(client if name == "tool" else wide_client, sizes, label)
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
