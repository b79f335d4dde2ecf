"""Slack Events API payloads → `Inbound`: who is addressed, which thread, which dedup id, which
picture; and a thread's parent message → `Quote`.

Pure functions over the JSON Slack sends (no platform library), so every addressing rule is
tested without a network. `adapters/slack.py` feeds them what bolt hands its listeners.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from bridge.types import Addressed, ChatKind, Inbound, Picture, Quote

PLATFORM = "slack"

# Slack escapes only these three in message text; undo them so the LLM sees what the user typed.
_UNESCAPES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))


def mention_pattern(bot_user_id: str) -> re.Pattern[str]:
    """`<@U0BOT>` or `<@U0BOT|name>`, the forms Slack uses for a user mention."""
    return re.compile(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>")


def mentions(text: str, bot_user_id: str | None) -> bool:
    return bool(bot_user_id) and mention_pattern(bot_user_id).search(text) is not None


def clean_text(text: str, bot_user_id: str | None) -> str:
    """Drop the bot's mention, unescape Slack's entities, trim the edges."""
    if bot_user_id:
        text = mention_pattern(bot_user_id).sub(" ", text)
    for entity, char in _UNESCAPES:
        text = text.replace(entity, char)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def is_im(event: Mapping[str, Any]) -> bool:
    # app_mention carries no channel_type; IM channel ids start with D.
    channel_type = event.get("channel_type")
    if channel_type is not None:
        return channel_type == "im"
    return str(event.get("channel", "")).startswith("D")


def to_inbound(
    body: Mapping[str, Any],
    *,
    bot_user_id: str | None,
    threads_as_groups: bool = False,
) -> Inbound | None:
    """The `Inbound` for one `event_callback`, or None when the event is not a person's message
    the bridge should even count (bot posts, edits, joins, the copy of a mention)."""
    event = body.get("event") or {}
    kind = event.get("type")
    user = event.get("user")
    channel = event.get("channel")
    ts = event.get("ts")
    if kind not in ("message", "app_mention") or not (user and channel and ts):
        return None
    subtype = event.get("subtype")
    if (subtype and subtype != "file_share") or event.get("bot_id") or user == bot_user_id:
        return None  # edits, deletes, joins, other bots, and ourselves
    text = str(event.get("text") or "")
    im = is_im(event)
    addressed = _addressing(kind, im, text, bot_user_id)
    if addressed is None:
        return None
    thread_ts = event.get("thread_ts")
    thread = None if im else (thread_ts or ts)
    team = body.get("team_id") or event.get("team")
    return Inbound(
        platform=PLATFORM,
        chat_id=channel,
        sender_id=user,
        text=clean_text(text, bot_user_id),
        kind=ChatKind.DM if im else ChatKind.GROUP,
        # Slack's retries and Socket Mode redeliveries repeat the event_id; the router adds
        # platform and team to it.
        event_id=str(body.get("event_id") or f"{channel}.{ts}"),
        message_id=ts,
        thread_id=thread,
        workspace=team,
        addressed=addressed,
        scope_id=f"{channel}/{thread}" if threads_as_groups and thread else None,
        received_at=time.time(),
        # What a model that cannot see is not given: the user is told so rather than answered
        # half-blind. A model that can see gets the picture.
        unsupported=_unreadable(event, subtype),
        picture=picture_of(event) if addressed is not Addressed.NOT else None,
    )


def _addressing(kind: str, im: bool, text: str, bot_user_id: str | None) -> Addressed | None:
    """How the event reaches the bot; None for the copy of a message that is answered through
    its other event."""
    if kind == "app_mention":
        return None if im else Addressed.MENTION  # a DM is answered through its `message` event
    if im:
        return Addressed.DM
    # A mention in a channel is answered through its app_mention copy.
    return None if mentions(text, bot_user_id) else Addressed.NOT


def _image_files(event: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        f
        for f in event.get("files") or []
        if str(f.get("mimetype", "")).startswith("image/") and f.get("url_private")
    ]


def picture_of(event: Mapping[str, Any]) -> Picture | None:
    """The one picture a message carries (a message with other files too is refused whole)."""
    files = event.get("files") or []
    images = _image_files(event)
    if len(files) != 1 or len(images) != 1:
        return None
    image = images[0]
    size = image.get("size")
    return Picture(
        ref=str(image.get("url_private_download") or image["url_private"]),
        size=size if isinstance(size, int) else None,
        mime=str(image["mimetype"]),
        name=str(image.get("name") or ""),
    )


def _unreadable(event: Mapping[str, Any], subtype: str | None) -> str | None:
    files = event.get("files") or []
    if len(files) == 1 and _image_files(event):
        return "a picture"
    if files or subtype == "file_share":
        return "a file" if len(files) <= 1 else "files"
    return None


def parent_quote(
    parent: Mapping[str, Any], asker: str, *, bot_user_id: str | None, bot_id: str | None
) -> Quote | None:
    """A thread's parent message as context for a question asked in the thread; `asker` is the
    user asking now (their own earlier question to the bot is not news to the bot)."""
    text = clean_text(str(parent.get("text") or ""), bot_user_id)
    if not text:
        return None
    user = parent.get("user")
    from_bot = (bot_id is not None and parent.get("bot_id") == bot_id) or (
        user is not None and user == bot_user_id
    )
    own_question = user == asker and mentions(str(parent.get("text") or ""), bot_user_id)
    return Quote(author_name(parent), text, from_bot=from_bot, own_question=own_question)


def author_name(message: Mapping[str, Any]) -> str:
    """The name Slack shows, where the message carries it (`user_profile`, `bot_profile`)."""
    for key in ("user_profile", "bot_profile"):
        profile = message.get(key) or {}
        for field in ("display_name", "real_name", "name"):
            if profile.get(field):
                return str(profile[field])
    return str(message.get("username") or "")
