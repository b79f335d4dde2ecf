"""kill -9 mid-stream, then restart: one complete answer. A real `botbridge run` streams an answer
through each platform fake; it is SIGKILLed while the answer visibly grows (and is recorded),
started again on the same state, and the person ends with one answer in the message(s) already
shown: never a second copy beside the partial one.

Where the backend keeps no conversation (`session: bridge`) and nothing was final yet, the
question is asked again and the new answer goes into the growing message; where the server
keeps the conversation, or a part was already final, the answer ends as what was shown plus the
apology."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.config.core import DEFAULT_APOLOGY
from bridge.journal import Shown
from bridge.store.redis import RedisStore
from bridge.text import split, utf16_len
from tests.conftest import REDIS_URL, redis_prefix
from tests.fakes.base import eventually
from tests.fakes.discord_gateway import ALICE, TOKEN, FakeDiscord
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack, im
from tests.fakes.telegram_api import FakeTelegram, group, user
from tests.ops.scaleout_world import processes, split_config
from tests.ops.test_daemon import Daemon, daemon, stop

pytestmark = pytest.mark.timeout(120)

ANSWER = " ".join(f"Sentence {n} of the answer, written slowly." for n in range(40))
STREAMING = {"min_chars": 10, "min_interval": 0.1, "record_interval": 0.2, "groups": True}


@asynccontextmanager
async def writing(answer: str = ANSWER, chunk: int = 6) -> AsyncIterator[FakeOpenAI]:
    """The fake model writing `answer`, `chunk` characters every 30 ms (seconds in all)."""
    async with FakeOpenAI(lambda body, headers: answer) as llm:
        llm.stream.chunk = chunk
        llm.stream.delay = 0.03
        yield llm


def config(tmp_path: Path, llm: FakeOpenAI, adapters: dict[str, Any], session: str) -> dict:
    return {
        "backends": {"main": {"type": "openai", "base_url": llm.base_url, "max_retries": 0,
                              "timeout": 60, "stream": True, "session": session}},
        "bridge": {"store": {"path": str(tmp_path / "state.sqlite3")}, "log_level": "info",
                   "delivery": {"retry_initial": 0.05, "retry_max": 0.5}},
        "adapters": adapters,
    }  # fmt: skip


def recorded(tmp_path: Path) -> Shown | None:
    """What the journal holds of the answer being streamed (None: nothing yet)."""
    path = tmp_path / "state.sqlite3"
    if not path.exists():
        return None
    with sqlite3.connect(path) as db:
        try:
            rows = db.execute("SELECT stream FROM events WHERE stream IS NOT NULL").fetchall()
        except sqlite3.OperationalError:  # the daemon is still creating its tables
            return None
    return Shown.from_dict(json.loads(rows[0][0])) if rows else None


async def kill_when(running: Daemon, tmp_path: Path, shown: Any) -> Shown:
    """SIGKILL the daemon as soon as the journal's record satisfies `shown`; the record."""
    record = await eventually(lambda: (r := recorded(tmp_path)) is not None and shown(r) and r, 20)
    running.proc.kill()
    await running.proc.wait()
    return record


async def restart(tmp_path: Path, cfg: dict, done: Any, name: str) -> float:
    """Start the daemon again on the same state; seconds from its start until `done()`."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with daemon(tmp_path, cfg, name="second-") as second:
        await eventually(done, 30, every=0.02)
        took = loop.time() - started
        assert await stop(second) == 0
    print(f"stream-kills: {name} complete {took:.2f}s after the restart")
    return took


def apologised(text: str, answer: str = ANSWER) -> bool:
    """What was shown of `answer`, then the apology."""
    shown, _, apology = text.rpartition("\n\n")
    return apology == DEFAULT_APOLOGY and bool(shown) and answer.startswith(shown)


def telegram_section(telegram: FakeTelegram) -> dict:
    return {"telegram": {
        "token": telegram.token, "api_base_url": telegram.base_url,
        "api_file_url": telegram.file_url, "poll_timeout": 1, "stall_timeout": 5,
        "retry_backoff": 0.05, "max_backoff": 0.2, "streaming": STREAMING,
    }}  # fmt: skip


async def test_telegram_private_chat_the_draft_fades_and_the_answer_is_sent_once(tmp_path):
    alice = user(42, "Alice")
    async with FakeTelegram() as telegram, writing() as llm:
        cfg = config(tmp_path, llm, telegram_section(telegram), "bridge")
        async with daemon(tmp_path, cfg) as first:
            await first.ready(True, 30)
            await telegram.push(telegram.dm(alice, "tell me"))
            await kill_when(first, tmp_path, lambda r: r.text)
        assert telegram.drafts and telegram.sent == []  # a draft grew; no message yet

        await restart(tmp_path, cfg, lambda: telegram.sent, "telegram-dm")
    assert telegram.texts(42) == [ANSWER]  # asked again: one message, the whole answer


async def test_telegram_a_long_answer_continues_after_its_finished_part_never_repeating_it(
    tmp_path,
):
    alice = user(42, "Alice")
    answer = " ".join(f"Line {n}: a long answer needs three messages." for n in range(200))
    parts = split(answer, 4096, utf16_len)
    assert len(parts) == 3
    async with FakeTelegram() as telegram, writing(answer, chunk=100) as llm:
        cfg = config(tmp_path, llm, telegram_section(telegram), "bridge")
        async with daemon(tmp_path, cfg) as first:
            await first.ready(True, 30)
            await telegram.push(telegram.dm(alice, "tell me at length"))
            await kill_when(first, tmp_path, lambda r: len(r.parts) == 1 and r.text)
        assert telegram.texts(42) == [parts[0]]

        await restart(tmp_path, cfg, lambda: len(telegram.sent) >= 2, "telegram-dm-long")
    first_part, *rest = telegram.texts(42)
    assert first_part == parts[0]  # never posted again
    assert len(rest) == 1 and apologised(rest[0], parts[1])  # continued at part 2


async def test_telegram_group_the_edited_reply_becomes_the_answer(tmp_path):
    alice, chat = user(42, "Alice"), group(-100)
    async with FakeTelegram() as telegram, writing() as llm:
        cfg = config(tmp_path, llm, telegram_section(telegram), "bridge")
        async with daemon(tmp_path, cfg) as first:
            await first.ready(True, 30)
            await telegram.push(telegram.group_message(chat, alice, "@bridge_bot tell me"))
            await kill_when(first, tmp_path, lambda r: r.live)
        [partial] = telegram.sent
        assert partial["text"] != ANSWER and ANSWER.startswith(partial["text"])

        await restart(tmp_path, cfg, lambda: telegram.sent[0]["text"] == ANSWER, "telegram-group")
    assert telegram.texts(-100) == [ANSWER]  # the same message, edited; no second one


def discord_section(discord: FakeDiscord) -> dict:
    return {"discord": {
        "token": TOKEN, "api_base_url": discord.api_base_url, "guild_ready_timeout": 0.05,
        "ready_timeout": 20, "identify_delay": 0, "streaming": STREAMING,
    }}  # fmt: skip


@pytest.mark.parametrize("session", ["bridge", "header"])
async def test_discord_the_partial_message_is_edited_into_the_answer(tmp_path, session):
    async with FakeDiscord() as discord, writing() as llm:
        discord.edit_window = 1.0
        cfg = config(tmp_path, llm, discord_section(discord), session)
        async with daemon(tmp_path, cfg) as first:
            await first.ready(True, 30)
            await discord.say("tell me", dm=True)
            record = await kill_when(first, tmp_path, lambda r: r.live)
        [partial] = discord.posted
        assert str(partial["id"]) == record.live and partial["content"] != ANSWER

        if session == "bridge":  # asked again, the new answer in the partial message
            finished = ANSWER.__eq__
        else:  # the server keeps the conversation: what was shown, and the apology
            finished = apologised
        await restart(tmp_path, cfg, lambda: finished(discord.posted[0]["content"]),
                      f"discord-{session}")  # fmt: skip
    assert [p["id"] for p in discord.posted] == [partial["id"]]  # no second message
    assert discord.dm_channel(ALICE) == int(partial["channel_id"])
    assert len(llm.calls_to("/v1/chat/completions")) == (2 if session == "bridge" else 1)


@pytest.mark.parametrize("expired", [False, True])
async def test_slack_the_open_stream_is_stopped_and_becomes_the_answer(tmp_path, expired):
    async with FakeSlack() as slack, writing() as llm:
        cfg = config(tmp_path, llm, {"slack": {
            "bot_token": BOT_TOKEN, "app_token": APP_TOKEN, "api_base_url": slack.api_url,
            "progress_reaction": None, "streaming": STREAMING,
        }}, "header")  # fmt: skip
        async with daemon(tmp_path, cfg) as first:
            await first.ready(True, 30)
            await eventually(lambda: slack.sockets, 20)
            await slack.push(im("tell me", user="U1", channel="D1"))
            record = await kill_when(first, tmp_path, lambda r: r.live)
        [partial] = slack.posted
        assert partial["ts"] == record.live and partial["streaming"]  # left open by the dead
        if expired:
            slack.expire_streams()  # Slack ended it while the bridge was down

        await restart(tmp_path, cfg, lambda: "text" in slack.posted[0], f"slack-expired-{expired}")
    [message] = slack.posted  # no second message
    assert not message["streaming"] and "markdown" not in message
    assert apologised(message["text"])  # the server keeps the conversation: not asked again
    assert len(llm.calls_to("/v1/chat/completions")) == 1


async def test_a_worker_killed_mid_stream_the_next_holder_finishes_the_group_reply(tmp_path):
    """Scale-out: the worker streaming a group answer is SIGKILLed; the worker that takes over
    its partition finds the record on Redis (written under the claim's fence) and edits the
    partial reply into the answer."""
    alice, chat = user(42, "Alice"), group(-100)
    async with redis_prefix() as prefix, FakeTelegram() as telegram, writing() as llm:
        cfg = split_config(telegram, llm, redis_url=REDIS_URL, prefix=prefix, partitions=2)
        cfg["backends"]["main"].update(stream=True, timeout=60)
        cfg["adapters"]["telegram"]["streaming"] = STREAMING
        redis = RedisStore(REDIS_URL, prefix=prefix)
        await redis.open()

        async def record_on_redis() -> Shown | None:
            async for key in redis.redis.scan_iter(match=f"{prefix}:*:entry:*"):
                if found := await redis.redis.hget(key, "stream"):
                    return Shown.from_dict(json.loads(found))
            return None

        try:
            async with processes(tmp_path, cfg, ["ingress", "worker"]) as (_, first):
                await telegram.push(telegram.group_message(chat, alice, "@bridge_bot tell me"))
                await eventually(lambda: telegram.sent and record_on_redis(), 20)
                first.proc.kill()
                await first.proc.wait()
            [partial] = telegram.sent
            assert partial["text"] != ANSWER
            async with daemon(tmp_path, cfg, role="worker", name="second-") as second:
                await eventually(lambda: telegram.sent[0]["text"] == ANSWER, 60, every=0.05)
                assert await stop(second) == 0
        finally:
            await redis.close()
    assert telegram.texts(-100) == [ANSWER]  # the partial reply became the answer
