"""The router: the one place that decides what happens to a message.

In order: ignore what is not for the bot, drop a redelivered event, derive the session key, queue
the message in its session's lane, then answer a bridge command or ask the routed backend (with a
global bound on backend calls), store the formatted reply in the journal and hand it to delivery.
A message recovered after a restart resumes at the stage the journal recorded (`bridge.journal`):
an answered one is delivered, not asked again. A failure anywhere becomes the user's short apology
and one precise log line; nothing here raises into an adapter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from .access import Gate, matches
from .backends import Backend
from .commands import Commands
from .config import AccessSettings, BridgeSettings, Route
from .delivery import Deferred, Delivery, Poster
from .errors import BackendError, InputTooLong, NotOwner
from .journal import Entry, Outcome, Reply, SessionWrite, Stages
from .lanes import Lanes
from .metrics import Metrics
from .session import key_for
from .store import Store
from .text import clean, split, utf16_len
from .types import Addressed, Answer, Inbound, Limits

log = logging.getLogger("bridge.router")

EMPTY_ANSWER = "(The assistant returned an empty answer.)"


class Outbox(Poster, Protocol):
    """Where replies go: the running adapters, chosen by `Outbound.platform`."""

    def limits(self, platform: str) -> Limits: ...

    def working(self, inbound: Inbound) -> AbstractAsyncContextManager[None]:
        """Show the platform's "working on it" signal (typing, a reaction) while open."""


@dataclass(slots=True)
class _Job:
    inbound: Inbound
    key: str
    dedup_id: str
    started: float
    entry: Entry | None = None  # recovered: where the journal left it
    backend: str | None = None
    asked: float | None = None  # clock readings around the backend call, for the metrics
    answered: float | None = None
    session: SessionWrite | None = None  # the backend's new state, stored with the reply
    accepted: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def dedup_id(inbound: Inbound) -> str:
    return f"{inbound.platform}:{inbound.workspace or ''}:{inbound.event_id}"


class Router:
    def __init__(
        self,
        *,
        store: Store,
        backends: Mapping[str, Backend],
        outbox: Outbox,
        settings: BridgeSettings,
        routes: Sequence[Route] = (),
        default_backend: str | None = None,
        metrics: Metrics | None = None,
        gate: Gate | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._store = store
        self._backends = backends
        self._outbox = outbox
        self._settings = settings
        self._routes = list(routes)
        self._default = default_backend or next(iter(backends), None)
        self._metrics = metrics or Metrics()
        self._gate = gate or Gate(AccessSettings(), store)  # allows everyone, no limit
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        # Held until `open()`: recovered messages queue first, and nothing is sent before the
        # adapters are up.
        self._lanes = Lanes(on_change=self._lanes_changed, held=True)
        self._commands = Commands(store=store, backends=backends, settings=settings)
        self.delivery = Delivery(store.journal, outbox, settings.delivery, self._metrics)
        self._stages = Stages(store, self.delivery)
        self._closing = False
        self._deferred: set[str] = set()  # sessions whose turn waits for the next start

    # ------------------------------------------------------------------------------- intake

    async def handle(self, inbound: Inbound) -> bool:
        """Take one message from an adapter. Returns once it is durably accepted (True) or
        judged not to need an answer (False: not addressed, empty, or a duplicate)."""
        started = self._clock()
        platform = inbound.platform
        self._metrics.message(platform, "received")
        if inbound.addressed is Addressed.NOT or not (inbound.text.strip() or inbound.unsupported):
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
            log.error("store failed to accept %s: %r", job.dedup_id, exc)
            raise
        job.accepted.set_result(fresh)
        if not fresh:
            self._metrics.message(platform, "duplicate")
            log.info("duplicate event %s dropped", job.dedup_id, extra=_context(job))
        return fresh

    async def recover(self, platforms: Collection[str] | None = None) -> int:
        """Queue the pending messages of `platforms` that no live process is answering (at
        start: everything accepted before the restart and not completed), each to resume at the
        stage the journal recorded."""
        found = await self._stages.recoverable(platforms)
        for entry, inbound in found:
            key = key_for(inbound, self._settings.session_keys)
            job = _Job(inbound, key, entry.event_id, self._clock(), entry=entry)
            job.accepted.set_result(True)
            self._lanes.submit(job.key, lambda job=job: self._run(job))
            self._metrics.recovered.labels(str(entry.stage)).inc()
        if found:
            log.info("recovering %d pending message(s)", len(found))
        return len(found)

    def open(self) -> None:
        """Let the lanes run (once the adapters are up)."""
        self._lanes.release()

    async def drain(self, timeout: float) -> bool:
        """Stop taking new work into lanes, finish what is queued within `timeout`, then cancel
        the rest (it stays pending in the store and is answered at the next start)."""
        self._closing = True
        self.delivery.stop()  # a reply waiting to retry stays pending for the next start
        finished = await self._lanes.join(timeout if self._lanes.released else 0)
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
        if job.key in self._deferred:
            return  # an earlier message of this session waits for the restart: so does this one
        try:
            await self._turn(job)
        except asyncio.CancelledError:
            raise  # shutdown: it stays pending and is answered after the restart
        except Deferred:
            self._deferred.add(job.key)
        except NotOwner as exc:
            log.warning("session %s: %s; left to its new owner", job.key, exc, extra=_context(job))
        except Exception:
            # Completed anyway: a message that breaks the bridge must not come back at every start.
            log.exception("session %s: giving up on %s", job.key, job.dedup_id, extra=_context(job))
            await self._stages.complete(job.dedup_id, Outcome.FAILED)

    async def _turn(self, job: _Job) -> None:
        """Answer (unless the journal has the reply already), store the reply, deliver it."""
        if job.entry is not None and job.entry.delivering:
            outcome = await self._stages.resume(job.entry, job.inbound)
        else:
            reply = await self._answer(job)
            if reply is None:
                await self._stages.complete(job.dedup_id, Outcome.SILENT)
                return
            outcome = await self._stages.answered(job.dedup_id, job.inbound, reply, job.session)
        if outcome is Outcome.ANSWERED:
            platform = job.inbound.platform
            self._metrics.message(platform, "answered")
            if job.asked is not None and job.answered is not None:
                done = self._clock()
                self._metrics.bridge_added(platform, job.asked - job.started, done - job.answered)
            log.info("answered", extra=_context(job, job.backend, self._clock() - job.started))

    async def _answer(self, job: _Job) -> Reply | None:
        """The reply to post, or None when the message gets none."""
        inbound = job.inbound
        text = inbound.text.strip()
        command = self._commands.parse(inbound, job.key)
        if not self._gate.allows(inbound):
            self._metrics.message(inbound.platform, "denied")
            log.info("access denied", extra=_context(job))
            if self._gate.denied_reply:
                return self._reply(job, self._gate.denied_reply, kind="notice")
        elif inbound.unsupported:
            self._metrics.message(inbound.platform, "refused")
            return self._reply(job, _unsupported(inbound.unsupported), kind="notice")
        elif command is not None:
            return self._reply(job, await self._commands.run(command), kind="notice")
        elif len(text) > self._settings.max_input_chars:
            self._metrics.message(inbound.platform, "refused")
            return self._reply(
                job, _too_long(len(text), self._settings.max_input_chars), kind="notice"
            )
        elif limited := await self._gate.limit(inbound):
            self._metrics.message(inbound.platform, "rate_limited")
            if limited.first and self._gate.limited_reply:
                wait = f"{max(1, round(limited.wait)):d}"
                return self._reply(job, self._gate.limited_reply.format(wait=wait), kind="notice")
        else:
            return await self._ask(job, text)
        return None

    async def _ask(self, job: _Job, text: str) -> Reply:
        inbound = job.inbound
        job.backend = name = self.backend_for(inbound)
        backend = self._backends[name]
        # Asked before: a crash cut that call short, and the question may have reached the API.
        again = job.entry is not None and job.entry.asks > 0
        session = await self._stages.asking(job.dedup_id, job.key, name)
        metrics = self._metrics
        async with self._outbox.working(inbound), self._slot():
            job.asked = asked = self._clock()
            try:
                if again:
                    answer = await backend.resume(session, text)
                else:
                    answer = await backend.ask(session, text)
            except InputTooLong as exc:
                metrics.message(inbound.platform, "refused")
                return self._reply(job, _too_long(exc.length, exc.limit), kind="notice")
            except BackendError as exc:
                if exc.state is not None:
                    job.session = SessionWrite(job.key, name, session.with_generation(exc.state))
                self._failed(job, name, exc.cause, asked, f"{exc.cause}: {exc}")
                return self._reply(job, self._settings.apology, kind="apology")
            except Exception as exc:  # a bug in a backend must not take the daemon down
                log.exception("session %s backend %s: unexpected error", job.key, name)
                self._failed(job, name, "internal", asked, repr(exc))
                return self._reply(job, self._settings.apology, kind="apology")
            job.answered = self._clock()
        metrics.backend_latency.labels(name, "ok").observe(job.answered - asked)
        self._count_tokens(name, answer)
        if answer.reasked:
            metrics.reasked.labels(name).inc()
            log.warning(
                "session %s: asked backend %s again after a restart (a second user turn: the "
                "API offers no way to find the first one's answer)",
                job.key,
                name,
                extra=_context(job, name),
            )
        if answer.state is not None:
            job.session = SessionWrite(job.key, name, session.with_generation(answer.state))
        return self._reply(job, clean(answer.text) or EMPTY_ANSWER, kind="answer")

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

    def _reply(self, job: _Job, text: str, *, kind: str) -> Reply:
        """`text` split for the platform: what the journal stores and delivery posts."""
        limits = self._outbox.limits(job.inbound.platform)
        return Reply(tuple(split(text, limits.max_len, utf16_len if limits.utf16 else len)), kind)

    # ------------------------------------------------------------------------------- helpers

    def backend_for(self, inbound: Inbound) -> str:
        for route in self._routes:
            if matches(route, inbound):
                return route.backend
        if self._default is None:
            raise LookupError("no backend configured")
        return self._default

    def _slot(self) -> _Slot:
        return _Slot(self._slots, self._metrics)

    def _count_tokens(self, backend: str, answer: Answer) -> None:
        if answer.usage.input_tokens:
            self._metrics.tokens.labels(backend, "input").inc(answer.usage.input_tokens)
        if answer.usage.output_tokens:
            self._metrics.tokens.labels(backend, "output").inc(answer.usage.output_tokens)

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


def _unsupported(what: str) -> str:
    return f"I can only read text, so I can't take {what}. Please ask in words."


def _too_long(length: int, limit: int) -> str:
    return f"Your message is {length:,} characters long; the limit is {limit:,}. Please shorten it."
