"""The work queue on Redis Streams: one stream per partition, read by the consumer group `workers`.

Ingress `submit`s a message: one script remembers its event id (dedup, with a TTL), creates its
journal entry and appends it to its partition's stream, so an accepted message is always on the
queue and a redelivery never is. The partition's holder reads new entries (XREADGROUP) and takes
over what an earlier holder left unacknowledged (XAUTOCLAIM); the journal of claimed messages
(`claimed.py`) makes them its own under its fencing token and acknowledges each when it is
completed. Every key of a partition carries the hash tag `{pN}` (Redis Cluster: one slot per
partition).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from ...workqueue import WorkItem
from ._errors import unavailable
from .fencing import script

if TYPE_CHECKING:
    from . import RedisStore

GROUP = "workers"
_CLAIM_PAGE = 100

# KEYS: seen, entry, stream. ARGV: ttl ms, event id, payload, now, platform. The stream entry's
# id, or nil for a redelivery. The journal entry (stage accepted, no owner yet) lives in the
# partition's slot; the stream names it.
_SUBMIT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('HSET', KEYS[2], 'payload', ARGV[3], 'platform', ARGV[5], 'stage', 'accepted',
             'asks', 0, 'accepted', ARGV[4], 'owner', '', 'nsent', 0, 'sent', '')
  return redis.call('XADD', KEYS[3], '*', 'event', ARGV[2])
end
return false
"""

# KEYS: layout. ARGV: partitions. The number of partitions the queue was laid out with.
_LAYOUT = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return tonumber(redis.call('GET', KEYS[1]))
"""


def tag(partition: int) -> str:
    """The hash tag of a partition's keys (its lease and fence are `RedisLeases` under it)."""
    return f"p{partition}"


class RedisWorkQueue:
    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._scripts: dict[str, Any] = {}

    def _stream(self, partition: int) -> str:
        return self._store.tagged(tag(partition), "stream")

    async def layout(self, partitions: int) -> int:
        """Record the partition count on first use; the count recorded (compare to yours)."""
        key = self._store.key("layout", "partitions")
        return int(await script(self._store, self._scripts, _LAYOUT)(keys=[key], args=[partitions]))

    async def submit(
        self, partition: int, event_id: str, payload: Mapping[str, Any], ttl: float
    ) -> bool:
        """Accept a message: False if its event id was seen before (a redelivery)."""
        keys = [
            self._store.tagged(tag(partition), "seen", event_id),
            self._store.tagged(tag(partition), "entry", event_id),
            self._stream(partition),
        ]
        platform = str(payload.get("platform", ""))
        args = [max(1, int(ttl * 1000)), event_id, json.dumps(dict(payload)), time.time(), platform]
        entry = await script(self._store, self._scripts, _SUBMIT)(keys=keys, args=args)
        return entry is not None

    async def prepare(self, partition: int) -> None:
        """Make sure the partition's stream and consumer group exist (from the first entry on:
        what ingress appended before any worker existed is read too)."""
        try:
            with unavailable("xgroup create"):
                redis = self._store.redis
                await redis.xgroup_create(self._stream(partition), GROUP, "0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, partition: int, consumer: str, count: int, block: float) -> list[WorkItem]:
        """New entries, at most `count`, waiting up to `block` seconds for the first."""
        stream = self._stream(partition)
        found = await self._again_without_group(
            partition,
            lambda: self._store.redis.xreadgroup(
                GROUP, consumer, {stream: ">"}, count=count, block=max(1, int(block * 1000))
            ),
        )
        if not found:
            return []
        return [_item(partition, entry_id, fields) for entry_id, fields in found[0][1] if fields]

    async def claim(self, partition: int, consumer: str) -> list[WorkItem]:
        """Every entry read but not acknowledged (by anyone), now `consumer`'s, oldest first."""
        redis, stream = self._store.redis, self._stream(partition)
        items: list[WorkItem] = []
        start = "0-0"
        while True:
            page = await self._again_without_group(
                partition,
                lambda start=start: redis.xautoclaim(
                    stream, GROUP, consumer, 0, start_id=start, count=_CLAIM_PAGE
                ),
            )
            start, entries = page[0], page[1]
            items += [_item(partition, entry_id, fields) for entry_id, fields in entries if fields]
            if start in ("0-0", b"0-0"):
                return items

    async def backlog(self, partition: int) -> int:
        """Entries on the partition's stream: waiting, or being answered."""
        with unavailable("xlen"):
            return int(await self._store.redis.xlen(self._stream(partition)))

    async def _again_without_group(self, partition: int, call: Any) -> Any:
        """Run `call`; if the group is gone (a Redis that lost its data), recreate it, once."""
        try:
            with unavailable("read"):
                return await call()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        await self.prepare(partition)
        with unavailable("read"):
            return await call()


def _item(partition: int, entry_id: str, fields: Mapping[str, str]) -> WorkItem:
    return WorkItem(partition=partition, entry_id=entry_id, event_id=fields.get("event", ""))
