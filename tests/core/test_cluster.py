"""The bridge on a real Redis Cluster (three masters, `bridge.store.cluster: true`): a message is
answered once through the router, its platform's redelivery dropped, also by the next process.
The store's contract on the cluster is in test_store.py, /forget in test_forget.py and (the split
roles) test_forget_queue.py."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from bridge.config import parse_config
from bridge.errors import ConfigError
from bridge.intake import Intake
from bridge.metrics import Metrics
from bridge.store.redis import RedisStore
from tests.conftest import RecordingConsole, lifetime, make_config
from tests.core.test_workqueue import dm


async def test_a_message_is_answered_once_on_a_cluster(redis_cluster, openai_fake):
    store = {"type": "redis", "url": redis_cluster.url, "prefix": f"test-{uuid.uuid4().hex}"}
    backend = {"type": "openai", "base_url": openai_fake.base_url, "session": "bridge"}
    config = make_config(
        {"backends": {"main": backend}, "bridge": {"store": {**store, "cluster": True}}}
    )
    console = RecordingConsole(user="ann")
    async with lifetime(config, console) as bridge:
        await console.say("hello", event_id="ev-1")
        await console.say("hello", event_id="ev-1")  # the platform delivered it twice
        await console.say("and again", event_id="ev-2")
        assert await console.replies(2) == ["echo: hello", "echo: and again"]
        assert await bridge.router.idle(5)
    async with lifetime(config, console) as bridge:  # the next process remembers both
        assert await console.say("hello", event_id="ev-1") is False
        await console.say("third", event_id="ev-3")
        assert (await console.replies(3))[-1] == "echo: third"
        assert await bridge.router.idle(5)
    assert console.texts() == ["echo: hello", "echo: and again", "echo: third"]
    # The bridge kept the history in the session's state, on the cluster: the third question
    # went to the backend with both earlier turns.
    last = openai_fake.calls_to("/v1/chat/completions")[-1].json["messages"]
    assert [m["content"] for m in last if m["role"] == "user"] == ["hello", "and again", "third"]


async def test_a_burst_larger_than_the_connections_waits_for_them_on_a_cluster(redis_cluster):
    """redis-py's cluster client fails a command beyond its connections; the store queues it."""
    store = RedisStore(redis_cluster.url, f"test-{uuid.uuid4().hex}", connections=8, cluster=True)
    await store.open()
    try:
        config = parse_config({
            "backends": {"echo": {"type": "echo"}},
            "bridge": {"store": {"type": "redis", "partitions": 1}},
        })  # fmt: skip
        intake = Intake(store.workqueue, config.bridge, Metrics())
        burst = [dm(f"user{n}", "hello", f"burst{n}") for n in range(300)]
        assert all(await asyncio.gather(*(intake.handle(message) for message in burst)))
        assert await store.workqueue.backlog(0) == len(burst)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("store", "path"),
    [
        ({"cluster": True}, "bridge.store.cluster"),  # SQLite has no cluster
        ({"type": "redis", "cluster": True, "url": "redis://10.0.0.5:7000/3"}, "bridge.store.url"),
    ],
)
def test_a_cluster_setting_that_cannot_work_names_its_key(store, path):
    with pytest.raises(ConfigError) as refused:
        parse_config({"backends": {"e": {"type": "echo"}}, "bridge": {"store": store}})
    assert refused.value.path == path
