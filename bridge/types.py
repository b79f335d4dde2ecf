"""The platform-neutral messages that travel through the bridge.

Adapters build an `Inbound` from a platform event and receive `Outbound` replies; backends return an
`Answer`. All of them are plain frozen dataclasses so that they can be stored and replayed.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ChatKind(enum.StrEnum):
    DM = "dm"
    GROUP = "group"


class Addressed(enum.StrEnum):
    """How a message reached the bot; decided by the adapter."""

    DM = "dm"  # every direct message is for the bot
    MENTION = "mention"  # @bot in a group
    REPLY = "reply"  # a reply to one of the bot's messages
    COMMAND = "command"  # /cmd@bot, or a bare command the platform only delivers to us
    NOT = "not"  # seen but not for us (the router counts and ignores it)


@dataclass(frozen=True, slots=True)
class Inbound:
    platform: str  # "telegram", "discord", "slack", "console"
    chat_id: str  # where the message was posted (and where the answer goes)
    sender_id: str
    text: str  # with the bot's mention already stripped
    kind: ChatKind
    event_id: str  # the platform's delivery id, for deduplication
    message_id: str | None = None  # to reply to
    thread_id: str | None = None  # forum topic, Slack thread_ts, Discord thread
    workspace: str | None = None  # Slack team, Discord guild: qualifies ids
    sender_name: str = ""
    addressed: Addressed = Addressed.DM
    # The group a session belongs to, when it differs from the chat (a Discord thread counts as
    # its parent channel; a Slack thread may be its own group). None means chat_id.
    scope_id: str | None = None
    received_at: float = 0.0  # wall clock, seconds; set by the adapter or the router
    # What the message carried that the bridge cannot pass on ("a photo", "a file"); the user is
    # told so instead of getting silence or an answer to half a question.
    unsupported: str | None = None

    @property
    def group_id(self) -> str:
        return self.scope_id or self.chat_id

    def to_dict(self) -> dict[str, Any]:
        # Every field is a str, float, None or a str enum: no deep copy needed (asdict's is the
        # costliest step of accepting a message).
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Inbound:
        values = dict(data)
        values["kind"] = ChatKind(values["kind"])
        values["addressed"] = Addressed(values["addressed"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Outbound:
    platform: str
    chat_id: str
    parts: tuple[str, ...]  # Markdown, each within the adapter's limit, sent in order
    reply_to: str | None = None  # message id; set for answers in groups
    thread_id: str | None = None
    workspace: str | None = None
    kind: str = "answer"  # "answer", "notice" (help, refusals) or "apology"
    event_id: str = ""  # the journal's id of the question it answers


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    usage: Usage = field(default_factory=Usage)
    # The backend's state for this session after the turn (thread ids, kept history). None
    # leaves the stored state as it was.
    state: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """What a backend is told about the conversation it answers in."""

    key: str  # wx:dm:… or wx:group:…:user:…
    state: Mapping[str, Any]  # what the backend returned last time (empty when new or reset)

    @property
    def generation(self) -> int:
        """How many times /reset was used; backends keyed by session id send a new id for each."""
        return int(self.state.get("generation", 0))

    @property
    def wire_id(self) -> str:
        """The session id to send to a server that keeps history by id: `key`, then `key#2`…"""
        return self.key if self.generation == 0 else f"{self.key}#{self.generation + 1}"


@dataclass(frozen=True, slots=True)
class Limits:
    """What an adapter can post in one message."""

    max_len: int
    utf16: bool = False  # Telegram counts UTF-16 code units, not code points
