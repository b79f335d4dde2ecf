"""The delivery journal: the stages a message goes through, as the store records them, and what
each stage means when the message comes back after a crash, a restart or another process's death.

accepted → asked (recorded before the backend call; counted; a streamed answer also records what
the user sees as it grows: `Shown`) → answered (the reply's parts, already
cleaned and split for the platform, stored before anything is sent) → for each part, in order,
"sending" (recorded before the post) then "sent" (the platform's message id) → completed (text and
reply dropped; the event id kept for deduplication until its TTL, with the outcome). The store
implements the writes (`bridge.store.Journal`); this module holds the data and the rules
(`Stages`), which the router follows and delivery carries out.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .types import Inbound, Session

if TYPE_CHECKING:  # types only: the store and delivery import this module's data
    from .delivery import Delivery
    from .store import Store

log = logging.getLogger("bridge.router")


class Stage(enum.StrEnum):
    ACCEPTED = "accepted"  # remembered, not yet put to a backend
    ASKED = "asked"  # a backend call began: the question may have reached the API
    ANSWERED = "answered"  # the reply is stored; `Entry.sent` says how much of it is posted


class Outcome(enum.StrEnum):
    """How a message ended (kept with its event id; counted in botbridge_messages_total)."""

    ANSWERED = "answered"  # the backend's answer was delivered
    NOTICE = "notice"  # the bridge's own reply was delivered (help, a refusal, access denied)
    APOLOGY = "apology"  # the backend failed and the user was told so
    SILENT = "silent"  # nothing to say (a second refusal in one rate-limit window, …)
    UNDELIVERABLE = "undeliverable"  # the platform refused the reply for good
    UNREADABLE = "unreadable"  # the stored message could not be read back
    FAILED = "failed"  # a bug in the bridge: given up, so it does not return at every start
    FORGOTTEN = "forgotten"  # its sender used /forget while it waited: dropped unanswered


# Reply kind → the outcome its delivery ends with.
OUTCOME_OF_KIND = {"answer": Outcome.ANSWERED, "notice": Outcome.NOTICE, "apology": Outcome.APOLOGY}


@dataclass(frozen=True, slots=True)
class Reply:
    """What the bridge will post for one message, stored before the first part is sent."""

    parts: tuple[str, ...]  # each within the platform's limit, posted in order
    kind: str = "answer"  # "answer", "notice" or "apology"
    # Finishing a stream a crash cut short: the ids of the first parts, already on the platform
    # (the journal starts with them as sent), and the message the next part replaces instead of
    # being posted anew (the one the stream was growing in).
    posted: tuple[str, ...] = ()
    edit: str | None = None

    @property
    def outcome(self) -> Outcome:
        return OUTCOME_OF_KIND.get(self.kind, Outcome.NOTICE)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"parts": list(self.parts), "kind": self.kind}
        if self.posted or self.edit:
            data.update(posted=list(self.posted), edit=self.edit)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reply:
        edit = data.get("edit")
        return cls(
            tuple(str(p) for p in data["parts"]),
            str(data.get("kind", "answer")),
            tuple(str(p) for p in data.get("posted", ())),
            None if edit is None else str(edit),
        )


@dataclass(frozen=True, slots=True)
class Shown:
    """What a streamed answer has put before the user so far (stage asked), recorded as it
    grows: the parts already finished and their messages, the message showing the rest, its text.
    After a crash the answer is finished in those messages, never posted a second time."""

    parts: tuple[str, ...] = ()  # finished parts, as delivered
    sent: tuple[str, ...] = ()  # the platform message id(s) of each finished part
    live: str | None = None  # the message showing `text` (None: none, or a draft that fades)
    text: str = ""  # the growing part's text as last recorded
    posting: bool = False  # a finished part was being posted anew: it may be on the platform
    done: bool = False  # every part is delivered: nothing is left to post

    def to_dict(self) -> dict[str, Any]:
        return {
            "parts": list(self.parts), "sent": list(self.sent), "live": self.live,
            "text": self.text, "posting": self.posting, "done": self.done,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Shown:
        live = data.get("live")
        return cls(
            tuple(str(p) for p in data.get("parts", ())),
            tuple(str(i) for i in data.get("sent", ())),
            None if live is None else str(live),
            str(data.get("text", "")),
            bool(data.get("posting", False)),
            bool(data.get("done", False)),
        )


@dataclass(frozen=True, slots=True)
class SessionWrite:
    """A backend's new state for a session, stored with the reply it came with so that a crash
    between the two can never keep one without the other (re-applied on recovery)."""

    session_key: str
    backend: str
    state: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"session_key": self.session_key, "backend": self.backend, "state": dict(self.state)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionWrite:
        return cls(str(data["session_key"]), str(data["backend"]), dict(data["state"]))


@dataclass(frozen=True, slots=True)
class Entry:
    """One pending message, as `Journal.pending()` returns it."""

    event_id: str  # the journal's id: platform, workspace and the platform's event id
    payload: Mapping[str, Any]  # the `Inbound`, as accepted
    stage: Stage = Stage.ACCEPTED
    asks: int = 0  # backend calls begun for it (more than one only after a crash)
    reply: Reply | None = None
    session: SessionWrite | None = None  # re-applied before delivery resumes
    sent: tuple[str, ...] = ()  # the platform message ids of the parts posted, in order
    # Wall-clock time when the post of part `len(sent)` began and was not recorded since: the
    # part may be on the platform already.
    sending: float | None = None
    accepted: float = 0.0  # wall-clock time of acceptance
    stream: Shown | None = None  # asked, and streamed: what the user was shown so far
    owner: str = field(default="", compare=False)  # the process holding it (shared stores)

    @property
    def platform(self) -> str:
        return str(self.payload.get("platform", ""))

    @property
    def delivering(self) -> bool:
        """Its reply is stored: recovery delivers it and never asks again."""
        return self.stage is Stage.ANSWERED and self.reply is not None

    @property
    def next_part(self) -> int:
        """The first part not yet posted (parts go out in order)."""
        return len(self.sent)

    def inbound(self) -> Inbound:
        return Inbound.from_dict(self.payload)


def part_key(event_id: str, part: int) -> str:
    """The idempotency key of one part of the reply to `event_id`: the same across retries,
    restarts and processes, at most 25 characters (Discord's nonce limit), and never the same for
    two different messages (an 80-bit hash of the event id)."""
    digest = hashlib.blake2b(event_id.encode(), digest_size=10).hexdigest()
    return f"{digest}.{part}"


class Stages:
    """The stage logic over the store: each step writes its stage before acting on it, and a
    message recovered after a crash is resumed where its stage says."""

    def __init__(self, store: Store, delivery: Delivery) -> None:
        self._store = store
        self._delivery = delivery

    async def recoverable(self, platforms: Collection[str] | None) -> list[tuple[Entry, Inbound]]:
        """The pending messages of `platforms` no live process is answering, now ours, with
        their `Inbound`; one that cannot be read back is completed as unreadable."""
        found = []
        for entry in await self._store.journal.pending(platforms):
            try:
                found.append((entry, entry.inbound()))
            except (KeyError, TypeError, ValueError) as exc:
                log.error("pending message %s unreadable, dropped: %r", entry.event_id, exc)
                await self._store.journal.complete(entry.event_id, Outcome.UNREADABLE)
        return found

    async def asking(self, event_id: str, session_key: str, backend: str) -> Session:
        """Record the ask (before the backend call) and return the session to ask in: its stored
        state, and a checkpoint that saves state the turn creates before its answer."""
        _, state = await self._store.journal.asked(event_id, session_key, backend)
        stored = Session(session_key, state)

        async def checkpoint(new: Mapping[str, Any]) -> None:
            await self._store.sessions.put(session_key, backend, stored.with_generation(new))

        return Session(session_key, state, checkpoint)

    async def answered(
        self, event_id: str, inbound: Inbound, reply: Reply, session: SessionWrite | None
    ) -> Outcome:
        """Store the reply (with the backend's new session state) before anything is sent, then
        deliver it."""
        sending = await self._store.journal.answered(event_id, reply, session)
        if session is not None:
            await self.put_session(session)
        return await self._delivery.deliver(
            event_id, inbound, reply, sent=len(reply.posted), sending=sending
        )

    async def streaming(self, event_id: str, shown: Shown) -> None:
        """Record what a streamed answer shows so far (stage asked)."""
        await self._store.journal.streaming(event_id, shown)

    async def resume(self, entry: Entry, inbound: Inbound) -> Outcome:
        """A message recovered with its reply stored: never asked again; its session state is
        written again (the crash may have come before that write) and its unsent parts posted,
        the first of them perhaps already on the platform (its "sending" mark)."""
        assert entry.reply is not None
        if entry.session is not None:
            await self.put_session(entry.session)
        return await self._delivery.deliver(
            entry.event_id,
            inbound,
            entry.reply,
            sent=entry.next_part,
            sending=entry.sending,
            recovered=True,
        )

    async def complete(self, event_id: str, outcome: Outcome) -> None:
        await self._store.journal.complete(event_id, outcome)

    async def put_session(self, write: SessionWrite) -> None:
        await self._store.sessions.put(write.session_key, write.backend, write.state)
