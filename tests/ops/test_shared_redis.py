"""Two bridge processes sharing one Redis prefix (two Bridges, each with its own client, as two
`botbridge run` would have): one person's token budget and an admin's block hold in both."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from bridge.app import Bridge
from bridge.store.redis import RedisStore
from tests.conftest import REDIS_URL, RecordingConsole, make_config, redis_prefix


@contextlib.asynccontextmanager
async def two_processes(config, prefix: str) -> AsyncIterator[tuple[RecordingConsole, ...]]:
    consoles, bridges = [], []
    for _ in range(2):
        console = RecordingConsole(user="alice")
        bridge = Bridge(config, [console], store=RedisStore(REDIS_URL, prefix=prefix))
        await bridge.start()
        consoles.append(console)
        bridges.append(bridge)
    try:
        yield tuple(consoles)
    finally:
        for bridge in bridges:
            await bridge.stop()


async def test_a_budget_spent_through_one_process_is_refused_by_the_other(openai_fake):
    config = make_config(
        {
            "backends": {"llm": {"type": "openai", "base_url": openai_fake.base_url}},
            "access": {"budgets": {"person_daily": 10}},  # the fake reports 7 + 3 per answer
        }
    )
    async with redis_prefix() as prefix, two_processes(config, prefix) as (first, second):
        await first.say("question one")
        assert await first.replies(1) == ["echo: question one"]
        await second.say("question two")
        [refusal] = await second.replies(1)
        assert refusal.startswith("You have used today's token budget.")
        await second.say("my turn", user="bob")
        assert (await second.replies(2))[1] == "echo: my turn"
        assert len(openai_fake.calls) == 2


async def test_a_block_made_in_one_process_holds_in_the_other_at_once():
    config = make_config(
        {
            "backends": {"echo": {"type": "echo"}},
            "access": {"admins": [{"platform": "console", "user": "root"}]},
        }
    )
    async with redis_prefix() as prefix, two_processes(config, prefix) as (first, second):
        await first.say("/block mallory", user="root")
        assert await first.replies(1) == ["Blocked cl.mallory: the bot ignores them until /unblock."]
        await second.say("hi", user="mallory")
        assert await second.replies(1) == ["Sorry, this bot is not open to you."]
        await second.say("/unblock mallory", user="root")
        assert (await second.replies(2))[1] == "Unblocked cl.mallory."
        await first.say("hi again", user="mallory")
        assert (await first.replies(2))[1] == "[wx:dm:cl.mallory] hi again"

