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
from collections.abc import Iterator

import httpx
import telegramify_markdown
from aiolimiter import AsyncLimiter
from telegram import Bot, MessageEntity, ReplyParameters
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter

from bridge.config import TelegramAdapter as TelegramConfig
from bridge.metrics import Metrics
from bridge.types import Outbound

log = logging.getLogger("adapters.telegram")

MAX_LEN = 4096  # UTF-16 code units per message
_MAX_LIMITERS = 1024  # idle per-chat limiters are dropped beyond this many


def render(markdown: str) -> list[tuple[str, tuple[MessageEntity, ...]]]:
    """Markdown as Telegram text + entities, re-split when the result outgrows one message
    (headings gain an emoji, so the converted text can be longer than the Markdown)."""
    try:
        text, entities = telegramify_markdown.convert(markdown)
    except Exception:  # a converter bug must not cost the user the answer
        log.warning("markdown conversion failed; sending plain text", exc_info=True)
        return [(markdown, ())]
    if not text.strip():
        return [(markdown, ())]
    chunks = telegramify_markdown.split_entities(text, entities, MAX_LEN)
    return [(chunk, tuple(_entity(e) for e in found)) for chunk, found in chunks]


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
        # Telegram's bot-wide ceiling is about 30 messages a second.
        self._overall = AsyncLimiter(30, 1)

    async def send(self, outbound: Outbound) -> list[int]:
        """Post one part; the ids of the messages it took (more than one when the formatting
        outgrew the limit). Raises PTB's errors for the adapter to classify."""
        chat_id = int(outbound.chat_id)
        thread = int(outbound.thread_id) if outbound.thread_id else None
        reply = (
            ReplyParameters(int(outbound.reply_to), allow_sending_without_reply=True)
            if outbound.reply_to and outbound.part == 0
            else None
        )
        ids = []
        for markdown, text, entities in self._messages((outbound.text,)):
            # Only the first message quotes the question; the rest follow it in order.
            chat_id, message_id = await self._send_one(
                chat_id, text, entities, markdown, reply, thread
            )
            ids.append(message_id)
            reply = None
        return ids

    def _messages(
        self, parts: tuple[str, ...]
    ) -> Iterator[tuple[str, str, tuple[MessageEntity, ...]]]:
        for part in parts:
            chunks = render(part)
            for text, entities in chunks:
                # The plain fallback is the Markdown itself (links keep their URLs) unless the
                # part had to be re-split, when only this chunk's own text is safe to repeat.
                yield (part if len(chunks) == 1 else text), text, entities

    async def _send_one(
        self,
        chat_id: int,
        text: str,
        entities: tuple[MessageEntity, ...],
        plain: str,
        reply: ReplyParameters | None,
        thread: int | None,
    ) -> tuple[int, int]:
        """Send one message; the chat id it went to (a group may have migrated) and its id."""
        config = self._config
        failures = 0
        while True:
            try:
                await self._wait_turn(chat_id)
                message = await self._bot.send_message(
                    chat_id,
                    text,
                    entities=entities or None,
                    reply_parameters=reply,
                    message_thread_id=thread,
                )
                return chat_id, message.message_id
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

    async def _wait_turn(self, chat_id: int) -> None:
        if chat_id < 0:  # groups have ids below zero; private chats only share the bot's ceiling
            limiter = self._groups.get(chat_id)
            if limiter is None:
                if len(self._groups) >= _MAX_LIMITERS:
                    self._forget_idle()
                rate = self._config.group_messages_per_minute
                limiter = self._groups[chat_id] = AsyncLimiter(rate, 60)
            await limiter.acquire()
        await self._overall.acquire()

    def _forget_idle(self) -> None:
        for chat_id, limiter in list(self._groups.items()):
            if limiter.has_capacity(limiter.max_rate):
                del self._groups[chat_id]


# httpx failures after which the request cannot have reached Telegram.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def maybe_sent(exc: NetworkError) -> bool:
    """Whether a failed request may have been processed by Telegram all the same: a transport
    failure after the request went out (a read timeout, a connection cut mid-answer). An error
    status (5xx) or a connection never made means it was not."""
    cause = exc.__cause__
    if not isinstance(cause, httpx.TransportError):
        return False  # Telegram answered with an error status
    return not isinstance(cause, _NOT_SENT)
