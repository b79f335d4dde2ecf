"""Admins' commands: /status, /block USER, /unblock USER, /budget USER [N|off]. Anyone not in
`access.admins` gets one short refusal. Each action is logged at INFO with who did it (ids only,
never message text). What /status reports comes in as small provider callables (`StatusSources`),
filled in by the running bridge, so nothing here reaches into the app.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import __version__
from ..adapter import Health
from ..budgets import ALL_BACKENDS, Budgets, duration
from ..people import Account, BadTarget, People
from ..store import Control, Store

if TYPE_CHECKING:
    from . import Invocation

log = logging.getLogger("bridge.admin")


@dataclass(frozen=True, slots=True)
class Load:
    queued: int  # accepted, waiting for their session's turn or for a backend slot
    in_flight: int  # backend calls under way


@dataclass(frozen=True, slots=True)
class StatusSources:
    """What /status reads, each a callable answering now."""

    version: str = __version__
    uptime: Callable[[], float] = field(default_factory=lambda: _since(time.monotonic()))
    adapters: Callable[[], Mapping[str, Health]] = dict
    circuits: Callable[[], Mapping[str, str]] = dict  # backend → closed, open, half_open
    load: Callable[[], Load] = lambda: Load(0, 0)


class AdminCommands:
    def __init__(
        self, store: Store, people: People, budgets: Budgets, status: StatusSources
    ) -> None:
        self._store = store
        self._people = people
        self._budgets = budgets
        self._status = status

    async def status(self, invocation: Invocation) -> str:
        if refusal := self._refuse(invocation):
            return refusal
        s = self._status
        self._log(invocation, "status")
        adapters = ", ".join(
            f"{name} {'ok' if h.ready else 'DOWN'}" + ("" if h.ready else f" ({h.detail})")
            for name, h in s.adapters().items()
        )
        circuits = ", ".join(f"{name} {state}" for name, state in s.circuits().items())
        load = s.load()
        tokens = await self._budgets.today()
        per_backend = ", ".join(
            f"{name} {count:,}" for name, count in sorted(tokens.items()) if name != ALL_BACKENDS
        )
        return "\n".join(
            [
                f"botbridge {s.version}, up {duration(s.uptime())}",
                f"adapters: {adapters or 'none'}",
                f"backends: {circuits or 'none'}",
                f"queued: {load.queued}, in flight: {load.in_flight}",
                f"tokens today ({self._budgets.timezone}): {tokens.get(ALL_BACKENDS, 0):,}"
                + (f" ({per_backend})" if per_backend else ""),
            ]
        )

    async def block(self, invocation: Invocation) -> str:
        return await self._set_blocked(invocation, blocked=True)

    async def unblock(self, invocation: Invocation) -> str:
        return await self._set_blocked(invocation, blocked=False)

    async def budget(self, invocation: Invocation) -> str:
        """`/budget USER` shows; `/budget USER 5000` sets; `/budget USER off` clears."""
        if refusal := self._refuse(invocation):
            return refusal
        words = invocation.args.split()
        if len(words) not in (1, 2):
            return "Usage: /budget USER [TOKENS|off]"
        try:
            subject = self._subject(words[0], invocation)
        except BadTarget as exc:
            return f"Usage: /budget USER [TOKENS|off]: {exc}"
        control = await self._store.controls.get(subject)
        if len(words) == 2:
            value = words[1].replace(",", "").replace("_", "")
            if value.lower() not in ("off", "default") and not value.isdigit():
                return "The budget is a whole number of tokens, or off."
            budget = None if not value.isdigit() else int(value)
            control = Control(control.blocked, budget)
            await self._store.controls.set(subject, control)
            self._log(invocation, "budget", subject, "off" if budget is None else str(budget))
        used = (await self._store.counters.tokens(self._budgets.day(), [subject]))[subject]
        limit = (
            f"a personal budget of {control.budget:,} tokens a day"
            if control.budget is not None
            else "no personal budget (the configured one applies)"
        )
        return f"{subject}: {used.get(ALL_BACKENDS, 0):,} tokens used today; {limit}."

    async def _set_blocked(self, invocation: Invocation, *, blocked: bool) -> str:
        if refusal := self._refuse(invocation):
            return refusal
        try:
            subject = self._subject(invocation.args, invocation)
        except BadTarget as exc:
            return f"Usage: /{invocation.name} USER: {exc}"
        if blocked and self._people.is_admin(
            self._people.target(invocation.args, _asker(invocation))
        ):
            return "Admins cannot be blocked (remove them from access.admins first)."
        control = await self._store.controls.get(subject)
        await self._store.controls.set(subject, Control(blocked, control.budget))
        self._log(invocation, invocation.name, subject)
        if blocked:
            return f"Blocked {subject}: the bot ignores them until /unblock."
        return f"Unblocked {subject}."

    def _subject(self, text: str, invocation: Invocation) -> str:
        return self._people.subject(self._people.target(text, _asker(invocation)))

    def _refuse(self, invocation: Invocation) -> str | None:
        if self._people.is_admin(_asker(invocation)):
            return None
        log.info(
            "/%s refused: %s is not an admin", invocation.name, _asker(invocation),
            extra={"platform": invocation.inbound.platform},
        )  # fmt: skip
        return f"Sorry, only the bot's admins can use /{invocation.name}."

    def _log(self, invocation: Invocation, action: str, *details: str) -> None:
        log.info(
            "admin %s: %s %s", _asker(invocation), action, " ".join(details),
            extra={"platform": invocation.inbound.platform},
        )  # fmt: skip


def _asker(invocation: Invocation) -> Account:
    return Account.of(invocation.inbound)


def _since(start: float) -> Callable[[], float]:
    return lambda: time.monotonic() - start
