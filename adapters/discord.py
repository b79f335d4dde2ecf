"""Discord through discord.py: DMs, @mentions and replies to the bot in guild channels and threads.

The client runs as a task this adapter owns; discord.py handles heartbeats, resumes, reconnects and
REST rate limits. Answers in guilds reply to the asking message without pinging its author unless
configured; Markdown goes out as is (Discord renders it). A channel where the bot may not post
(403) is logged once and its replies dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import discord

from bridge.adapter import Deliver, Health, HttpRoute
from bridge.config import DiscordAdapter as DiscordConfig
from bridge.errors import ConfigError
from bridge.holding import Holding
from bridge.metrics import Metrics
from bridge.types import Addressed, Inbound, Limits, Outbound

from ._discord_client import BridgeClient
from ._discord_inbound import is_from_person, to_inbound

log = logging.getLogger("adapters.discord")

# Discord shows "typing" for about 10 s after each signal; renew a little before it lapses.
TYPING_EVERY = 8.0
STOP_TIMEOUT = 10.0


class DiscordAdapter:
    platform = "discord"
    limits = Limits(max_len=2000)

    def __init__(self, config: DiscordConfig, metrics: Metrics) -> None:
        self._config = config
        self._metrics = metrics
        self._client: BridgeClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._holding: Holding | None = None  # the gateway never redelivers: held, not refused
        self._ready = asyncio.Event()
        self._down: set[int] = set()  # shards disconnected since they were last up
        self._down_since: float | None = None
        self._failure: str | None = None  # why the client stopped, when it did on its own
        self._forbidden: set[str] = set()  # channels already logged as refusing our posts
        self._send_only = False

    def routes(self) -> Sequence[HttpRoute]:
        return ()

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self, deliver: Deliver | None) -> None:
        self._holding = Holding(deliver, platform=self.platform) if deliver else None
        self._client = BridgeClient(self._config, self)
        if deliver is None:  # a worker: REST only, no gateway connection (no shards, no events)
            try:
                await self._log_in(self._client)
            except BaseException:
                await self._client.close()
                raise
            self._send_only = True
            log.info("discord: %s, sending only (REST)", self._client.user)
            return
        self._task = asyncio.create_task(self._run(self._client), name="discord")
        waiter = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait(
                {self._task, waiter},
                timeout=self._config.ready_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waiter.cancel()
        if self._ready.is_set():
            return
        ended = self._task.done()
        failed = self._task.exception() if ended and not self._task.cancelled() else None
        await self.stop()
        if failed is not None:
            raise failed
        if ended:
            raise RuntimeError(f"discord: the client stopped before READY: {self._failure}")
        raise TimeoutError(
            f"discord: not connected after {self._config.ready_timeout:g}s "
            "(no READY from the gateway; see the log above)"
        )

    async def _run(self, client: BridgeClient) -> None:
        token = self._config.token.get_secret_value()
        try:
            await client.start(token)
        except discord.LoginFailure:
            self._stopped("the token was rejected (401)")
            raise ConfigError("adapters.discord.token", "rejected by Discord (401)") from None
        except discord.PrivilegedIntentsRequired:
            self._stopped("the Message Content intent is not enabled for this bot")
            raise ConfigError(
                "adapters.discord.message_content",
                "Discord refused the Message Content intent: switch it on in the developer "
                "portal (Bot > Privileged Gateway Intents) or set message_content: false",
            ) from None
        except Exception as exc:
            self._stopped(f"{type(exc).__name__}: {exc}")
            raise
        if not client.is_closed():
            self._stopped("the gateway connection ended")

    def _stopped(self, why: str) -> None:
        self._failure = why
        self._connected(False)
        if self._ready.is_set():  # before READY, start() reports it
            log.error("discord: client stopped: %s", why)

    async def stop(self) -> None:
        client, task = self._client, self._task
        if self._holding is not None:
            await self._holding.close()
        if client is not None:
            await client.close()
        if task is not None:
            # Before READY discord.py may be sleeping between connection attempts: don't wait.
            grace = STOP_TIMEOUT if self._ready.is_set() else 0.1
            try:
                await asyncio.wait_for(asyncio.shield(task), grace)
            except TimeoutError:
                task.cancel()
            except Exception:
                pass  # already reported by _run
            await asyncio.gather(task, return_exceptions=True)
        self._ready.clear()
        self._connected(False)
        self._send_only = False

    # ------------------------------------------------------------------------------ events

    def on_ready(self) -> None:
        assert self._client is not None and self._client.user is not None
        if not self._ready.is_set():
            user = self._client.user
            log.info("discord: connected as %s (id %s)", user, user.id)
        self._ready.set()
        self._connected(True)

    def on_shard_up(self, shard_id: int, how: str) -> None:
        if shard_id in self._down:
            log.info("discord: shard %s %s", shard_id, how)
        self._down.discard(shard_id)
        self._connected(not self._down)

    def on_shard_down(self, shard_id: int) -> None:
        if self._client is None or self._client.is_closed():
            return  # our own stop
        if shard_id not in self._down:
            log.warning("discord: shard %s disconnected; discord.py is reconnecting", shard_id)
        self._down.add(shard_id)
        self._connected(False)

    def _connected(self, up: bool) -> None:
        up = up and self._ready.is_set() and not self._down
        if not up and self._down_since is None:
            self._down_since = time.monotonic()
        elif up:
            self._down_since = None

    async def on_message(self, message: discord.Message) -> None:
        client = self._client
        if client is None or client.user is None or self._holding is None:
            return
        if not is_from_person(message, client.user):
            return  # bots (ourselves included), webhooks, system messages
        inbound = to_inbound(message, client.user, threads_as_groups=self._config.threads_as_groups)
        try:
            await self._holding.deliver(inbound)
        except Exception as exc:
            # The router logged the cause; this says which message was lost.
            log.error(
                "discord: message %s in channel %s not accepted: %r",
                inbound.event_id,
                inbound.chat_id,
                exc,
            )
        if inbound.addressed is Addressed.NOT:
            log.debug("discord: message %s not addressed to the bot", inbound.event_id)

    # ------------------------------------------------------------------------------ sending

    async def send(self, outbound: Outbound) -> None:
        client = self._require_client()
        channel = client.get_partial_messageable(int(outbound.chat_id))
        reference = None
        if outbound.reply_to:
            # A deleted question must not cost the answer: post it without the reference then.
            reference = discord.MessageReference(
                message_id=int(outbound.reply_to),
                channel_id=channel.id,
                fail_if_not_exists=False,
            )
        # Nothing the model writes may ping anyone; only the reply itself may, when configured.
        allowed = discord.AllowedMentions.none()
        allowed.replied_user = self._config.mention_author
        for number, part in enumerate(outbound.parts):
            try:
                await channel.send(
                    part, reference=reference if number == 0 else None, allowed_mentions=allowed
                )
            except discord.Forbidden as exc:
                self._refused(outbound.chat_id, exc)
                return

    def _refused(self, chat_id: str, exc: discord.Forbidden) -> None:
        if chat_id in self._forbidden:
            log.debug("discord: reply to channel %s dropped (403)", chat_id)
            return
        self._forbidden.add(chat_id)
        log.warning(
            "discord: no permission to post in channel %s (403 %s); its replies are dropped",
            chat_id,
            exc.text or "Forbidden",
        )

    def working(self, inbound: Inbound) -> AbstractAsyncContextManager[None]:
        return self._typing(inbound.chat_id)

    @asynccontextmanager
    async def _typing(self, chat_id: str) -> AsyncIterator[None]:
        channel = self._require_client().get_partial_messageable(int(chat_id))

        async def keep_typing() -> None:
            while True:
                try:
                    await channel.typing()  # one signal; the context-manager form owns no task
                except discord.HTTPException as exc:
                    log.debug("discord: typing in %s failed: %s", chat_id, exc.status)
                    return  # cosmetic: never worth failing or retrying an answer for
                await asyncio.sleep(TYPING_EVERY)

        typer = asyncio.create_task(keep_typing(), name=f"discord-typing-{chat_id}")
        try:
            yield
        finally:
            typer.cancel()
            await asyncio.gather(typer, return_exceptions=True)

    def _require_client(self) -> BridgeClient:
        if self._client is None:
            raise RuntimeError("discord adapter is not started")
        return self._client

    # ------------------------------------------------------------------------------ health

    def health(self) -> Health:
        if self._send_only:
            return Health(True, f"sending only (REST) as {self._require_client().user}")
        if self._failure is not None:
            return Health(False, f"stopped: {self._failure}")
        if not self._ready.is_set():
            return Health(False, "connecting")
        if self._down:
            since = time.monotonic() - (self._down_since or time.monotonic())
            return Health(False, f"disconnected for {since:.0f}s (reconnecting)")
        client = self._require_client()
        shards = len(client.shards)
        return Health(True, f"connected as {client.user} ({shards} shard{'s' * (shards != 1)})")

    async def probe(self) -> str:
        """Log in over REST only (users/@me): proves the token without opening the gateway."""
        client = BridgeClient(self._config, self)
        try:
            await self._log_in(client)
            user = client.user
            assert user is not None
            return f"{user} (id {user.id})"
        finally:
            await client.close()

    async def _log_in(self, client: BridgeClient) -> None:
        try:
            await client.login(self._config.token.get_secret_value())
        except discord.LoginFailure:
            raise ConfigError("adapters.discord.token", "rejected by Discord (401)") from None
