"""Store figures: what confirming costs with each store (SQLite, Redis), and what the run journal costs on P2.

Both stores are the product's own classes: SQLite the default file in a state directory, Redis a real
`redis-server` started on loopback for these figures (tests/redis_server.py) and skipped, saying so, when
it is not installed. Nothing here is a timed assertion: the figures are medians of interleaved arms in one
run, and the journal's share of P2 is a ratio of two times measured one after the other.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from mcp import Client

from bench.bulk import MAX_PAGE_SIZE, Arm, hand_list_ids, tool_rep
from bench.emulators import Emulators
from bench.harness import (
    Figure,
    Scale,
    Sizes,
    bare_stdio,
    call,
    default_delete_concurrency,
    median,
    purgewarden_stdio,
    vault_http,
)
from purgewarden.safety.plans import store_key
from purgewarden.safety.runs import RECENT_RUNS_CHECKED
from purgewarden.store import Store, StoredRun, open_store
from tests.redis_server import redis_binary, running_redis

StoreKind = str
""""sqlite" or "redis"."""
NAMES: dict[StoreKind, str] = {"sqlite": "SQLite", "redis": "Redis"}
CONFIRM_COLLECTION = "bench_confirm"
"""A collection of its own for the one-object plans, so no other figure's counts see them."""
WARMUP_ROUNDS = 10
REWRITES = 3
"""Times each P2 journal is written again per store (a fresh store each time), the median kept: the
writing takes a tenth of a second, short enough for one scheduling hiccup on a shared machine to double it."""
JOURNAL_TARGET = 0.05
CONFIRM_STORE_CALLS = 9
"""The store calls of one confirmed call, as the kernel makes them at this commit (purgewarden/safety):
the token read (check), read again (is another call asking?), consumed; the run created; its journal's
`started`, `sending`, `answered` and `finished` entries; the run saved."""


def redis_missing() -> str | None:
    """Why the Redis figures cannot be measured here, or None."""
    if redis_binary() is None:
        return "redis-server not installed"
    if importlib.util.find_spec("redis") is None:
        return "the redis client is not installed (purgewarden[redis])"
    return None


@contextmanager
def redis_url(tmp: Path) -> Iterator[str | None]:
    """A fresh redis-server on loopback for the duration, or None when there is none to start."""
    if redis_missing() is not None:
        yield None
        return
    with running_redis(tmp / "redis") as url:
        yield url


async def flush(url: str) -> None:
    """Empty the Redis database, so each measurement starts from a fresh store."""
    import redis.asyncio

    client = redis.asyncio.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def scratch(url: str) -> str:
    """Database 1 of the same redis-server: the servers under test use database 0, and a server takes over
    any running run in its store whose owner never beat there, as it would a dead process's."""
    return url.rsplit("/", 1)[0] + "/1"


@asynccontextmanager
async def fresh_store(kind: StoreKind, where: Path, url: str | None) -> AsyncIterator[Store]:
    """An empty store of the kind, connected before any timing starts, that no server is watching."""
    if kind == "redis":
        assert url is not None
        await flush(scratch(url))
        store = open_store(scratch(url), where)
    else:
        store = open_store(None, where)  # the store makes its directory on first use
    try:
        await store.ping()
        yield store
    finally:
        await store.close()


def stores(url: str | None) -> tuple[StoreKind, ...]:
    return ("sqlite", "redis") if url else ("sqlite",)


def rotated(names: Sequence[str], by: int) -> list[str]:
    by %= len(names)
    return [*names[by:], *names[:by]]


def state_dir(tmp: Path, kind: StoreKind) -> Path:
    """The state directory of the server on this kind of store (the SQLite one holds its store)."""
    return tmp / f"store-{kind}"


@asynccontextmanager
async def servers(
    environment: dict[str, str], tmp: Path, url: str | None, sizes: Sizes
) -> AsyncIterator[dict[StoreKind, Client]]:
    """One purgewarden server per store, default settings, each with a state directory of its own."""
    async with AsyncExitStack() as stack:
        clients = {}
        for kind in stores(url):
            env = {**environment, "PURGEWARDEN_STATE_DIR": str(state_dir(tmp, kind))}
            if kind == "redis" and url:
                env["PURGEWARDEN_STORE_URL"] = url
            clients[kind] = await stack.enter_async_context(Client(purgewarden_stdio(env)))
            await call(clients[kind], "vault_list_collections", {}, sizes, "demo")  # connected before timing
        yield clients


# --- the confirm path --------------------------------------------------------------------------------


@dataclass
class ConfirmPath:
    """Per-call medians, one per run (each run `scale.calls` interleaved rounds)."""

    stores: tuple[StoreKind, ...]
    missing: str | None
    empty: list[float] = field(default_factory=list)
    lookup: list[float] = field(default_factory=list)
    delete: list[float] = field(default_factory=list)
    preview: dict[StoreKind, list[float]] = field(default_factory=dict)
    confirm: dict[StoreKind, list[float]] = field(default_factory=dict)
    store_calls: dict[StoreKind, list[float]] = field(default_factory=dict)
    """The confirm path's store calls alone, in this process, on a fresh store of the kind."""
    issue_calls: dict[StoreKind, list[float]] = field(default_factory=dict)
    """The preview's store calls alone (the latest runs read for its warnings, the plan put), likewise."""
    fsync: list[float] = field(default_factory=list)
    """One fsync of a line appended in a state directory, as the audit log makes for a durable event."""

    def baseline(self) -> float:
        """An MCP round trip plus the two requests the confirmed call makes, each made directly."""
        return median(self.empty) + median(self.lookup) + median(self.delete)

    def overhead(self, kind: StoreKind) -> float:
        return median(self.confirm[kind]) - self.baseline()


async def confirm_path(
    emulators: Emulators,
    environment: dict[str, str],
    servers: dict[StoreKind, Client],
    scale: Scale,
    sizes: Sizes,
    tmp: Path,
    url: str | None,
) -> ConfirmPath:
    """`vault_delete_objects` on a one-object plan, on one server per store, against what it cannot avoid.

    A confirmed call on `ids=[one id]` makes two API requests: the re-check (the lookup of that id, the
    preview's read again) and the DELETE. The arms, open at once and called in rotating order: the bare
    server's empty tool (the MCP round trip), the lookup and the DELETE made directly with httpx2, and per
    store its server's preview then confirmed call. What the confirmed call costs beyond the empty tool and
    the two direct requests is the confirm path: token, run, journal, audit, outcome.
    """
    kinds = stores(url)
    result = ConfirmPath(kinds, redis_missing())
    rounds = WARMUP_ROUNDS + scale.reps * scale.calls
    emulators.vault_build(CONFIRM_COLLECTION, rounds * (len(kinds) + 1))
    label = "one Vault object"
    last_token: dict[StoreKind, str] = {}
    async with Client(bare_stdio(environment)) as bare, vault_http(environment, connections=1) as http:
        ids = iter(await hand_list_ids(http, CONFIRM_COLLECTION))
        times: dict[str, list[float]] = {}

        def timed(name: str, started: float) -> float:
            now = time.perf_counter()
            times.setdefault(name, []).append(now - started)
            return now

        async def empty() -> None:
            started = time.perf_counter()
            if (await bare.call_tool("empty", {})).is_error:
                raise AssertionError("the bare server's empty tool failed")
            timed("empty", started)

        async def direct() -> None:
            object_id = next(ids)
            started = time.perf_counter()
            listed = await http.get(
                f"/data/collections/{CONFIRM_COLLECTION}/objects",
                params={"reason": "Maintenance", "ids": [object_id]},
            )
            listed.raise_for_status()
            found = len(listed.json()["results"])
            looked = timed("lookup", started)
            deleted = await http.request(
                "DELETE",
                f"/data/collections/{CONFIRM_COLLECTION}/bulk/objects",
                params={"reason": "Maintenance"},
                content=json.dumps([{"id": object_id}]),
                headers={"Content-Type": "application/json"},
            )
            deleted.raise_for_status()
            ok = deleted.json()["ok"]
            timed("delete", looked)
            if found != 1 or not ok:
                raise AssertionError(f"direct one-object delete: found {found}, ok {ok}")

        def confirmed(kind: StoreKind) -> Callable[[], Awaitable[None]]:
            client = servers[kind]

            async def arm() -> None:
                arguments = {"collection": CONFIRM_COLLECTION, "ids": [next(ids)]}
                started = time.perf_counter()
                plan = await client.call_tool("vault_preview_delete_objects", arguments)
                previewed = timed(f"preview {kind}", started)
                if plan.is_error or not plan.structured_content:
                    raise AssertionError(f"one-object preview failed ({kind}): {plan.content}")
                token = plan.structured_content["confirmation_token"]
                outcome = await client.call_tool("vault_delete_objects", {**arguments, "confirm": token})
                timed(f"confirm {kind}", previewed)
                if outcome.is_error or (outcome.structured_content or {}).get("deleted") != 1:
                    raise AssertionError(f"one-object confirmed delete failed ({kind}): {outcome.content}")
                sizes.record("vault_preview_delete_objects", plan, label)
                sizes.record("vault_delete_objects", outcome, label)
                last_token[kind] = token

            return arm

        arms: dict[str, Callable[[], Awaitable[None]]] = {
            "empty": empty,
            "direct": direct,
            **{kind: confirmed(kind) for kind in kinds},
        }
        names = list(arms)
        for i in range(WARMUP_ROUNDS):
            for name in rotated(names, i):
                await arms[name]()
        for _ in range(scale.reps):
            times.clear()
            for i in range(scale.calls):
                for name in rotated(names, i):
                    await arms[name]()
            result.empty.append(median(times["empty"]))
            result.lookup.append(median(times["lookup"]))
            result.delete.append(median(times["delete"]))
            for kind in kinds:
                result.preview.setdefault(kind, []).append(median(times[f"preview {kind}"]))
                result.confirm.setdefault(kind, []).append(median(times[f"confirm {kind}"]))
    if emulators.vault_count(CONFIRM_COLLECTION) != len(list(ids)):
        raise AssertionError("the confirm-path figure deleted objects it did not plan")
    await store_calls(result, tmp, url, scale, last_token["sqlite"])
    return result


async def store_calls(result: ConfirmPath, tmp: Path, url: str | None, scale: Scale, token: str) -> None:
    """The store calls alone, in this process: the SQLite server's last plan and run read back, then
    made again on a fresh store of each kind (holding the runs a preview reads), as the preview (the 50
    latest runs read for warnings, the plan put) and the confirmed call do, `scale.calls` times per
    repetition, kinds alternating."""
    recorded = open_store(None, state_dir(tmp, "sqlite"))
    try:
        slot = await recorded.get_plan(store_key(token))
        [latest] = await recorded.recent_runs(1)
        run = await recorded.get_run(latest.id)
    finally:
        await recorded.close()
    if slot is None or run is None or len(run.entries) != 4:
        raise AssertionError(f"the last one-object run was not found in its store as expected: {run}")
    for rep in range(scale.reps):
        for kind in rotated(result.stores, rep):
            async with fresh_store(kind, tmp / f"calls-{kind}-{rep}", url) as store:
                for i in range(RECENT_RUNS_CHECKED):
                    await store.create_run(f"run_earlier_{i}", run.owner, time.time(), run.body)
                issue, times = [], []
                for i in range(scale.calls):
                    key, run_id, now = f"{rep}-{i}", f"run_{rep}_{i}", time.time()
                    started = time.perf_counter()
                    await store.recent_runs(RECENT_RUNS_CHECKED)
                    await store.put_plan(key, slot.body, now + 600, now)
                    issue.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    await store.get_plan(key)
                    await store.get_plan(key)
                    if not await store.consume(key):
                        raise AssertionError("a fresh plan could not be consumed")
                    await store.create_run(run_id, run.owner, now, run.body)
                    for entry in run.entries:
                        await store.journal(run_id, entry)
                    await store.save_run(run_id, "finished", run.body)
                    times.append(time.perf_counter() - started)
                result.store_calls.setdefault(kind, []).append(median(times))
                result.issue_calls.setdefault(kind, []).append(median(issue))
        result.fsync.append(fsync_seconds(state_dir(tmp, "sqlite") / "fsync-probe.jsonl", scale.calls))


def fsync_seconds(path: Path, n: int) -> float:
    """The median time of fsyncing one appended line, `n` times (what a durable audit event costs)."""
    times = []
    with path.open("a", encoding="utf-8") as log:
        for i in range(n):
            log.write(json.dumps({"event": "probe", "n": i, "padding": "x" * 200}) + "\n")
            log.flush()
            started = time.perf_counter()
            os.fsync(log.fileno())
            times.append(time.perf_counter() - started)
    return median(times)


def confirm_figures(result: ConfirmPath, scale: Scale) -> list[Figure]:
    ms = 1000
    empty, lookup, delete = (median(v) * ms for v in (result.empty, result.lookup, result.delete))
    figures = []
    for kind in result.stores:
        confirm, preview = median(result.confirm[kind]) * ms, median(result.preview[kind]) * ms
        overhead = result.overhead(kind) * ms
        own, issue = median(result.store_calls[kind]) * ms, median(result.issue_calls[kind]) * ms
        not_measured = f" (Redis: not measured: {result.missing})" if result.missing else ""
        figures.append(
            Figure(
                "S",
                f"Confirm path ({NAMES[kind]} store): `vault_delete_objects` on a one-object plan, beyond an MCP "
                "round trip and the two requests it makes",
                "— (information)",
                overhead,
                "ms",
                None,
                f"median per call: confirmed call {confirm:.1f} ms = empty tool {empty:.1f} ms + the re-check's "
                f"lookup {lookup:.1f} ms + the DELETE {delete:.1f} ms (both made directly with httpx2) + "
                f"{overhead:.1f} ms; of these {overhead:.1f} ms, the path's {CONFIRM_STORE_CALLS} store calls "
                f"(plan read twice and consumed, run created, 4 journal entries, run saved) take {own:.2f} ms "
                f"made alone in-process; the rest is the kernel's own work (the token's bindings, the run "
                f"record, two fsynced audit lines at {median(result.fsync) * ms:.2f} ms an fsync here, the run "
                "carried out in a background task and followed, the outcome). "
                f"Its preview: {preview:.1f} ms, {preview - empty - lookup:+.1f} ms beyond the empty tool and the "
                f"lookup, of which its store calls (the {RECENT_RUNS_CHECKED} latest runs read for warnings, the "
                f"plan put) take {issue:.2f} ms alone ({scale.reps} runs × {scale.calls} calls, interleaved)",
                display=f"+{overhead:.1f} ms{not_measured}",
            )
        )
    if "redis" in result.stores:
        ratio = result.overhead("redis") / result.overhead("sqlite")

        def pair(values: dict[StoreKind, list[float]], digits: int) -> str:
            redis, sqlite = median(values["redis"]) * ms, median(values["sqlite"]) * ms
            return f"{redis:.{digits}f} ms vs {sqlite:.{digits}f} ms ({redis / sqlite:.2f}×)"

        figures.append(
            Figure(
                "S",
                "Confirm path: Redis store vs SQLite store (the confirmed call's cost beyond the round trip and "
                "requests)",
                "— (information)",
                ratio,
                "×",
                None,
                f"{result.overhead('redis') * ms:.1f} ms vs {result.overhead('sqlite') * ms:.1f} ms; whole "
                f"confirmed call {pair(result.confirm, 1)}; its store calls alone {pair(result.store_calls, 2)}; "
                f"the preview {pair(result.preview, 1)}, its store calls alone {pair(result.issue_calls, 2)}",
            )
        )
    return figures


# --- the journal on P2 --------------------------------------------------------------------------------


@dataclass
class JournalCost:
    """P2 tool runs at default settings, and their journals written again into fresh stores."""

    n: int
    concurrency: int
    stores: tuple[StoreKind, ...]
    missing: str | None
    delete: list[float] = field(default_factory=list)
    """The P2 delete's wall time (the whole destructive call), on the default (SQLite) store."""
    delete_redis: list[float] = field(default_factory=list)
    """The same on a server whose store is Redis, interleaved with the SQLite server's runs."""
    rewrite: dict[StoreKind, list[float]] = field(default_factory=dict)
    """Writing each SQLite run's record and journal again, with the run's concurrency, per store (the
    median of `REWRITES` times per run)."""
    entries: int = 0
    bytes: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def shares(self, kind: StoreKind) -> list[float]:
        return [w / d for w, d in zip(self.rewrite[kind], self.delete, strict=True)]


async def last_run(state_dir: Path) -> StoredRun:
    """The latest run of the server whose state directory this is (its SQLite store), with its journal."""
    store = open_store(None, state_dir)
    try:
        [latest] = await store.recent_runs(1)
        run = await store.get_run(latest.id)
    finally:
        await store.close()
    if run is None or run.state != "finished":
        raise AssertionError(f"P2's run {latest.id} is not finished in its store: {run}")
    return run


async def rewrite(store: Store, run: StoredRun, concurrency: int) -> float:
    """Write `run` as the server did: its record, `started`, then the batches' entries with `concurrency`
    writers taking them in order (the server's workers each write `sending` before a request and
    `answered` after it), `finished`, the record saved. Returns the seconds it took."""
    first, *middle, last = run.entries
    if json.loads(first)["kind"] != "started" or json.loads(last)["kind"] != "finished":
        raise AssertionError("a P2 journal that does not run from `started` to `finished`")
    async with anyio.create_task_group() as group:  # the pool's connections, open before the timing
        for _ in range(concurrency):
            group.start_soon(store.ping)
    pending = iter(middle)

    async def writer() -> None:
        for entry in pending:
            await store.journal(run.id, entry)

    started = time.perf_counter()
    await store.create_run(run.id, run.owner, time.time(), run.body)
    await store.journal(run.id, first)
    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(writer)
    await store.journal(run.id, last)
    await store.save_run(run.id, run.state, run.body)
    elapsed = time.perf_counter() - started
    back = await store.get_run(run.id)
    if back is None or sorted(back.entries) != sorted(run.entries):
        raise AssertionError("a rewritten journal does not read back as written")
    return elapsed


async def journal_cost(
    emulators: Emulators,
    servers: dict[StoreKind, Client],
    scale: Scale,
    sizes: Sizes,
    tmp: Path,
    url: str | None,
) -> JournalCost:
    """P2 at default settings; after each run on the SQLite server, its journal is read back from that
    server's store and written again into fresh stores of each kind, kinds alternating. With Redis, the same
    P2 on the Redis server, alternating with the SQLite server's runs."""
    kinds = stores(url)
    n = scale.vault_objects
    result = JournalCost(n, default_delete_concurrency(), kinds, redis_missing())
    for rep in range(scale.reps):
        for server in rotated(kinds, rep):
            arm = Arm()
            await tool_rep(servers[server], emulators, n, sizes, arm)
            if server == "redis":
                result.delete_redis.append(arm.delete[0])
                continue
            result.delete.append(arm.delete[0])
            run = await last_run(state_dir(tmp, "sqlite"))
            times: dict[StoreKind, list[float]] = {kind: [] for kind in kinds}
            for again in range(REWRITES):
                for kind in rotated(kinds, rep + again):
                    async with fresh_store(kind, tmp / f"journal-{kind}-{rep}-{again}", url) as store:
                        times[kind].append(await rewrite(store, run, result.concurrency))
            for kind in kinds:
                result.rewrite.setdefault(kind, []).append(median(times[kind]))
    result.entries = len(run.entries)
    result.bytes = sum(len(entry.encode()) for entry in run.entries)
    for entry in run.entries:
        kind = json.loads(entry)["kind"]
        result.kinds[kind] = result.kinds.get(kind, 0) + 1
    full = -(-n // MAX_PAGE_SIZE)
    sent = result.kinds.get("sending", 0)
    # the last round's ids are shared out among the places in flight: a batch more for each at most
    if result.kinds.get("answered") != sent or not full <= sent < full + result.concurrency:
        raise AssertionError(f"P2's journal for {full} max-size batches holds {result.kinds}")
    return result


def journal_figures(result: JournalCost, scale: Scale) -> list[Figure]:
    delete = median(result.delete)
    batches = result.kinds.get("sending", 0)
    size = (
        f"the journal: {result.entries} entries, {result.bytes / 1e6:.1f} MB ({batches} `sending` + "
        f"{result.kinds.get('answered', 0)} `answered`, ≈ {result.bytes / max(1, batches) / 1e3:.0f} kB a batch: "
        f"a `sending` entry lists its batch's {MAX_PAGE_SIZE:,} ids, the `answered` one names the request it "
        "settles; plus `started`, `finished`)"
    )
    figures = []
    for kind in result.stores:
        share = median(result.shares(kind))
        written = median(result.rewrite[kind])
        on_redis = (
            f"; P2 on a server whose store is Redis, alternating with these runs: delete {median(result.delete_redis):.2f} s"
            if kind == "redis" and result.delete_redis
            else ""
        )
        not_measured = f" (Redis: not measured: {result.missing})" if result.missing else ""
        figure = Figure(
            "S",
            f"Journal of a P2 run ({result.n:,} objects, default settings) written again into a fresh "
            f"{NAMES[kind]} store, share of that run's delete",
            f"≤ {JOURNAL_TARGET:.0%}",
            share * 100,
            "%",
            share <= JOURNAL_TARGET,
            f"{size}; written in {written:.3f} s with {result.concurrency} writers as the run had them, against "
            f"the P2 delete's {delete:.2f} s (the whole `vault_delete_objects` call on the default SQLite store), "
            f"median of {scale.reps} runs' shares (each run's journal written {REWRITES} times, the median "
            f"kept); an upper bound, since the server writes while other batches are in flight{on_redis}",
            display=f"{share:.1%}{not_measured}",
        )
        if not figure.met:
            figure.miss = (
                f"Writing the journal takes {written:.3f} s against the {delete:.2f} s delete: "
                f"{result.bytes / 1e6:.1f} MB, every id once, as JSON text. What would close it: the ids written "
                "once for the whole run when it starts (batches then named by their offsets), or in a binary "
                "encoding; the server already overlaps the writes with batches in flight, which this upper bound "
                "does not credit."
            )
        figures.append(figure)
    return figures


# --- both --------------------------------------------------------------------------------------------


async def store_figures(
    emulators: Emulators,
    environment: dict[str, str],
    scale: Scale,
    sizes: Sizes,
    tmp: Path,
    log: Callable[[str], None],
) -> list[Figure]:
    """The confirm path with each store, and the journal's cost on P2, with one redis-server for both."""
    missing = redis_missing()
    if missing:
        log(f"  Redis figures not measured: {missing}")
    with redis_url(tmp) as url:
        async with servers(environment, tmp, url, sizes) as clients:
            log("S confirm path, per store")
            confirmed = await confirm_path(emulators, environment, clients, scale, sizes, tmp, url)
            log("S journal on P2, per store")
            journaled = await journal_cost(emulators, clients, scale, sizes, tmp, url)
    emulators.reset("vault")
    return [*confirm_figures(confirmed, scale), *journal_figures(journaled, scale)]
