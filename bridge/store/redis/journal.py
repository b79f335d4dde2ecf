"""The journal on Redis, shared by several processes, each pending message owned by one of them.

Keys (under the store's prefix): `seen:{id}` remembers an event id for its TTL (`SET NX PX` is the
atomic check-and-remember) and keeps the outcome once completed; `entry:{id}` is a pending
message's hash (the stage it reached, its reply, the parts sent, and its `owner`); `owned:{owner}`
indexes each process's pending messages by acceptance time; `owners` lists the processes that
have some. Every process holds a lease (`lease:{owner}`) renewed by a heartbeat; `pending` takes
over, atomically, the messages of owners whose lease expired. Every write checks the owner in the
same script, so a process that stalled past its lease cannot write over its successor's work:
it gets `NotOwner` and lets the message go. On Redis Cluster all these keys share the hash tag
`{journal}` (`TAG`), so each script touches one slot.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import NotOwner
from ...journal import Entry, Outcome, Reply, SessionWrite, Shown, Stage
from .. import sender_of
from . import queued, sessions
from ._batch import together
from .lease import TakeOver

if TYPE_CHECKING:
    from .. import Sender
    from . import RedisStore

# Every key of the single-process journal (entries, seen ids, the owners' indexes and leases) is
# in this tag's hash slot on Redis Cluster: `pending`'s take-over moves entries between owners'
# indexes in one script. (The split roles' journal is spread over their partitions' slots.)
TAG = "journal"

# KEYS: seen, entry, my index, owners. ARGV: ttl ms, payload, now, owner, platform, id.
_ACCEPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('HSET', KEYS[2], 'payload', ARGV[2], 'platform', ARGV[5], 'stage', 'accepted',
             'asks', 0, 'accepted', ARGV[3], 'owner', ARGV[4], 'nsent', 0, 'sent', '')
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[6])
  redis.call('SADD', KEYS[4], ARGV[4])
  return 1
end
return 0
"""

# Every write below starts by checking that the entry exists and is ours (-1 otherwise).
_MINE = "if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return -1 end\n"

# KEYS: entry[, the session's hash, the /forget markers]. ARGV: owner[, backend, the session's
# /forget tag]. {asks[, state or false, salt or false]}: with the state, what `sessions.get` reads.
_ASKED = (
    _MINE
    + """
redis.call('HSET', KEYS[1], 'stage', 'asked')
local asks = redis.call('HINCRBY', KEYS[1], 'asks', 1)
if #KEYS == 1 then return {asks} end
return {asks, redis.call('HGET', KEYS[2], ARGV[2]), redis.call('HGET', KEYS[3], ARGV[3])}
"""
)

# ARGV: owner, reply, session ('' for none), sending ('' for none), parts posted, their ids.
_ANSWERED = (
    _MINE
    + """
redis.call('HSET', KEYS[1], 'stage', 'answered', 'reply', ARGV[2], 'session', ARGV[3],
           'sending', ARGV[4], 'nsent', ARGV[5], 'sent', ARGV[6])
return 1
"""
)

# ARGV: owner, the stream's `Shown`. Only while asked (a stream's record, never after its reply).
_STREAMING = (
    _MINE
    + """
if redis.call('HGET', KEYS[1], 'stage') ~= 'asked' then return -2 end
redis.call('HSET', KEYS[1], 'stream', ARGV[2])
return 1
"""
)

# ARGV: owner, part, sending ('' to clear).
_SENDING = (
    _MINE
    + """
if tonumber(redis.call('HGET', KEYS[1], 'nsent')) ~= tonumber(ARGV[2]) then return -2 end
redis.call('HSET', KEYS[1], 'sending', ARGV[3])
return 1
"""
)

# ARGV: owner, part, message id, now (the next part's "sending").
_SENT = (
    _MINE
    + """
local n = tonumber(redis.call('HGET', KEYS[1], 'nsent'))
if n ~= tonumber(ARGV[2]) then return -2 end
local sent = redis.call('HGET', KEYS[1], 'sent')
if n > 0 then sent = sent .. '\\n' end
redis.call('HSET', KEYS[1], 'sent', sent .. ARGV[3], 'nsent', n + 1, 'sending', ARGV[4])
return 1
"""
)

# KEYS: entry, seen, my index. ARGV: owner, outcome, id.
_COMPLETE = (
    _MINE
    + """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'XX', 'KEEPTTL')
return 1
"""
)


class RedisJournal:
    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._scripts: dict[str, Any] = {}
        self._take_over: TakeOver | None = None

    def _script(self, name: str, source: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self._store.redis.register_script(source)
        return script

    async def _run(self, name: str, source: str, keys: list[str], *args: Any) -> int:
        store = self._store
        result = await self._script(name, source)(
            keys=keys, args=[store.owner, *args], client=store.redis
        )
        return int(result)

    def _owner(self, event_id: str) -> str:
        """Whose the entry must be for this process to write it."""
        return self._store.owner

    def _entry_key(self, event_id: str) -> str:
        return self._store.slot(TAG, "entry", event_id)

    async def _write(self, name: str, source: str, event_id: str, *args: Any) -> int:
        result = await self._run(name, source, [self._entry_key(event_id)], *args)
        if result < 0:
            raise NotOwner(f"{event_id}: not pending here (taken over, forgotten, other stage)")
        return result

    async def accept(self, event_id: str, payload: Mapping[str, Any], ttl: float) -> bool:
        store = self._store
        keys = [
            store.slot(TAG, "seen", event_id),
            self._entry_key(event_id),
            store.slot(TAG, "owned", store.owner),
            store.slot(TAG, "owners"),
        ]
        args = [
            max(1, int(ttl * 1000)),
            json.dumps(dict(payload)),
            store.clock(),
            store.owner,
            str(payload.get("platform", "")),
            event_id,
        ]
        result = await self._script("accept", _ACCEPT)(keys=keys, args=args, client=store.redis)
        return bool(result)

    async def asked(
        self, event_id: str, session_key: str, backend: str
    ) -> tuple[int, dict[str, Any]]:
        store, script = self._store, self._script("asked", _ASKED)
        keys, args = [self._entry_key(event_id)], [self._owner(event_id)]
        names, fields = sessions.where(store, session_key, backend)
        if store.cluster:
            # The state is in the session's own hash slot: read beside the write, at once
            # (nothing needs the two atomic).
            result, state = await together(
                script(keys=keys, args=args, client=store.redis),
                sessions.read(store, session_key, backend),
            )
        else:  # one server: read by the same script, in one round trip
            result = await script(keys=keys + names, args=args + fields, client=store.redis)
            state = None
        if not isinstance(result, list):
            raise NotOwner(f"{event_id}: not pending here (taken over, forgotten, other stage)")
        if state is None:
            state = sessions.state_of(*[*result, None, None][1:3])
        return int(result[0]), state

    async def answered(
        self, event_id: str, reply: Reply, session: SessionWrite | None = None
    ) -> float | None:
        sending = self._store.clock() if len(reply.parts) > len(reply.posted) else None
        await self._write(
            "answered",
            _ANSWERED,
            event_id,
            json.dumps(reply.to_dict()),
            json.dumps(session.to_dict()) if session else "",
            "" if sending is None else repr(sending),
            len(reply.posted),
            "\n".join(reply.posted),
        )
        return sending

    async def streaming(self, event_id: str, shown: Shown) -> None:
        await self._write("streaming", _STREAMING, event_id, json.dumps(shown.to_dict()))

    async def sending(self, event_id: str, part: int, at: float | None) -> None:
        await self._write("sending", _SENDING, event_id, part, "" if at is None else repr(at))

    async def sent(self, event_id: str, part: int, message_id: str) -> float:
        now = self._store.clock()
        await self._write("sent", _SENT, event_id, part, message_id, repr(now))
        return now

    async def complete(self, event_id: str, outcome: Outcome) -> None:
        store = self._store
        keys = [
            self._entry_key(event_id),
            store.slot(TAG, "seen", event_id),
            store.slot(TAG, "owned", store.owner),
        ]
        if await self._run("complete", _COMPLETE, keys, str(outcome), event_id) < 0:
            raise NotOwner(f"{event_id} is not pending here (taken over by another process)")

    async def pending(self, platforms: Collection[str] | None = None) -> list[Entry]:
        """Take over the pending messages (of `platforms`) whose owner's lease expired, and
        return them oldest first. This process's own are never returned: they are in its lanes."""
        store = self._store
        if self._take_over is None:
            self._take_over = TakeOver(
                store.redis,
                holders=store.slot(TAG, "owners"),
                index_prefix=store.slot(TAG, "owned", ""),
                lease_prefix=store.slot(TAG, "lease", ""),
                item_prefix=store.slot(TAG, "entry", ""),
                filter_field="platform",
            )
        ids = await self._take_over(store.owner, None if platforms is None else sorted(platforms))
        if not ids:
            return []
        async with store.redis.pipeline(transaction=False) as pipe:
            for event_id in ids:
                pipe.hgetall(self._entry_key(event_id))
            found = await pipe.execute()
        entries = [_entry(i, h) for i, h in zip(ids, found, strict=True) if h]
        return sorted(entries, key=lambda e: e.accepted)

    async def forget(self, senders: Sequence[Sender], keep: str | None = None) -> int:
        """Pending messages of every process are looked at (they are few: under way, or left by
        a crash), and those on the split roles' work queue (`queued`); each one dropped ends as
        `forgotten`, its event id kept for deduplication."""
        store, redis = self._store, self._store.redis
        owners = await redis.smembers(store.slot(TAG, "owners"))
        async with redis.pipeline(transaction=False) as pipe:
            for owner in owners:
                pipe.zrange(store.slot(TAG, "owned", owner), 0, -1)
            ids = [event for found in await pipe.execute() for event in found]
        on_queue = await queued.find(store, senders)  # the split roles' messages
        limit = None
        if keep:
            accepted = await redis.hget(self._entry_key(keep), "accepted")
            accepted = accepted or next((q.accepted for q in on_queue if q.event_id == keep), None)
            limit = float(accepted or "inf")
        async with redis.pipeline(transaction=False) as pipe:
            for event_id in ids:
                pipe.hmget(self._entry_key(event_id), ["payload", "accepted", "owner"])
            fields = await pipe.execute()
        wanted = set(senders)
        drop = [
            (event_id, owner)
            for event_id, (payload, accepted, owner) in zip(ids, fields, strict=True)
            if payload is not None and event_id != keep
            and (limit is None or float(accepted or 0) <= limit)
            and sender_of(json.loads(payload)) in wanted
        ]  # fmt: skip
        if drop:
            async with redis.pipeline(transaction=True) as pipe:
                for event_id, owner in drop:
                    pipe.delete(self._entry_key(event_id))
                    pipe.zrem(store.slot(TAG, "owned", owner), event_id)
                    seen = store.slot(TAG, "seen", event_id)
                    pipe.set(seen, str(Outcome.FORGOTTEN), xx=True, keepttl=True)
                await pipe.execute()
        earlier = [
            q for q in on_queue if q.event_id != keep and (limit is None or q.accepted <= limit)
        ]
        return len(drop) + await queued.drop(store, earlier)

    async def purge(self, now: float) -> int:
        return 0  # seen ids expire by their own TTL

    async def outcome(self, event_id: str) -> str | None:
        """How a completed message ended (None while pending or unknown); for tests and tools."""
        value = await self._store.redis.get(self._store.slot(TAG, "seen", event_id))
        return None if value in (None, "1") else str(value)


def _entry(event_id: str, fields: Mapping[str, str]) -> Entry:
    try:
        reply = fields.get("reply")
        session = fields.get("session")
        sending = fields.get("sending")
        sent = fields.get("sent") or ""
        stream = fields.get("stream")
        return Entry(
            event_id=event_id,
            payload=json.loads(fields["payload"]),
            stage=Stage(fields.get("stage") or "accepted"),
            asks=int(fields.get("asks") or 0),
            reply=Reply.from_dict(json.loads(reply)) if reply else None,
            session=SessionWrite.from_dict(json.loads(session)) if session else None,
            sent=tuple(sent.split("\n")) if int(fields.get("nsent") or 0) else (),
            sending=float(sending) if sending else None,
            accepted=float(fields.get("accepted") or 0),
            stream=Shown.from_dict(json.loads(stream)) if stream else None,
            owner=fields.get("owner", ""),
        )
    except (ValueError, KeyError, TypeError):  # the router completes it as unreadable
        return Entry(event_id=event_id, payload={}, owner=fields.get("owner", ""))
