"""The journal of the split roles on Redis: each message's entry lives with its partition (hash
tag `{pN}`) and is written by whichever worker holds the partition, fenced.

Ingress `submit`s a message (`RedisWorkQueue.submit`): one script remembers its event id,
creates its entry (stage accepted, no owner) and appends it to the partition's stream. A worker
that reads or claims entries `own`s them in one script that first checks its fencing token
against the partition's: each entry's `owner` becomes `<worker>:<token>`. Every later stage
write is the single-process journal's own script, which checks that owner — so once a successor
has claimed the entry, a stale holder can write nothing more (`NotOwner`) — on the tagged entry
key; `complete` also acknowledges (XACK) and removes the stream entry, in the same script.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import NotOwner
from ...journal import Entry, Outcome
from .journal import _MINE, RedisJournal
from .journal import _entry as entry_of

if TYPE_CHECKING:
    from . import RedisStore

GROUP = "workers"

# KEYS: fence, then each entry. ARGV: token, owner. Each entry's fields (flat), or -1 when the
# token is not the partition's latest.
_OWN = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local found = {}
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HSET', KEYS[i], 'owner', ARGV[2])
  end
  found[#found + 1] = redis.call('HGETALL', KEYS[i])
end
return found
"""

# KEYS: entry, seen, stream. ARGV: owner, outcome, group, stream entry id.
_COMPLETE = (
    _MINE
    + """
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'XX', 'KEEPTTL')
redis.call('XACK', KEYS[3], ARGV[3], ARGV[4])
redis.call('XDEL', KEYS[3], ARGV[4])
return 1
"""
)


def tag(partition: int) -> str:
    return f"p{partition}"


class ClaimedRedisJournal(RedisJournal):
    """The stage writes of messages claimed from the work queue: the entry key is the claim's
    partition's, the owner the claim's `<worker>:<token>`. `claim()` tells it which."""

    def __init__(self, store: RedisStore) -> None:
        super().__init__(store)
        self._claims: dict[str, tuple[int, str, str]] = {}  # event -> partition, owner, entry id

    def claim(self, event_id: str, partition: int, owner: str, stream_entry: str) -> None:
        self._claims[event_id] = (partition, owner, stream_entry)

    def release(self, event_id: str) -> None:
        self._claims.pop(event_id, None)

    def _claim(self, event_id: str) -> tuple[int, str, str]:
        try:
            return self._claims[event_id]
        except KeyError:
            raise NotOwner(f"{event_id} is not claimed by this worker") from None

    def _owner(self, event_id: str) -> str:
        return self._claim(event_id)[1]

    def _entry_key(self, event_id: str) -> str:
        return self._store.tagged(tag(self._claim(event_id)[0]), "entry", event_id)

    async def _write(self, name: str, source: str, event_id: str, *args: Any) -> int:
        _, owner, _ = self._claim(event_id)
        script = self._script(name, source)
        keys = [self._entry_key(event_id)]
        result = int(await script(keys=keys, args=[owner, *args], client=self._store.redis))
        if result < 0:
            raise NotOwner(f"{event_id}: the partition's next holder has it, or it was forgotten")
        return result

    async def accept(self, event_id: str, payload: Mapping[str, Any], ttl: float) -> bool:
        raise NotOwner("a worker accepts nothing: ingress processes do")

    async def complete(self, event_id: str, outcome: Outcome) -> None:
        store = self._store
        partition, owner, stream_entry = self._claim(event_id)
        keys = [
            self._entry_key(event_id),
            store.tagged(tag(partition), "seen", event_id),
            store.tagged(tag(partition), "stream"),
        ]
        script = self._script("complete-claimed", _COMPLETE)
        args = [owner, str(outcome), GROUP, stream_entry]
        if int(await script(keys=keys, args=args, client=store.redis)) < 0:
            raise NotOwner(f"{event_id}: the partition's next holder has it, or it was forgotten")

    async def pending(self, platforms: Collection[str] | None = None) -> list[Entry]:
        return []  # a worker's unfinished messages are claimed from the partitions' streams

    async def own(
        self, partition: int, token: int, owner: str, event_ids: Sequence[str]
    ) -> list[Entry] | None:
        """Make the entries of `event_ids` this worker's (`owner`), if `token` is still the
        partition's; their journal state (None: fenced off)."""
        store = self._store
        if not event_ids:
            return []
        keys = [store.tagged(tag(partition), "fence")]
        keys += [store.tagged(tag(partition), "entry", event_id) for event_id in event_ids]
        found = await self._script("own", _OWN)(
            keys=keys, args=[token, owner], client=store.redis
        )
        if not isinstance(found, list):
            return None
        return [
            entry_of(event_id, dict(zip(fields[::2], fields[1::2], strict=True)))
            for event_id, fields in zip(event_ids, found, strict=True)
        ]
