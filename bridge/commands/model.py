"""/model: which model answers here, and switching it for this session where the operator lists
`models:` (on the route, or on the backend for messages no route matches). The choice is kept in
the session's stored state under `model`, so it survives restarts; /reset keeps it unless
`bridge.reset_clears_model` is set. Elsewhere the model is fixed and /model says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..profiles import Profile, Profiles
from ..store import Store
from ..types import Session

if TYPE_CHECKING:
    from . import Invocation


def model_name(profile: Profile, session: Session) -> str:
    return profile.model(session) or "the server's default"


class ModelCommands:
    def __init__(self, store: Store, profiles: Profiles) -> None:
        self._store = store
        self._profiles = profiles

    async def model(self, invocation: Invocation) -> str:
        profile = self._profiles.for_inbound(invocation.inbound)
        sessions = self._store.sessions
        state = await sessions.get(invocation.key, profile.backend)
        current = model_name(profile, Session(invocation.key, state))
        if not profile.models:
            return f"The model is fixed here: {current}."
        choices = ", ".join(profile.models)
        wanted = invocation.args
        if not wanted:
            return f"Model in use: {current}.\nChoices: {choices}.\nSwitch with /model NAME."
        chosen = _find(wanted, profile.models)
        if chosen is None:
            return f"There is no model called {wanted!r} here. Choices: {choices}."
        await sessions.put(invocation.key, profile.backend, {**state, "model": chosen})
        return f"Done: this conversation now uses {chosen}."


def _find(wanted: str, models: tuple[str, ...]) -> str | None:
    """The listed model named `wanted`: exactly, else ignoring case."""
    if wanted in models:
        return wanted
    return next((m for m in models if m.lower() == wanted.lower()), None)
