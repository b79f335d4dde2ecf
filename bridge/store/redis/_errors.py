"""Redis being unreachable, as the rest of the bridge sees it: `StoreUnavailable`."""

from __future__ import annotations

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
