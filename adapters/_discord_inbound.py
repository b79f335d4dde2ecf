"""From a discord.py `Message` to the bridge's `Inbound`: who is addressed, and the text without the
bot's mention. Snowflakes are global, so no workspace qualifies them.
"""

from __future__ import annotations

import re
import time

import discord

from bridge.types import Addressed, ChatKind, Inbound

# Only what a person typed; joins, pins, boosts and the like are not questions.
_USER_TYPES = (discord.MessageType.default, discord.MessageType.reply)


def is_from_person(message: discord.Message, me: discord.abc.User) -> bool:
    return (
        message.author.id != me.id
        and not message.author.bot
        and message.webhook_id is None
        and message.type in _USER_TYPES
    )


def _bot_role_id(message: discord.Message) -> int | None:
    role = message.guild.self_role if message.guild is not None else None
    return role.id if role is not None else None


def _mention_pattern(me_id: int, role_id: int | None) -> re.Pattern[str]:
    alternatives = [rf"<@!?{me_id}>"]
    if role_id is not None:
        alternatives.append(rf"<@&{role_id}>")
    return re.compile(rf"[ \t]*(?:{'|'.join(alternatives)})[ \t]*")


def _replies_to_me(message: discord.Message, me_id: int) -> bool:
    ref = message.reference
    if ref is None:
        return False
    target = ref.resolved if isinstance(ref.resolved, discord.Message) else ref.cached_message
    return target is not None and target.author.id == me_id


def addressing(message: discord.Message, me: discord.abc.User) -> tuple[Addressed, str]:
    """How the message reaches the bot, and its text with the bot's mention removed."""
    content = message.content
    if isinstance(message.channel, discord.DMChannel):
        return Addressed.DM, content.strip()
    role_id = _bot_role_id(message)
    # Judged on the text, not `mentions`: a reply's ping puts us in `mentions` without a mention,
    # and @everyone/@here never count.
    mentioned = me.id in message.raw_mentions or (
        role_id is not None and role_id in message.raw_role_mentions
    )
    if mentioned:
        return Addressed.MENTION, _mention_pattern(me.id, role_id).sub(" ", content).strip()
    if _replies_to_me(message, me.id):
        return Addressed.REPLY, content.strip()
    return Addressed.NOT, content.strip()


def _readable(text: str, message: discord.Message) -> str:
    """Other people's mentions as @name, which is what the model can make sense of."""
    for user in message.mentions:
        name = f"@{user.display_name}"
        text = text.replace(f"<@{user.id}>", name).replace(f"<@!{user.id}>", name)
    return text


def to_inbound(
    message: discord.Message, me: discord.abc.User, *, threads_as_groups: bool
) -> Inbound:
    addressed, text = addressing(message, me)
    channel = message.channel
    thread_id = scope_id = None
    if isinstance(channel, discord.Thread):
        thread_id = str(channel.id)
        if not threads_as_groups and channel.parent_id is not None:
            scope_id = str(channel.parent_id)
    is_dm = isinstance(channel, discord.DMChannel)
    return Inbound(
        platform="discord",
        chat_id=str(channel.id),  # a thread's own id: the answer goes into the thread
        sender_id=str(message.author.id),
        sender_name=message.author.display_name,
        text=_readable(text, message),
        kind=ChatKind.DM if is_dm else ChatKind.GROUP,
        event_id=str(message.id),
        message_id=str(message.id),
        thread_id=thread_id,
        addressed=addressed,
        scope_id=scope_id,
        received_at=time.time(),
        unsupported=_unreadable(message),
    )


def _unreadable(message: discord.Message) -> str | None:
    """What the model could not see: the user is told rather than answered half-blind."""
    if message.attachments:
        return "a file" if len(message.attachments) == 1 else "files"
    if message.stickers:
        return "a sticker"
    return None
