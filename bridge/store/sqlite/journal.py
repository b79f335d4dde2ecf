"""The journal in SQLite: one row per accepted event, remembered until `expires` (dedup), pending
while `payload` is set, with the stage it reached (see `bridge.journal`).

One process owns the file (the store's lock), so every pending row is this process's own;
`pending` hands each out once per open store (accepted ones are already with the router).
Each write is one autocommitted statement; where a step is two stages (answered + sending part 0,
sent part i + sending part i+1) it is still one statement.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import NotOwner
from ...journal import Entry, Outcome, Reply, SessionWrite, Shown, Stage
from .. import _forgotten, sender_of

if TYPE_CHECKING:
    from .. import Sender
    from . import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    expires REAL NOT NULL,
    accepted REAL NOT NULL,
    payload TEXT
);
CREATE INDEX IF NOT EXISTS events_expires ON events (expires);
CREATE INDEX IF NOT EXISTS events_pending ON events (accepted) WHERE payload IS NOT NULL;
"""

# Columns added with the delivery journal; a state file from before gains them when opened (its
# pending rows read as `accepted`, which is what they were).
COLUMNS = {
    "stage": "TEXT",
    "asks": "INTEGER NOT NULL DEFAULT 0",
    "reply": "TEXT",
    "session": "TEXT",
    "sent": "TEXT",
    "sending": "REAL",
    "outcome": "TEXT",
    "stream": "TEXT",  # a streamed answer's `Shown`, while asked
}

_PURGE_EVERY = 60.0  # seconds between sweeps of expired event ids
_PENDING = "WHERE event_id = ? AND payload IS NOT NULL"


class SqliteJournal:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._next_purge = 0.0
        self._taken: set[str] = set()  # pending ids this process already has in hand

    async def migrate(self) -> None:
        rows = await self._store.db.execute_fetchall("PRAGMA table_info(events)")
        have = {row[1] for row in rows}
        for name, kind in COLUMNS.items():
            if name not in have:
                await self._store.db.execute(f"ALTER TABLE events ADD COLUMN {name} {kind}")

    async def accept(self, event_id: str, payload: Mapping[str, Any], ttl: float) -> bool:
        db = self._store.db
        now = self._store.clock()
        if now >= self._next_purge:
            self._next_purge = now + _PURGE_EVERY
            await db.execute("DELETE FROM events WHERE expires < ? AND payload IS NULL", (now,))
        # New, or seen so long ago that it expired: (re)accept. Otherwise a duplicate.
        cursor = await db.execute(
            "INSERT INTO events (event_id, expires, accepted, payload, stage, asks)"
            " VALUES (?, ?, ?, ?, 'accepted', 0)"
            " ON CONFLICT (event_id) DO UPDATE SET expires = excluded.expires,"
            " accepted = excluded.accepted, payload = excluded.payload, stage = 'accepted',"
            " asks = 0, reply = NULL, session = NULL, sent = NULL, sending = NULL, outcome = NULL,"
            " stream = NULL"
            " WHERE events.expires < excluded.accepted",
            (event_id, now + ttl, now, json.dumps(dict(payload))),
        )
        if cursor.rowcount == 1:
            self._taken.add(event_id)
            return True
        return False

    async def asked(
        self, event_id: str, session_key: str, backend: str
    ) -> tuple[int, dict[str, Any]]:
        store = self._store
        # The session's state as `sessions.get` reads it: its row, else a /forget salt.
        rows = await store.db.execute_fetchall(
            f"UPDATE events SET stage = 'asked', asks = asks + 1 {_PENDING} RETURNING asks,"
            " (SELECT value FROM state WHERE session_key = ? AND backend = ?),"
            " (SELECT salt FROM forgotten WHERE tag = ?)",
            (event_id, session_key, backend, _forgotten.tag(store.forget_secret, session_key)),
        )
        if not rows:
            raise NotOwner(f"{event_id} is not pending")
        asks, state, salt = rows[0]
        if state is not None:
            return int(asks), json.loads(state)
        return int(asks), {"salt": salt} if salt is not None else {}

    async def answered(
        self, event_id: str, reply: Reply, session: SessionWrite | None = None
    ) -> float | None:
        sending = self._store.clock() if len(reply.parts) > len(reply.posted) else None
        cursor = await self._store.db.execute(
            "UPDATE events SET stage = 'answered', reply = ?, session = ?, sent = ?,"
            f" sending = ? {_PENDING}",
            (
                json.dumps(reply.to_dict()),
                json.dumps(session.to_dict()) if session else None,
                json.dumps(list(reply.posted)),
                sending,
                event_id,
            ),
        )
        _changed(cursor.rowcount, event_id)
        return sending

    async def streaming(self, event_id: str, shown: Shown) -> None:
        cursor = await self._store.db.execute(
            f"UPDATE events SET stream = ? {_PENDING} AND stage = 'asked'",
            (json.dumps(shown.to_dict()), event_id),
        )
        _changed(cursor.rowcount, event_id)

    async def sending(self, event_id: str, part: int, at: float | None) -> None:
        cursor = await self._store.db.execute(
            f"UPDATE events SET sending = ? {_PENDING} AND json_array_length(sent) = ?",
            (at, event_id, part),
        )
        _changed(cursor.rowcount, event_id)

    async def sent(self, event_id: str, part: int, message_id: str) -> float:
        now = self._store.clock()
        cursor = await self._store.db.execute(
            "UPDATE events SET sent = json_insert(sent, '$[#]', ?), sending = ?"
            f" {_PENDING} AND json_array_length(sent) = ?",
            (message_id, now, event_id, part),
        )
        _changed(cursor.rowcount, event_id)
        return now

    async def complete(self, event_id: str, outcome: Outcome) -> None:
        await self._store.db.execute(
            "UPDATE events SET payload = NULL, stage = NULL, reply = NULL, session = NULL,"
            " sent = NULL, sending = NULL, stream = NULL, outcome = ? WHERE event_id = ?",
            (str(outcome), event_id),
        )
        self._taken.discard(event_id)

    async def pending(self, platforms: Collection[str] | None = None) -> list[Entry]:
        query = (
            "SELECT event_id, payload, stage, asks, reply, session, sent, sending, accepted,"
            " stream FROM events WHERE payload IS NOT NULL"
        )
        args: tuple[str, ...] = ()
        if platforms is not None:
            marks = ", ".join("?" * len(platforms))
            query += f" AND json_extract(payload, '$.platform') IN ({marks})"
            args = tuple(platforms)
        rows = await self._store.db.execute_fetchall(query + " ORDER BY accepted, rowid", args)
        found = []
        for row in rows:
            if row[0] in self._taken:
                continue
            self._taken.add(row[0])
            try:
                found.append(_entry(*row))
            except (ValueError, KeyError, TypeError):  # the router completes it as unreadable
                found.append(Entry(event_id=row[0], payload={}))
        return found

    async def forget(self, senders: Sequence[Sender], keep: str | None = None) -> int:
        db = self._store.db
        wanted = set(senders)
        # Pending messages are few (those under way, or left by a crash): filter them here.
        rows = await db.execute_fetchall(
            "SELECT event_id, payload FROM events WHERE payload IS NOT NULL AND event_id != ?"
            " AND accepted <= coalesce((SELECT accepted FROM events WHERE event_id = ?), 1e300)",
            (keep or "", keep or ""),
        )
        drop = [event for event, payload in rows if sender_of(json.loads(payload)) in wanted]
        if drop:
            marks = ",".join("?" * len(drop))
            await db.execute(
                "UPDATE events SET payload = NULL, stage = NULL, reply = NULL, session = NULL,"
                f" sent = NULL, sending = NULL, stream = NULL, outcome = ?"
                f" WHERE event_id IN ({marks})",
                (str(Outcome.FORGOTTEN), *drop),
            )
            self._taken.difference_update(drop)
        return len(drop)

    async def purge(self, now: float) -> int:
        cursor = await self._store.db.execute(
            "DELETE FROM events WHERE expires < ? AND payload IS NULL", (now,)
        )
        return cursor.rowcount

    async def outcome(self, event_id: str) -> str | None:
        """How a completed message ended (None while pending or unknown); for tests and tools."""
        rows = await self._store.db.execute_fetchall(
            "SELECT outcome FROM events WHERE event_id = ?", (event_id,)
        )
        return rows[0][0] if rows else None


def _changed(rowcount: int, event_id: str) -> None:
    if rowcount != 1:
        raise NotOwner(f"{event_id} is not pending at that stage")


def _entry(
    event_id: str,
    payload: str,
    stage: str | None,
    asks: int,
    reply: str | None,
    session: str | None,
    sent: str | None,
    sending: float | None,
    accepted: float,
    stream: str | None,
) -> Entry:
    return Entry(
        event_id=event_id,
        payload=json.loads(payload),
        stage=Stage(stage or "accepted"),
        asks=int(asks or 0),
        reply=Reply.from_dict(json.loads(reply)) if reply else None,
        session=SessionWrite.from_dict(json.loads(session)) if session else None,
        sent=tuple(json.loads(sent)) if sent else (),
        sending=sending,
        accepted=accepted,
        stream=Shown.from_dict(json.loads(stream)) if stream else None,
    )
