"""A person's messages still on the work queue (the split roles), found and dropped for /forget.

A partition's stream holds exactly its messages not yet completed (completion removes the stream
entry); each one's journal entry, in the partition's hash slot, holds the sender and the text.
Dropping one is one script on that slot: the entry goes, the event id stays (outcome
`forgotten`, for deduplication), and the stream entry is acknowledged and removed. A worker that
had claimed it finds no entry of its own any more, so its next journal write (`asked`, before
the backend call; `answered`, before any post) fails with `NotOwner`, and no later holder of
the partition claims it again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...journal import Outcome
from .. import sender_of
from .workqueue import GROUP, tag

if TYPE_CHECKING:
    from .. import Sender
    from . import RedisStore


@dataclass(frozen=True, slots=True)
class Queued:
    """One message of the person's on a partition's stream."""

    partition: int
    entry_id: str  # the stream entry's id
    event_id: str
    accepted: float  # the ingress's clock when it took the message in


# KEYS: stream, then (entry, seen) per message. ARGV: group, outcome, then each stream entry id.
# How many entries were dropped (one completed meanwhile is left alone: it is gone already).
_DROP = """
local dropped = 0
for i = 3, #ARGV do
  local n = i - 2
  if redis.call('DEL', KEYS[2 * n]) == 1 then
    redis.call('SET', KEYS[2 * n + 1], ARGV[2], 'XX', 'KEEPTTL')
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
    dropped = dropped + 1
  end
end
return dropped
"""


async def find(store: RedisStore, senders: Sequence[Sender]) -> list[Queued]:
    """The messages of `senders` on every partition's stream (none unless a split layout was
    ever started under this prefix)."""
    redis = store.redis
    partitions = int(await redis.get(store.key("layout", "partitions")) or 0)
    if not partitions:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for partition in range(partitions):
            pipe.xrange(store.tagged(tag(partition), "stream"))
        streams = await pipe.execute()
    on_queue = [
        (partition, entry_id, fields.get("event", ""))
        for partition, entries in enumerate(streams)
        for entry_id, fields in entries
    ]
    async with redis.pipeline(transaction=False) as pipe:
        for partition, _, event_id in on_queue:
            pipe.hmget(store.tagged(tag(partition), "entry", event_id), ["payload", "accepted"])
        found = await pipe.execute()
    wanted = set(senders)
    return [
        Queued(partition, entry_id, event_id, float(accepted or 0))
        for (partition, entry_id, event_id), (payload, accepted) in zip(
            on_queue, found, strict=True
        )
        if payload is not None and sender_of(json.loads(payload)) in wanted
    ]


async def drop(store: RedisStore, messages: Sequence[Queued]) -> int:
    """Drop `messages` (one script per partition); how many were still there to drop."""
    by_partition: dict[int, list[Queued]] = {}
    for message in messages:
        by_partition.setdefault(message.partition, []).append(message)
    script = store.redis.register_script(_DROP)
    dropped = 0
    for partition, queued in sorted(by_partition.items()):
        keys = [store.tagged(tag(partition), "stream")]
        for message in queued:
            keys += [
                store.tagged(tag(partition), "entry", message.event_id),
                store.tagged(tag(partition), "seen", message.event_id),
            ]
        args = [GROUP, str(Outcome.FORGOTTEN), *(m.entry_id for m in queued)]
        dropped += int(await script(keys=keys, args=args))
    return dropped
