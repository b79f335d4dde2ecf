"""A stand-in for an object whose coroutine methods each run through one wrapper: how the Redis
store turns a lost connection into `StoreUnavailable`, and how a worker waits out an outage."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

# around(name of the method, the call to make) -> the call's result
Wrapper = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]


class Around:
    def __init__(self, part: Any, wrapper: Wrapper) -> None:
        self._part = part
        self._wrapper = wrapper

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._part, name)
        if not inspect.iscoroutinefunction(found):
            return found

        @functools.wraps(found)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._wrapper(name, lambda: found(*args, **kwargs))

        return call
