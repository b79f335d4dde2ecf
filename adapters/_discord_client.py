"""The discord.py client the Discord adapter runs: intents, sharding, and REST/gateway overrides.

discord.py builds every REST URL from `Route.BASE`, a class attribute: setting it would move every
client in the process. Instead our HTTPClient subclass rebases each request's URL, and rewrites the
gateway URL at the one place every gateway connection passes (`ws_connect`), so an override stays
with the adapter instance that asked for it. Events go to a `Listener` (the adapter).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import HTTPClient, Route

from bridge.config import DiscordAdapter as DiscordConfig

log = logging.getLogger("adapters.discord")


class Listener(Protocol):
    async def on_message(self, message: discord.Message) -> None: ...

    def on_ready(self) -> None: ...

    def on_shard_up(self, shard_id: int, how: str) -> None: ...

    def on_shard_down(self, shard_id: int) -> None: ...


class RebasedHTTPClient(HTTPClient):
    """discord.py's HTTP client, talking to `api_base` and `gateway_url` when they are set."""

    def __init__(self, *args: Any, api_base: str | None, gateway_url: str | None, **kw: Any):
        super().__init__(*args, **kw)
        self._api_base = api_base.rstrip("/") if api_base else None
        self._gateway_url = gateway_url
        self._discovered: str | None = None  # what GET /gateway/bot named

    async def request(self, route: Route, **kwargs: Any) -> Any:
        if self._api_base and route.url.startswith(Route.BASE):
            # Route objects are built per call, so rewriting this one touches no other request.
            route.url = self._api_base + route.url[len(Route.BASE) :]
        return await super().request(route, **kwargs)

    def edit_wait(self, channel_id: int) -> float:
        """Seconds until an update may edit a message in `channel_id` without taking the last
        token of its rate-limit bucket (as Discord's X-RateLimit headers last described it);
        0.0 when it may now. discord.py holds the request that empties a bucket until the bucket
        resets: an update waits instead, and the last token stays for the final text."""
        route = Route(
            "PATCH", "/channels/{channel_id}/messages/{message_id}",
            channel_id=channel_id, message_id=0,
        )  # fmt: skip
        bucket_hash = self._bucket_hashes.get(route.key)
        key = f"{bucket_hash or route.key}:{route.major_parameters}"
        bucket = self._buckets.get(key)
        if bucket is None or bucket.expires is None or bucket.remaining - bucket.outgoing > 1:
            return 0.0
        return max(0.0, bucket.expires - self.loop.time())

    async def get_bot_gateway(self) -> Any:
        shards, url, limits = await super().get_bot_gateway()
        self._discovered = url
        return shards, self._gateway_url or url, limits

    async def ws_connect(self, url: str, *, compress: int = 0) -> Any:
        target = yarl.URL(url)
        base = self._gateway_url
        if base is None and self._api_base and target.host == DiscordWebSocket.DEFAULT_GATEWAY.host:
            # discord.py falls back to its built-in gateway (after an invalidated session, or with
            # a fixed shard_count); with a REST override, ask that server where its gateway is.
            if self._discovered is None:
                await self.get_bot_gateway()
            base = self._discovered
        if base is not None:
            target = yarl.URL(base).with_query(target.query)
        return await super().ws_connect(str(target), compress=compress)


def intents(config: DiscordConfig) -> discord.Intents:
    wanted = discord.Intents.none()
    wanted.guilds = True  # channels, threads and the bot's own role, for addressing
    wanted.guild_messages = True
    wanted.dm_messages = True
    # Privileged: without it Discord still sends the text of DMs and of messages that mention
    # the bot, but not of replies that do not ping it.
    wanted.message_content = config.message_content
    return wanted


class BridgeClient(discord.AutoShardedClient):
    """An auto-sharded client (one shard unless configured) that reports to a `Listener`."""

    def __init__(self, config: DiscordConfig, listener: Listener) -> None:
        super().__init__(
            intents=intents(config),
            shard_count=config.shard_count,
            shard_ids=config.shard_ids,
            guild_ready_timeout=config.guild_ready_timeout,
            max_messages=1000,  # so a reply to one of our recent messages is recognised
            chunk_guilds_at_startup=False,
        )
        # discord.py offers no public hook for its HTTP client; the state holds the only other
        # reference, so both are swapped before anything has used them.
        self.http = RebasedHTTPClient(
            self.loop,
            api_base=config.api_base_url,
            gateway_url=config.gateway_url,
        )
        self._connection.http = self.http
        self._listener = listener
        self._identify_delay = config.identify_delay

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py's default waits 5 s before every IDENTIFY but the first (Discord's limit).
        if not initial:
            await asyncio.sleep(self._identify_delay)

    async def on_message(self, message: discord.Message) -> None:
        await self._listener.on_message(message)

    async def on_ready(self) -> None:
        self._listener.on_ready()

    async def on_shard_connect(self, shard_id: int) -> None:
        self._listener.on_shard_up(shard_id, "connected")

    async def on_shard_resumed(self, shard_id: int) -> None:
        self._listener.on_shard_up(shard_id, "resumed")

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self._listener.on_shard_down(shard_id)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("discord: error in %s", event_method)
