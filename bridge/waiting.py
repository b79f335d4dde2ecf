"""Waiting that a stop cuts short: the loops that act every few seconds (heartbeats, recovery,
send retries, typing refreshes) wait on their stop event with a deadline, never sleep past a stop.
"""

from __future__ import annotations

import asyncio


async def stopped(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event`: True once it is set (time to stop), False at the
    deadline (time for the next round)."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
