"""Who may use the bot, and how often: the operator's guard on their users and their LLM bill.

Admins (`access.admins`) are always let in. Otherwise access rules are tried in order, first match
wins (the same fields as routes); what no rule matches gets `access.default`; and a person an admin
blocked is kept out, read from the store per message so that a block holds in every process at
once. The rate limit counts each person's questions to a backend in fixed windows, in the store,
so that several processes share one count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import AccessSettings, Match
from .people import Account, People
from .store import Control, Store
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
class Admission:
    allowed: bool
    control: Control  # the person's block and personal budget (default: none)


@dataclass(frozen=True, slots=True)
class Limited:
    """Over the rate limit: wait `wait` seconds; `first` only for the first refusal of a window
    (the one the person is told about; the rest are dropped quietly, not answered with spam)."""

    wait: float
    first: bool


class Gate:
    def __init__(
        self,
        settings: AccessSettings,
        store: Store,
        clock: Callable[[], float] = time.time,
        people: People | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._people = people or People(settings)

    @property
    def denied_reply(self) -> str | None:
        return self._settings.denied_reply

    @property
    def limited_reply(self) -> str | None:
        return self._settings.rate_limited_reply

    async def admit(self, inbound: Inbound) -> Admission:
        """Whether the sender may use the bot, with what admins decided about them (read once
        per message, and passed on to the budget check)."""
        account = Account.of(inbound)
        admin = self._people.is_admin(account)  # always let in, never blocked
        if not admin and not self._by_rules(inbound):
            return Admission(False, Control())
        if not self._people.has_admins:  # nobody can block: no store read per message
            return Admission(True, Control())
        control = await self._store.controls.get(self._people.subject(account))
        return Admission(admin or not control.blocked, control)

    def _by_rules(self, inbound: Inbound) -> bool:
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
        who = self._people.subject(Account.of(inbound))
        count = await self._store.counters.hit(who, limit.per_seconds, now)
        if count <= limit.messages:
            return None
        wait = limit.per_seconds - now % limit.per_seconds
        return Limited(wait=wait, first=count == limit.messages + 1)
