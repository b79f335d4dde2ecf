"""The adapter interface: what the bridge needs from a platform, and nothing platform-specific.

An adapter starts and stops, hands each platform event to `deliver` as an `Inbound`, posts replies
one part (`Outbound`) at a time and says which message id the platform gave it, shows a working
signal, may show an answer while it is written (`live`), downloads a picture sent to the bot when a
backend can see it, says its limits and health, and may serve webhook routes on the bridge's one
HTTP server. Implementations live in `adapters/`, one file each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from .streaming import Live
from .types import Inbound, Limits, Outbound, Picture

# The router's intake: True once the message is durably accepted, False if it needs no answer.
Deliver = Callable[[Inbound], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Health:
    ready: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HttpRoute:
    """A webhook endpoint the adapter serves on the bridge's HTTP server."""

    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]


class Adapter(Protocol):
    platform: str
    limits: Limits
    # Seconds after a first attempt during which posting the same part again (same
    # `Outbound.key`) cannot make it appear twice: Discord's nonce (a few minutes), Slack's lookup
    # by message metadata (always: math.inf); Telegram offers nothing (0).
    dedup_window: float

    def routes(self) -> Sequence[HttpRoute]:
        """Webhook routes to mount before `start` (empty for polling/socket adapters)."""

    async def start(self, deliver: Deliver | None) -> None:
        """Connect and begin delivering messages; return once started (not when stopped).
        `None`: sending only (a worker process): log in to the platform's REST API and receive
        nothing (no gateway connection, no poller, no webhook)."""

    async def stop(self) -> None: ...

    async def send(self, outbound: Outbound) -> str:
        """Post one part; the platform's message id (several joined by "," if the platform
        needed more than one message). Raise `DeliveryFailed` when it failed for a passing reason
        (`maybe_sent` if the request may have reached the platform), `Undeliverable` when the
        platform refused it for good. With `outbound.retry`, an earlier attempt may have been
        posted: use `outbound.key` so that it is not posted twice where the platform allows."""

    def working(self, inbound: Inbound) -> AbstractAsyncContextManager[None]: ...

    async def fetch_picture(self, picture: Picture, max_bytes: int) -> bytes:
        """The picture's bytes through the platform's file API. Raise `PictureTooLarge` before
        reading more than `max_bytes` (before any download where the platform states the size),
        `PictureUnavailable` when it cannot be had."""

    def live(self, inbound: Inbound) -> Live | None:
        """Where the answer to `inbound` can be shown as it is written (the adapter's
        `streaming:` settings say for which chats); None: it is sent whole."""

    def health(self) -> Health: ...

    async def probe(self) -> str:
        """Prove the token works (getMe, auth.test, …); a short description without secrets."""
