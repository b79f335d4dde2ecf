"""/forget: anyone may have the bridge delete what it holds about them (see `bridge/forget.py`);
the reply says what went, and that a server keeping its own history gets a new session id."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..forget import Forgetter
from ..people import Account
from ..types import dedup_id

if TYPE_CHECKING:
    from . import Invocation

NEW_ID = (
    "An assistant that keeps its own history (nanobot, NexusGPT, Nugen) gets a new conversation "
    "id from now on, so the old conversation is never used again; that server may still hold "
    "it, and the bridge cannot delete it there."
)


class PrivacyCommands:
    def __init__(self, forgetter: Forgetter) -> None:
        self._forgetter = forgetter

    async def forget(self, invocation: Invocation) -> str:
        inbound = invocation.inbound
        done = await self._forgetter.forget(Account.of(inbound), keep=dedup_id(inbound))
        deleted = [
            _count(done.sessions, "conversation", "history and thread ids"),
            _count(done.counters, "usage counter"),
            _count(done.pending, "message{s} waiting to be answered", "its text"),
        ]
        what = "; ".join(d for d in deleted if d) or "nothing was stored about you"
        return f"Done. Deleted what this bot kept about you: {what}.\n\n{NEW_ID}"


def _count(n: int, noun: str, detail: str = "") -> str:
    if not n:
        return ""
    s = "" if n == 1 else "s"
    text = f"{n} {noun.format(s=s)}" if "{s}" in noun else f"{n} {noun}{s}"
    return f"{text} ({detail})" if detail else text
