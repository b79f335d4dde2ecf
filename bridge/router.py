"""The router: the one place that decides what happens to a message.

In order: ignore what is not for the bot, drop a redelivered event, derive the session key, queue
the message in its session's lane, then answer a bridge command or ask the routed backend (with a
global bound on backend calls), and hand the formatted reply to the outbox. A failure anywhere
becomes the user's short apology and one precise log line; nothing here raises into an adapter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

from .access import Gate
from .backends import Backend, can_stream
from .budgets import Budgets
from .commands import Commands
from .config import AccessSettings, BridgeSettings
from .errors import BackendError, InputTooLong, PictureError, PictureUnavailable
from .lanes import Lanes
from .logs import brief
from .metrics import Metrics
from .pictures import PictureSource
from .profiles import Profile, Profiles
from .questions import Questions
from .retention import touch
from .session import key_for
from .store import Store
from .streaming import Live, StreamedReply
from .text import cleaned, prepare_async, utf16_len
from .types import (
    Addressed,
    Answer,
    ChatKind,
    Inbound,
    Limits,
    Outbound,
    Question,
    Session,
    dedup_id,
    identity,
)

log = logging.getLogger("bridge.router")

EMPTY_ANSWER = "(The assistant returned an empty answer.)"


class Outbox(PictureSource, Protocol):
    """Where replies go (and pictures come from): the running adapters, chosen by platform."""

    def limits(self, platform: str) -> Limits: ...

    async def send(self, outbound: Outbound) -> None: ...

    def working(self, inbound: Inbound) -> AbstractAsyncContextManager[None]:
        """Show the platform's "working on it" signal (typing, a reaction) while open."""

    def live(self, inbound: Inbound) -> Live | None:
        """Where an answer to `inbound` can be shown as it is written; None: send it whole."""


@dataclass(slots=True)
class _Job:
    inbound: Inbound
    key: str
    dedup_id: str
    started: float
    accepted: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Router:
    def __init__(
        self,
        *,
        store: Store,
        backends: Mapping[str, Backend],
        outbox: Outbox,
        settings: BridgeSettings,
        profiles: Profiles,
        metrics: Metrics | None = None,
        gate: Gate | None = None,
        budgets: Budgets | None = None,
        commands: Commands | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._store = store
        self._backends = backends
        self._outbox = outbox
        self._settings = settings
        self._profiles = profiles
        self._questions = Questions(settings, outbox)
        self._metrics = metrics or Metrics()
        self._gate = gate or Gate(AccessSettings(), store)  # allows everyone, no limit
        self._budgets = budgets or Budgets.unlimited(store, self._metrics)
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._lanes = Lanes(on_change=self._lanes_changed)
        self._commands = commands or Commands(
            store=store, backends=backends, settings=settings, profiles=profiles
        )
        self._closing = False

    # ------------------------------------------------------------------------------- intake

    async def handle(self, inbound: Inbound) -> bool:
        """Take one message from an adapter. Returns once it is durably accepted (True) or
        judged not to need an answer (False: not addressed, empty, or a duplicate)."""
        started = self._clock()
        platform = inbound.platform
        self._metrics.message(platform, "received")
        inbound = await cleaned(inbound)
        if inbound.addressed is Addressed.NOT or not (
            # A bare @mention asks what the bot does: it gets the help.
            inbound.text.strip() or inbound.unsupported or inbound.addressed is Addressed.MENTION
        ):
            self._metrics.message(platform, "ignored")
            return False
        job = _Job(
            inbound, key_for(inbound, self._settings.session_keys), dedup_id(inbound), started
        )
        if not self._closing:
            # Queued before the store is asked, so that arrival order is lane order; the lane
            # waits for the verdict.
            self._lanes.submit(job.key, lambda: self._run(job))
        try:
            fresh = await self._store.journal.accept(
                job.dedup_id, inbound.to_dict(), self._settings.dedup_ttl
            )
        except BaseException as exc:
            job.accepted.set_exception(exc)
            job.accepted.exception()  # retrieved here; the lane only needs to know it failed
            log.error("store failed to accept %s: %s", job.dedup_id, brief(exc))
            raise
        job.accepted.set_result(fresh)
        if self._settings.log_message_text:
            log.debug("text of %s: %r", job.dedup_id, inbound.text, extra=_context(job))
        if not fresh:
            self._metrics.message(platform, "duplicate")
            log.info("duplicate event %s dropped", job.dedup_id, extra=_context(job))
        return fresh

    async def recover(self) -> int:
        """Queue every message accepted before a restart and never answered."""
        count = 0
        for payload in await self._store.journal.pending():
            try:
                inbound = Inbound.from_dict(payload)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("pending message unreadable, dropped: %s", brief(exc))
                continue
            job = _Job(
                inbound,
                key_for(inbound, self._settings.session_keys),
                dedup_id(inbound),
                self._clock(),
            )
            job.accepted.set_result(True)
            self._lanes.submit(job.key, lambda job=job: self._run(job))
            count += 1
        if count:
            log.info("recovering %d message(s) accepted before the restart", count)
        return count

    async def drain(self, timeout: float) -> bool:
        """Stop taking new work into lanes, finish what is queued within `timeout`, then cancel
        the rest (it stays pending in the store and is answered at the next start)."""
        self._closing = True
        finished = await self._lanes.join(timeout)
        if not finished:
            log.warning("drain timeout after %.1fs: unfinished messages stay pending", timeout)
        await self._lanes.close()
        return finished

    async def idle(self, timeout: float | None = None) -> bool:
        return await self._lanes.join(timeout)

    # ------------------------------------------------------------------------------- one job

    async def _run(self, job: _Job) -> None:
        try:
            if not await job.accepted:
                return
        except Exception:
            return  # the store refused it; handle() already logged and told the adapter
        try:
            await self._answer(job)
        except asyncio.CancelledError:
            raise  # shutdown: it stays pending and is answered after the restart
        except Exception:
            # Completed anyway: a message that breaks the bridge must not come back at every start.
            log.exception("session %s: giving up on %s", job.key, job.dedup_id, extra=_context(job))
        await self._store.journal.complete(job.dedup_id)

    async def _answer(self, job: _Job) -> None:
        inbound = job.inbound
        text = inbound.text.strip()
        command = self._commands.parse(inbound, job.key)
        admission = await self._gate.admit(inbound)
        if not admission.allowed:
            self._metrics.message(inbound.platform, "denied")
            log.info("access denied", extra=_context(job))
            if self._gate.denied_reply:
                await self._reply(job, self._gate.denied_reply, kind="notice")
        elif inbound.unsupported and not self._profiles.for_inbound(inbound).sees(inbound):
            self._metrics.message(inbound.platform, "refused")
            await self._reply(job, _unsupported(inbound.unsupported), kind="notice")
        elif command is not None:
            await self._reply(job, await self._commands.run(command), kind="notice")
        elif len(text) > self._settings.max_input_chars:
            self._metrics.message(inbound.platform, "refused")
            await self._reply(
                job, _too_long(len(text), self._settings.max_input_chars), kind="notice"
            )
        elif limited := await self._gate.limit(inbound):
            self._metrics.message(inbound.platform, "rate_limited")
            if limited.first and self._gate.limited_reply:
                wait = f"{max(1, round(limited.wait)):d}"
                await self._reply(job, self._gate.limited_reply.format(wait=wait), kind="notice")
        elif over := await self._budgets.check(
            inbound, self._profiles.for_inbound(inbound).backend, admission.control
        ):
            self._metrics.message(inbound.platform, "over_budget")
            await self._reply(job, over.reply, kind="notice")
        else:
            await self._ask(job, text)

    async def _ask(self, job: _Job, text: str) -> None:
        inbound = job.inbound
        profile = self._profiles.for_inbound(inbound)
        name = profile.backend
        backend = self._backends[name]
        state = await self._store.sessions.get(job.key, name)
        session = Session(job.key, state)
        metrics = self._metrics
        question = await self._question(job, text, profile, session)
        if question is None:
            return
        live = self._outbox.live(inbound) if can_stream(backend) else None
        # A streamed answer drops the working signal itself, once its first text shows.
        async with self._outbox.working(inbound) if live is None else nullcontext(), self._slot():
            asked = self._clock()
            try:
                if live is not None:
                    pieces = backend.stream(session, question)  # type: ignore[attr-defined]
                    await self._stream(job, profile, session, pieces, live, asked, text)
                    return
                answer = await backend.ask(session, question)
            except InputTooLong as exc:
                metrics.message(inbound.platform, "refused")
                await self._reply(job, _too_long(exc.length, exc.limit), kind="notice")
                return
            except BackendError as exc:
                if exc.state is not None:
                    kept = _keep_generation(exc.state, session)
                    await self._store.sessions.put(job.key, name, kept)
                self._failed(job, name, exc.cause, asked, f"{exc.cause}: {exc}")
                await self._reply(job, self._settings.apology, kind="apology")
                return
            except Exception as exc:  # a bug in a backend must not take the daemon down
                log.exception("session %s backend %s: unexpected error", job.key, name)
                self._failed(job, name, "internal", asked, f"{type(exc).__name__} (a bug)")
                await self._reply(job, self._settings.apology, kind="apology")
                return
            answered = self._clock()
        await self._answered(job, name, session, answer, asked)
        if self._settings.log_message_text:
            log.debug("answer to %s: %r", job.dedup_id, answer.text, extra=_context(job, name))
        sent = await self._reply(job, answer.text, kind="answer")
        if sent:
            metrics.message(inbound.platform, "answered")
            metrics.bridge_added(inbound.platform, asked - job.started, sent - answered)
            log.info("answered", extra=_context(job, name, self._clock() - job.started))
        await self._budgets.spend(
            inbound, name, profile.route, answer, text, delivered=sent is not None
        )

    async def _question(
        self, job: _Job, text: str, profile: Profile, session: Session
    ) -> Question | None:
        """What the backend is asked; None when its picture cannot go (the sender is told why)."""
        try:
            return await self._questions.build(job.inbound, text, profile, session)
        except PictureError as exc:
            self._metrics.message(job.inbound.platform, "refused")
            level = logging.WARNING if isinstance(exc, PictureUnavailable) else logging.INFO
            log.log(level, "picture not passed on: %s", exc, extra=_context(job, profile.backend))
            await self._reply(job, exc.reply, kind="notice")
            return None

    async def _stream(
        self,
        job: _Job,
        profile: Profile,
        session: Session,
        pieces: AsyncIterator[str | Answer],
        live: Live,
        asked: float,
        text: str,
    ) -> None:
        """Show the answer as it is written; a failure before any text arrived raises, to be
        apologised for like any other."""
        inbound = job.inbound
        name = profile.backend
        reply = StreamedReply(
            live, limits=self._outbox.limits(inbound.platform), apology=self._settings.apology,
            empty=EMPTY_ANSWER, working=self._outbox.working(inbound), metrics=self._metrics,
            platform=inbound.platform, started=job.started, clock=self._clock,
        )  # fmt: skip
        try:
            streamed = await reply.run(pieces)
        except BackendError:
            raise
        except Exception as exc:
            self._undelivered(job, exc)
            return
        if streamed.answer is None:
            cause = streamed.failure.cause if streamed.failure else "internal"
            self._failed(job, name, cause, asked, f"{cause}: {streamed.failure} (mid-answer)")
            return
        await self._answered(job, name, session, streamed.answer, asked)
        self._metrics.message(inbound.platform, "answered")
        log.info("answered (streamed)", extra=_context(job, name, self._clock() - job.started))
        await self._budgets.spend(
            inbound, name, profile.route, streamed.answer, text, delivered=True
        )

    async def _answered(
        self, job: _Job, name: str, session: Session, answer: Answer, asked: float
    ) -> None:
        """The backend's side of a good answer: its latency and the session's state."""
        self._metrics.backend_latency.labels(name, "ok").observe(self._clock() - asked)
        if answer.state is not None:
            await self._store.sessions.put(job.key, name, _keep_generation(answer.state, session))
        elif (seen := touch(session.state)) is not None:  # a server-side session: note it daily
            await self._store.sessions.put(job.key, name, seen)

    def _failed(self, job: _Job, backend: str, cause: str, asked: float, detail: str) -> None:
        self._metrics.backend_errors.labels(backend, cause).inc()
        self._metrics.backend_latency.labels(backend, "error").observe(self._clock() - asked)
        self._metrics.message(job.inbound.platform, "failed")
        log.error(
            "backend failed: session=%s backend=%s event=%s cause=%s",
            job.key,
            backend,
            job.dedup_id,
            detail,
            extra={**_context(job, backend, self._clock() - job.started), "cause": cause},
        )

    async def _reply(self, job: _Job, text: str, *, kind: str) -> float | None:
        """Clean, cap, split, send; the clock reading when the adapter accepted it, None if
        sending failed."""
        inbound = job.inbound
        limits = self._outbox.limits(inbound.platform)
        measure = utf16_len if limits.utf16 else len
        parts = await prepare_async(
            text, limits.max_len, measure, self._settings.max_answer_chars
        ) or [EMPTY_ANSWER]
        outbound = Outbound(
            platform=inbound.platform,
            chat_id=inbound.chat_id,
            parts=tuple(parts),
            reply_to=inbound.message_id if inbound.kind is ChatKind.GROUP else None,
            thread_id=inbound.thread_id,
            workspace=inbound.workspace,
            kind=kind,
        )
        try:
            await self._outbox.send(outbound)
        except Exception as exc:
            self._undelivered(job, exc)
            return None
        return self._clock()

    def _undelivered(self, job: _Job, exc: Exception) -> None:
        inbound = job.inbound
        self._metrics.message(inbound.platform, "failed")
        log.error(
            "session %s: reply not delivered to %s chat %s: %s",
            job.key,
            inbound.platform,
            inbound.chat_id,
            brief(exc),
            extra=_context(job),
        )

    # ------------------------------------------------------------------------------- helpers

    def _slot(self) -> _Slot:
        return _Slot(self._slots, self._metrics)

    def _lanes_changed(self, waiting: int, lanes: int) -> None:
        self._metrics.queued.set(waiting)
        self._metrics.sessions.set(lanes)


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


def _context(job: _Job, backend: str | None = None, took: float | None = None) -> dict:
    """The `extra=` of a log line about one message (JSON logs carry these as fields)."""
    return {
        "session_key": job.key,
        "platform": job.inbound.platform,
        "event_id": job.dedup_id,
        "backend": backend,
        "latency_ms": None if took is None else round(took * 1000, 1),
    }


def _keep_generation(state: Mapping[str, object], session: Session) -> dict[str, object]:
    """The backend's new state with what the bridge keeps there: the /reset generation, the
    /model choice and the /forget salt."""
    merged = {**dict(state), **identity(session.state)}
    if session.chosen_model is not None:
        merged["model"] = session.chosen_model
    return merged


def _unsupported(what: str) -> str:
    return f"I can only read text, so I can't take {what}. Please ask in words."


def _too_long(length: int, limit: int) -> str:
    return f"Your message is {length:,} characters long; the limit is {limit:,}. Please shorten it."
