"""Telegram update → `Inbound`: whether the bot is addressed, and the text the LLM should see.

Pure functions over python-telegram-bot objects, so the addressing rules read in one place.
Entity offsets are UTF-16 code units (Telegram's unit), converted to Python indices here.
"""

from __future__ import annotations

import re
import time

from telegram import Message, MessageEntity, Update, User
from telegram.constants import ChatType

from bridge.types import Addressed, ChatKind, Inbound

# What a message can carry instead of text, as the user is told ("I can't take a photo").
_MEDIA = (
    ("photo", "a photo"), ("sticker", "a sticker"), ("voice", "a voice message"),
    ("video_note", "a video message"), ("video", "a video"), ("animation", "an animation"),
    ("audio", "an audio file"), ("document", "a file"), ("venue", "a place"),
    ("location", "a location"), ("contact", "a contact"), ("poll", "a poll"),
)  # fmt: skip


def media_of(message: Message) -> str | None:
    return next((what for attr, what in _MEDIA if getattr(message, attr, None)), None)


def to_inbound(update: Update, me: User) -> Inbound | None:
    """The `Inbound` for a new message; None for anything the router need not see (edits,
    channel posts, service messages). Media is passed on as `unsupported` where it is for us
    (a DM, or a reply to the bot) so the user is told why there is no answer."""
    message = update.message
    if message is None or message.from_user is None:
        return None
    sender = message.from_user
    private = message.chat.type == ChatType.PRIVATE
    unsupported = None
    if message.text is None:
        unsupported = media_of(message)
        if unsupported is None:
            return None  # a service message: joins, pins, title changes
    if sender.is_bot or sender.id == me.id:
        # Other bots (and anonymous admins, sent as GroupAnonymousBot) are never answered:
        # two bots answering each other would never stop.
        addressed, text = Addressed.NOT, message.text or ""
    elif private:
        addressed, text = Addressed.DM, message.text or ""
    elif unsupported:
        replied = message.reply_to_message
        author = replied.from_user if replied is not None else None
        to_me = author is not None and author.id == me.id
        addressed, text = (Addressed.REPLY if to_me else Addressed.NOT), ""
    else:
        addressed, text = addressing(message, me)
    topic = message.message_thread_id if message.is_topic_message else None
    return Inbound(
        platform="telegram",
        chat_id=str(message.chat.id),
        sender_id=str(sender.id),
        sender_name=sender.full_name,
        text=text,
        kind=ChatKind.DM if private else ChatKind.GROUP,
        event_id=f"{me.id}.{update.update_id}",
        message_id=str(message.message_id),
        thread_id=str(topic) if topic is not None else None,
        addressed=addressed,
        received_at=time.time(),
        unsupported=unsupported,
    )


def addressing(message: Message, me: User) -> tuple[Addressed, str]:
    """How a group message reaches the bot, and its text with the bot's mention removed."""
    text = message.text or ""
    username = (me.username or "").lower()
    cut: list[MessageEntity] = []  # spans to remove from the text
    how = Addressed.NOT
    for entity in message.entities:
        if entity.type == MessageEntity.MENTION:
            if entity_text(text, entity)[1:].lower() == username:
                cut.append(entity)
                how = Addressed.MENTION
        elif entity.type == MessageEntity.TEXT_MENTION:
            if entity.user is not None and entity.user.id == me.id:
                cut.append(entity)
                how = Addressed.MENTION
    command = _leading_command(message)
    if command is not None:
        _, _, target = entity_text(text, command).partition("@")
        if target and target.lower() != username:
            return Addressed.NOT, text  # /cmd@otherbot: for another bot
        if target:
            # Keep "/help", drop "@thisbot": the router reads the bare command.
            at = command.length - len(target) - 1
            cut.append(
                MessageEntity(MessageEntity.BOT_COMMAND, command.offset + at, len(target) + 1)
            )
            how = Addressed.COMMAND if how is Addressed.NOT else how
        elif how is Addressed.NOT and not me.can_read_all_group_messages:
            # With privacy mode on, Telegram only delivers a bare command when it is ours.
            how = Addressed.COMMAND
    if how is Addressed.NOT and _replies_to(message, me):
        how = Addressed.REPLY
    return how, strip_spans(text, [(e.offset, e.length) for e in cut]) if cut else text


def _leading_command(message: Message) -> MessageEntity | None:
    for entity in message.entities:
        if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            return entity
    return None


def _replies_to(message: Message, me: User) -> bool:
    replied = message.reply_to_message
    if replied is None or replied.from_user is None:
        return False
    # In a forum every message "replies" to its topic's creation message: that is no reply.
    return replied.from_user.id == me.id and replied.forum_topic_created is None


def entity_text(text: str, entity: MessageEntity) -> str:
    """The text an entity covers. Not PTB's `parse_entity`: it encodes strictly to UTF-16 and
    fails on a lone surrogate, which a client can send (the router repairs it later)."""
    return text[_index(text, entity.offset) : _index(text, entity.offset + entity.length)]


def _index(text: str, utf16_offset: int) -> int:
    """The Python index of a UTF-16 offset (characters outside the BMP count twice)."""
    units = 0
    for index, char in enumerate(text):
        if units >= utf16_offset:
            return index
        units += 2 if ord(char) > 0xFFFF else 1
    return len(text)


def strip_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """Remove UTF-16 `(offset, length)` spans and tidy the gap: "@bot, hi" → "hi",
    "ask @bot now" → "ask now"."""
    for offset, length in sorted(spans, reverse=True):
        start, end = _index(text, offset), _index(text, offset + length)
        before, after = text[:start], text[end:]
        if not before.strip():
            after = re.sub(r"^[,:;]?\s*", "", after)
        elif before[-1:].isspace() and after[:1].isspace():
            after = after.lstrip(" \t")
        text = before + after
    return text.strip()
