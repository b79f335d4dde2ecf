"""The bridge's own commands (`/help`, `/reset`, …): answered here, never sent to a backend.

`Commands` holds one explicit table from a command's name to its handler; each group of commands
lives in a module of its own (`session` for /start, /help and /reset, `model` for /model,
`privacy` for /forget, `admin` for /status, /block, /unblock and /budget) and is added to the
table in `Commands.__init__`. A handler gets the `Invocation` and returns the reply text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from ..backends import Backend
from ..budgets import Budgets
from ..config import AccessSettings, BridgeSettings
from ..forget import Forgetter
from ..metrics import Metrics
from ..people import People
from ..profiles import Profiles
from ..store import Store
from ..types import Addressed, Inbound
from . import admin, model, privacy, session
from .admin import Load, StatusSources


@dataclass(frozen=True, slots=True)
class Invocation:
    inbound: Inbound
    key: str  # the session key
    name: str  # `reset` for "/reset@mybot now"
    args: str  # `now`


Handler = Callable[[Invocation], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Operators:
    """What the operators' commands need, built by the running bridge from its config."""

    people: People
    budgets: Budgets
    forgetter: Forgetter
    status: StatusSources = field(default_factory=StatusSources)

    @classmethod
    def basic(cls, store: Store, settings: BridgeSettings) -> Operators:
        """No admins, no budgets: /forget works, the admin commands refuse everyone."""
        people = People(AccessSettings())
        budgets = Budgets.unlimited(store, Metrics())
        return cls(people, budgets, Forgetter(store, people, settings.session_keys))


def command_of(text: str) -> str | None:
    """`/reset@mybot now` → `reset`; None when the text is not a command."""
    if not text.startswith("/"):
        return None
    word = text[1:].split(maxsplit=1)[0] if len(text) > 1 else ""
    return word.split("@", 1)[0].lower() or None


def arguments_of(text: str) -> str:
    """`/model@mybot  small ` → `small`."""
    parts = text.split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


class Commands:
    def __init__(
        self,
        *,
        store: Store,
        backends: Mapping[str, Backend],
        settings: BridgeSettings,
        profiles: Profiles,
        operators: Operators | None = None,
    ) -> None:
        conversation = session.SessionCommands(store, backends, settings, profiles)
        models = model.ModelCommands(store, profiles)
        ops = operators or Operators.basic(store, settings)
        mine = privacy.PrivacyCommands(ops.forgetter)
        admins = admin.AdminCommands(store, ops.people, ops.budgets, ops.status)
        self._table: dict[str, Handler] = {
            "start": conversation.help,
            "help": conversation.help,
            "reset": conversation.reset,
            "model": models.model,
            "forget": mine.forget,
            "status": admins.status,
            "block": admins.block,
            "unblock": admins.unblock,
            "budget": admins.budget,
        }

    def parse(self, inbound: Inbound, key: str) -> Invocation | None:
        """The invocation when the text is one of the bridge's commands (or a bare @mention,
        which gets the help); None otherwise (an unknown `/word` goes to the backend like any
        other text)."""
        text = inbound.text.strip()
        if not text and inbound.addressed is Addressed.MENTION:
            return Invocation(inbound, key, "help", "")  # a bare @mention: what can you do?
        name = command_of(text)
        if name is None or name not in self._table:
            return None
        return Invocation(inbound, key, name, arguments_of(text))

    async def run(self, invocation: Invocation) -> str:
        return await self._table[invocation.name](invocation)


__all__ = [
    "Commands",
    "Invocation",
    "Load",
    "Operators",
    "StatusSources",
    "arguments_of",
    "command_of",
]
