"""Redis being unreachable, as the rest of the bridge sees it: `StoreUnavailable`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...around import Around
from ...errors import StoreUnavailable


@contextmanager
def unavailable(what: str) -> Iterator[None]:
    """Turn a lost connection, a timeout or a Redis still loading its data into
    `StoreUnavailable`, so callers pause and retry without knowing Redis."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise StoreUnavailable(f"redis unreachable ({what}): {type(exc).__name__}: {exc}") from exc


def mapped(part: Any) -> Around:
    """`part` with every coroutine method raising `StoreUnavailable` when Redis is away, for
    parts written before that mattered (sessions, counters)."""

    async def call(name: str, method: Callable[[], Awaitable[Any]]) -> Any:
        with unavailable(name):
            return await method()

    return Around(part, call)


async def together(*calls: Awaitable[Any]) -> list[Any]:
    """Await `calls` at once (the wait of one round trip, not of several, even where they go to
    different Redis Cluster nodes); all have ended when the first failure, if any, is raised."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
