"""What the Slack adapter fetches beyond an event: the parent message of the thread a question was
asked in (conversations.replies; the author's name from users.info when the message does not
carry it), and a picture's bytes from its `url_private` with the bot token, streamed and cut off
at the size limit or at the first bytes that are no picture.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.errors import PictureTooLarge, PictureUnavailable
from bridge.pictures import Capped
from bridge.types import Picture, Quote

from ._slack_events import parent_quote

log = logging.getLogger("adapters.slack")

# The parent is read before the event is acknowledged (Slack waits 3 s): a slow read is given up
# and the question answered without it.
PARENT_TIMEOUT = 2.0
_CHUNK = 64 * 1024
_NAMES_KEPT = 10_000


class ThreadParents:
    def __init__(self, client: AsyncWebClient, identity: dict[str, Any]) -> None:
        self._client = client
        self._bot_user_id = identity.get("user_id")
        self._bot_id = identity.get("bot_id")
        self._names: dict[str, str] = {}  # user id -> display name, from users.info

    async def quote(self, channel: str, thread_ts: str, asker: str) -> Quote | None:
        """The thread's parent message as a `Quote`; None when it has no text or cannot be read
        in time (the question is then answered without it)."""
        try:
            async with asyncio.timeout(PARENT_TIMEOUT):
                response = await self._client.conversations_replies(
                    channel=channel, ts=thread_ts, limit=1, inclusive=True
                )
                messages = response.get("messages") or []
                parent = next((m for m in messages if m.get("ts") == thread_ts), None)
                if parent is None:
                    return None
                quote = parent_quote(
                    parent, asker, bot_user_id=self._bot_user_id, bot_id=self._bot_id
                )
                if quote is not None and not quote.author and parent.get("user"):
                    quote = dataclasses.replace(quote, author=await self._name(parent["user"]))
                return quote
        except SlackApiError as exc:
            reason = _error(exc)
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = type(exc).__name__
        log.warning(
            "slack: thread parent %s/%s not read (%s); answering without it",
            channel,
            thread_ts,
            reason,
        )
        return None

    async def _name(self, user: str) -> str:
        if user not in self._names:
            try:
                found = (await self._client.users_info(user=user)).get("user") or {}
            except SlackApiError as exc:  # users:read missing, or the user is gone
                log.debug("slack users.info %s: %s", user, _error(exc))
                return "someone"
            profile = found.get("profile") or {}
            name = profile.get("display_name") or profile.get("real_name") or found.get("name")
            if len(self._names) >= _NAMES_KEPT:
                self._names.clear()
            self._names[user] = str(name or "someone")
        return self._names[user]


async def download(
    session: aiohttp.ClientSession,
    picture: Picture,
    *,
    token: str,
    api_base_url: str,
    max_bytes: int,
    timeout: float,
) -> bytes:
    """A file's bytes from its `url_private` (Slack wants the bot token as a bearer token),
    stopped as soon as it is known to be too large or no picture."""
    if not _slack_host(picture.ref, api_base_url):
        raise PictureUnavailable("slack file URL is not on a Slack host: the token is not sent")
    capped = Capped(max_bytes)
    try:
        async with session.get(
            picture.ref,
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            if response.status != 200:
                raise PictureUnavailable(f"slack file download: HTTP {response.status}")
            if response.content_type == "text/html":
                # Slack's sign-in page: the token was not accepted for files.
                raise PictureUnavailable(
                    "slack file download: a web page instead of the file; does the app have "
                    "the files:read scope?"
                )
            if response.content_length is not None and response.content_length > max_bytes:
                raise PictureTooLarge(response.content_length, max_bytes)
            async for chunk in response.content.iter_chunked(_CHUNK):
                capped.add(chunk)  # raises at the limit: leaving the block drops the connection
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise PictureUnavailable(f"slack file download: {type(exc).__name__}") from None
    return capped.data()


def _error(exc: SlackApiError) -> str:
    """Slack's error code (`missing_scope`), or the HTTP status when the answer was not JSON."""
    data = exc.response.data
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"HTTP {exc.response.status_code}"


def _slack_host(url: str, api_base_url: str) -> bool:
    """Only Slack's own hosts (or the configured API host: a proxy, a fake) get the token."""
    host = (urlsplit(url).hostname or "").lower()
    return (
        host == "slack.com"
        or host.endswith(".slack.com")
        or host == (urlsplit(api_base_url).hostname or "").lower()
    )
