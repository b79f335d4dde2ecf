"""Who may use the bot, and how often: the operator's guard on their users and their LLM bill.

Access rules are tried in order, first match wins (the same fields as routes); what no rule
matches gets `access.default`. The rate limit counts each person's questions to a backend in
fixed windows, in the store, so that several processes share one count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import AccessSettings, Match
from .session import qualify
from .store import Store
from .types import Inbound


def matches(rule: Match, inbound: Inbound) -> bool:
    def ok(wanted: str | list[str] | None, actual: str | None) -> bool:
        if wanted is None:
            return True
        return actual is not None and actual in ([wanted] if isinstance(wanted, str) else wanted)

    return (
        ok(rule.platform, inbound.platform)
        and ok(rule.kind, inbound.kind.value)
        and ok(rule.workspace, inbound.workspace)
        and ok(rule.chat, inbound.chat_id)
        and ok(rule.user, inbound.sender_id)
    )


@dataclass(frozen=True, slots=True)
class Limited:
    """Over the rate limit: wait `wait` seconds; `first` only for the first refusal of a window
    (the one the person is told about; the rest are dropped quietly, not answered with spam)."""

    wait: float
    first: bool


class Gate:
    def __init__(
        self, settings: AccessSettings, store: Store, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock

    @property
    def denied_reply(self) -> str | None:
        return self._settings.denied_reply

    @property
    def limited_reply(self) -> str | None:
        return self._settings.rate_limited_reply

    def allows(self, inbound: Inbound) -> bool:
        for rule in self._settings.rules:
            if matches(rule, inbound):
                return rule.allow
        return self._settings.default == "allow"

    async def limit(self, inbound: Inbound) -> Limited | None:
        """Count one question from the sender; a `Limited` if it is over the limit."""
        limit = self._settings.rate_limit
        if limit is None:
            return None
        now = self._clock()
        who = qualify(inbound.platform, inbound.workspace, inbound.sender_id)
        count = await self._store.counters.hit(who, limit.per_seconds, now)
        if count <= limit.messages:
            return None
        wait = limit.per_seconds - now % limit.per_seconds
        return Limited(wait=wait, first=count == limit.messages + 1)
