"""A Telegram answer written live: a draft in a private chat, one message edited in place in a
group (or where drafts are refused).

A draft (`sendMessageDraft`, Bot API 9.3+) is a preview that fades after about 30 s: it is
refreshed while the model pauses, and each finished part is sent as a real message. An edited
message takes the group's send budget like any message (edits count as sends): an update finds no
room, it is skipped and tried later, never queued. Finished parts go through `Sender.post`, with
its formatting and retries.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

from telegram import Bot
from telegram.error import BadRequest, EndPointNotFound, InvalidToken, RetryAfter, TelegramError

from bridge.config import StreamingSettings
from bridge.streaming import Throttled, UpdateFailed

from ._telegram_send import Sender, _seconds, render, reply_to

log = logging.getLogger("adapters.telegram")

DRAFT_REFRESH = 20.0  # seconds; Telegram drops a draft not renewed within ~30 s
_draft_ids = itertools.count(1)


class TelegramLive:
    def __init__(
        self,
        bot: Bot,
        sender: Sender,
        *,
        chat_id: int,
        thread: int | None,
        reply: str | None,
        settings: StreamingSettings,
        draft: bool,
        drafts_refused: Callable[[], None],
    ) -> None:
        self._bot = bot
        self._sender = sender
        self._chat_id = chat_id
        self._thread = thread
        self._reply = reply  # the question, quoted by the answer's first message only
        self.settings = settings
        self._draft = draft
        self._drafts_refused = drafts_refused
        self._draft_id = next(_draft_ids)
        self._message: int | None = None  # the message being edited in place
        self.refresh: float | None = DRAFT_REFRESH if draft else None
        self.message_ids: list[int] = []  # every message now holding a finished part

    @property
    def current(self) -> str | None:
        """The message edited in place (a draft has no id, and fades by itself)."""
        return None if self._message is None else str(self._message)

    async def show(self, text: str) -> None:
        body, entities = render(text)[0]  # a preview shows the first message's worth
        try:
            if self._draft:
                await self._show_draft(body, entities)
            else:
                await self._show_message(body, entities)
        except RetryAfter as exc:
            raise Throttled(_seconds(exc.retry_after)) from None
        except TelegramError as exc:
            raise UpdateFailed(f"{type(exc).__name__}: {exc.message}") from None

    async def _show_draft(self, body: str, entities: tuple) -> None:
        try:
            await self._bot.send_message_draft(
                self._chat_id, self._draft_id, body, entities=entities or None,
                message_thread_id=self._thread,
            )  # fmt: skip
        except (EndPointNotFound, InvalidToken, BadRequest) as exc:
            if isinstance(exc, BadRequest) and "parse entities" in exc.message.lower():
                raise
            # An older Bot API server (404: PTB says InvalidToken, though the token works for
            # every other method), or a chat that takes no drafts: edit a message instead.
            log.warning("telegram: drafts refused (%s); editing a message instead", exc.message)
            self._drafts_refused()
            self._draft = False
            self.refresh = None
            await self._show_message(body, entities)

    async def _show_message(self, body: str, entities: tuple) -> None:
        wait = await self._sender.try_turn(self._chat_id)
        if wait:
            raise Throttled(wait)
        if self._message is None:
            message = await self._bot.send_message(
                self._chat_id, body, entities=entities or None,
                reply_parameters=reply_to(self._reply), message_thread_id=self._thread,
            )  # fmt: skip
            self._message = message.message_id
            self._reply = None
            return
        try:
            await self._bot.edit_message_text(
                body, self._chat_id, self._message, entities=entities or None
            )
        except BadRequest as exc:
            found = exc.message.lower()
            if "not modified" in found:
                return
            if "not found" in found or "can't be edited" in found:
                self._message = None  # deleted meanwhile: the next update starts anew
            raise

    async def seal(self, part: str) -> list[str]:
        reply = reply_to(self._reply)
        self._chat_id, ids = await self._sender.post(
            self._chat_id, part, reply=reply, thread=self._thread, edit=self._message
        )
        self._message = None
        self._reply = None
        self._draft_id = next(_draft_ids)  # the next part is a new preview
        self.message_ids += ids
        return [str(i) for i in ids]

    async def close(self) -> None:
        return None  # a draft fades by itself once the answer is sent
