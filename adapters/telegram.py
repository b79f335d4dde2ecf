"""Telegram through python-telegram-bot: long polling or a webhook in, messages and typing out.

The adapter owns its getUpdates loop (PTB's Updater commits offsets before the updates are
handled and offers no hook to notice a silently stalled long poll): an update's offset is only
committed once the router has durably accepted it, and a watchdog restarts a poller that has had
no completed round trip for `stall_timeout`. With several processes on one bot (a shared store),
an `Election` decides which one polls: the others stand by, and take over when the poller dies or
stalls. Addressing lives in `_telegram_inbound`, posting in `_telegram_send`. No PTB type leaves
this package.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiohttp import web
from telegram import Update, User
from telegram.constants import ChatAction
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application, ApplicationBuilder

from bridge.adapter import Deliver, Health, HttpRoute
from bridge.config import TelegramAdapter as TelegramConfig
from bridge.errors import DeliveryFailed, Undeliverable
from bridge.indicator import Indicators
from bridge.leases import Election
from bridge.logs import brief
from bridge.metrics import Metrics
from bridge.types import ChatKind, Inbound, Limits, Outbound, Picture

from ._telegram_files import download
from ._telegram_inbound import to_inbound
from ._telegram_live import TelegramLive
from ._telegram_poll import Poller
from ._telegram_request import AiohttpRequest
from ._telegram_send import MAX_LEN, Sender, _seconds, maybe_sent

log = logging.getLogger("adapters.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
START_ATTEMPTS = 3


class TelegramFailure(Exception):
    """A Telegram failure described without the token (PTB puts it in some messages)."""


class TelegramAdapter:
    platform = "telegram"
    limits = Limits(max_len=MAX_LEN, utf16=True)
    dedup_window = 0.0  # the Bot API has no idempotency key: a resent part may appear twice

    def __init__(
        self, config: TelegramConfig, metrics: Metrics, *, election: Election | None = None
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._election = election  # several processes on one bot: only the elected one polls
        self._send_only = False
        self._token = config.token.get_secret_value()
        # getUpdates has a connection of its own, so a stalled poll can be cut without
        # touching sends in flight. Both over aiohttp: see `_telegram_request`.
        self._poll_request = AiohttpRequest(connection_pool_size=1)
        self._request = AiohttpRequest(connection_pool_size=256)
        self._app: Application = (
            ApplicationBuilder()
            .token(self._token)
            .base_url(config.api_base_url)
            .base_file_url(config.api_file_url)
            .request(self._request)
            .get_updates_request(self._poll_request)
            .updater(None)  # see the module docstring: the adapter polls itself
            .build()
        )
        self._bot = self._app.bot
        self._sender = Sender(self._bot, config, metrics)
        self._typing = Indicators(config.typing_interval, delay=config.typing_delay)
        self._deliver: Deliver | None = None
        self._me: User | None = None
        self._problem = "not started"
        self._webhook_set = False
        self._poller: Poller | None = None
        self._drafts_refused = False  # the Bot API server has no sendMessageDraft

    # ----------------------------------------------------------------------------- lifecycle

    def routes(self) -> Sequence[HttpRoute]:
        if self._config.mode != "webhook":
            return ()
        return (HttpRoute("POST", self._config.webhook_path, self._webhook),)

    async def start(self, deliver: Deliver | None) -> None:
        try:
            await self._with_retries("start", self._app.initialize)  # getMe: id and username
        except BaseException:
            await self._close_requests()  # PTB shuts down only what initialized fully
            raise
        self._me = self._bot.bot
        if deliver is None:  # a worker: posts, never touches the webhook or getUpdates
            self._send_only = True
            self._problem = ""
            log.info("telegram: @%s, sending only", self._me.username)
            return
        if self._config.mode == "webhook":
            await self._with_retries("setWebhook", self._set_webhook)
            self._webhook_set = True
            self._problem = ""
            self._deliver = deliver
            log.info("telegram: @%s receives updates by webhook", self._me.username)
            return
        await self._with_retries("deleteWebhook", self._bot.delete_webhook)
        self._deliver = deliver
        self._poller = Poller(
            self._bot, self._poll_request, self._config, self._metrics,
            dispatch=self._dispatch, scrub=self._scrub, election=self._election,
        )  # fmt: skip
        self._poller.start()
        elected = " when elected among the processes" if self._election else ""
        log.info("telegram: @%s polling for updates%s", self._me.username, elected)

    @property
    def restarts(self) -> int:
        """Poller restarts after a stall (tests and logs read it)."""
        return self._poller.restarts if self._poller is not None else 0

    async def _set_webhook(self) -> bool:
        secret = self._config.secret_token
        assert self._config.webhook_url is not None and secret is not None  # config validates
        return await self._bot.set_webhook(
            self._config.webhook_url,
            secret_token=secret.get_secret_value(),
            allowed_updates=self._config.allowed_updates,
        )

    async def _with_retries(self, what: str, call: Any) -> Any:
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return await call()
            except InvalidToken:
                raise TelegramFailure(
                    "the Bot API rejected the token (adapters.telegram.token)"
                ) from None
            except TelegramError as exc:
                if attempt == START_ATTEMPTS or not _transient(exc):
                    raise TelegramFailure(f"{what} failed: {self._scrub(exc)}") from None
                wait = self._config.retry_backoff * 2 ** (attempt - 1)
                if isinstance(exc, RetryAfter):
                    wait = _seconds(exc.retry_after)
                log.warning(
                    "telegram %s failed (%s); retrying in %gs", what, self._scrub(exc), wait
                )
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def stop(self) -> None:
        self._deliver = None
        if self._poller is not None:
            await self._poller.stop()
            self._poller = None
        await self._typing.aclose()  # typing requests still in flight finish first
        await self._app.shutdown()  # closes both connections; a no-op if never initialized
        await self._close_requests()

    async def _close_requests(self) -> None:
        """Close both connection pools (idempotent): aiohttp warns about a pool left open."""
        await self._request.shutdown()
        await self._poll_request.shutdown()

    # ----------------------------------------------------------------------------- webhook

    async def _webhook(self, request: web.Request) -> web.Response:
        secret = self._config.secret_token
        given = request.headers.get(SECRET_HEADER)
        if given is None or secret is None:
            log.warning("telegram webhook: request without secret token refused")
            return web.Response(status=401, text="secret token required")
        if not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
            log.warning("telegram webhook: request with a wrong secret token refused")
            return web.Response(status=403, text="wrong secret token")
        if self._deliver is None or self._me is None:
            return web.Response(status=503, text="not started")  # Telegram retries later
        try:
            update = Update.de_json(await request.json(), self._bot)
        except Exception as exc:  # its text may quote the update: the type says enough
            log.warning("telegram webhook: unreadable update refused (%s)", type(exc).__name__)
            return web.Response(status=400, text="not a Telegram update")
        try:
            # The router only records the message before returning: this stays fast, and a
            # 200 means the update is durably accepted.
            await self._dispatch(update)
        except Exception as exc:
            # The store is unreachable: Telegram delivers the update again later.
            log.error("telegram webhook: update %s not accepted: %r", update.update_id, exc)
            return web.Response(status=503, text="not accepted; retry later")
        return web.Response(status=200)

    # ----------------------------------------------------------------------------- both modes

    async def _dispatch(self, update: Update) -> None:
        assert self._me is not None
        deliver = self._deliver
        try:
            inbound = to_inbound(update, self._me)
        except Exception as exc:
            # A bug in reading one odd update must not block every later one: it would be
            # fetched again for ever. Skipped, and said once.
            log.error(
                "telegram update %s unreadable, skipped (%s)", update.update_id, brief(exc),
                exc_info=log.isEnabledFor(logging.DEBUG),
            )  # fmt: skip
            return
        if inbound is None or deliver is None:
            log.debug("telegram update %s needs no answer", update.update_id)
            return
        await deliver(inbound)

    async def send(self, outbound: Outbound) -> str:
        try:
            ids = await self._sender.send(outbound)
        except (Forbidden, BadRequest) as exc:
            # Blocked, kicked, a chat that does not exist, a message Telegram will never take:
            # no retry can help.
            raise Undeliverable(f"{type(exc).__name__}: {self._scrub(exc.message)}") from None
        except RetryAfter as exc:
            raise DeliveryFailed(
                f"rate limited for {_seconds(exc.retry_after):g}s",
                retry_after=_seconds(exc.retry_after),
            ) from None
        except NetworkError as exc:
            raise DeliveryFailed(
                f"{type(exc).__name__}: {self._scrub(exc)}", maybe_sent=maybe_sent(exc)
            ) from None
        except TelegramError as exc:  # an invalid token, a conflict: nothing this chat did
            raise DeliveryFailed(f"sendMessage failed: {self._scrub(exc)}") from None
        return ",".join(str(i) for i in ids)

    def live(self, inbound: Inbound) -> TelegramLive | None:
        """A draft in a private chat, a message edited in place in a group (`streaming:`)."""
        settings = self._config.streaming
        private = inbound.kind is ChatKind.DM
        if not (settings.dms if private else settings.groups):
            return None
        return TelegramLive(
            self._bot, self._sender, chat_id=int(inbound.chat_id),
            thread=int(inbound.thread_id) if inbound.thread_id else None,
            reply=None if private else inbound.message_id, settings=settings,
            draft=private and not self._drafts_refused, drafts_refused=self._refuse_drafts,
        )  # fmt: skip

    def _refuse_drafts(self) -> None:
        self._drafts_refused = True

    def working(self, inbound: Inbound) -> AbstractAsyncContextManager[None]:
        name = f"telegram-typing-{inbound.chat_id}"
        return self._typing.showing(lambda: self._type(inbound), name)

    async def _type(self, inbound: Inbound) -> bool:
        """Show "typing…" once (Telegram clears it after ~5 s or at our next message); False
        when the chat refuses us, so the refreshes stop."""
        thread = int(inbound.thread_id) if inbound.thread_id else None
        try:
            await self._bot.send_chat_action(
                int(inbound.chat_id), ChatAction.TYPING, message_thread_id=thread
            )
        except Forbidden:
            return False
        except TelegramError as exc:  # cosmetic: never worth more than a debug line
            log.debug("telegram typing in %s failed: %s", inbound.chat_id, self._scrub(exc))
        return True

    async def fetch_picture(self, picture: Picture, max_bytes: int) -> bytes:
        return await download(self._bot, picture, max_bytes, self._scrub)

    def health(self) -> Health:
        if self._send_only:
            return Health(self._me is not None, "sending only")
        if self._config.mode == "webhook":
            return Health(
                self._webhook_set, "webhook registered" if self._webhook_set else self._problem
            )
        if self._poller is None:
            return Health(False, self._problem)
        return self._poller.health()

    async def probe(self) -> str:
        try:
            if self._me is not None:
                me = await self._bot.get_me()
            else:
                async with self._bot:  # initialize (getMe), then close its connections
                    me = self._bot.bot
        except InvalidToken:
            raise TelegramFailure("the Bot API rejected the token") from None
        except TelegramError as exc:
            raise TelegramFailure(f"getMe failed: {self._scrub(exc)}") from None
        finally:
            if self._me is None:
                await self._close_requests()
        return f"@{me.username} (id {me.id})"

    def _scrub(self, exc: BaseException | str) -> str:
        return str(exc).replace(self._token, "[redacted]")


def _transient(exc: TelegramError) -> bool:
    return isinstance(exc, RetryAfter) or (
        isinstance(exc, NetworkError) and not isinstance(exc, BadRequest)
    )
