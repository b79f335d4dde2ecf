"""Redis being unreachable, as the rest of the bridge sees it: `StoreUnavailable`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import StoreUnavailable


@contextmanager
def unavailable(what: str) -> Iterator[None]:
    """Turn a lost connection, a timeout or a Redis still loading its data into
    `StoreUnavailable`, so callers pause and retry without knowing Redis."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise StoreUnavailable(f"redis unreachable ({what}): {type(exc).__name__}: {exc}") from exc


Part = TypeVar("Part")


class Mapped(Generic[Part]):
    """A store part whose every coroutine method raises `StoreUnavailable` when Redis is away,
    for parts written before that mattered (sessions, counters)."""

    def __init__(self, part: Part) -> None:
        self._part = part

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._part, name)
        if not inspect.iscoroutinefunction(found):
            return found

        @functools.wraps(found)
        async def call(*args: Any, **kwargs: Any) -> Any:
            with unavailable(name):
                return await found(*args, **kwargs)

        return call
