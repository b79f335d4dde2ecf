"""Delivery: posting a stored reply's unsent parts, in order, recording each in the journal, until
the platform has them all or refuses them for good.

A part is marked "sending" before its post and "sent" (with the platform's message id) after, so a
restart resumes at the first part not recorded. A send that fails for a passing reason (network,
timeout, 5xx, a rate limit beyond the adapter's budget, a full pool) is tried again with
exponential backoff, in the message's lane, so the session's order holds; the message stays
pending meanwhile, across restarts. A definitive refusal ends it as `undeliverable`. A part that
may already be on the platform (a crash or timeout between its post and its record) is posted
again only where the platform deduplicates it (Discord's nonce, Slack's metadata lookup); where it
cannot (Telegram), the repeat is counted and logged. `/readyz` reads `DeliveryHealth`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .adapter import Health
from .config import DeliverySettings
from .errors import DeliveryFailed, Undeliverable
from .journal import Outcome, Reply, part_key
from .metrics import Metrics
from .store import Journal
from .types import ChatKind, Inbound, Outbound
from .waiting import stopped

log = logging.getLogger("bridge.delivery")


class Poster(Protocol):
    """What delivery needs from the running adapters (the router's outbox)."""

    async def send(self, outbound: Outbound) -> str:
        """Post one part; the platform's message id. Raises `DeliveryFailed` or `Undeliverable`."""

    def dedup_window(self, platform: str) -> float:
        """Seconds after a first attempt during which the platform itself keeps a resent part
        from appearing twice (0: never)."""


class Deferred(Exception):
    """Delivery stopped waiting for its next attempt because the bridge is stopping: the message
    stays pending, reply and all, and is delivered after the restart."""


@dataclass(slots=True)
class _Streak:
    failures: int = 0  # sends failed in a row, over all chats of the platform
    since: float | None = None  # monotonic time of the first of them
    last: str = ""  # the latest failure's cause


class DeliveryHealth:
    """Per platform: not ready while sends keep failing (`unready_failures` in a row, or failing
    for `unready_after` seconds), ready again after any success."""

    def __init__(self, settings: DeliverySettings, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._clock = clock
        self._streaks: dict[str, _Streak] = {}

    def succeeded(self, platform: str) -> None:
        streak = self._streaks.pop(platform, None)
        if streak is not None and self._failing(streak):
            log.info("%s: sends go through again", platform, extra={"platform": platform})

    def failed(self, platform: str, cause: str) -> None:
        streak = self._streaks.setdefault(platform, _Streak())
        streak.failures += 1
        streak.last = cause
        if streak.since is None:
            streak.since = self._clock()

    def health(self, platform: str) -> Health | None:
        """None while sends work; a not-ready `Health` saying why while they keep failing."""
        streak = self._streaks.get(platform)
        if streak is None or not self._failing(streak):
            return None
        age = self._clock() - (streak.since or self._clock())
        return Health(
            False, f"sends failing: {streak.failures} in a row for {age:.0f}s ({streak.last})"
        )

    def _failing(self, streak: _Streak) -> bool:
        settings = self._settings
        age = self._clock() - (streak.since or self._clock())
        return streak.failures >= settings.unready_failures or age >= settings.unready_after


class Delivery:
    def __init__(
        self,
        journal: Journal,
        poster: Poster,
        settings: DeliverySettings,
        metrics: Metrics,
        *,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._journal = journal
        self._poster = poster
        self._settings = settings
        self._metrics = metrics
        self._wall = wall
        self.health = DeliveryHealth(settings, clock)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Stop waiting between attempts: deliveries in backoff end as `Deferred`."""
        self._stopping.set()

    async def deliver(
        self,
        event_id: str,
        inbound: Inbound,
        reply: Reply,
        *,
        sent: int = 0,
        sending: float | None = None,
        recovered: bool = False,
    ) -> Outcome:
        """Post `reply.parts[sent:]` in order and complete the message; its outcome. `sending` is
        the journal's mark for part `sent`: after a restart (`recovered`) it means that part may
        already be on the platform."""
        job = _Job(event_id, inbound, reply)
        maybe_posted = sending if recovered else None
        mark = sending  # the journal's "sending" time for the current part
        for part in range(sent, len(reply.parts)):
            try:
                message_id = await self._post(job, part, maybe_posted, mark)
            except Undeliverable as exc:
                await self._undeliverable(job, exc)
                return Outcome.UNDELIVERABLE
            if part + 1 < len(reply.parts):
                mark = await self._journal.sent(event_id, part, message_id)
                maybe_posted = None
        await self._journal.complete(event_id, reply.outcome)
        return reply.outcome

    async def _post(
        self, job: _Job, part: int, maybe_posted: float | None, mark: float | None
    ) -> str:
        """Post `part` until the platform has it; its message id. `maybe_posted`: when an earlier
        attempt that may have posted it began; `mark`: the journal's "sending" time for it."""
        platform = job.inbound.platform
        failures = 0
        # An attempt (or, after a restart, the mark) that may have posted the part is followed
        # by this one: where the platform cannot deduplicate, that is a possible repeat.
        after_maybe = maybe_posted is not None
        while True:
            if mark is None:
                mark = self._wall()
                await self._journal.sending(job.event_id, part, mark)
            if after_maybe:
                after_maybe = False
                if job.edits(part) is None:  # an edit done twice shows once
                    self._repeating(job, part, maybe_posted or mark)
            try:
                message_id = await self._poster.send(job.outbound(part, maybe_posted is not None))
            except DeliveryFailed as exc:
                failures += 1
                if exc.maybe_sent:
                    maybe_posted = maybe_posted or mark
                    after_maybe = True
                elif maybe_posted is None:
                    # Provably not posted: a crash now must not count it as a repeat.
                    mark = None
                    await self._journal.sending(job.event_id, part, None)
                await self._wait(self._retry_in(job, part, exc, failures))
                continue
            self.health.succeeded(platform)
            return message_id

    def _repeating(self, job: _Job, part: int, since: float) -> None:
        """Count a resend the platform will not deduplicate (Telegram; Discord after its nonce
        window): the part may now appear twice."""
        platform = job.inbound.platform
        if self._wall() - since <= self._poster.dedup_window(platform):
            return
        self._metrics.possibly_repeated.labels(platform).inc()
        log.warning(
            "%s chat %s: part %d of %s may have been posted already and is posted again "
            "(the platform cannot deduplicate it)",
            platform,
            job.inbound.chat_id,
            part + 1,
            job.event_id,
            extra={"platform": platform, "event_id": job.event_id},
        )

    def _retry_in(self, job: _Job, part: int, exc: DeliveryFailed, failures: int) -> float:
        platform = job.inbound.platform
        settings = self._settings
        delay = min(settings.retry_max, settings.retry_initial * 2 ** (failures - 1))
        if exc.retry_after is not None:
            delay = min(settings.retry_max, max(delay, exc.retry_after))
        self.health.failed(platform, exc.detail)
        self._metrics.delivery_retries.labels(platform).inc()
        log.log(
            logging.WARNING if failures == 1 else logging.INFO,
            "%s chat %s: part %d of %s not posted (%s); attempt %d in %.1fs",
            platform,
            job.inbound.chat_id,
            part + 1,
            job.event_id,
            exc.detail,
            failures + 1,
            delay,
            extra={"platform": platform, "event_id": job.event_id},
        )
        return delay

    async def _undeliverable(self, job: _Job, exc: Undeliverable) -> None:
        platform = job.inbound.platform
        self.health.succeeded(platform)  # the platform answered: it is reachable
        self._metrics.message(platform, "undeliverable")
        log.warning(
            "reply undeliverable to %s chat %s, dropped: %s",
            platform,
            job.inbound.chat_id,
            exc,
            extra={"platform": platform, "event_id": job.event_id},
        )
        await self._journal.complete(job.event_id, Outcome.UNDELIVERABLE)

    async def _wait(self, delay: float) -> None:
        if await stopped(self._stopping, delay):
            raise Deferred


@dataclass(frozen=True, slots=True)
class _Job:
    event_id: str
    inbound: Inbound
    reply: Reply

    def edits(self, part: int) -> str | None:
        """The message `part` replaces (the next after those a cut-short stream posted)."""
        return self.reply.edit if part == len(self.reply.posted) else None

    def outbound(self, part: int, retry: bool) -> Outbound:
        inbound, reply = self.inbound, self.reply
        return Outbound(
            platform=inbound.platform,
            chat_id=inbound.chat_id,
            text=reply.parts[part],
            key=part_key(self.event_id, part),
            part=part,
            parts=len(reply.parts),
            reply_to=inbound.message_id if inbound.kind is ChatKind.GROUP else None,
            thread_id=inbound.thread_id,
            workspace=inbound.workspace,
            kind=reply.kind,
            event_id=self.event_id,
            retry=retry,
            edit=self.edits(part),
        )
