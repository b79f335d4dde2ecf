"""Leases with fencing tokens on Redis, and the registry of live members that shares work out.

A lease is a key `{prefix}:{tag}:lease` holding its holder's id with a TTL. Taking it when free
increments `{prefix}:{tag}:fence` and hands the new value out as the holder's fencing token, so a
token only ever grows. Renewing needs both the same holder and the same token: a lease that
lapsed is never silently re-held (whoever had it must take it again and get a new token), and a
write checked against the fence (`fenced` in the work queue and journal scripts) fails for any
holder but the latest. Both keys of a lease share the hash tag `{tag}`, so each script touches
one Redis Cluster slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._batch import Call, at_once
from ._errors import unavailable

if TYPE_CHECKING:
    from . import RedisStore

# KEYS: lease, fence. ARGV: holder, ttl ms. The new fencing token, or nil while another holds it.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false
"""

# KEYS: lease, fence. ARGV: holder, ttl ms, token. 1 extended, 0 lost (lapsed or taken).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease, fence. ARGV: holder, token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: the members' sorted set (member -> expiry, ms of Redis's clock). ARGV: member, ttl ms.
# Registers the member until now + ttl, forgets the expired ones; how many are alive. Redis's own
# clock, so hosts whose clocks disagree still agree on who is alive.
_JOIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


class RedisLeases:
    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._scripts: dict[str, Any] = {}

    def _script(self, source: str) -> Any:
        return script(self._store, self._scripts, source)

    def _keys(self, tag: str) -> list[str]:
        return [self._store.tagged(tag, "lease"), self._store.tagged(tag, "fence")]

    async def acquire(self, tag: str, holder: str, ttl: float) -> int | None:
        """Take the lease if it is free; the new fencing token, None if another holds it."""
        token = await self._script(_ACQUIRE)(keys=self._keys(tag), args=[holder, _ms(ttl)])
        return None if token is None else int(token)

    async def renew(self, held: Sequence[tuple[str, int]], holder: str, ttl: float) -> list[bool]:
        """Extend each (tag, token) lease in one round trip; whether each is still ours."""
        if not held:
            return []
        renew = self._script(_RENEW)

        def renewal(tag: str, token: int) -> Call:
            keys, args = self._keys(tag), [holder, _ms(ttl), token]
            return lambda client: renew.run(keys=keys, args=args, client=client)

        with unavailable("renew"):  # one round trip
            results = await at_once(self._store, [renewal(tag, token) for tag, token in held])
        return [int(result) == 1 for result in results]

    async def release(self, tag: str, holder: str, token: int) -> None:
        await self._script(_RELEASE)(keys=self._keys(tag), args=[holder, token])

    async def fence(self, tag: str) -> int:
        """The latest token handed out for `tag` (0: never held)."""
        with unavailable("fence"):
            return int(await self._store.redis.get(self._keys(tag)[1]) or 0)

    async def join(self, group: str, member: str, ttl: float) -> int:
        """Say `member` is alive for `ttl` seconds; how many members of `group` are alive."""
        key = self._store.key("members", group)
        return int(await self._script(_JOIN)(keys=[key], args=[member, _ms(ttl)]))

    async def leave(self, group: str, member: str) -> None:
        with unavailable("leave"):
            await self._store.redis.zrem(self._store.key("members", group), member)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class _Bound:
    """A registered script, always run on the store's current client (it is a new one after a
    close and open, and a script object remembers the client it was registered with)."""

    def __init__(self, store: RedisStore, script: Any) -> None:
        self._store = store
        self._script = script

    async def __call__(self, *, keys: list[str], args: list[Any]) -> Any:
        with unavailable("script"):
            return await self._script(keys=keys, args=args, client=self._store.redis)

    async def run(self, *, keys: list[str], args: list[Any], client: Any) -> Any:
        return await self._script(keys=keys, args=args, client=client)


def script(store: RedisStore, cache: dict[str, Any], source: str) -> _Bound:
    """`source` registered once per store part, run on the store's current client."""
    found = cache.get(source)
    if found is None:
        found = cache[source] = _Bound(store, store.redis.register_script(source))
    return found
