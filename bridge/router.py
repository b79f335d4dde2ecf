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
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from .access import Gate, matches
from .backends import Backend
from .commands import Commands
from .config import AccessSettings, BridgeSettings, Route
from .errors import BackendError, InputTooLong, NotOwner
from .lanes import Lanes
from .metrics import Metrics
from .session import key_for
from .store import Store
from .text import clean, split, utf16_len
from .types import Addressed, Answer, ChatKind, Inbound, Limits, Outbound, Session

log = logging.getLogger("bridge.router")

EMPTY_ANSWER = "(The assistant returned an empty answer.)"


class Outbox(Protocol):
    """Where replies go: the running adapters, chosen by `Outbound.platform`."""

    def limits(self, platform: str) -> Limits: ...

    async def send(self, outbound: Outbound) -> None: ...

    def working(self, inbound: Inbound) -> AbstractAsyncContextManager[None]:
        """Show the platform's "working on it" signal (typing, a reaction) while open."""


@dataclass(slots=True)
class _Job:
    inbound: Inbound
    key: str
    dedup_id: str
    started: float
    accepted: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def dedup_id(inbound: Inbound) -> str:
    return f"{inbound.platform}:{inbound.workspace or ''}:{inbound.event_id}"


def needs_answer(inbound: Inbound) -> bool:
    """Addressed to the bot and not empty (a photo alone still gets its short reply)."""
    return inbound.addressed is not Addressed.NOT and bool(
        inbound.text.strip() or inbound.unsupported
    )


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
        self._lanes = Lanes(on_change=self._lanes_changed)
        self._commands = Commands(store=store, backends=backends, settings=settings)
        self._closing = False

    # ------------------------------------------------------------------------------- intake

    async def handle(self, inbound: Inbound) -> bool:
        """Take one message from an adapter. Returns once it is durably accepted (True) or
        judged not to need an answer (False: not addressed, empty, or a duplicate)."""
        started = self._clock()
        platform = inbound.platform
        self._metrics.message(platform, "received")
        if not needs_answer(inbound):
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

    async def recover(self) -> int:
        """Queue every message accepted before a restart and never answered."""
        count = 0
        for payload in await self._store.journal.pending():
            try:
                inbound = Inbound.from_dict(payload)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("pending message unreadable, dropped: %r", exc)
                continue
            self.take(inbound, dedup_id(inbound))
            count += 1
        if count:
            log.info("recovering %d message(s) accepted before the restart", count)
        return count

    def take(self, inbound: Inbound, event_id: str) -> asyncio.Future[None]:
        """Queue a message accepted before (recovered, or claimed by a worker from the work
        queue) in its session's lane. The future is done once its turn has ended, however."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closing:
            done.set_result(None)  # left pending: the next start (or holder) answers it
            return done
        job = _Job(inbound, key_for(inbound, self._settings.session_keys), event_id, self._clock())
        job.accepted.set_result(True)

        async def turn() -> None:
            try:
                await self._run(job)
            finally:
                if not done.done():
                    done.set_result(None)

        self._lanes.submit(job.key, turn)
        return done

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
        except NotOwner as exc:
            log.warning("session %s: %s; left to its new owner", job.key, exc, extra=_context(job))
            return
        except Exception:
            # Completed anyway: a message that breaks the bridge must not come back at every start.
            log.exception("session %s: giving up on %s", job.key, job.dedup_id, extra=_context(job))
        await self._store.journal.complete(job.dedup_id)

    async def _answer(self, job: _Job) -> None:
        inbound = job.inbound
        text = inbound.text.strip()
        command = self._commands.parse(inbound, job.key)
        if not self._gate.allows(inbound):
            self._metrics.message(inbound.platform, "denied")
            log.info("access denied", extra=_context(job))
            if self._gate.denied_reply:
                await self._reply(job, self._gate.denied_reply, kind="notice")
        elif inbound.unsupported:
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
        else:
            await self._ask(job, text)

    async def _ask(self, job: _Job, text: str) -> None:
        inbound = job.inbound
        name = self.backend_for(inbound)
        backend = self._backends[name]
        state = await self._store.sessions.get(job.key, name)
        session = Session(job.key, state)
        metrics = self._metrics
        async with self._outbox.working(inbound), self._slot():
            asked = self._clock()
            try:
                answer = await backend.ask(session, text)
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
                self._failed(job, name, "internal", asked, repr(exc))
                await self._reply(job, self._settings.apology, kind="apology")
                return
            answered = self._clock()
        metrics.backend_latency.labels(name, "ok").observe(answered - asked)
        self._count_tokens(name, answer)
        if answer.state is not None:
            await self._store.sessions.put(job.key, name, _keep_generation(answer.state, session))
        sent = await self._reply(job, clean(answer.text) or EMPTY_ANSWER, kind="answer")
        if sent:
            metrics.message(inbound.platform, "answered")
            metrics.bridge_added(inbound.platform, asked - job.started, sent - answered)
            log.info("answered", extra=_context(job, name, self._clock() - job.started))

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
        """Split, send; the clock reading when the adapter accepted it, None if sending failed."""
        inbound = job.inbound
        limits = self._outbox.limits(inbound.platform)
        parts = split(text, limits.max_len, utf16_len if limits.utf16 else len)
        outbound = Outbound(
            platform=inbound.platform,
            chat_id=inbound.chat_id,
            parts=tuple(parts),
            reply_to=inbound.message_id if inbound.kind is ChatKind.GROUP else None,
            thread_id=inbound.thread_id,
            workspace=inbound.workspace,
            kind=kind,
            event_id=job.dedup_id,
        )
        try:
            await self._outbox.send(outbound)
        except Exception as exc:
            self._metrics.message(inbound.platform, "failed")
            log.error(
                "session %s: reply not delivered to %s chat %s: %r",
                job.key,
                inbound.platform,
                inbound.chat_id,
                exc,
                extra=_context(job),
            )
            return None
        return self._clock()

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


def _keep_generation(state: Mapping[str, object], session: Session) -> dict[str, object]:
    merged = dict(state)
    if session.generation:
        merged["generation"] = session.generation
    return merged


def _unsupported(what: str) -> str:
    return f"I can only read text, so I can't take {what}. Please ask in words."


def _too_long(length: int, limit: int) -> str:
    return f"Your message is {length:,} characters long; the limit is {limit:,}. Please shorten it."
