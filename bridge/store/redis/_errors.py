"""Redis being unreachable, as the rest of the bridge sees it: `StoreUnavailable`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
