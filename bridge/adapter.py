"""The adapter interface: what the bridge needs from a platform, and nothing platform-specific.

An adapter starts and stops, hands each platform event to `deliver` as an `Inbound`, sends
`Outbound` replies, shows a working signal, says its limits and health, and may serve webhook
routes on the bridge's one HTTP server. Implementations live in `adapters/`, one file each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from .types import Inbound, Limits, Outbound

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

    def routes(self) -> Sequence[HttpRoute]:
        """Webhook routes to mount before `start` (empty for polling/socket adapters)."""

    async def start(self, deliver: Deliver | None) -> None:
        """Connect and begin delivering messages; return once started (not when stopped).
        `None`: sending only (a worker process): log in to the platform's REST API and receive
        nothing (no gateway connection, no poller, no webhook)."""

    async def stop(self) -> None: ...

    async def send(self, outbound: Outbound) -> None:
        """Post every part, in order; raise only when the reply cannot be delivered at all."""

    def working(self, inbound: Inbound) -> AbstractAsyncContextManager[None]: ...

    def health(self) -> Health: ...

    async def probe(self) -> str:
        """Prove the token works (getMe, auth.test, …); a short description without secrets."""
