"""Discord through discord.py: DMs, @mentions and replies to the bot in guild channels and threads.

The client runs as a task this adapter owns; discord.py handles heartbeats, resumes, reconnects and
REST rate limits. Answers in guilds reply to the asking message without pinging its author unless
configured; Markdown goes out as is (Discord renders it). Each part carries its idempotency key as
the message nonce, which discord.py sends with `enforce_nonce`: Discord then returns the message
already created with that nonce instead of posting it twice. A channel where the bot may not post
(403) or that is gone (404) makes the reply undeliverable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import aiohttp
import discord

from bridge.adapter import Deliver, Health, HttpRoute
from bridge.config import DiscordAdapter as DiscordConfig
from bridge.errors import ConfigError, DeliveryFailed, PictureUnavailable, Undeliverable
from bridge.holding import Holding
from bridge.indicator import Indicators
from bridge.logs import brief
from bridge.metrics import Metrics
from bridge.types import Addressed, ChatKind, Inbound, Limits, Outbound, Picture

from ._discord_client import BridgeClient
from ._discord_inbound import is_from_person, to_inbound, worth_fetching
from ._discord_live import DiscordLive

log = logging.getLogger("adapters.discord")

_Target = tuple[
    discord.PartialMessageable, discord.MessageReference | None, discord.AllowedMentions
]

# Discord shows "typing" for about 10 s after each signal; renew a little before it lapses.
TYPING_EVERY = 8.0
STOP_TIMEOUT = 10.0
# Discord drops a message whose nonce the same author used "in the past few minutes": a resend
# later than this may appear twice (counted as possibly repeated).
NONCE_WINDOW = 120.0


class DiscordAdapter:
    platform = "discord"
    limits = Limits(max_len=2000)
    dedup_window = NONCE_WINDOW

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
        self._typing = Indicators(TYPING_EVERY, delay=config.typing_delay)
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
        await self._typing.aclose()  # typing requests still in flight finish first
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
        referenced = None
        if worth_fetching(message, client.user):
            referenced = await self._fetch_referenced(message)
        inbound = to_inbound(
            message,
            client.user,
            threads_as_groups=self._config.threads_as_groups,
            referenced=referenced,
        )
        try:
            await self._holding.deliver(inbound)
        except Exception as exc:
            # The router logged the cause; this says which message was lost.
            log.error(
                "discord: message %s in channel %s not accepted: %s",
                inbound.event_id,
                inbound.chat_id,
                brief(exc),
            )
        if inbound.addressed is Addressed.NOT:
            log.debug("discord: message %s not addressed to the bot", inbound.event_id)

    async def _fetch_referenced(self, message: discord.Message) -> discord.Message | None:
        """The replied-to message over REST, when the gateway did not resolve it."""
        ref = message.reference
        assert ref is not None and ref.message_id is not None
        channel = self._require_client().get_partial_messageable(ref.channel_id)
        try:
            return await channel.fetch_message(ref.message_id)
        except discord.HTTPException as exc:
            log.debug("discord: replied-to message %s not fetched: %s", ref.message_id, exc.status)
            return None

    async def fetch_picture(self, picture: Picture, max_bytes: int) -> bytes:
        # Discord states every attachment's size, so the bridge has refused a picture over
        # max_bytes before this; the bytes come from the attachment's CDN URL.
        try:
            return await self._require_client().http.get_from_cdn(picture.ref)
        except discord.HTTPException as exc:
            raise PictureUnavailable(f"discord attachment download: HTTP {exc.status}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PictureUnavailable(f"discord attachment download: {exc!r}") from None

    # ------------------------------------------------------------------------------ sending

    async def send(self, outbound: Outbound) -> str:
        client = self._client
        if client is None or client.is_closed():
            raise DeliveryFailed("discord: not connected")
        reply_to = outbound.reply_to if outbound.part == 0 else None
        channel, reference, allowed = self._target(outbound.chat_id, reply_to)
        try:
            edit = outbound.edit
            if edit and await self._replace(channel, edit, outbound.text, allowed):
                return edit
            message = await channel.send(
                outbound.text,
                reference=reference,  # type: ignore[arg-type]
                allowed_mentions=allowed,
                nonce=outbound.key or None,  # type: ignore[arg-type]
            )
        except (discord.Forbidden, discord.NotFound) as exc:  # no permission; no such channel
            raise Undeliverable(f"{exc.status} {exc.text or type(exc).__name__}") from None
        except discord.RateLimited as exc:
            raise DeliveryFailed(
                f"rate limited for {exc.retry_after:g}s", retry_after=exc.retry_after
            ) from None
        except discord.HTTPException as exc:
            if exc.status >= 500 or exc.status == 429:  # a server error; a Cloudflare block
                raise DeliveryFailed(f"HTTP {exc.status}", maybe_sent=True) from None
            raise Undeliverable(f"{exc.status} {exc.text}") from None  # a request never valid
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # Maybe posted: a resend carries the same nonce, so Discord does not post it twice.
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}", maybe_sent=True) from None
        return str(message.id)

    @staticmethod
    async def _replace(
        channel: discord.PartialMessageable, message_id: str, text: str,
        allowed: discord.AllowedMentions,
    ) -> bool:  # fmt: skip
        """Make the message a crash left mid-stream hold `text`; False when it is gone."""
        try:
            await channel.get_partial_message(int(message_id)).edit(
                content=text, allowed_mentions=allowed
            )
        except discord.NotFound:
            log.info("discord: message %s is gone; posting anew", message_id)
            return False
        return True

    def live(self, inbound: Inbound) -> DiscordLive | None:
        """The answer sent early and edited in place as it grows (`streaming:`)."""
        settings = self._config.streaming
        if not (settings.dms if inbound.kind is ChatKind.DM else settings.groups):
            return None
        reply_to = inbound.message_id if inbound.kind is ChatKind.GROUP else None
        channel, reference, allowed = self._target(inbound.chat_id, reply_to)
        return DiscordLive(
            self._require_client(), channel, reference=reference, allowed=allowed,
            settings=settings,
        )  # fmt: skip

    def _target(self, chat_id: str, reply_to: str | None) -> _Target:
        """Where an answer goes, what it replies to, and whom it may ping."""
        channel = self._require_client().get_partial_messageable(int(chat_id))
        reference = None
        if reply_to:
            # A deleted question must not cost the answer: post it without the reference then.
            reference = discord.MessageReference(
                message_id=int(reply_to), channel_id=channel.id, fail_if_not_exists=False
            )
        # Nothing the model writes may ping anyone; only the reply itself may, when configured.
        allowed = discord.AllowedMentions.none()
        allowed.replied_user = self._config.mention_author
        return channel, reference, allowed

    def working(self, inbound: Inbound) -> AbstractAsyncContextManager[None]:
        channel = self._require_client().get_partial_messageable(int(inbound.chat_id))
        return self._typing.showing(
            lambda: self._type(channel, inbound.chat_id), f"discord-typing-{inbound.chat_id}"
        )

    async def _type(self, channel: discord.PartialMessageable, chat_id: str) -> bool:
        """One typing signal (the context-manager form would own a task of its own); False on
        any refusal: cosmetic, never worth failing or retrying an answer for."""
        try:
            await channel.typing()
        except discord.HTTPException as exc:
            log.debug("discord: typing in %s failed: %s", chat_id, exc.status)
            return False
        return True

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
