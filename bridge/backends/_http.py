"""What every HTTP backend shares: one client, error mapping, and retries inside one time budget.

`send` turns httpx outcomes into the `BackendError` family and retries with exponential backoff and
jitter (tenacity) on 429 (honouring Retry-After), 502/503/504 and connection failures. Everything,
attempts and pauses alike, ends by one deadline (`timeout` from the start of the call unless the
backend passes the deadline of its whole answer). A request that is not idempotent (any POST unless
the backend says otherwise: a turn in a conversation the server keeps) is resent only when it
provably never reached the server; a read timeout, a connection cut after sending, or a 5xx may
mean the server acted on it. A request the bridge cannot even build is `Unsendable`: our fault,
never the backend's.
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
    Unsendable,
)
from ._transport import AiohttpTransport

log = logging.getLogger("bridge.backends")

RETRY_STATUSES = frozenset({502, 503, 504})
_DETAIL_MAX = 300
# Methods that change nothing on the server: resending them is always safe.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_URLS_KEPT = 64


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
    """The API's own words about a failure, short: the message of the usual JSON shapes, or the
    start of a body that is not JSON (a proxy's error page). Structured details are summarised,
    never quoted whole: a validation error may echo the request, i.e. the user's text."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:_DETAIL_MAX].strip() or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"][:_DETAIL_MAX]
        for key in ("detail", "message", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:_DETAIL_MAX]
            if isinstance(value, list) and value:
                return _validation_summary(value)
    return f"{response.reason_phrase} ({describe(body)})"


def _validation_summary(items: list[Any]) -> str:
    """`[{"loc": ["body", "x"], "msg": "field required", "input": …}]` (FastAPI, pydantic) as
    `body.x: field required`, leaving out the `input` it echoes."""
    found = []
    for item in items[:3]:
        if isinstance(item, dict) and isinstance(item.get("msg"), str):
            where = ".".join(str(part) for part in item.get("loc", ()))
            found.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(found)[:_DETAIL_MAX] or describe(items)


def describe(data: Any) -> str:
    """The shape of a JSON value, for an error text: never its content (it may be the answer)."""
    if isinstance(data, dict):
        keys = ", ".join(sorted(map(str, data))[:8])
        return f"an object with keys [{keys}]"
    if isinstance(data, list):
        return f"a list of {len(data)}"
    if isinstance(data, str):
        return f"a string of {len(data)} characters"
    return "null" if data is None else type(data).__name__


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
        kind = response.headers.get("content-type", "no content type")
        raise BadResponse(
            f"HTTP {response.status_code}: body is not JSON ({len(response.content)} bytes, {kind})"
        ) from None


def _map_transport_error(exc: httpx.TransportError) -> BackendError:
    name = type(exc).__name__
    # No connection, or none free in the pool: the request provably never left.
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return Unavailable(f"cannot connect ({name})", sent=False)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return Unsendable(f"request not sendable ({name})")
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


def _out_of_time(deadline: float):
    """Stop when the pause before the next attempt would end at or after the deadline: a retry
    with no time left to answer only delays the apology."""

    def stop(state: RetryCallState) -> bool:
        return asyncio.get_running_loop().time() + state.upcoming_sleep >= deadline

    return stop


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


def _build(
    client: httpx.AsyncClient,
    method: str,
    url: str | httpx.URL,
    headers: Mapping[str, str] | None,
    body: Any,
    params: Mapping[str, Any] | None,
) -> httpx.Request:
    try:
        return client.build_request(method, url, headers=headers, json=body, params=params)
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        # Only the exception's type: its text (a UnicodeError's `object`) may hold the body.
        raise Unsendable(f"request body not encodable ({type(exc).__name__})") from None


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str | httpx.URL,
    *,
    config: BackendBase,
    backend: str,
    idempotent: bool | None = None,
    deadline: float | None = None,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    params: Mapping[str, Any] | None = None,
) -> httpx.Response:
    """One API call with the bridge's retry policy, over by `deadline` (loop time; default:
    `config.timeout` from now); raises a `BackendError` on failure. `idempotent` defaults to
    True for GET/HEAD/OPTIONS only: a POST is resent only if the backend says it may be."""
    loop = asyncio.get_running_loop()
    if deadline is None:
        deadline = loop.time() + config.timeout
    if idempotent is None:
        idempotent = method.upper() in _SAFE_METHODS
    request = _build(client, method, url, headers, json, params)

    async def attempt() -> httpx.Response:
        try:
            # httpx's read timeout restarts with every chunk: a server dripping bytes could hold
            # the user forever. The deadline bounds the whole call, retries included.
            async with asyncio.timeout_at(deadline):
                response = await client.send(request)
        except httpx.TransportError as exc:
            raise _map_transport_error(exc) from None
        except TimeoutError:
            raise Timeout(f"no complete answer in {config.timeout:g}s") from None
        raise_for_status(response)
        return response

    # The first attempt runs outside tenacity: most calls succeed at once, and tenacity's
    # machinery around every call was ~4% of the bridge's CPU at saturation. A failure is handed
    # to tenacity as its own first attempt, so the policy (what is retried, the waits, the log
    # line, the deadline) is exactly tenacity's.
    try:
        return await attempt()
    except Exception as exc:  # tenacity decides, as if it had run this attempt itself
        failed: Exception | None = exc

    async def again() -> httpx.Response:
        nonlocal failed
        if failed is not None:
            exc, failed = failed, None
            raise exc
        return await attempt()

    return await policy(config, backend, idempotent, deadline)(again)


def policy(config: BackendBase, backend: str, idempotent: bool, deadline: float) -> AsyncRetrying:
    """The bridge's retry policy for one call, over by `deadline` (see the module docstring)."""
    return AsyncRetrying(
        stop=stop_after_attempt(config.max_retries + 1) | _out_of_time(deadline),
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
        self._urls: dict[str, httpx.URL] = {}  # path → absolute URL (see `_absolute`)

    async def call(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool | None = None,
        deadline: float | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        return await send(
            self.client, method, self._absolute(url), config=self.config, backend=self.name,
            idempotent=idempotent, deadline=deadline, headers=headers, json=json, params=params,
        )  # fmt: skip

    def _absolute(self, url: str) -> httpx.URL:
        """`url` joined to the base URL, parsed once per path (httpx parses and quotes it anew
        for every request: ~4% of the bridge's CPU at saturation). Paths that name a thread
        are many: past `_URLS_KEPT` the cache starts again, and the busy paths come back."""
        found = self._urls.get(url)
        if found is None:
            found = self.client.build_request("GET", url).url
            if len(self._urls) >= _URLS_KEPT:
                self._urls.clear()
            self._urls[url] = found
        return found

    def deadline(self) -> float:
        """The loop time by which a whole answer must be in: `timeout` from now."""
        return asyncio.get_running_loop().time() + self.config.timeout

    async def aclose(self) -> None:
        await self.client.aclose()
