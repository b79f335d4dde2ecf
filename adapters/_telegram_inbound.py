"""Telegram update → `Inbound`: whether the bot is addressed, the text the LLM should see (a
media message's caption), the message it replies to or quotes, and a picture it carries.

Pure functions over python-telegram-bot objects, so the addressing rules read in one place.
Entity offsets are UTF-16 code units (Telegram's unit), converted to Python indices here.
"""

from __future__ import annotations

import re
import time

from telegram import Message, MessageEntity, MessageOrigin, Update, User
from telegram.constants import ChatType

from bridge.types import Addressed, ChatKind, Inbound, Picture, Quote

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
        addressed, text = Addressed.NOT, _body(message)[0]
    elif private:
        addressed, text = Addressed.DM, _body(message)[0]
    else:
        addressed, text = addressing(message, me)  # a caption addresses the bot like a text
    topic = message.message_thread_id if message.is_topic_message else None
    useful = addressed is not Addressed.NOT
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
        quote=quote_of(message, me) if useful else None,
        picture=picture_of(message) if useful else None,
    )


def _body(message: Message) -> tuple[str, tuple[MessageEntity, ...]]:
    """The text and its entities: a media message's caption stands for its text."""
    if message.text is not None:
        return message.text, message.entities
    return message.caption or "", message.caption_entities


def addressing(message: Message, me: User) -> tuple[Addressed, str]:
    """How a group message reaches the bot, and its text with the bot's mention removed."""
    text, entities = _body(message)
    username = (me.username or "").lower()
    cut: list[MessageEntity] = []  # spans to remove from the text
    how = Addressed.NOT
    for entity in entities:
        if entity.type == MessageEntity.MENTION:
            if entity_text(text, entity)[1:].lower() == username:
                cut.append(entity)
                how = Addressed.MENTION
        elif entity.type == MessageEntity.TEXT_MENTION:
            if entity.user is not None and entity.user.id == me.id:
                cut.append(entity)
                how = Addressed.MENTION
    command = _leading_command(entities)
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


def _leading_command(entities: tuple[MessageEntity, ...]) -> MessageEntity | None:
    for entity in entities:
        if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            return entity
    return None


def _replied(message: Message) -> Message | None:
    replied = message.reply_to_message
    # In a forum every message "replies" to its topic's creation message: that is no reply.
    if replied is None or replied.forum_topic_created is not None:
        return None
    return replied


def _replies_to(message: Message, me: User) -> bool:
    replied = _replied(message)
    return replied is not None and replied.from_user is not None and replied.from_user.id == me.id


def quote_of(message: Message, me: User) -> Quote | None:
    """The replied-to message (its quoted part, when the user picked one), or a quote of a
    message in another chat."""
    replied = _replied(message)
    quoted = message.quote.text if message.quote is not None else None
    if replied is not None:
        author = replied.from_user
        if author is not None:
            name = author.full_name
        else:  # a channel post, or an anonymous admin speaking as the group
            name = replied.sender_chat.effective_name if replied.sender_chat else ""
        text = quoted if quoted is not None else addressing(replied, me)[1]  # without @bot
        from_bot = author is not None and author.id == me.id
        return Quote(name or "", text, from_bot, own_question=_asked_by(replied, message, me))
    if quoted is not None and message.external_reply is not None:
        return Quote(_origin_name(message.external_reply.origin), quoted)
    return None


def _asked_by(replied: Message, message: Message, me: User) -> bool:
    """Whether the replied-to message was the same person's own question to the bot."""
    author, sender = replied.from_user, message.from_user
    if author is None or sender is None or author.id != sender.id:
        return False
    return message.chat.type == ChatType.PRIVATE or addressing(replied, me)[0] in (
        Addressed.MENTION,
        Addressed.REPLY,
    )


def _origin_name(origin: MessageOrigin) -> str:
    for attr in ("sender_user", "sender_chat", "chat"):
        who = getattr(origin, attr, None)
        if who is not None:
            return str(getattr(who, "full_name", None) or getattr(who, "effective_name", ""))
    return str(getattr(origin, "sender_user_name", "") or "")


def picture_of(message: Message) -> Picture | None:
    """A photo (its largest size; Telegram re-encodes photos as JPEG) or an image sent as a file."""
    if message.photo:
        largest = max(message.photo, key=lambda size: size.width * size.height)
        return Picture(largest.file_id, largest.file_size, "image/jpeg", "photo.jpg")
    document = message.document
    if document is not None and (document.mime_type or "").startswith("image/"):
        return Picture(
            document.file_id, document.file_size, document.mime_type, document.file_name or ""
        )
    return None


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
