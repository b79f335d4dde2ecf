"""From a discord.py `Message` to the bridge's `Inbound`: who is addressed, the text without the
bot's mention, the message it replies to, and a picture it carries. Snowflakes are global, so no
workspace qualifies them.
"""

from __future__ import annotations

import re
import time

import discord

from bridge.types import Addressed, ChatKind, Inbound, Picture, Quote

# Only what a person typed; joins, pins, boosts and the like are not questions.
_USER_TYPES = (discord.MessageType.default, discord.MessageType.reply)
_IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                   ".gif": "image/gif", ".webp": "image/webp"}  # fmt: skip


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


def known_reference(message: discord.Message) -> discord.Message | None:
    """The message this one replies to, when the gateway resolved it or it is cached."""
    ref = message.reference
    if ref is None or ref.type is discord.MessageReferenceType.forward:
        return None
    return ref.resolved if isinstance(ref.resolved, discord.Message) else ref.cached_message


def worth_fetching(message: discord.Message, me: discord.abc.User) -> bool:
    """Whether an unresolved reply target may matter: the message is for the bot already, or it
    pings the bot the way a reply to one of its messages does."""
    ref = message.reference
    if ref is None or ref.message_id is None or ref.resolved is not None:
        return False  # no reply, or resolved (possibly as deleted): nothing to fetch
    if ref.type is discord.MessageReferenceType.forward or ref.cached_message is not None:
        return False
    return isinstance(message.channel, discord.DMChannel) or any(
        user.id == me.id for user in message.mentions
    )


def addressing(
    message: discord.Message,
    me: discord.abc.User,
    referenced: discord.Message | None = None,
) -> tuple[Addressed, str]:
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
    if referenced is not None and referenced.author.id == me.id:
        return Addressed.REPLY, content.strip()
    return Addressed.NOT, content.strip()


def _readable(text: str, message: discord.Message) -> str:
    """Other people's mentions as @name, which is what the model can make sense of."""
    for user in message.mentions:
        name = f"@{user.display_name}"
        text = text.replace(f"<@{user.id}>", name).replace(f"<@!{user.id}>", name)
    return text


def to_inbound(
    message: discord.Message,
    me: discord.abc.User,
    *,
    threads_as_groups: bool,
    referenced: discord.Message | None = None,
) -> Inbound:
    """`referenced`: the replied-to message when the adapter fetched it; else what the gateway
    resolved or the cache holds."""
    referenced = referenced or known_reference(message)
    addressed, text = addressing(message, me, referenced)
    useful = addressed is not Addressed.NOT
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
        quote=quote_of(referenced, message, me) if useful and referenced is not None else None,
        picture=picture_of(message) if useful else None,
    )


def quote_of(
    referenced: discord.Message, message: discord.Message, me: discord.abc.User
) -> Quote | None:
    how, text = addressing(referenced, me)  # the text without the bot's mention
    text = _readable(text, referenced)
    if not text.strip():
        return None  # only attachments, or text the Message Content intent withholds
    author = referenced.author
    # The same person's earlier question to the bot (a DM, or a mention: replies to the bot's
    # own messages are `from_bot` already).
    own_question = author.id == message.author.id and how in (Addressed.DM, Addressed.MENTION)
    return Quote(author.display_name, text, from_bot=author.id == me.id, own_question=own_question)


def _image_type(attachment: discord.Attachment) -> str | None:
    claimed = (attachment.content_type or "").split(";")[0].strip().lower()
    if claimed:
        return claimed if claimed.startswith("image/") else None
    suffix = attachment.filename[attachment.filename.rfind(".") :].lower()
    return _IMAGE_SUFFIXES.get(suffix)


def picture_of(message: discord.Message) -> Picture | None:
    """The one picture a message carries (a message with other files too is refused whole)."""
    if len(message.attachments) != 1:
        return None
    attachment = message.attachments[0]
    mime = _image_type(attachment)
    if mime is None:
        return None
    return Picture(attachment.url, attachment.size, mime, attachment.filename)


def _unreadable(message: discord.Message) -> str | None:
    """What the model could not see: the user is told rather than answered half-blind."""
    if message.attachments:
        if len(message.attachments) > 1:
            return "files"
        return "a picture" if _image_type(message.attachments[0]) else "a file"
    if message.stickers:
        return "a sticker"
    return None
