"""Several Redis commands sent at once: the wait of one round trip, on one server or a cluster.

On a single server they go in one pipeline (one round trip, one connection). A Redis Cluster's
pipelines run no scripts and its commands may go to different nodes, so there each is its own
call, all awaited concurrently; every one has ended before the first failure is raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import RedisStore

# One command, given the client to send it with (the store's, or a pipeline).
Call = Callable[[Any], Awaitable[Any]]


async def at_once(store: RedisStore, calls: Sequence[Call]) -> list[Any]:
    """Each call's result, in order."""
    if store.cluster:
        return await together(*(call(store.redis) for call in calls))
    async with store.redis.pipeline(transaction=False) as pipe:
        for call in calls:
            await call(pipe)  # queued: a pipeline's commands return the pipeline
        return await pipe.execute()


async def together(*calls: Awaitable[Any]) -> list[Any]:
    """Await `calls` concurrently; all have ended when the first failure, if any, is raised."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
