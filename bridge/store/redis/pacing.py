"""A rate shared by every process on one Redis: the NexusGPT limit (60 messages a minute per API
key) holds for the sum of all workers, not for each.

GCRA (the generic cell rate algorithm) on Redis's own clock: one key per limited thing holds the
theoretical arrival time of the next event. `reserve` books the next free slot and says how long
to wait for it, in one script, so processes never race for a slot; `rate` events may come at
once, then one every `per / rate` seconds. The key lives in its own hash slot (`{pace:…}`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .fencing import script

if TYPE_CHECKING:
    from . import RedisStore

# KEYS: the key. ARGV: interval ms (per / rate), tolerance ms (per - interval).
# Returns the ms to wait before the booked event may happen.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
redis.call('SET', KEYS[1], tat + interval, 'PX', tolerance + interval + 1000)
return wait
"""


class RedisPacing:
    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._scripts: dict[str, Any] = {}

    async def reserve(self, key: str, rate: int, per: float) -> float:
        """Book one event of at most `rate` per `per` seconds; the seconds to wait for it."""
        interval = per * 1000 / rate
        tolerance = per * 1000 - interval
        name = self._store.tagged(f"pace:{key}", "tat")
        waited = await script(self._store, self._scripts, _RESERVE)(
            keys=[name], args=[int(interval), int(tolerance)]
        )
        return int(waited) / 1000
