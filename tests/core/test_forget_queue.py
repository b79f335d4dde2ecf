"""/forget in the split layout (an ingress and a worker on one Redis, and on a Redis Cluster):
the person's messages still on the work queue are dropped unanswered, never asked of the
backend, their text gone from every Redis key, their stream entries acknowledged; other people's
waiting messages are answered as before, and the /forget itself is answered. `botbridge forget`
reaches them the same way."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import pytest
from aiohttp import web

from bridge import ops
from bridge.app import Bridge
from bridge.config import Config
from bridge.journal import Outcome
from bridge.metrics import Metrics
from bridge.roles import RoleName, build_role
from bridge.store import open_store
from bridge.store.redis import RedisStore
from bridge.store.redis.workqueue import GROUP, tag
from tests.conftest import REDIS_URL, RecordingConsole, make_config, redis_prefix
from tests.core.test_forget import ZELDA, redis_rows
from tests.fakes.base import eventually
from tests.fakes.openai_api import FakeOpenAI

PARTITIONS = 4


class HeldLLM(FakeOpenAI):
    """Echoes, but holds every question starting with "hold" until `release()`."""

    def __init__(self) -> None:
        super().__init__()
        self.held = asyncio.Event()

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if str(body["messages"][-1]["content"]).startswith("hold"):
            await self.held.wait()
        return await super()._complete(request)

    def asked(self) -> list[str]:
        return [
            str(c.json["messages"][-1]["content"]) for c in self.calls_to("/v1/chat/completions")
        ]


@pytest.fixture(params=["redis", "cluster"])
async def redis_at(request) -> AsyncIterator[tuple[str, str, bool]]:
    """Where the split layout's Redis is: (url, a fresh prefix, whether it is a cluster)."""
    if request.param == "cluster":
        yield request.getfixturevalue("redis_cluster").url, f"test-{uuid.uuid4().hex}", True
        return
    async with redis_prefix() as prefix:
        yield REDIS_URL, prefix, False


def split_config(llm: FakeOpenAI, redis_at: tuple[str, str, bool]) -> Config:
    url, prefix, cluster = redis_at
    store = {
        "type": "redis", "url": url, "prefix": prefix, "partitions": PARTITIONS,
        "cluster": cluster,
    }  # fmt: skip
    main = {"type": "openai", "base_url": llm.base_url, "max_retries": 0}
    return make_config({"backends": {"main": main}, "bridge": {"store": store, "claim_idle": 2}})


@asynccontextmanager
async def process(
    config: Config, role: RoleName, console: RecordingConsole
) -> AsyncIterator[Bridge]:
    """One `botbridge run --role …` process, in this one: its own store client and metrics."""
    store, metrics = open_store(config.bridge), Metrics()
    bridge = Bridge(
        config, [console], store=store, metrics=metrics,
        role=build_role(role, config, store, metrics, holder=f"{role}-1"),
    )  # fmt: skip
    await bridge.start()
    try:
        yield bridge
    finally:
        await bridge.stop()


async def queue_is_empty(store: RedisStore) -> bool:
    for partition in range(PARTITIONS):
        stream = store.tagged(tag(partition), "stream")
        pending = await store.redis.xpending(stream, GROUP)
        if await store.redis.xlen(stream) or pending["pending"]:
            return False
    return True


@dataclass
class Scene:
    llm: HeldLLM
    config: Config
    asking: RecordingConsole  # the ingress's console: people talk here
    seeing: RecordingConsole  # the worker's: the replies arrive here


@pytest.fixture
async def scene(redis_at) -> AsyncIterator[Scene]:
    async with HeldLLM() as llm:
        config = split_config(llm, redis_at)
        yield Scene(llm, config, RecordingConsole(user=ZELDA), RecordingConsole(user=ZELDA))


async def test_forget_drops_the_persons_waiting_messages_and_answers_everyone_else(scene):
    llm, config, asking, seeing = scene.llm, scene.config, scene.asking, scene.seeing
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(process(config, RoleName.INGRESS, asking))
        worker = await stack.enter_async_context(process(config, RoleName.WORKER, seeing))
        stack.callback(llm.held.set)  # even if the scene fails: the worker can drain
        store = worker.store

        # Zelda's first group question keeps the backend busy; her second waits behind it.
        await asking.say("hold: my password is swordfish", group="team")
        await eventually(lambda: "hold: my password is swordfish" in llm.asked())
        await asking.say("and the safe code is swordfish too", group="team")
        await asking.say("hold: bob waits too", user="bob", group="team")
        await asking.say("bob's own note", user="bob")
        assert await seeing.replies(1) == ["echo: bob's own note"]
        await eventually(lambda: "hold: bob waits too" in llm.asked())
        assert "swordfish" in await redis_rows(store)  # the scan does see her waiting text

        await asking.say("/forget")
        done = (await seeing.replies(2))[-1]
        assert "2 messages waiting to be answered (its text)" in done
        await eventually(_no_trace_in(store), 5)

        llm.held.set()  # the backend answers what it was asked before the /forget
        assert (await seeing.replies(3))[-1] == "echo: hold: bob waits too"
        assert await worker.router.idle(10)
        await asking.say("hello again")
        assert (await seeing.replies(4))[-1] == "echo: hello again"
        assert await worker.router.idle(10)

        assert not any("swordfish" in text for text in seeing.texts())  # nothing of hers posted
        assert "and the safe code is swordfish too" not in llm.asked()  # nor asked
        await eventually(lambda: queue_is_empty(store), 5)  # acknowledged, not left pending
        rows = await redis_rows(store)
        assert "swordfish" not in rows and "bob" in rows


def _no_trace_in(store: RedisStore):
    async def check() -> bool:
        rows = await redis_rows(store)
        return "swordfish" not in rows and ZELDA not in rows

    return check


async def test_botbridge_forget_reaches_the_messages_on_the_queue(scene):
    llm, config, asking, seeing = scene.llm, scene.config, scene.asking, scene.seeing
    async with process(config, RoleName.INGRESS, asking):
        # No worker runs yet: everything waits on the queue.
        for text, user, group in [
            ("swordfish in the DM", ZELDA, None),
            ("swordfish in the group", ZELDA, "team"),
            ("bob asks", "bob", "team"),
        ]:
            await asking.say(text, user=user, group=group)
        out = io.StringIO()
        store = open_store(config.bridge)
        await ops.forget(config, platform="console", user=ZELDA, store=store, out=out)
        assert "pending texts dropped    2" in out.getvalue()
        await store.open()
        try:
            assert await _no_trace_in(store)()
            streams = [store.tagged(tag(p), "stream") for p in range(PARTITIONS)]
            assert sum([await store.redis.xlen(stream) for stream in streams]) == 1  # bob's
            seen = [key async for key in store.redis.scan_iter(match=f"{store.prefix}:*:seen:*")]
            outcomes = sorted([str(await store.redis.get(key)) for key in seen])
            assert outcomes == ["1", str(Outcome.FORGOTTEN), str(Outcome.FORGOTTEN)]
        finally:
            await store.close()

    async with process(config, RoleName.WORKER, seeing) as worker:
        assert await seeing.replies(1) == ["echo: bob asks"]
        assert await worker.router.idle(10)
        assert await queue_is_empty(worker.store)
    assert llm.asked() == ["bob asks"]
