"""What every API client shares: one pooled httpx2 client, error translation, retries and pacing.

Data flows one way: a tool calls a client method, the method calls `_call`, and every failure
comes back as `ApiError`. A request that cannot be built (a value that is not one path segment, a
URL too long) is refused here, before anything is sent. Reads are retried on 429/503/504 and broken
connections with exponential backoff and full jitter; writes are re-sent only when the failure
proves the API did nothing (`ApiError.not_carried_out`), otherwise the caller reconciles by reading
state.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import httpx2
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_json

from purgewarden.clients.errors import ApiError
from purgewarden.clients.limits import AdaptiveLimit, Slot

M = TypeVar("M")
Params = Mapping[str, str | int | bool | list[str]]

MAX_URL_CHARS = 16_000
"""Longer URLs are refused before sending: servers and proxies in front of them start answering 414
(or dropping the connection) somewhere past 8 KB, and a 250-id Vault lookup needs about 10,500."""

URLS_KEPT = 256
"""Absolute URLs kept by `_request` (then forgotten all at once): the paths and parameters a run repeats."""

PUSH_BACK = frozenset({429, 503})
"""Statuses by which an API says it is full: requests in flight are halved (`AdaptiveLimit`)."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0

    def delay(self, attempt: int, error: ApiError) -> float:
        if error.retry_after is not None:
            return min(error.retry_after, self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


class ServiceClient:
    """Base of the three clients. Subclasses set `service` and parse their own error bodies."""

    service = "api"
    api_prefix = ""
    """Appended to the configured root URL (which is what the vendor's docs and env variables name)."""
    user_agent = "purgewarden/0.1"

    def __init__(
        self,
        base_url: str,
        credential: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        max_connections: int = 32,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        # Binds confirmation tokens and audit lines to the credential without revealing it.
        self.fingerprint = hashlib.sha256(f"{self.service}\0{credential}".encode()).hexdigest()[:16]
        self._options: dict[str, Any] = {
            "base_url": base_url.rstrip("/") + self.api_prefix,
            "headers": {
                "User-Agent": self.user_agent,
                "Accept": "application/json",
                "Authorization": f"Bearer {credential}",
            },
            "timeout": httpx2.Timeout(timeout, connect=min(timeout, 10.0)),
            "limits": httpx2.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            "transport": transport,
        }
        self._client: httpx2.AsyncClient | None = None
        self._limits: dict[str, AdaptiveLimit] = {}
        self._urls: dict[tuple[str, str], httpx2.URL] = {}

    def limit_for(self, kind: str, ceiling: int) -> AdaptiveLimit:
        """The in-flight limit of one kind of request, learned over this client's life, at most `ceiling`."""
        limit = self._limits.setdefault(kind, AdaptiveLimit(ceiling))
        limit.bound(ceiling)
        return limit

    @property
    def _http(self) -> httpx2.AsyncClient:
        """Opened on first use: building its TLS context costs tens of ms a client, kept out of start-up."""
        if self._client is None:
            self._client = httpx2.AsyncClient(**self._options)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        encode: Callable[[Any], bytes] = to_json,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        adapter: TypeAdapter[M],
        slot: Slot | None = None,
    ) -> M:
        """Send one API call, retrying as the policy allows, and return its answer parsed straight from
        the bytes by `adapter` (a body that is not JSON or of another shape: `ApiError(kind="malformed")`).
        `encode` turns `json_body` into JSON bytes (a caller may pass a faster one for its body's shape).
        Each attempt's latency, or push-back, is reported to `slot` when the call holds one."""
        request = self._build(operation, method, path, params, json_body, encode, headers)
        attempt = 0
        while True:
            try:
                return self._parsed(operation, adapter, await self._send(operation, request, slot))
            except ApiError as error:
                attempt += 1
                may_retry = error.retryable and (idempotent or error.not_carried_out)
                if not may_retry or attempt >= self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt, error)
                await (anyio.sleep(delay) if slot is None else slot.pause(delay))

    async def _send(
        self, operation: str, request: httpx2.Request, slot: Slot | None = None
    ) -> httpx2.Response:
        """Send one built request: a success answer, or `ApiError` whatever else happens."""
        await self._before_request()
        if slot is not None:
            slot.sending()
        sent = time.monotonic()
        try:
            response = await self._http.send(request)
        except httpx2.TimeoutException as exc:
            connect = isinstance(exc, httpx2.ConnectTimeout | httpx2.PoolTimeout)
            if slot is not None and not connect:
                slot.overloaded()  # no answer in `timeout` seconds: as much a push-back as a 503
            raise ApiError(
                self.service,
                operation,
                "connection" if connect else "timeout",
                message=str(exc) or type(exc).__name__,
                sent=not connect,
            ) from exc
        except httpx2.TransportError as exc:
            raise ApiError(
                self.service,
                operation,
                "connection",
                message=str(exc) or type(exc).__name__,
                sent=not isinstance(exc, httpx2.ConnectError | httpx2.UnsupportedProtocol),
            ) from exc
        except httpx2.RequestError as exc:
            # After sending (e.g. a body that cannot be decoded): the call went through, its answer is lost.
            raise ApiError(
                self.service,
                operation,
                "malformed",
                message=f"the answer could not be read: {str(exc) or type(exc).__name__}",
            ) from exc
        self._after_response(response)
        if not response.is_success:
            error = self._error_from(operation, response)
            if slot is not None and response.status_code in PUSH_BACK:
                slot.overloaded()
            raise error
        if slot is not None:
            slot.answered(time.monotonic() - sent)
        return response

    def _build(
        self,
        operation: str,
        method: str,
        path: str,
        params: Params | None,
        json_body: Any,
        encode: Callable[[Any], bytes],
        headers: Mapping[str, str] | None,
    ) -> httpx2.Request:
        """The request as it would be sent, or `ApiError(kind="invalid_request")` if it cannot be.

        The body is encoded by pydantic's Rust encoder (a 1,000-id bulk delete in a third of `json.dumps`'s
        time), as UTF-8; text that is not valid Unicode (a lone surrogate) cannot be, and is refused."""
        request_headers = dict(headers or {})
        if json_body is not None:
            request_headers["Content-Type"] = "application/json"
        try:
            content = None if json_body is None else encode(json_body)
            query = str(httpx2.QueryParams(params))
            length = len(self._options["base_url"]) + len(path) + 1 + len(query)
            if length > MAX_URL_CHARS:
                raise self._invalid(
                    operation, f"the URL would be too long ({length:,} characters; at most {MAX_URL_CHARS:,})"
                )
            return self._request(method, path, query, params, content, request_headers)
        except httpx2.InvalidURL as exc:
            raise self._invalid(operation, f"the URL would not be valid ({exc})") from exc
        except (UnicodeEncodeError, PydanticSerializationError) as exc:
            raise self._invalid(
                operation, "a value cannot be encoded (headers must be plain ASCII, text valid Unicode)"
            ) from exc
        except (httpx2.HTTPError, httpx2.StreamError, httpx2.CookieConflict) as exc:
            raise self._invalid(operation, str(exc) or type(exc).__name__) from exc

    def _request(
        self,
        method: str,
        path: str,
        query: str,
        params: Params | None,
        content: bytes | None,
        headers: dict[str, str],
    ) -> httpx2.Request:
        """The request, its absolute URL kept for the calls that repeat its path and `query` (`params` as
        httpx2 encodes them; every batch of a bulk delete): httpx2 takes four times as long to build one as
        the rest."""
        key = (path, query)
        url = self._urls.get(key)
        if url is not None:
            return self._http.build_request(method, url, content=content, headers=headers)
        request = self._http.build_request(method, path, params=params, content=content, headers=headers)
        if len(self._urls) >= URLS_KEPT:
            self._urls.clear()
        self._urls[key] = request.url
        return request

    def _invalid(self, operation: str, problem: str) -> ApiError:
        return ApiError(
            self.service,
            operation,
            "invalid_request",
            message=f"the request could not be sent: {problem}",
            sent=False,
        )

    def _path_segment(self, operation: str, value: str) -> str:
        """`value` percent-encoded as exactly one path segment, so no input can reach another route.

        "", "." and ".." would vanish or climb a level once the URL is normalised (a collection ".."
        would turn `/data/collections/../count/objects` into `/data/count/objects`): refused, unsent.
        """
        if value in ("", ".", ".."):
            raise self._invalid(operation, f"{value!r} cannot be used as a name in the URL")
        try:
            return quote(value, safe="")
        except UnicodeEncodeError as exc:
            raise self._invalid(operation, "a name in the URL is not valid text") from exc

    def _parsed(self, operation: str, adapter: TypeAdapter[M], response: httpx2.Response) -> M:
        """The typed answer, parsed straight from the bytes (no intermediate dicts); a body that is not
        JSON or of another shape is an `ApiError` (the call itself went through)."""
        try:
            return adapter.validate_json(response.content or b"null")
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(map(str, first["loc"])) or "the top level"
            raise ApiError(
                self.service,
                operation,
                "malformed",
                status=response.status_code,
                message=f"the API answered with a body of an unexpected shape ({exc.error_count()} problems; "
                f"first at {where}: {first['msg']})",
                request_id=response.headers.get("x-request-id"),
            ) from exc

    def _error_from(self, operation: str, response: httpx2.Response) -> ApiError:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        code, message, detail = self._parse_error(body)
        if message is None:
            text = response.text.strip()
            message = text[:300] if text and body is None else response.reason_phrase
        return ApiError(
            self.service,
            operation,
            "response",
            status=response.status_code,
            code=code,
            message=message,
            detail=detail,
            request_id=response.headers.get("x-request-id"),
            retry_after=_retry_after(response),
        )

    def _parse_error(self, body: Any) -> tuple[str | None, str | None, dict[str, Any]]:
        """(code, message, detail) from the service's error body; overridden per service."""
        return None, None, {}

    async def _before_request(self) -> None:
        """Hook for pacing (Katapult waits here when its rate limit runs low)."""

    def _after_response(self, response: httpx2.Response) -> None:
        """Hook for reading rate-limit headers."""


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
