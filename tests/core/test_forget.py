"""/forget as a person uses it: afterwards no row in the store (SQLite, Redis or a Redis Cluster,
scanned whole) mentions them or what they wrote, other people's data is untouched, and their next
message starts a new conversation on a server that keeps its own history."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator

import pytest

from bridge.app import Bridge
from bridge.store.redis import RedisStore
from tests.conftest import REDIS_URL, RecordingConsole, make_config, redis_prefix
from tests.fakes.nexusgpt_api import FakeNexusGPT
from tests.fakes.nugen_api import FakeNugen

ZELDA = "zelda7f3a"  # distinctive, so that a scan cannot find it by accident


def sqlite_rows(path: str) -> str:
    """Every cell of every table, as text."""
    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    cells = [repr(row) for table in tables for row in db.execute(f"SELECT * FROM {table}")]
    db.close()
    return "\n".join(cells)


async def redis_rows(store: RedisStore) -> str:
    """Every key under the prefix with its whole value, as text."""
    redis, dumped = store.redis, []
    async for key in redis.scan_iter(match=f"{store.prefix}:*"):
        kind = await redis.type(key)
        value = {
            "string": redis.get,
            "hash": redis.hgetall,
            "set": redis.smembers,
            "zset": lambda k: redis.zrange(k, 0, -1, withscores=True),
            "stream": redis.xrange,
        }[kind](key)
        dumped.append(f"{key} {await value}")
    return "\n".join(dumped)


@contextlib.asynccontextmanager
async def store_of(kind: str, tmp_path, request) -> AsyncIterator[tuple[dict, RedisStore | None]]:
    if kind == "sqlite":
        yield {"path": str(tmp_path / "state.sqlite3")}, None
        return
    if kind == "cluster":  # the session's own cluster: a fresh prefix is enough
        url, prefix = request.getfixturevalue("redis_cluster").url, f"test-{uuid.uuid4().hex}"
        yield {}, RedisStore(url, prefix=prefix, cluster=True)
        return
    async with redis_prefix() as prefix:
        yield {}, RedisStore(REDIS_URL, prefix=prefix)  # the bridge opens and closes it


@pytest.mark.parametrize("kind", ["sqlite", "redis", "cluster"])
async def test_forget_leaves_no_row_about_the_person(kind, tmp_path, openai_fake, request):
    async with store_of(kind, tmp_path, request) as (sqlite, redis):
        config = make_config(
            {
                "backends": {
                    "server": {"type": "openai", "base_url": openai_fake.base_url, "session": "header"},
                    "kept": {"type": "openai", "base_url": openai_fake.base_url, "session": "bridge"},
                },
                "bridge": {"default_backend": "server", **({"store": sqlite} if sqlite else {})},
                "routes": [{"kind": "group", "backend": "kept"}],
                "access": {
                    "rate_limit": {"messages": 100, "per_seconds": 3600},
                    "budgets": {"person_daily": 100000, "chat_daily": 100000},
                },
            }
        )
        console = RecordingConsole(user=ZELDA)
        bridge = Bridge(config, [console], store=redis) if redis else Bridge(config, [console])
        await bridge.start()
        try:
            await console.say("my password is swordfish")
            await console.say("in the group, also swordfish", group="team")
            await console.say("bob's own note", user="bob")
            await console.say("bob in the group", user="bob", group="team")
            await console.replies(4)
            assert await bridge.router.idle(5)
            before = sqlite_rows(sqlite["path"]) if sqlite else await redis_rows(redis)
            assert ZELDA in before and "swordfish" in before  # the scan does see her

            await console.say("/forget")
            done = (await console.replies(5))[-1]
            assert await bridge.router.idle(5)
            # The DM's history is on the server, the group's kept by the bridge: both are known.
            assert done.startswith("Done. Deleted what this bot kept about you: 2 conversations")
            assert "usage counter" in done and "new conversation id" in done

            after = sqlite_rows(sqlite["path"]) if sqlite else await redis_rows(redis)
            assert ZELDA not in after and "swordfish" not in after
            assert "bob" in after  # everyone else's data is still there

            await console.say("hello again")
            assert (await console.replies(6))[-1] == "echo: hello again"
        finally:
            await bridge.stop()
        calls = openai_fake.calls_to("/v1/chat/completions")
        ids = [c.headers["x-session-key"] for c in calls if ZELDA in c.headers.get("x-session-key", "")]
        first, last = ids[0], ids[-1]
        assert first == f"wx:dm:cl.{ZELDA}"
        assert last.startswith(f"wx:dm:cl.{ZELDA}#f-")  # a session id the server never saw
        assert openai_fake.sessions[last] == ["hello again"]


@pytest.mark.parametrize("session", ["header", "body"])
async def test_after_forget_then_reset_the_server_still_never_sees_an_old_id(session, openai_fake, running):
    console = RecordingConsole(user="ann")
    config = make_config(
        {"backends": {"m": {"type": "openai", "base_url": openai_fake.base_url, "session": session}}}
    )
    await running(config, console)
    for n, text in enumerate(["one", "/reset", "two", "/forget", "three", "/reset", "four"], 1):
        await console.say(text)
        await console.replies(n)
    calls = openai_fake.calls_to("/v1/chat/completions")
    ids = [c.headers.get("x-session-key") or c.json.get("session_id") for c in calls]
    assert ids[:2] == ["wx:dm:cl.ann", "wx:dm:cl.ann#2"]
    salted = ids[2].removeprefix("wx:dm:cl.ann#")
    assert salted.startswith("f-") and ids[3] == f"wx:dm:cl.ann#{salted}#2"
    assert len(set(ids)) == 4


async def test_after_forget_nugen_starts_a_new_thread(running):
    from tests.backends.test_nugen import ENV, section

    async with FakeNugen() as nugen:
        console = RecordingConsole(user="ann")
        await running(make_config({"backends": {"n": section(nugen)}}, ENV), console)
        for n, text in enumerate(["one", "two", "/forget", "three"], 1):
            await console.say(text)
            await console.replies(n)
        assert nugen.threads == {"conv-1": ["one", "two"], "conv-2": ["three"]}


async def test_after_forget_nexusgpt_starts_a_new_thread(running):
    from tests.backends.test_nexusgpt import ENV, section

    async with FakeNexusGPT() as ngpt:
        console = RecordingConsole(user="ann")
        await running(make_config({"backends": {"g": section(ngpt)}}, ENV), console)
        for n, text in enumerate(["one", "/forget", "two"], 1):
            await console.say(text)
            await console.replies(n)
        assert len(ngpt.calls_to("/api/public/thread", "POST")) == 2
