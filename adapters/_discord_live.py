"""A Discord answer written live: one message sent, then edited in place as the text grows; a
finished part (2,000 characters) stays as it is and the answer goes on in a new message.

Edits share a rate-limit bucket per channel (about 5 per 5 s). Before an update the bucket's state
(Discord's X-RateLimit headers, as discord.py keeps them) is read: an update never takes the
bucket's last token (discord.py would hold it until the bucket resets); it waits for the reset
instead, and the last token stays for the final text. A 429 is waited out by discord.py itself.
"""

from __future__ import annotations

import discord

from bridge.config import StreamingSettings
from bridge.streaming import Throttled, UpdateFailed

from ._discord_client import BridgeClient


class DiscordLive:
    refresh = None  # a message stays as shown

    def __init__(
        self,
        client: BridgeClient,
        channel: discord.PartialMessageable,
        *,
        reference: discord.MessageReference | None,
        allowed: discord.AllowedMentions,
        settings: StreamingSettings,
    ) -> None:
        self._client = client
        self._channel = channel
        self._reference = reference  # the question, referenced by the first message only
        self._allowed = allowed
        self.settings = settings
        self._message: discord.Message | None = None
        self._shown = ""

    @property
    def current(self) -> str | None:
        return None if self._message is None else str(self._message.id)

    async def show(self, text: str) -> None:
        try:
            if self._message is None:
                await self._post(text)
                return
            wait = self._client.http.edit_wait(self._channel.id)
            if wait > 0:
                raise Throttled(wait)
            self._message = await self._message.edit(content=text, allowed_mentions=self._allowed)
            self._shown = text
        except discord.RateLimited as exc:  # longer than discord.py is willing to wait
            raise Throttled(exc.retry_after) from None
        except discord.NotFound:
            self._message = None  # deleted meanwhile: the next update starts a new message
            raise UpdateFailed("the message was deleted") from None
        except discord.HTTPException as exc:
            raise UpdateFailed(f"HTTP {exc.status}: {exc.text}") from None

    async def _post(self, text: str) -> None:
        self._message = await self._channel.send(
            text, reference=self._reference, allowed_mentions=self._allowed
        )
        self._reference = None
        self._shown = text

    async def seal(self, part: str) -> list[str]:
        if self._message is not None and self._shown != part:
            try:
                self._message = await self._message.edit(
                    content=part, allowed_mentions=self._allowed
                )
            except discord.NotFound:
                self._message = None
        if self._message is None:
            await self._post(part)
        assert self._message is not None
        sealed = str(self._message.id)
        self._message, self._shown = None, ""  # earlier messages are never edited again
        return [sealed]

    async def close(self) -> None:
        return None
