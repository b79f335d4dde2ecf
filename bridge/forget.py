"""Forgetting a person: everything the bridge holds about them goes, in every part of the store.

Their sessions' state on every backend (every DM and group session of each of their linked
accounts, found through the store's owner index), bridge-kept history with it, the text of their
pending messages, and their rate and token counters. Each forgotten session keeps only an
anonymous marker that gives it a new server-side id. Used by /forget and `botbridge forget`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .people import Account, People
from .session import KeyMode, owner_tag
from .store import Store

log = logging.getLogger("bridge.forget")


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What was deleted."""

    sessions: int  # conversations whose state (thread ids, kept history) was deleted
    counters: int  # rate windows and daily token counts
    pending: int  # messages not yet answered whose text was dropped
    controls: int  # admins' blocks and personal budgets (only when asked to)


class Forgetter:
    def __init__(self, store: Store, people: People, key_mode: KeyMode = "qualified") -> None:
        self._store = store
        self._people = people
        self._key_mode = key_mode

    async def forget(
        self, account: Account, *, keep: str | None = None, controls: bool = False
    ) -> Forgotten:
        """Forget the person behind `account`. `keep`: the journal id of the message asking for
        it (its own text goes when it is completed). `controls`: also drop an admin's block and
        personal budget (the operator may; a person asking for it may not lift their own)."""
        store = self._store
        accounts = self._people.accounts(account)
        owners = [owner_tag(a.platform, a.workspace, a.user, self._key_mode) for a in accounts]
        subjects = list(
            dict.fromkeys([self._people.subject(account), *(a.qualified for a in accounts)])
        )
        keys = await store.sessions.forget(list(dict.fromkeys(owners)))
        counters = await store.counters.forget(subjects)
        senders = [(a.platform, a.workspace, a.user) for a in accounts]
        pending = await store.journal.forget(senders, keep)
        dropped = await store.controls.forget(subjects) if controls else 0
        done = Forgotten(len(keys), counters, pending, dropped)
        # Not even the id: the person asked to be forgotten, and logs outlive the store's rows.
        log.info(
            "forgot a %s user: %d session(s), %d counter(s), %d pending message(s), %d control(s)",
            account.platform,
            done.sessions,
            done.counters,
            done.pending,
            done.controls,
        )
        return done
