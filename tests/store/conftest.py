"""Both stores, each a real one: a SQLite file in the test's directory, and a real Redis server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from purgewarden.store import Store
from purgewarden.store.redis import RedisStore
from purgewarden.store.sqlite import SqliteStore
from tests.redis_server import redis_binary, running_redis

REDIS_MISSING = (
    "redis-server is not installed: apt-get install redis-server (bash .ci/run does) to run the Redis tests"
)

OpenStore = Callable[[], Store]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Redis server for the session (its database is emptied by each test that uses it)."""
    if redis_binary() is None:
        pytest.skip(REDIS_MISSING)
    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["sqlite", "redis"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """`open_store()`: another instance (its own connection) of the same empty store; all closed after."""
    opened: list[Store] = []
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        with redis.from_url(url) as client:
            client.flushdb()

        def new() -> Store:
            opened.append(RedisStore(url))
            return opened[-1]
    else:

        def new() -> Store:
            opened.append(SqliteStore(tmp_path / "purgewarden.db"))
            return opened[-1]

    yield new
    for store in opened:
        await store.close()


@pytest.fixture
def store(open_store: OpenStore) -> Store:
    return open_store()
