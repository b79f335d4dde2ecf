"""Asking a backend for one message: its question built, one call under the global bound with the
platform's working signal, whole or streamed, and every failure turned into the user's apology.

The router decides that a message is asked (and in which turn); `Asker` carries it out and
returns the `Reply` the journal stores, or `STREAMED` when the answer was shown as it was written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Final, Protocol

from .backends import Backend, can_stream
from .budgets import Budgets
from .config import BridgeSettings
from .delivery import Poster
from .errors import BackendError, InputTooLong, NotOwner, PictureError, PictureUnavailable
from .journal import Entry, Reply, SessionWrite, Stages
from .logs import brief
from .metrics import Metrics
from .pending import Ticket
from .pictures import PictureSource
from .profiles import Profile, Profiles
from .questions import Questions
from .retention import touch
from .stream_journal import Recorder, count_resumed, finish
from .streaming import Live, StreamedReply
from .text import prepare_async, utf16_len
from .types import Answer, Inbound, Limits, Session

log = logging.getLogger("bridge.router")

EMPTY_ANSWER = "(The assistant returned an empty answer.)"
STREAMED: Final = "streamed"  # the answer was shown while written and is on the platform


class Outbox(Poster, PictureSource, Protocol):
    """Where replies go (and pictures come from): the running adapters, chosen by platform."""

    def limits(self, platform: str) -> Limits: ...

    def working(self, inbound: Inbound) -> AbstractAsyncContextManager[None]:
        """Show the platform's "working on it" signal (typing, a reaction) while open."""

    def live(self, inbound: Inbound) -> Live | None:
        """Where an answer to `inbound` can be shown as it is written; None: send it whole."""


@dataclass(slots=True)
class Turn:
    """One message on its way through its session's lane: what the router and the asker know."""

    inbound: Inbound
    key: str  # the session key
    dedup_id: str  # the journal's id
    started: float  # clock reading at intake
    entry: Entry | None = None  # recovered: where the journal left it
    backend: str | None = None
    asked: float | None = None  # clock readings around the backend call, for the metrics
    answered: float | None = None
    answer: Answer | None = None  # the backend's answer (its usage is spent after delivery)
    profile: Profile | None = None
    session: SessionWrite | None = None  # the backend's new state, stored with the reply
    accepted: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    pending: Ticket | None = None  # its place at intake (`bridge.pending`), given back once asked


class Asker:
    def __init__(
        self,
        *,
        backends: Mapping[str, Backend],
        outbox: Outbox,
        settings: BridgeSettings,
        profiles: Profiles,
        stages: Stages,
        budgets: Budgets,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self._backends = backends
        self._outbox = outbox
        self._settings = settings
        self._profiles = profiles
        self._questions = Questions(settings, outbox)
        self._stages = stages
        self._budgets = budgets
        self._metrics = metrics
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.max_in_flight)

    async def ask(self, turn: Turn, text: str) -> Reply | str:
        """The reply to store for `turn`, or `STREAMED` (already on the platform)."""
        shown = turn.entry.stream if turn.entry is not None else None
        if shown is None:
            return await self._ask(turn, text)
        # A crash cut its streamed answer short: finish it in the messages the user has.
        turn.profile = profile = self._profiles.for_inbound(turn.inbound)
        turn.backend = profile.backend
        how, reply = await finish(
            shown,
            stateless=bool(getattr(self._backends[profile.backend], "stateless", False)),
            ask_again=lambda: self._ask_again(turn, text),
            apologise=lambda shown_text: self.reply(
                turn, f"{shown_text}\n\n{self._settings.apology}".strip(), kind="apology"
            ),
        )
        count_resumed(self._metrics, turn.inbound.platform, shown, how, turn.dedup_id)
        return reply

    async def _ask_again(self, turn: Turn, text: str) -> Reply:
        reply = await self._ask(turn, text)
        assert isinstance(reply, Reply)  # asked before: never streamed again
        return reply

    async def _ask(self, turn: Turn, text: str) -> Reply | str:
        inbound = turn.inbound
        turn.profile = profile = self._profiles.for_inbound(inbound)
        turn.backend = name = profile.backend
        backend = self._backends[name]
        # Asked before: a crash cut that call short, and the question may have reached the API.
        again = turn.entry is not None and turn.entry.asks > 0
        session = await self._stages.asking(turn.dedup_id, turn.key, name)
        try:
            question = await self._questions.build(inbound, text, profile, session)
        except PictureError as exc:
            self._metrics.message(inbound.platform, "refused")
            level = logging.WARNING if isinstance(exc, PictureUnavailable) else logging.INFO
            log.log(level, "picture not passed on: %s", exc, extra=context(turn, name))
            return await self.reply(turn, exc.reply, kind="notice")
        live = None if again else self._live(backend, inbound)
        # A streamed answer drops the working signal itself, once its first text shows.
        async with self._outbox.working(inbound) if live is None else nullcontext(), self._slot():
            turn.asked = self._clock()
            if turn.pending is not None:
                turn.pending.release()
            try:
                if live is not None:
                    pieces = backend.stream(session, question)  # type: ignore[attr-defined]
                    return await self._stream(turn, session, pieces, live, text)
                if again:
                    answer = await backend.resume(session, question)  # type: ignore[attr-defined]
                else:
                    answer = await backend.ask(session, question)
            except InputTooLong as exc:
                self._metrics.message(inbound.platform, "refused")
                return await self.reply(turn, too_long(exc.length, exc.limit), kind="notice")
            except BackendError as exc:
                if exc.state is not None:
                    turn.session = SessionWrite(turn.key, name, session.with_generation(exc.state))
                self._failed(turn, exc.cause, f"{exc.cause}: {exc}")
                return await self.reply(turn, self._settings.apology, kind="apology")
            except Exception as exc:  # a bug in a backend must not take the daemon down
                log.exception("session %s backend %s: unexpected error", turn.key, name)
                self._failed(turn, "internal", f"{type(exc).__name__} (a bug)")
                return await self.reply(turn, self._settings.apology, kind="apology")
            turn.answered = self._clock()
        self._answered(turn, session, answer)
        if self._settings.log_message_text:
            log.debug("answer to %s: %r", turn.dedup_id, answer.text, extra=context(turn, name))
        return await self.reply(turn, answer.text, kind="answer")

    async def reply(self, turn: Turn, text: str, *, kind: str) -> Reply:
        """`text` cleaned, capped and split for the platform: what the journal stores and
        delivery posts (prepared off the event loop when it is long)."""
        limits = self._outbox.limits(turn.inbound.platform)
        measure = utf16_len if limits.utf16 else len
        parts = await prepare_async(text, limits.max_len, measure, self._settings.max_answer_chars)
        return Reply(tuple(parts or [EMPTY_ANSWER]), kind)

    def _live(self, backend: Backend, inbound: Inbound) -> Live | None:
        return self._outbox.live(inbound) if can_stream(backend) else None

    def _answered(self, turn: Turn, session: Session, answer: Answer) -> None:
        """The backend's side of a good answer: its latency, the session's new state (stored with
        the reply), a second user turn counted."""
        name = turn.backend or ""
        assert turn.asked is not None
        self._metrics.backend_latency.labels(name, "ok").observe(self._clock() - turn.asked)
        turn.answer = answer
        if answer.state is not None:
            turn.session = SessionWrite(turn.key, name, session.with_generation(answer.state))
        elif (seen := touch(session.state)) is not None:  # a server-side session: note it daily
            turn.session = SessionWrite(turn.key, name, seen)
        if answer.reasked:
            self._metrics.reasked.labels(name).inc()
            log.warning(
                "session %s: asked backend %s again after a restart (a second user turn: the "
                "API offers no way to find the first one's answer)",
                turn.key,
                name,
                extra=context(turn, name),
            )

    async def _stream(
        self,
        turn: Turn,
        session: Session,
        pieces: AsyncIterator[str | Answer],
        live: Live,
        text: str,
    ) -> Reply | str:
        """Show the answer as it is written; a failure before any text arrived raises, to be
        apologised for like any other."""
        inbound = turn.inbound
        reply = StreamedReply(
            live, limits=self._outbox.limits(inbound.platform), apology=self._settings.apology,
            empty=EMPTY_ANSWER, working=self._outbox.working(inbound), metrics=self._metrics,
            platform=inbound.platform, started=turn.started, clock=self._clock,
            recorder=Recorder(
                lambda shown: self._stages.streaming(turn.dedup_id, shown),
                interval=live.settings.record_interval, clock=self._clock,
            ),
        )  # fmt: skip
        try:
            streamed = await reply.run(pieces)
        except (BackendError, NotOwner):
            raise
        except Exception as exc:  # the platform refused the final parts
            self._metrics.message(inbound.platform, "failed")
            log.error(
                "session %s: streamed reply not delivered to %s chat %s: %s",
                turn.key, inbound.platform, inbound.chat_id, brief(exc), extra=context(turn),
            )  # fmt: skip
            return STREAMED
        if streamed.answer is None:
            cause = streamed.failure.cause if streamed.failure else "internal"
            self._failed(turn, cause, f"{cause}: {streamed.failure} (mid-answer)")
            return STREAMED
        turn.answered = self._clock()
        self._answered(turn, session, streamed.answer)
        if turn.session is not None:
            await self._stages.put_session(turn.session)
        self._metrics.message(inbound.platform, "answered")
        took = self._clock() - turn.started
        log.info("answered (streamed)", extra=context(turn, turn.backend, took))
        await self._budgets.spend(
            inbound, turn.backend or "", self._route(turn), streamed.answer, text, delivered=True
        )
        return STREAMED

    def _failed(self, turn: Turn, cause: str, detail: str) -> None:
        backend = turn.backend or ""
        asked = turn.asked if turn.asked is not None else self._clock()
        self._metrics.backend_errors.labels(backend, cause).inc()
        self._metrics.backend_latency.labels(backend, "error").observe(self._clock() - asked)
        self._metrics.message(turn.inbound.platform, "failed")
        log.error(
            "backend failed: session=%s backend=%s event=%s cause=%s",
            turn.key,
            backend,
            turn.dedup_id,
            detail,
            extra={**context(turn, backend, self._clock() - turn.started), "cause": cause},
        )

    def _route(self, turn: Turn) -> str:
        return turn.profile.route if turn.profile is not None else "default"

    async def spend(self, turn: Turn, text: str, *, delivered: bool) -> None:
        """Count the answer's tokens against the budgets, once its delivery ended."""
        if turn.answer is not None and turn.backend is not None:
            await self._budgets.spend(
                turn.inbound, turn.backend, self._route(turn), turn.answer, text,
                delivered=delivered,
            )  # fmt: skip

    def _slot(self) -> _Slot:
        return _Slot(self._slots, self._metrics)


class _Slot:
    """A place among the `max_in_flight` backend calls; waiting for one counts as queued."""

    def __init__(self, semaphore: asyncio.Semaphore, metrics: Metrics) -> None:
        self._semaphore = semaphore
        self._metrics = metrics

    async def __aenter__(self) -> None:
        self._metrics.waiting_for_slot.inc()
        try:
            await self._semaphore.acquire()
        finally:
            self._metrics.waiting_for_slot.dec()
        self._metrics.in_flight.inc()

    async def __aexit__(self, *exc: object) -> None:
        self._metrics.in_flight.dec()
        self._semaphore.release()


def context(turn: Turn, backend: str | None = None, took: float | None = None) -> dict:
    """The `extra=` of a log line about one message (JSON logs carry these as fields)."""
    return {
        "session_key": turn.key,
        "platform": turn.inbound.platform,
        "event_id": turn.dedup_id,
        "backend": backend,
        "latency_ms": None if took is None else round(took * 1000, 1),
    }


def too_long(length: int, limit: int) -> str:
    return f"Your message is {length:,} characters long; the limit is {limit:,}. Please shorten it."
