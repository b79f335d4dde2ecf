"""The platform-neutral messages that travel through the bridge.

Adapters build an `Inbound` from a platform event and receive `Outbound` replies; backends are asked
a `Question` and return an `Answer`. All of them are plain frozen dataclasses so that they can be
stored and replayed.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable, Mapping
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
class Quote:
    """The message an addressed message replies to (or quotes part of): context for the backend."""

    author: str  # a display name ("Bob"), as people in the chat see it
    text: str  # the quoted part when the platform says which, else the whole message
    from_bot: bool = False  # one of the bot's own messages
    own_question: bool = False  # the sender's own earlier message to the bot


@dataclass(frozen=True, slots=True)
class Picture:
    """A picture sent to the bot, by reference: what its adapter needs to download it (again, after
    a restart). Never the bytes, so that stored and journalled messages stay small."""

    ref: str  # Telegram file_id, Discord attachment URL, Slack url_private
    size: int | None = None  # bytes, when the platform states it
    mime: str | None = None  # what the platform claims; the bytes are checked anyway
    name: str = ""


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
    quote: Quote | None = None  # the replied-to or quoted message
    # A picture the message carries; passed on to a backend that can see (then `unsupported` is
    # what a backend that cannot is refused with).
    picture: Picture | None = None

    @property
    def group_id(self) -> str:
        return self.scope_id or self.chat_id

    def to_dict(self) -> dict[str, Any]:
        # Every other field is a str, float, None or a str enum: no deep copy needed (asdict's is
        # the costliest step of accepting a message).
        data = {f.name: getattr(self, f.name) for f in _FIELDS}
        for name in _NESTED:
            if data[name] is not None:
                data[name] = dataclasses.asdict(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Inbound:
        values = dict(data)
        values["kind"] = ChatKind(values["kind"])
        values["addressed"] = Addressed(values["addressed"])
        for name, nested in _NESTED.items():
            if values.get(name) is not None:
                values[name] = nested(**values[name])
        return cls(**values)


_FIELDS = dataclasses.fields(Inbound)
_NESTED: dict[str, Any] = {"quote": Quote, "picture": Picture}


def dedup_id(inbound: Inbound) -> str:
    """The message's id in the journal: the platform's event id, qualified."""
    return f"{inbound.platform}:{inbound.workspace or ''}:{inbound.event_id}"


@dataclass(frozen=True, slots=True)
class Outbound:
    """One part of a reply, as an adapter posts it: one platform message (Telegram may need
    several when its formatting outgrows the limit)."""

    platform: str
    chat_id: str
    text: str  # Markdown, within the adapter's limit
    # Idempotency key: the same for every attempt at this part, across restarts and processes
    # (Discord sends it as the message nonce; Slack as message metadata).
    key: str = ""
    part: int = 0  # its place in the reply, from 0
    parts: int = 1  # how many parts the reply has
    reply_to: str | None = None  # message id; set for answers in groups
    thread_id: str | None = None
    workspace: str | None = None
    kind: str = "answer"  # "answer", "notice" (help, refusals) or "apology"
    event_id: str = ""  # the journal's id of the question it answers
    # An earlier attempt at this part may have been posted (a timeout, a crash before its id was
    # recorded): an adapter that can tell (Slack metadata) looks before posting again.
    retry: bool = False
    # The platform message this part replaces instead of being posted anew: the message a stream
    # cut short by a crash was growing in. An edit cannot appear twice.
    edit: str | None = None


@dataclass(frozen=True, slots=True)
class Image:
    """A picture's bytes, checked, for one request to a backend that can see; never stored."""

    mime: str  # image/jpeg, image/png, image/webp or image/gif, from the bytes themselves
    data: bytes


@dataclass(frozen=True, slots=True)
class Question:
    """What a backend is asked: the text (with any quoted message folded in), the options of the
    route it came by (`system_prompt`, `model`, …, already validated for the backend's type; the
    backend's own config fills in the rest) and, for a backend that can see, pictures."""

    text: str
    options: Mapping[str, Any] = field(default_factory=dict)
    images: tuple[Image, ...] = ()


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
    # Set by `Backend.resume` when it had to put the question to the API a second time (a
    # server that keeps the conversation now holds it twice): counted and logged.
    reasked: bool = False


@dataclass(frozen=True, slots=True)
class Session:
    """What a backend is told about the conversation it answers in."""

    key: str  # wx:dm:… or wx:group:…:user:…
    state: Mapping[str, Any]  # what the backend returned last time (empty when new or reset)
    # Saves state a turn creates before its answer exists (a new thread id), so that `resume`
    # after a crash finds what the first attempt made. None: nowhere to save (probes, tests).
    checkpoint: Callable[[Mapping[str, Any]], Awaitable[None]] | None = field(
        default=None, compare=False
    )

    async def save(self, state: Mapping[str, Any]) -> None:
        if self.checkpoint is not None:
            await self.checkpoint(state)

    def with_generation(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """A backend's new `state` for this session, with what the bridge keeps there: the
        /reset generation, the /forget salt and the /model choice."""
        merged = {**dict(state), **identity(self.state)}
        if self.chosen_model is not None:
            merged["model"] = self.chosen_model
        return merged

    @property
    def generation(self) -> int:
        """How many times /reset was used; backends keyed by session id send a new id for each."""
        return int(self.state.get("generation", 0))

    @property
    def chosen_model(self) -> str | None:
        """The model picked with /model in this session: kept in the state, like `generation`."""
        model = self.state.get("model")
        return model if isinstance(model, str) else None

    @property
    def wire_id(self) -> str:
        """The session id to send to a server that keeps history by id: `key`, then `key#2`…;
        after a /forget `key#{salt}`, `key#{salt}#2`…, never an id used before it. Keys never
        hold `#` themselves (`bridge.session` escapes it): no other key can equal this one."""
        salt = self.state.get("salt")
        base = f"{self.key}#{salt}" if salt else self.key
        return base if self.generation == 0 else f"{base}#{self.generation + 1}"


# What a session's state carries through /reset and every answer: which server-side id it is on.
IDENTITY = ("generation", "salt")


def identity(state: Mapping[str, Any]) -> dict[str, Any]:
    return {name: state[name] for name in IDENTITY if state.get(name)}


@dataclass(frozen=True, slots=True)
class Limits:
    """What an adapter can post in one message."""

    max_len: int
    utf16: bool = False  # Telegram counts UTF-16 code units, not code points
