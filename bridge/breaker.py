"""A circuit breaker per backend: after `threshold` failures in a row the backend is not called for
`cooldown` seconds, so users get the apology at once instead of after every timeout and retry.

When the cool-down is over one trial request goes through (half-open): an answer closes the
circuit, a failure opens it for another cool-down. `GuardedBackend` wraps any `Backend` with one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from .backends import Backend, can_stream
from .errors import BackendError, CircuitOpen
from .metrics import Metrics
from .types import Answer, Question, Session

log = logging.getLogger("bridge.breaker")

# Causes that say the backend itself is unwell: no answer in time, 5xx or a refused or cut
# connection, 429 beyond the retries, an answer we cannot read, refused credentials. A request
# it refused (400), a message too long, a request we could not build (`unsendable`) or a bug of
# ours says nothing about its health: one user's odd message must never shut out everyone.
TRIPPING_CAUSES = frozenset({"timeout", "unavailable", "rate_limited", "bad_response", "auth"})


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        threshold: int,
        cooldown: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self._threshold = threshold  # 0 disables the breaker
        self._cooldown = cooldown
        self._clock = clock
        self._on_change = on_change or (lambda state: None)
        self._state = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trial = False  # half-open: the one trial request is under way

    @property
    def state(self) -> str:
        return self._state

    def acquire(self) -> None:
        """Before a call: raise `CircuitOpen` if the backend must not be called now."""
        if self._threshold <= 0:
            return
        if self._state == "open":
            remaining = self._opened_at + self._cooldown - self._clock()
            if remaining > 0:
                raise CircuitOpen(self.name, remaining)
            self._set("half_open")
            log.info("backend %s: cool-down over, trying one request", self.name,
                     extra={"backend": self.name})
        if self._state == "half_open":
            if self._trial:
                raise CircuitOpen(self.name, 0.0)
            self._trial = True

    def succeeded(self) -> None:
        self._failures = 0
        self._trial = False
        if self._state != "closed":
            self._set("closed")
            log.info("backend %s answers again: circuit closed", self.name,
                     extra={"backend": self.name})

    def failed(self) -> None:
        self._failures += 1
        self._trial = False
        if self._threshold > 0 and (
            self._state == "half_open" or self._failures >= self._threshold
        ):
            self._opened_at = self._clock()
            if self._state != "open":
                self._set("open")
                log.warning(
                    "backend %s failed %d time(s) in a row: short-circuited for %.0fs",
                    self.name,
                    self._failures,
                    self._cooldown,
                    extra={"backend": self.name},
                )

    def released(self) -> None:
        """The call ended without a verdict on the backend's health (cancelled, refused input)."""
        self._trial = False

    def _set(self, state: str) -> None:
        self._state = state
        self._on_change(state)


class GuardedBackend:
    """A `Backend` behind a circuit breaker; everything else passes through."""

    def __init__(self, backend: Backend, breaker: CircuitBreaker) -> None:
        self.name = backend.name
        self.backend = backend
        self.breaker = breaker
        self.streaming = can_stream(backend)
        self.stateless = bool(getattr(backend, "stateless", False))

    async def ask(self, session: Session, question: Question) -> Answer:
        return await self._call(self.backend.ask, session, question)

    async def resume(self, session: Session, question: Question) -> Answer:
        return await self._call(self.backend.resume, session, question)  # type: ignore[attr-defined]

    async def _call(
        self,
        call: Callable[[Session, Question], Awaitable[Answer]],
        session: Session,
        question: Question,
    ) -> Answer:
        self.breaker.acquire()
        try:
            answer = await call(session, question)
        except BaseException as exc:
            self._verdict(exc)
            raise
        self.breaker.succeeded()
        return answer

    async def stream(self, session: Session, question: Question) -> AsyncIterator[str | Answer]:
        self.breaker.acquire()
        try:
            async for piece in self.backend.stream(session, question):  # type: ignore[attr-defined]
                yield piece
        except BaseException as exc:  # a stream abandoned by its reader (idle) included
            self._verdict(exc)
            raise
        self.breaker.succeeded()

    def _verdict(self, exc: BaseException) -> None:
        if isinstance(exc, BackendError):
            if exc.cause in TRIPPING_CAUSES:
                self.breaker.failed()
            else:
                self.breaker.released()
        else:
            # A bug of ours (the router logs it) or a cancel (shutdown, or a stream its reader gave
            # up on): no verdict on the backend's health.
            self.breaker.released()

    async def probe(self) -> str:
        return await self.backend.probe()

    async def aclose(self) -> None:
        await self.backend.aclose()


def guard(
    backends: Mapping[str, Backend],
    metrics: Metrics,
    *,
    threshold: int,
    cooldown: float,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Backend]:
    """Each backend behind its own breaker, its state exported as botbridge_circuit_state."""
    guarded: dict[str, Backend] = {}
    for name, backend in backends.items():
        metrics.circuit(name, "closed")

        def on_change(state: str, name: str = name) -> None:
            metrics.circuit(name, state)

        guarded[name] = GuardedBackend(
            backend, CircuitBreaker(name, threshold, cooldown, clock=clock, on_change=on_change)
        )
    return guarded
