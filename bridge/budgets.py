"""Daily token budgets: each person's and each group chat's tokens are counted per day in the
store (so every process shares one count) and a question is refused, before it reaches a backend,
once the day's count has reached the budget; the answer that crosses it is still delivered.

Tokens are what the backend reports (`Answer.usage`); a backend that reports none is estimated at
one token per 4 characters of the question and of the answer (a floor: history the backend adds
to the prompt is not seen here). The day starts at midnight in `access.budgets.timezone`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from .config import AccessSettings
from .config import Budgets as BudgetSettings
from .metrics import Metrics
from .people import Account, People
from .session import qualify
from .store import Control, Store
from .types import Answer, ChatKind, Inbound

log = logging.getLogger("bridge.budgets")

EVERYONE = "all"  # the subject counting every token of the day, for /status
ALL_BACKENDS = "*"
CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class OverBudget:
    """A refused question: what to tell the person, and whose budget it was."""

    reply: str
    scope: str  # "person" or "chat"


@dataclass(frozen=True, slots=True)
class _Limit:
    subject: str
    scope: str  # ALL_BACKENDS or a backend name
    tokens: int
    kind: str  # "person" or "chat"


class Budgets:
    def __init__(
        self,
        settings: BudgetSettings,
        people: People,
        store: Store,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._people = people
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._zone = ZoneInfo(settings.timezone)

    @classmethod
    def unlimited(cls, store: Store, metrics: Metrics) -> Budgets:
        """No configured budget (admins' personal budgets still apply); tokens still counted."""
        return cls(BudgetSettings(), People(AccessSettings()), store, metrics)

    @property
    def timezone(self) -> str:
        return self._settings.timezone

    def day(self, now: float | None = None) -> str:
        """The current day in the budgets' time zone, as an ISO date."""
        return (
            datetime.fromtimestamp(self._clock() if now is None else now, self._zone)
            .date()
            .isoformat()
        )

    @property
    def counting(self) -> bool:
        """Budgets are configured, or admins may set personal ones and ask for today's tokens:
        only then is the store asked and written per message."""
        return self._settings.configured or self._people.has_admins

    async def check(
        self, inbound: Inbound, backend: str, control: Control | None = None
    ) -> OverBudget | None:
        """None if the sender (and their group chat) may still spend tokens on `backend` today.
        `control`: what admins decided about the sender, when the caller has read it already."""
        if not self.counting:
            return None
        if control is None and self._people.has_admins:
            control = await self._store.controls.get(self._people.subject(Account.of(inbound)))
        limits = self._limits(inbound, backend, control.budget if control else None)
        if not limits:
            return None
        now = self._clock()
        subjects = list(dict.fromkeys(limit.subject for limit in limits))
        counts = await self._store.counters.tokens(self.day(now), subjects)
        for limit in limits:
            if counts[limit.subject].get(limit.scope, 0) >= limit.tokens:
                self._metrics.budget_refusals.labels(limit.kind, backend).inc()
                return OverBudget(self._reply(now), limit.kind)
        return None

    async def spend(
        self, inbound: Inbound, backend: str, route: str, answer: Answer, text: str, *,
        delivered: bool,
    ) -> int:  # fmt: skip
        """Count the tokens of one answer (reported, or estimated); the total."""
        used, source = _tokens(answer, text)
        outcome = "answered" if delivered else "undelivered"
        for direction, count in zip(("input", "output"), used, strict=True):
            if count:
                self._metrics.tokens.labels(backend, route, direction, outcome, source).inc(count)
        total = sum(used)
        if not total or not self.counting:
            return total
        person = self._people.subject(Account.of(inbound))
        subjects = [person, EVERYONE]
        if (chat := _chat(inbound)) is not None:
            subjects.append(chat)
        pairs = [(s, scope) for s in subjects for scope in (ALL_BACKENDS, backend)]
        try:
            await self._store.counters.add(self.day(), pairs, total)
        except Exception as exc:  # the answer is out; a store hiccup must not look like a failure
            log.error("tokens of %s not counted (%d on %s): %r", person, total, backend, exc)
        return total

    async def today(self) -> dict[str, int]:
        """Today's tokens over every person: per backend, and `*` for the total."""
        counts = await self._store.counters.tokens(self.day(), [EVERYONE])
        return counts[EVERYONE]

    def _limits(self, inbound: Inbound, backend: str, own: int | None) -> list[_Limit]:
        cfg = self._settings
        per_backend = cfg.backends.get(backend)
        person = self._people.subject(Account.of(inbound))
        limits = []
        person_total = own if own is not None else cfg.person_daily
        if person_total is not None:
            limits.append(_Limit(person, ALL_BACKENDS, person_total, "person"))
        if per_backend is not None and per_backend.person_daily is not None:
            limits.append(_Limit(person, backend, per_backend.person_daily, "person"))
        chat = _chat(inbound)
        if chat is not None:
            if cfg.chat_daily is not None:
                limits.append(_Limit(chat, ALL_BACKENDS, cfg.chat_daily, "chat"))
            if per_backend is not None and per_backend.chat_daily is not None:
                limits.append(_Limit(chat, backend, per_backend.chat_daily, "chat"))
        return limits

    def _reply(self, now: float) -> str:
        local = datetime.fromtimestamp(now, self._zone)
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time())
        resets = midnight.replace(tzinfo=self._zone)
        wait = resets.timestamp() - now
        return self._settings.reply.format(
            resets=f"00:00 {self._settings.timezone}", wait=duration(wait)
        )


def duration(seconds: float) -> str:
    """`5 h 12 min`, `12 min`, `under a minute`: how long a person waits, in words."""
    minutes = math.ceil(seconds / 60)
    if seconds < 60:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _chat(inbound: Inbound) -> str | None:
    if inbound.kind is not ChatKind.GROUP:
        return None
    return "chat:" + qualify(inbound.platform, inbound.workspace, inbound.group_id)


def _tokens(answer: Answer, text: str) -> tuple[tuple[int, int], str]:
    usage = answer.usage
    if usage.input_tokens is None and usage.output_tokens is None:
        estimate = (
            math.ceil(len(text) / CHARS_PER_TOKEN),
            math.ceil(len(answer.text) / CHARS_PER_TOKEN),
        )
        return estimate, "estimated"
    return (usage.input_tokens or 0, usage.output_tokens or 0), "reported"
