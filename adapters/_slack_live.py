"""A Slack answer written live, in the thread of the question: Slack's own chat streams
(`chat.startStream` / `appendStream` / `stopStream`) where the workspace offers them, else one
message posted and updated in place (`chat.update`).

A finished part is replaced by exactly what a whole answer posts (`text` in mrkdwn), so history,
search and notifications hold the same message either way. A stream Slack has ended by itself
(`message_not_in_streaming_state`, after about 5 minutes) keeps what it holds; the rest of the
answer goes on in a new message, nothing lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.config import StreamingSettings
from bridge.streaming import Throttled, UpdateFailed

from ._slack_format import to_mrkdwn

log = logging.getLogger("adapters.slack")

# Slack's answers when chat streams are not available to this app, workspace or conversation.
REFUSED = frozenset({
    "unknown_method", "not_allowed_token_type", "missing_scope", "method_not_supported",
    "method_not_supported_for_channel_type", "not_allowed", "feature_not_enabled",
    "team_not_allowed", "invalid_arguments",
})  # fmt: skip
EXPIRED = "message_not_in_streaming_state"


class SlackLive:
    refresh = None  # a posted message stays as shown

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread: str | None,
        stream_thread: str | None,
        recipient: tuple[str, str] | None,
        settings: StreamingSettings,
        native: bool,
        refused: Callable[[], None],
    ) -> None:
        self._client = client
        self._channel = channel
        self._thread = thread  # where a whole answer goes (None: plainly, in a DM)
        self._stream_thread = stream_thread  # chat streams always reply in a thread
        self._recipient = recipient  # (user, team): required for a stream in a channel
        self.settings = settings
        self._native = native and stream_thread is not None
        self._refused = refused
        self._ts: str | None = None  # the message being written
        self._streaming = False  # it is a chat stream still open
        self._held = ""  # the text of the current part the message holds
        self._before = ""  # text of the current part in earlier (expired) messages
        self._first: str | None = None  # the expired message the current part began in

    @property
    def current(self) -> str | None:
        # After an expired stream the part began in an earlier message: that one is finished
        # with the part after a crash (the later one keeps its tail; see the README).
        return self._first or self._ts

    async def show(self, text: str) -> None:
        if not text.startswith(self._before):
            raise UpdateFailed("the text was taken back; the final part replaces it")
        try:
            if self._native:
                await self._stream(text[len(self._before) :])
            else:
                await self._update(text)
        except SlackApiError as exc:
            raise self._failed(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpdateFailed(f"{type(exc).__name__}: {exc}") from None

    async def _stream(self, text: str) -> None:
        try:
            if self._ts is None:
                response = await self._client.chat_startStream(
                    channel=self._channel, thread_ts=self._stream_thread, markdown_text=text,
                    **self._recipient_args(),
                )  # fmt: skip
                self._ts, self._streaming, self._held = str(response["ts"]), True, text
            elif text.startswith(self._held) and len(text) > len(self._held):
                delta = text[len(self._held) :]
                await self._client.chat_appendStream(
                    channel=self._channel, ts=self._ts, markdown_text=delta
                )
                self._held = text
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in REFUSED and self._ts is None:
                log.warning("slack: chat streams refused (%s); updating a message instead", error)
                self._refused()
                self._native = False
                await self._update(text)
                return
            if error == EXPIRED:
                self._expired()
                return  # the next update starts a new message with the rest
            raise

    def _expired(self) -> None:
        """Slack ended the stream: the message keeps what it holds; the rest goes elsewhere."""
        log.info("slack: a chat stream expired in %s; the answer goes on in a new message",
                 self._channel)  # fmt: skip
        self._before += self._held
        self._first = self._first or self._ts
        self._ts, self._streaming, self._held = None, False, ""

    async def _update(self, text: str) -> None:
        mrkdwn = to_mrkdwn(text)
        if not mrkdwn.strip():
            return
        if self._ts is None:
            response = await self._client.chat_postMessage(
                channel=self._channel, text=mrkdwn, **self._thread_args()
            )
            self._ts = str(response["ts"])
        elif text != self._held:
            await self._client.chat_update(channel=self._channel, ts=self._ts, text=mrkdwn)
        self._held = text

    async def seal(self, part: str) -> list[str]:
        if not part.startswith(self._before):
            self._before = ""  # taken back (a lone </think>): the part goes in whole
        if self._streaming and self._ts is not None:
            try:
                await self._stream(part[len(self._before) :])  # what updates did not carry
                if self._streaming:
                    await self._client.chat_stopStream(channel=self._channel, ts=self._ts)
            except SlackApiError as exc:
                if exc.response.get("error") != EXPIRED:
                    raise
                self._expired()
        rest = part[len(self._before) :]
        ids = []
        if self._ts is not None:
            ids.append(self._ts)
            # The message becomes what a whole answer posts: the same mrkdwn text.
            await self._client.chat_update(
                channel=self._channel, ts=self._ts, text=to_mrkdwn(rest), blocks=[]
            )
        elif rest.strip():
            response = await self._client.chat_postMessage(
                channel=self._channel, text=to_mrkdwn(rest), **self._thread_args()
            )
            ids.append(str(response["ts"]))
        self._ts, self._streaming, self._held, self._before = None, False, "", ""
        self._first = None
        return ids

    async def close(self) -> None:
        if self._streaming and self._ts is not None:
            try:  # an abandoned stream would show as still writing until Slack ends it
                await self._client.chat_stopStream(channel=self._channel, ts=self._ts)
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
                log.info("slack: closing an abandoned stream failed: %r", exc)

    def _failed(self, exc: SlackApiError) -> UpdateFailed:
        error = exc.response.get("error")
        if error == "ratelimited":
            return Throttled(float(exc.response.headers.get("Retry-After", 1) or 1))
        return UpdateFailed(f"slack: {error}")

    def _thread_args(self) -> dict[str, Any]:
        return {"thread_ts": self._thread} if self._thread else {}

    def _recipient_args(self) -> dict[str, Any]:
        if self._recipient is None:
            return {}
        user, team = self._recipient
        return {"recipient_user_id": user, "recipient_team_id": team}
