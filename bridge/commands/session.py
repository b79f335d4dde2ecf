"""/start and /help say what the bot does; /reset starts a fresh conversation on every backend:
stored state becomes `{generation: n}`, so a server keyed by session id gets `key#n`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..backends import Backend
from ..config import BridgeSettings
from ..store import Store
from ..types import identity

if TYPE_CHECKING:
    from . import Invocation

DEFAULT_HELP = (
    "I pass your messages to an AI assistant and post its answers here.\n\n"
    "/help shows this message\n"
    "/reset starts a fresh conversation\n\n"
    "In a group, mention me or reply to one of my messages."
)
RESET_DONE = "Done: the next message starts a fresh conversation."


class SessionCommands:
    def __init__(
        self, store: Store, backends: Mapping[str, Backend], settings: BridgeSettings
    ) -> None:
        self._store = store
        self._backends = backends
        self._settings = settings

    async def help(self, invocation: Invocation) -> str:
        return self._settings.help_text or DEFAULT_HELP

    async def reset(self, invocation: Invocation) -> str:
        sessions = self._store.sessions
        for name in self._backends:
            state = await sessions.get(invocation.key, name)
            generation = int(state.get("generation", 0)) + 1
            await sessions.put(invocation.key, name, {**identity(state), "generation": generation})
        return RESET_DONE
