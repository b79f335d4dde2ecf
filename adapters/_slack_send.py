"""Posting one reply part to Slack, at most once.

Each part goes out with message metadata (`event_type: botbridge_part`, the question's journal id,
the part number and its idempotency key). When an earlier attempt may have been posted (a timeout,
a crash before its `ts` was recorded), the thread (`conversations.replies`) or the conversation
(`conversations.history`) is searched for a message carrying that key first, and its `ts` is
returned instead of posting again. Slack's definitive refusals (the channel is gone, archived,
the bot is not in it, the account is inactive, the message can never be accepted) make the reply
undeliverable; anything else is a passing failure that delivery retries. A part that replaces
the message a stream cut short by a crash was growing in (`Outbound.edit`) stops that stream
first, if Slack has not ended it already, then becomes the part's text (`chat.update`).
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.errors import DeliveryFailed, Undeliverable
from bridge.metrics import Metrics
from bridge.types import Outbound

from ._slack_events import PLATFORM
from ._slack_format import to_mrkdwn

log = logging.getLogger("adapters.slack")

EVENT_TYPE = "botbridge_part"
# chat.postMessage errors no retry can fix.
REFUSALS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "account_inactive",
        "msg_too_long",
        "no_text",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "cannot_reply_to_message",
        "invalid_blocks",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
        "too_many_attachments",
        "user_is_restricted",
    }
)
_LOOKUP_PAGES = 5  # pages of 200 messages searched for an earlier attempt
_PAGE = 200


def metadata(outbound: Outbound) -> dict[str, Any]:
    payload = {"key": outbound.key, "event_id": outbound.event_id, "part": outbound.part}
    return {"event_type": EVENT_TYPE, "event_payload": payload}


async def post(client: AsyncWebClient, outbound: Outbound, metrics: Metrics) -> str:
    """Post `outbound` (or find it, when an earlier attempt may have posted it); its `ts`."""
    text = to_mrkdwn(outbound.text)
    if not text.strip():
        return ""  # nothing Slack would show
    # In a channel the answer goes to the asking message's thread (the router copies it).
    thread = outbound.thread_id or outbound.reply_to
    if outbound.edit and await _replace(client, outbound.chat_id, outbound.edit, text):
        return outbound.edit
    if outbound.retry and outbound.key:
        found = await _find(client, outbound, thread, metrics)
        if found:
            log.info("slack: part %d of %s was posted already (%s)", outbound.part + 1,
                     outbound.event_id, found)  # fmt: skip
            return found
    arguments: dict[str, Any] = {"channel": outbound.chat_id, "text": text}
    if thread:
        arguments["thread_ts"] = thread
    if outbound.key:
        arguments["metadata"] = metadata(outbound)
    try:
        response = await client.chat_postMessage(**arguments)
    except SlackApiError as exc:
        raise _failed("chat.postMessage", exc) from None
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        # It may have been posted: the next attempt looks for it by its metadata first.
        raise DeliveryFailed(f"chat.postMessage: {type(exc).__name__}", maybe_sent=True) from None
    return str(response.get("ts") or "")


async def _replace(client: AsyncWebClient, channel: str, ts: str, text: str) -> bool:
    """Make message `ts` (a stream left by a dead process) hold `text`; False when it is gone."""
    try:
        await client.chat_stopStream(channel=channel, ts=ts)
    except SlackApiError as exc:  # ended by Slack after ~5 minutes, or never a stream: fine
        log.info("slack: stopping the stream %s left open: %s", ts, exc.response.get("error"))
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        raise DeliveryFailed(f"chat.stopStream: {type(exc).__name__}") from None
    try:
        await client.chat_update(channel=channel, ts=ts, text=text, blocks=[])
    except SlackApiError as exc:
        if exc.response.get("error") in ("message_not_found", "cant_update_message"):
            log.info("slack: message %s in %s is gone; posting anew", ts, channel)
            return False
        raise _failed("chat.update", exc) from None
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        raise DeliveryFailed(f"chat.update: {type(exc).__name__}") from None
    return True


def _failed(method: str, exc: SlackApiError) -> Exception:
    error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
    if error in REFUSALS:
        return Undeliverable(f"{method}: {error}")
    status = exc.response.status_code
    return DeliveryFailed(f"{method}: {error or f'HTTP {status}'}", maybe_sent=status >= 500)


async def _find(
    client: AsyncWebClient, outbound: Outbound, thread: str | None, metrics: Metrics
) -> str | None:
    """The `ts` of a message carrying this part's key, or None. If Slack will not let us look
    (a missing history scope, say), the part is posted again and counted as possibly repeated."""
    cursor: str | None = None
    try:
        for _ in range(_LOOKUP_PAGES):
            if thread:
                response = await client.conversations_replies(
                    channel=outbound.chat_id, ts=thread, include_all_metadata=True,
                    limit=_PAGE, cursor=cursor,
                )  # fmt: skip
            else:
                response = await client.conversations_history(
                    channel=outbound.chat_id, include_all_metadata=True, limit=_PAGE, cursor=cursor
                )
            for message in response.get("messages") or ():
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("key") == outbound.key:
                    return str(message.get("ts"))
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
    except SlackApiError as exc:
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if error not in ("missing_scope", "not_in_channel", "channel_not_found"):
            raise DeliveryFailed(f"looking for an earlier post: {error}") from None
        metrics.possibly_repeated.labels(PLATFORM).inc()
        log.warning(
            "slack: cannot look for an earlier post of part %d of %s (%s; add the history "
            "scopes): posting it again, it may appear twice",
            outbound.part + 1,
            outbound.event_id,
            error,
        )
        return None
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        raise DeliveryFailed(f"looking for an earlier post: {type(exc).__name__}") from None
    return None  # not within the most recent messages: taken as never posted
