"""Posting to Telegram: Markdown → text + entities, Telegram's limits, and retries.

A 429 is waited out (`retry_after`), groups are paced under ~20 messages a minute, network errors
that provably posted nothing (no connection, a full pool, an error status) are retried with
backoff, formatting Telegram rejects is re-sent plain, and a chat the bot can no longer post in
(403) fails at once: retrying a kicked bot only earns more 403s. A request that may have reached
Telegram (a read timeout, a connection cut after the request went out) is never retried here:
Telegram has no idempotency key, so the caller decides (and counts the possible repeat).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import telegramify_markdown
from aiolimiter import AsyncLimiter
from telegram import Bot, MessageEntity, ReplyParameters
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter

from bridge.config import TelegramAdapter as TelegramConfig
from bridge.metrics import Metrics
from bridge.types import Outbound

from ._telegram_request import NotSent

log = logging.getLogger("adapters.telegram")

MAX_LEN = 4096  # UTF-16 code units per message
_MAX_LIMITERS = 1024  # idle per-chat limiters are dropped beyond this many


def render(markdown: str) -> list[tuple[str, tuple[MessageEntity, ...]]]:
    """Markdown as Telegram text + entities, re-split when the result outgrows one message
    (headings gain an emoji, so the converted text can be longer than the Markdown)."""
    try:
        text, entities = telegramify_markdown.convert(markdown)
    except Exception as exc:  # a converter bug must not cost the user the answer
        # The traceback only at debug: a parser's error text may quote the answer.
        log.warning("markdown conversion failed (%s); sending plain text", type(exc).__name__)
        log.debug("markdown conversion failure", exc_info=True)
        return [(markdown, ())]
    if not text.strip():
        return [(markdown, ())]
    chunks = telegramify_markdown.split_entities(text, entities, MAX_LEN)
    return [(chunk, tuple(_entity(e) for e in found)) for chunk, found in chunks]


Entities = tuple[MessageEntity, ...]


def reply_to(message_id: str | None) -> ReplyParameters | None:
    if not message_id:
        return None
    return ReplyParameters(int(message_id), allow_sending_without_reply=True)


def _entity(entity: telegramify_markdown.MessageEntity) -> MessageEntity:
    data = entity.to_dict()
    return MessageEntity(
        type=data["type"],
        offset=data["offset"],
        length=data["length"],
        url=data.get("url"),
        language=data.get("language"),
        custom_emoji_id=data.get("custom_emoji_id"),
    )


def _seconds(value: int | float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class Sender:
    def __init__(self, bot: Bot, config: TelegramConfig, metrics: Metrics) -> None:
        self._bot = bot
        self._config = config
        self._metrics = metrics
        self._groups: dict[int, AsyncLimiter] = {}
        # Telegram's bot-wide ceiling is about 30 messages a second; 0 lifts it (a local Bot
        # API server, paid broadcasts).
        rate = config.max_sends_per_second
        self._overall = AsyncLimiter(rate, 1) if rate else None

    async def send(self, outbound: Outbound) -> list[int]:
        """Post one part; the ids of the messages it took (more than one when the formatting
        outgrew the limit). Raises PTB's errors for the adapter to classify."""
        chat_id = int(outbound.chat_id)
        thread = int(outbound.thread_id) if outbound.thread_id else None
        # Only the reply's first part quotes the question; the rest follow it in order.
        reply = reply_to(outbound.reply_to) if outbound.part == 0 else None
        # A part that finishes a message a crash left mid-stream replaces it (its first id).
        edit = int(outbound.edit.split(",")[0]) if outbound.edit else None
        _, ids = await self.post(chat_id, outbound.text, reply=reply, thread=thread, edit=edit)
        return ids

    async def post(
        self,
        chat_id: int,
        markdown: str,
        *,
        reply: ReplyParameters | None,
        thread: int | None,
        edit: int | None = None,
    ) -> tuple[int, list[int]]:
        """One part, formatted, each message sent with retries; with `edit`, the first message
        replaces that one (sent anew if it is gone). Returns the chat id (a group may have
        migrated) and the ids of the messages holding the part."""
        ids: list[int] = []
        chunks = render(markdown)
        for text, entities in chunks:
            # The plain fallback is the Markdown itself (links keep their URLs) unless the part
            # had to be re-split, when only this chunk's own text is safe to repeat.
            plain = markdown if len(chunks) == 1 else text
            if edit is not None:
                edited = await self._edit_one(chat_id, edit, text, entities, plain)
                edit = None
                if edited is not None:
                    ids.append(edited)
                    continue
            chat_id, message = await self._with_retries(
                chat_id, text, entities, plain,
                lambda chat, text, entities, reply=reply: self._bot.send_message(
                    chat, text, entities=entities or None, reply_parameters=reply,
                    message_thread_id=thread,
                ),
            )  # fmt: skip
            ids.append(message.message_id)
            reply = None
        return chat_id, ids

    async def _edit_one(
        self, chat_id: int, message_id: int, text: str, entities: Entities, plain: str
    ) -> int | None:
        """Replace a message's text; None when it can no longer be edited (deleted, too old)."""
        try:
            await self._with_retries(
                chat_id, text, entities, plain,
                lambda chat, text, entities: self._bot.edit_message_text(
                    text, chat, message_id, entities=entities or None
                ),
            )  # fmt: skip
        except BadRequest as exc:
            found = exc.message.lower()
            if "not modified" in found:
                return message_id  # it already shows exactly this
            if "not found" in found or "can't be edited" in found:
                log.info("telegram: message %s in %s is gone; sending anew", message_id, chat_id)
                return None
            raise
        return message_id

    async def _with_retries(
        self,
        chat_id: int,
        text: str,
        entities: Entities,
        plain: str,
        attempt: Callable[[int, str, Entities], Awaitable[Any]],
    ) -> tuple[int, Any]:
        """`attempt(chat_id, text, entities)` paced and retried; returns the chat id it went to
        (a group may have migrated) and what the call returned."""
        config = self._config
        failures = 0
        while True:
            try:
                await self._wait_turn(chat_id)
                return chat_id, await attempt(chat_id, text, entities)
            except RetryAfter as exc:
                wait = _seconds(exc.retry_after)
                failures += 1
                if wait > config.max_retry_after or failures > config.send_retries + 1:
                    raise
                self._retry("rate_limited", chat_id, f"429, waiting {wait:g}s")
                await asyncio.sleep(wait)
            except ChatMigrated as exc:
                log.info("telegram group %s became supergroup %s", chat_id, exc.new_chat_id)
                chat_id = exc.new_chat_id
            except BadRequest as exc:
                if not (entities and "parse entities" in exc.message.lower()):
                    raise
                self._retry("formatting", chat_id, f"formatting rejected ({exc.message})")
                text, entities = plain, ()
            except Forbidden:
                raise  # removed from the chat or blocked: no retry can help
            except NetworkError as exc:  # includes TimedOut and 5xx answers
                failures += 1
                if maybe_sent(exc) or failures > config.send_retries:
                    raise
                wait = min(config.retry_backoff * 2 ** (failures - 1), config.max_backoff)
                self._retry("network", chat_id, f"{exc.message}; retry in {wait:g}s")
                await asyncio.sleep(wait)

    def _retry(self, reason: str, chat_id: int, detail: str) -> None:
        self._metrics.send_retries.labels("telegram", reason).inc()
        log.warning("telegram send to chat %s: %s", chat_id, detail)

    def _limiters(self, chat_id: int) -> list[AsyncLimiter]:
        """The limits a send to `chat_id` waits for: its group's (groups have ids below zero;
        private chats only share the bot's ceiling), then the bot-wide one if set."""
        limiters = []
        if chat_id < 0:
            limiter = self._groups.get(chat_id)
            if limiter is None:
                if len(self._groups) >= _MAX_LIMITERS:
                    self._forget_idle()
                rate = self._config.group_messages_per_minute
                limiter = self._groups[chat_id] = AsyncLimiter(rate, 60)
            limiters.append(limiter)
        if self._overall is not None:
            limiters.append(self._overall)
        return limiters

    async def _wait_turn(self, chat_id: int) -> None:
        for limiter in self._limiters(chat_id):
            await limiter.acquire()

    async def try_turn(self, chat_id: int) -> float:
        """Take a send slot now if one is free (0.0), else how long to wait: for updates of a
        growing message, which are skipped rather than queued."""
        limiters = self._limiters(chat_id)
        for limiter in limiters:
            if not limiter.has_capacity():
                return limiter.time_period / limiter.max_rate
        for limiter in limiters:
            await limiter.acquire()  # returns at once: has_capacity() just said there is room
        return 0.0

    def _forget_idle(self) -> None:
        for chat_id, limiter in list(self._groups.items()):
            if limiter.has_capacity(limiter.max_rate):
                del self._groups[chat_id]


def maybe_sent(exc: NetworkError) -> bool:
    """Whether a failed request may have been processed by Telegram all the same: a transport
    failure after the request went out (a read timeout, a connection cut mid-answer). An error
    status (5xx) or a connection never made (`NotSent`) means it was not."""
    if isinstance(exc, NotSent):
        return False
    # The transport's own failure is the cause; an error status from Telegram has none.
    return isinstance(exc.__cause__, aiohttp.ClientError | TimeoutError)
