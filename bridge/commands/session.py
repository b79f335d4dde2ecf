"""/start and /help say what the bot can do in this chat (its commands, whether it understands
pictures, its model); /reset starts a fresh conversation on every backend: stored state becomes
`{generation: n}` (plus the /model choice unless `bridge.reset_clears_model`), so a server keyed
by session id gets `key#n`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..backends import Backend
from ..config import BridgeSettings
from ..errors import megabytes
from ..pictures import ACCEPTED_NAMES
from ..profiles import Profiles
from ..store import Store
from ..types import ChatKind, Session, identity
from .model import model_name

if TYPE_CHECKING:
    from . import Invocation

INTRO = "I pass your messages to an AI assistant and post its answers here."
IN_GROUPS = "In a group, mention me or reply to one of my messages."
TEXT_ONLY = "I read text only: pictures and files get no answer here."
RESET_DONE = "Done: the next message starts a fresh conversation."


class SessionCommands:
    def __init__(
        self,
        store: Store,
        backends: Mapping[str, Backend],
        settings: BridgeSettings,
        profiles: Profiles,
    ) -> None:
        self._store = store
        self._backends = backends
        self._settings = settings
        self._profiles = profiles

    async def help(self, invocation: Invocation) -> str:
        profile = self._profiles.for_inbound(invocation.inbound)
        commands = ["/help shows this message", "/reset starts a fresh conversation"]
        if profile.models:
            commands.append(f"/model shows or switches the model ({', '.join(profile.models)})")
        commands.append("/forget deletes what I keep about you")
        intro = self._settings.help_text or INTRO
        lines = [intro, "", *commands, "", self._pictures(profile.vision)]
        if profile.model_option is not None:
            state = await self._store.sessions.get(invocation.key, profile.backend)
            lines.append(f"Model: {model_name(profile, Session(invocation.key, state))}.")
        if invocation.inbound.kind is ChatKind.GROUP:
            lines += ["", IN_GROUPS]
        return "\n".join(lines)

    def _pictures(self, vision: bool) -> str:
        if not vision:
            return TEXT_ONLY
        limit = megabytes(self._settings.max_image_bytes)
        return (
            f"Pictures: send one ({ACCEPTED_NAMES}; up to {limit}) "
            "with your question as its caption, and I'll look at it."
        )

    async def reset(self, invocation: Invocation) -> str:
        sessions = self._store.sessions
        for name in self._backends:
            state = await sessions.get(invocation.key, name)
            fresh: dict[str, object] = {
                **identity(state),
                "generation": int(state.get("generation", 0)) + 1,
            }
            if "model" in state and not self._settings.reset_clears_model:
                fresh["model"] = state["model"]
            await sessions.put(invocation.key, name, fresh)
        return RESET_DONE
