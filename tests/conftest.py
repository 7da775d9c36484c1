"""Shared fixtures: one sandbox served on loopback for the whole run, reset before every test that uses it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.types import ElicitRequestParams, ElicitResult
from pydantic import SecretStr

from purgewarden.config import Settings
from purgewarden.sandbox import Sandbox, cocoon
from purgewarden.server.app import create_app


@pytest.fixture(scope="session")
def running_sandbox() -> Iterator[Sandbox]:
    # Short tasks keep purge tests quick; the rate limit is the documented default.
    sandbox = Sandbox(seed=0, task_seconds=0.6)
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def sandbox(running_sandbox: Sandbox) -> Sandbox:
    """The running sandbox, back at its demo data with no faults."""
    running_sandbox.reset()
    return running_sandbox


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(sandbox: Sandbox, tmp_path: Path) -> Settings:
    """Server settings pointing at the sandbox with its demo credentials, fast retries and polling."""
    return sandbox_settings(sandbox, tmp_path)


def sandbox_settings(sandbox: Sandbox, tmp_path: Path) -> Settings:
    endpoints = sandbox.endpoints
    return Settings(
        katapult_api_url=endpoints["katapult"].url,
        katapult_api_token=SecretStr(endpoints["katapult"].credential),
        pvault_url=endpoints["vault"].url,
        pvault_api_key=SecretStr(endpoints["vault"].credential),
        cocoon_access_service_url=endpoints["cocoon"].url,
        cocoon_access_token=SecretStr(endpoints["cocoon"].credential),
        cocoon_organisation_id=cocoon.DEMO_ORGANISATION_ID,
        state_dir=tmp_path,
        retry_base_delay=0.01,
        katapult_task_poll_interval=0.05,
    )


Elicitation = Callable[[ClientRequestContext, ElicitRequestParams], Awaitable[ElicitResult]]


def answering(action: str, approve: bool = True) -> Elicitation:
    """An elicitation callback that answers every question the same way, and records the questions."""
    asked: list[str] = []

    async def answer(ctx: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        content = {"approve": approve} if action == "accept" else None
        return ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    answer.asked = asked  # type: ignore[attr-defined]
    return answer


@pytest.fixture
def connect(settings: Settings) -> Callable[..., AbstractAsyncContextManager[Client]]:
    """`async with connect(**overrides, mode=..., elicitation=...) as client:` an in-memory MCP session."""

    @asynccontextmanager
    async def session(
        *, mode: str = "auto", elicitation: Elicitation | None = None, **overrides: Any
    ) -> AsyncIterator[Client]:
        server = create_app(settings.model_copy(update=overrides))
        async with Client(server, mode=mode, elicitation_callback=elicitation) as client:  # type: ignore[arg-type]
            yield client

    return session


@pytest.fixture
async def mcp(connect: Callable[..., AbstractAsyncContextManager[Client]]) -> AsyncIterator[Client]:
    """A default session: every service configured, no elicitation support."""
    async with connect() as client:
        yield client
