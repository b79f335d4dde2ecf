"""Slack's Web API client as the adapter uses it: retries counted in the metrics (a post whose
connection broke is left to delivery's lookup), and the start-up calls, failing without secrets.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bridge.config import SlackAdapter as SlackConfig
from bridge.metrics import Metrics

from ._slack_events import PLATFORM

log = logging.getLogger("adapters.slack")


class SlackStartError(RuntimeError):
    """Slack refused the tokens or could not be reached at start; the text holds no secret."""


class _Counted:
    """Counts each retry in botbridge_platform_send_retries before the library's own wait."""

    reason = "error"

    def __init__(self, metrics: Metrics, *, max_retry_count: int) -> None:
        super().__init__(max_retry_count=max_retry_count)  # type: ignore[call-arg]
        self.metrics = metrics

    async def prepare_for_next_attempt_async(self, **kwargs: Any) -> None:
        self.metrics.send_retries.labels(PLATFORM, self.reason).inc()
        method = kwargs["request"].url.rsplit("/", 1)[-1]
        response = kwargs.get("response")
        found = response.headers.items() if response is not None else ()
        headers = {k.lower(): v for k, v in found}
        wait = headers.get("retry-after", ["-"])[0]
        log.warning("slack %s: %s, retrying (Retry-After %s)", method, self.reason, wait)
        await super().prepare_for_next_attempt_async(**kwargs)  # type: ignore[misc]


class _RateLimitRetry(_Counted, AsyncRateLimitErrorRetryHandler):
    reason = "rate_limited"  # waits the response's Retry-After


class _ConnectionRetry(_Counted, AsyncConnectionErrorRetryHandler):
    reason = "connection"

    async def _can_retry_async(self, **kwargs: Any) -> bool:
        if kwargs["request"].url.endswith("/chat.postMessage"):
            # A post whose connection broke may have been made: never resent blindly here.
            # Delivery retries it after looking for it by its metadata. Only a connection that
            # was never established is safe to retry at once.
            return isinstance(kwargs.get("error"), aiohttp.ClientConnectorError)
        return await super()._can_retry_async(**kwargs)  # type: ignore[misc]


def web_client(
    config: SlackConfig, metrics: Metrics, session: aiohttp.ClientSession
) -> AsyncWebClient:
    base = config.api_base_url
    return AsyncWebClient(
        token=config.bot_token.get_secret_value(),
        base_url=base if base.endswith("/") else base + "/",
        session=session,
        timeout=config.timeout,  # type: ignore[arg-type]  # aiohttp takes a float
        retry_handlers=[
            _ConnectionRetry(metrics, max_retry_count=1),
            _RateLimitRetry(metrics, max_retry_count=config.max_retries),
        ],
    )


async def call(method: str, call: Any) -> Any:
    """Await one Web API call made at start or in a probe; failures become `SlackStartError`
    with Slack's reason (invalid_auth, …) and nothing from the request."""
    try:
        return await call
    except SlackApiError as exc:
        raise SlackStartError(f"slack {method} failed: {exc.response.get('error')}") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SlackStartError(f"slack {method} failed: {type(exc).__name__}: {exc}") from None


async def auth_test(client: AsyncWebClient) -> dict[str, Any]:
    response = await call("auth.test", client.auth_test())
    return dict(response.data) if isinstance(response.data, dict) else {}


async def open_socket(client: AsyncWebClient, config: SlackConfig) -> str:
    assert config.app_token is not None
    response = await client.apps_connections_open(app_token=config.app_token.get_secret_value())
    return str(response["url"])
