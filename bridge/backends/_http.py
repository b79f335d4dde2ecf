"""What every HTTP backend shares: one client, error mapping, and bounded retries.

`send` turns httpx outcomes into the `BackendError` family and retries with exponential backoff and
jitter (tenacity) on 429 (honouring Retry-After), 502/503/504 and connection failures. A request
that is not idempotent is retried only when it provably never reached the server.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import ssl
import time
from collections.abc import Mapping
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ..config import BackendBase
from ..errors import (
    AuthFailed,
    BackendError,
    BadResponse,
    RateLimited,
    Rejected,
    Timeout,
    Unavailable,
)
from ._transport import AiohttpTransport

log = logging.getLogger("bridge.backends")

RETRY_STATUSES = frozenset({502, 503, 504})
_DETAIL_MAX = 300


def make_client(
    config: BackendBase, *, verify: ssl.SSLContext | bool = True, **kwargs: Any
) -> httpx.AsyncClient:
    """One client per backend: httpx's API over aiohttp's pool (see `_transport`)."""
    timeout = httpx.Timeout(config.timeout, connect=config.connect_timeout)
    # No pool limit of its own: the router's bridge.max_in_flight bounds the calls under way, and
    # a slow backend needs one connection per waiting call (a limit of 100 here capped a 2 s
    # backend at 50 answers/s whatever max_in_flight said; bench.concurrency).
    transport = AiohttpTransport(ssl_context=verify, limit=0)
    return httpx.AsyncClient(timeout=timeout, transport=transport, **kwargs)


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def error_detail(response: httpx.Response) -> str:
    """The API's own words about a failure, short, from the usual JSON shapes or the raw body."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:_DETAIL_MAX].strip() or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:_DETAIL_MAX]
        for key in ("detail", "message", "error"):
            if body.get(key):
                return str(body[key])[:_DETAIL_MAX]
    return response.text[:_DETAIL_MAX]


def raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    detail = f"HTTP {status}: {error_detail(response)}"
    if status == 429:
        raise RateLimited(detail, retry_after=retry_after(response))
    if status in (401, 403):
        raise AuthFailed(f"credentials refused ({detail})", status=status)
    if status >= 500:
        raise Unavailable(detail, status=status)
    raise Rejected(detail, status=status)


def json_body(response: httpx.Response) -> Any:
    # Invalid UTF-8 inside an otherwise good answer becomes U+FFFD: the user still gets the answer.
    text = response.content.decode(response.encoding or "utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise BadResponse(
            f"HTTP {response.status_code}: body is not JSON: {response.text[:80]!r}"
        ) from None


def _map_transport_error(exc: httpx.TransportError) -> BackendError:
    name = type(exc).__name__
    # No connection, or none free in the pool: the request provably never left.
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return Unavailable(f"cannot connect ({name})", sent=False)
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"no answer in time ({name})")
    return Unavailable(f"connection failed ({name})")


def _should_retry(idempotent: bool, max_wait: float):
    def check(exc: BaseException) -> bool:
        if not isinstance(exc, BackendError) or not exc.retryable:
            return False
        if isinstance(exc, RateLimited):
            # A 429 means the server did not act on the request: safe to resend, if not too long.
            return exc.retry_after is None or exc.retry_after <= max_wait
        if isinstance(exc, Unavailable) and exc.status is not None:
            if exc.status not in RETRY_STATUSES:
                return False
        return idempotent or not exc.sent

    return check


def _wait(config: BackendBase):
    backoff = wait_exponential_jitter(
        multiplier=config.retry_backoff,
        max=max(config.retry_backoff, 8.0),
        jitter=config.retry_backoff,
    )

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return exc.retry_after
        return backoff(state)

    return wait


def _log_retry(backend: str):
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "backend %s: attempt %d failed (%s: %s); retrying in %.2fs",
            backend,
            state.attempt_number,
            getattr(exc, "cause", "error"),
            exc,
            wait,
        )

    return before_sleep


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    config: BackendBase,
    backend: str,
    idempotent: bool = True,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    params: Mapping[str, Any] | None = None,
) -> httpx.Response:
    """One API call with the bridge's retry policy; raises a `BackendError` on failure."""

    async def attempt() -> httpx.Response:
        try:
            # httpx's read timeout restarts with every chunk: a server dripping bytes could hold
            # the user forever. `timeout` bounds the whole attempt.
            async with asyncio.timeout(config.timeout):
                response = await client.request(
                    method, url, headers=headers, json=json, params=params
                )
        except httpx.TransportError as exc:
            raise _map_transport_error(exc) from None
        except TimeoutError:
            raise Timeout(f"no complete answer in {config.timeout:g}s") from None
        raise_for_status(response)
        return response

    return await policy(config, backend, idempotent)(attempt)


def policy(config: BackendBase, backend: str, idempotent: bool) -> AsyncRetrying:
    """The bridge's retry policy for one call (see the module docstring)."""
    return AsyncRetrying(
        stop=stop_after_attempt(config.max_retries + 1),
        wait=_wait(config),
        retry=retry_if_exception(_should_retry(idempotent, config.max_retry_wait)),
        before_sleep=_log_retry(backend),
        reraise=True,
    )


class Api:
    """One backend's way to its API: the shared client, the retry policy and the name for logs."""

    def __init__(
        self,
        name: str,
        config: BackendBase,
        *,
        base_url: str = "",
        headers: Mapping[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.name = name
        self.config = config
        self.client = make_client(config, base_url=base_url, headers=headers, verify=verify)

    async def call(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool = True,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        return await send(
            self.client, method, url, config=self.config, backend=self.name,
            idempotent=idempotent, headers=headers, json=json, params=params,
        )  # fmt: skip

    async def aclose(self) -> None:
        await self.client.aclose()
