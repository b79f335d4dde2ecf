"""The NexusGPT limit (messages a minute per API key) shared by every process on one Redis: two
processes' backends book slots from one schedule, so together they stay under the limit."""

from __future__ import annotations

from bridge.backends import build_backend
from bridge.backends._pacing import PacedLimiter, StoreLimiters
from bridge.errors import StoreUnavailable
from tests.backends.test_nexusgpt import config
from tests.fakes.nexusgpt_api import FakeNexusGPT
from tests.fakes.redis_server import scoped_store


class Waits:
    """Stands in for asyncio.sleep: notes how long each acquire would wait."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


async def test_two_processes_with_one_key_share_its_messages_per_minute():
    async with scoped_store() as first_process, FakeNexusGPT() as ngpt:
        async with scoped_store(first_process.prefix) as second_process:
            section = config(ngpt, messages_per_minute=3).backends["main"]
            one = build_backend("main", section, pacing=first_process.pacing)
            two = build_backend("main", section, pacing=second_process.pacing)
            waits = Waits()
            limiters = [one.limiter, one.limiter, two.limiter, two.limiter]
            for limiter in limiters:
                assert isinstance(limiter, PacedLimiter)
                limiter._sleep = waits
                await limiter.acquire()
            # Three at once (the burst a minute allows), then the fourth, from the other
            # process, waits for the next slot: 60 s / 3.
            assert waits.seconds and len(waits.seconds) == 1
            assert 19.0 <= waits.seconds[0] <= 20.0
            for backend in (one, two):
                await backend.aclose()


async def test_another_key_has_a_schedule_of_its_own():
    async with scoped_store() as store:
        limiters = StoreLimiters(store.pacing)
        mine = limiters.get("https://api.example", "key-1", 1)
        theirs = limiters.get("https://api.example", "key-2", 1)
        waits = Waits()
        for limiter in (mine, theirs):
            limiter._sleep = waits
            await limiter.acquire()
        assert waits.seconds == []


async def test_while_the_store_is_away_a_message_waits_for_it():
    class Flaky:
        def __init__(self) -> None:
            self.failures = 2

        async def reserve(self, key: str, rate: int, per: float) -> float:
            if self.failures:
                self.failures -= 1
                raise StoreUnavailable("redis unreachable")
            return 0.0

    waits = Waits()
    limiter = PacedLimiter(Flaky(), "k", 60, 60.0, sleep=waits)
    await limiter.acquire()
    assert len(waits.seconds) == 2  # two pauses, then its slot
