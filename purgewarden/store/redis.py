"""The shared store: Redis or Valkey, for replicas on several machines that must agree on plans and runs.

Every decision that has a winner is one Lua script, which the server runs atomically: storing a new
plan or run (refused when the key exists, as SQLite refuses a duplicate row), reserving a plan (unused
and not held), consuming it (exactly one caller sees `used` go from 0 to 1, and gets its ids), and
claiming a run (the owner is still the expected one and the run is still running). A plan is one hash
(its ids a field of their own, read only by the consume) that expires at its `keep_until`, counted
from the caller's `now` so that a clock difference with the server does not matter; runs never expire;
an owner's heartbeat is kept for an hour after its `alive_until`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from purgewarden.store import EMPTY_IDS, PlanSlot, Store, StoredRun, StoreError

PREFIX = "purgewarden:"
RUNS = f"{PREFIX}runs"  # sorted set: run id by started
RUNNING = f"{PREFIX}running"  # set: ids of runs whose record says running
OWNER_KEPT = 3600.0  # seconds an owner's last beat is kept past its alive_until

# KEYS[1] plan; ARGV body, time to live (ms), ids.
PUT_PLAN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'body', ARGV[1], 'used', '0', 'asking_until', '0', 'ids', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
# KEYS[1] plan; ARGV until, now.
RESERVE = """
local slot = redis.call('HMGET', KEYS[1], 'used', 'asking_until')
if slot[1] ~= '0' or tonumber(slot[2]) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'asking_until', ARGV[1])
return 1
"""
# KEYS[1] plan (or run); ARGV field, value: set only on an existing key, never create one.
SET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
# KEYS[1] plan: its ids for the one caller that marks it used, nil for the others.
CONSUME = """
if redis.call('HGET', KEYS[1], 'used') ~= '0' then return false end
redis.call('HSET', KEYS[1], 'used', '1', 'asking_until', '0')
return redis.call('HGET', KEYS[1], 'ids') or '[]'
"""
# KEYS run, index, running; ARGV id, owner, started, body.
CREATE_RUN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[2], 'started', ARGV[3], 'body', ARGV[4], 'cancel', '0')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""
# KEYS run, running; ARGV id, state, body.
SAVE_RUN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'body', ARGV[3])
if ARGV[2] == 'running' then redis.call('SADD', KEYS[2], ARGV[1]) else redis.call('SREM', KEYS[2], ARGV[1]) end
return 1
"""
# KEYS[1] run; ARGV owner, expected owner.
CLAIM = """
local run = redis.call('HMGET', KEYS[1], 'owner', 'state')
if run[1] ~= ARGV[2] or run[2] ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
return 1
"""

PLAN_FIELDS = ("body", "used", "asking_until")
"""A plan as `get_plan` reads it: without its ids."""
RUN_FIELDS = ("state", "owner", "body")


def plan_key(key: str) -> str:
    return f"{PREFIX}plan:{key}"


def run_key(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}"


def journal_key(run_id: str) -> str:
    return f"{PREFIX}journal:{run_id}"


def owner_key(owner: str) -> str:
    return f"{PREFIX}owner:{owner}"


def milliseconds(seconds: float) -> int:
    """A time to live for PEXPIRE/PX: at least 1 ms (0 or less is refused by the server)."""
    return max(1, round(seconds * 1000))


def without_credentials(url: str) -> str:
    """The URL without its user info or a `password=` query parameter."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class RedisStore(Store):
    def __init__(self, url: str) -> None:
        try:
            self.url = without_credentials(url)
            parts = urlsplit(url)
            self._secret = parts.password or dict(parse_qsl(parts.query)).get("password", "")
            if url.startswith("valkey"):
                url = "redis" + url.removeprefix("valkey")  # valkey:// and valkeys:// speak Redis
            self._redis: redis.asyncio.Redis = redis.asyncio.from_url(
                url,
                decode_responses=True,
                socket_timeout=5.0,
                socket_connect_timeout=5.0,
                # A dropped connection is retried twice, quickly: a retried script that had already run
                # only ever answers "no" (the plan is used, the run is claimed), never a second "yes".
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            )
        except ValueError:
            raise StoreError("PURGEWARDEN_STORE_URL is not a valid Redis URL") from None
        self._put_plan = self._redis.register_script(PUT_PLAN)
        self._reserve = self._redis.register_script(RESERVE)
        self._set_if_exists = self._redis.register_script(SET_IF_EXISTS)
        self._consume = self._redis.register_script(CONSUME)
        self._create_run = self._redis.register_script(CREATE_RUN)
        self._save_run = self._redis.register_script(SAVE_RUN)
        self._claim = self._redis.register_script(CLAIM)

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except (RedisError, OSError) as error:  # ConnectionError is an OSError
            message = str(error) or type(error).__name__
            if self._secret:
                message = message.replace(self._secret, "***")
            raise StoreError(f"the store at {self.url} failed: {message}") from None

    async def _script(self, script: AsyncScript, keys: Sequence[str], *args: str | float | bytes) -> bool:
        async with self._errors():
            return bool(await script(keys=keys, args=args))

    # --- plans -------------------------------------------------------------------------------------

    async def put_plan(
        self, key: str, body: str, keep_until: float, now: float, *, ids: bytes = EMPTY_IDS
    ) -> None:
        ttl = milliseconds(keep_until - now)
        if not await self._script(self._put_plan, [plan_key(key)], body, ttl, ids):
            raise StoreError(f"the store at {self.url} already holds this plan")

    async def get_plan(self, key: str) -> PlanSlot | None:
        async with self._errors():
            body, used, asking_until = cast(
                list[str | None], await self._redis.hmget(plan_key(key), PLAN_FIELDS)
            )
        if body is None:
            return None
        return PlanSlot(body, used == "1", float(asking_until or 0))

    async def reserve(self, key: str, until: float, now: float) -> bool:
        return await self._script(self._reserve, [plan_key(key)], repr(until), repr(now))

    async def release(self, key: str) -> None:
        await self._script(self._set_if_exists, [plan_key(key)], "asking_until", "0")

    async def consume(self, key: str) -> bytes | None:
        async with self._errors():
            ids = cast(str | None, await self._consume(keys=[plan_key(key)]))
        return None if ids is None else ids.encode()

    # --- runs --------------------------------------------------------------------------------------

    async def create_run(self, run_id: str, owner: str, started: float, body: str) -> None:
        keys = [run_key(run_id), RUNS, RUNNING]
        if not await self._script(self._create_run, keys, run_id, owner, repr(started), body):
            raise StoreError(f"the store at {self.url} already holds run {run_id}")

    async def append_entries(self, entries: list[tuple[str, str]]) -> None:
        async with self._errors(), self._redis.pipeline(transaction=True) as pipe:
            for run_id, entry in entries:
                pipe.rpush(journal_key(run_id), entry)
            await pipe.execute()

    async def save_run(self, run_id: str, state: str, body: str) -> None:
        await self._script(self._save_run, [run_key(run_id), RUNNING], run_id, state, body)

    async def get_run(self, run_id: str, *, entries: bool = True) -> StoredRun | None:
        async with self._errors(), self._redis.pipeline(transaction=True) as pipe:
            pipe.hmget(run_key(run_id), RUN_FIELDS)
            if entries:
                pipe.lrange(journal_key(run_id), 0, -1)
            answers = await pipe.execute()
        run = self._run(run_id, answers[0])
        if run is not None and entries:
            return StoredRun(run.id, run.state, run.owner, run.body, entries=answers[1])
        return run

    async def recent_runs(self, limit: int) -> list[StoredRun]:
        if limit == 0:
            return []
        async with self._errors():
            ids = cast(list[str], await self._redis.zrevrange(RUNS, 0, limit - 1 if limit > 0 else -1))
        return await self._runs(ids)

    async def running_runs(self) -> list[StoredRun]:
        async with self._errors():
            ids = cast(set[str], await self._redis.smembers(RUNNING))
        return [run for run in await self._runs(sorted(ids)) if run.state == "running"]

    async def _runs(self, ids: Sequence[str]) -> list[StoredRun]:
        async with self._errors(), self._redis.pipeline(transaction=False) as pipe:
            for run_id in ids:
                pipe.hmget(run_key(run_id), RUN_FIELDS)
            answers = await pipe.execute()
        return [
            run for run_id, fields in zip(ids, answers, strict=True) if (run := self._run(run_id, fields))
        ]

    @staticmethod
    def _run(run_id: str, fields: list[str | None]) -> StoredRun | None:
        state, owner, body = fields
        if state is None or owner is None or body is None:
            return None
        return StoredRun(run_id, state, owner, body)

    async def claim(self, run_id: str, owner: str, expected_owner: str) -> bool:
        return await self._script(self._claim, [run_key(run_id)], owner, expected_owner)

    async def request_cancel(self, run_id: str) -> None:
        await self._script(self._set_if_exists, [run_key(run_id)], "cancel", "1")

    async def cancel_requested(self, run_id: str) -> bool:
        async with self._errors():
            return await self._redis.hget(run_key(run_id), "cancel") == "1"

    # --- owners ------------------------------------------------------------------------------------

    async def beat(self, owner: str, alive_until: float, now: float) -> None:
        async with self._errors():
            ttl = milliseconds(alive_until + OWNER_KEPT - now)
            await self._redis.set(owner_key(owner), repr(alive_until), px=ttl)

    async def alive_until(self, owner: str) -> float:
        async with self._errors():
            value = await self._redis.get(owner_key(owner))
        return float(value) if value is not None else 0.0

    async def ping(self) -> None:
        async with self._errors():
            answered = await self._redis.ping()
        if not answered:
            raise StoreError(f"the store at {self.url} did not answer PING")

    async def close(self) -> None:
        async with self._errors():
            await self._redis.aclose()
