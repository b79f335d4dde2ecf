"""The Discord adapter end to end: the real discord.py client against the fake Discord REST API and
gateway, a real Bridge, and the echo or fake OpenAI backend. Each test is a scene in a guild or a
DM; assertions are about what people in the channel see.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.discord import DiscordAdapter
from bridge.errors import ConfigError
from bridge.metrics import Metrics
from tests.conftest import make_config
from tests.fakes.base import eventually
from tests.fakes.discord_gateway import (
    ALICE,
    API,
    BOB,
    BOT_ID,
    HELPER_BOT,
    MESSAGE_CONTENT,
    TOKEN,
    FakeDiscord,
)
from tests.fakes.openai_api import FakeOpenAI


@pytest.fixture
async def fake() -> Any:
    async with FakeDiscord() as server:
        yield server


def discord_section(fake: FakeDiscord, **extra: Any) -> dict[str, Any]:
    return {
        "token": TOKEN,
        "api_base_url": fake.api_base_url,
        "guild_ready_timeout": 0.05,
        "ready_timeout": 5,
        "identify_delay": 0,
        **extra,
    }


def config(fake: FakeDiscord, backend: dict[str, Any] | None = None, **extra: Any):
    return make_config(
        {
            "backends": {"main": backend or {"type": "echo"}},
            "adapters": {"discord": discord_section(fake, **extra)},
        }
    )


def openai_backend(server: FakeOpenAI) -> dict[str, Any]:
    return {"type": "openai", "base_url": server.base_url, "max_retries": 0}


async def start(running, fake: FakeDiscord, backend=None, **extra: Any) -> DiscordAdapter:
    cfg = config(fake, backend, **extra)
    adapter = DiscordAdapter(cfg.adapters.discord, Metrics())
    await running(cfg, adapter)
    return adapter


async def posts(fake: FakeDiscord, count: int, channel: int | None = None) -> list[dict]:
    """The bot's posts (in `channel` if given), once there are at least `count`."""

    def found() -> list[dict]:
        return [p for p in fake.posted if channel is None or int(p["channel_id"]) == channel]

    await eventually(lambda: len(found()) >= count, 5)
    return found()


def group_key(channel: int, user: int) -> str:
    return f"wx:group:dc.{channel}:user:dc.{user}"


# --------------------------------------------------------------------------------- addressing


async def test_dm_is_answered_without_a_reply_reference(fake, running):
    await start(running, fake)
    await fake.say("hello there", dm=True)
    [answer] = await posts(fake, 1)
    assert answer["content"] == f"[wx:dm:dc.{ALICE}] hello there"
    assert int(answer["channel_id"]) == fake.dm_channel(ALICE)
    assert "message_reference" not in answer


@pytest.mark.parametrize("mention", ["<@{bot}>", "<@!{bot}>", "<@&{role}>"])
async def test_mention_is_answered_as_a_reply_with_the_users_group_key(fake, running, mention):
    await start(running, fake)
    tag = mention.format(bot=BOT_ID, role=fake.bot_role_id)
    asked = await fake.say(f"{tag} what is 2+2?")
    [answer] = await posts(fake, 1)
    assert answer["content"] == f"[{group_key(fake.channel_id, ALICE)}] what is 2+2?"
    assert answer["message_reference"]["message_id"] == asked["id"]
    # The author is not pinged, and nothing in the answer can ping anyone.
    assert answer["allowed_mentions"]["parse"] == []
    assert not answer["allowed_mentions"].get("replied_user")
    assert answer["mentions"] == []


async def test_a_bare_mention_gets_the_help(fake, running):
    await start(running, fake)
    asked = await fake.say(f"<@{BOT_ID}>")
    [answer] = await posts(fake, 1)
    assert "/reset starts a fresh conversation" in answer["content"]
    assert answer["message_reference"]["message_id"] == asked["id"]


async def test_mention_author_pings_when_configured(fake, running):
    await start(running, fake, mention_author=True)
    await fake.say(f"<@{BOT_ID}> ping me")
    [answer] = await posts(fake, 1)
    assert answer["allowed_mentions"]["replied_user"] is True
    assert [m["id"] for m in answer["mentions"]] == [str(ALICE)]


async def test_guild_message_without_mention_and_everyone_alone_are_ignored(fake, running):
    await start(running, fake)
    await fake.say("just chatting among humans")
    await fake.say("@everyone standup in 5")
    await fake.say(f"<@&{fake.other_role_id}> humans only")
    await fake.say(f"<@{BOB}> over to you")
    await fake.say(f"<@{BOT_ID}> now you")
    [answer] = await posts(fake, 1)
    assert answer["content"].endswith("] now you")
    await fake.say(f"<@{BOT_ID}> and again")
    assert len(await posts(fake, 2)) == 2  # nothing else slipped in between


async def test_reply_to_the_bot_is_answered_and_reply_to_a_human_is_not(fake, running):
    await start(running, fake)
    await fake.say(f"<@{BOT_ID}> first question")
    [bot_message] = await posts(fake, 1)
    human = await fake.say("a human remark", author=ALICE)
    await fake.say("I disagree with alice", author=BOB, reply_to=human)
    asked = await fake.say("follow-up from bob", author=BOB, reply_to=bot_message)
    answers = await posts(fake, 2)
    # The echo backend keeps no history, so it is told which answer Bob replies to.
    quoted = f"[In reply to you: {bot_message['content']}]"
    assert answers[1]["content"] == f"[{group_key(fake.channel_id, BOB)}] {quoted}\nfollow-up from bob"
    assert answers[1]["message_reference"]["message_id"] == asked["id"]


async def test_other_users_mentions_reach_the_model_as_names(fake, running):
    await start(running, fake)
    await fake.say(f"<@{BOT_ID}> say hi to <@{BOB}>")
    [answer] = await posts(fake, 1)
    assert answer["content"].endswith("] say hi to @Bob")


async def test_bots_webhooks_and_its_own_posts_are_ignored(fake, running):
    async with FakeOpenAI() as llm:
        # An answer that mentions the bot itself: answering its own post would loop forever.
        llm.reply = lambda body, headers: f"<@{BOT_ID}> says: {body['messages'][-1]['content']}"
        await start(running, fake, openai_backend(llm))
        await fake.say(f"<@{BOT_ID}> hello from a bot", author=HELPER_BOT)
        await fake.say(f"<@{BOT_ID}> hello from a webhook", webhook=True)
        await fake.say(f"<@{BOT_ID}> hello from alice")
        [answer] = await posts(fake, 1)
        assert answer["content"] == f"<@{BOT_ID}> says: hello from alice"
        await fake.say(f"<@{BOT_ID}> one more")
        await posts(fake, 2)
        assert [c.json["messages"][-1]["content"] for c in llm.calls] == [
            "hello from alice",
            "one more",
        ]


@pytest.mark.parametrize("threads_as_groups", [False, True])
async def test_thread_answer_goes_to_the_thread_with_its_group(fake, running, threads_as_groups):
    await start(running, fake, threads_as_groups=threads_as_groups)
    await fake.say(f"<@{BOT_ID}> in a thread", channel=fake.thread_id)
    [answer] = await posts(fake, 1)
    assert int(answer["channel_id"]) == fake.thread_id
    group = fake.thread_id if threads_as_groups else fake.channel_id
    assert answer["content"] == f"[{group_key(group, ALICE)}] in a thread"


# --------------------------------------------------------------------------------- answers


async def test_long_answer_with_code_arrives_as_three_messages_with_balanced_fences(fake, running):
    prose = " ".join(["The quick brown fox jumps over the lazy dog."] * 55)
    code = "\n".join(f"print('line {n:03d} of the example program')" for n in range(50))
    long = f"{prose}\n\n```python\n{code}\n```\n\nThat is all."
    assert 4400 <= len(long) <= 4600
    async with FakeOpenAI(reply=lambda body, headers: long) as llm:
        await start(running, fake, openai_backend(llm))
        asked = await fake.say(f"<@{BOT_ID}> explain with code")
        answers = await posts(fake, 3)
    assert len(answers) == 3
    texts = [a["content"] for a in answers]
    assert all(len(t) <= 2000 for t in texts)
    assert all(t.count("```") % 2 == 0 for t in texts)
    assert texts[0].startswith("The quick brown fox") and texts[-1].endswith("That is all.")
    joined = "\n".join(texts)
    assert all(f"print('line {n:03d} of the example program')" in joined for n in range(50))
    assert answers[0]["message_reference"]["message_id"] == asked["id"]
    assert "message_reference" not in answers[1] and "message_reference" not in answers[2]


async def test_typing_shows_while_the_backend_works(fake, running):
    async with FakeOpenAI() as llm:
        llm.slow_next(0.3)
        await start(running, fake, openai_backend(llm), typing_delay=0.1)
        await fake.say(f"<@{BOT_ID}> think hard")
        await posts(fake, 1)
    typing = fake.calls_to(f"/api/v10/channels/{fake.channel_id}/typing", "POST")
    message = fake.calls_to(f"/api/v10/channels/{fake.channel_id}/messages", "POST")
    assert typing and fake.calls.index(typing[0]) < fake.calls.index(message[0])


async def test_an_instant_answer_sends_no_typing(fake, running):
    await start(running, fake)  # typing_delay 1 s by default; the echo answers at once
    await fake.say(f"<@{BOT_ID}> quick one")
    await posts(fake, 1)
    assert not fake.calls_to(f"/api/v10/channels/{fake.channel_id}/typing", "POST")


async def test_rate_limited_post_is_retried_by_discord_py(fake, running):
    await start(running, fake)
    fake.rate_limit_next(0.05, path=f"/api/v10/channels/{fake.channel_id}/messages")
    await fake.say(f"<@{BOT_ID}> despite the limit")
    [answer] = await posts(fake, 1)
    assert answer["content"].endswith("] despite the limit")
    assert len(fake.calls_to(f"/api/v10/channels/{fake.channel_id}/messages", "POST")) == 2


async def test_a_forbidden_channel_makes_each_reply_undeliverable_once_and_other_chats_work(
    fake, running, caplog
):
    caplog.set_level(logging.INFO)
    cfg = config(fake)
    bridge = await running(cfg, DiscordAdapter(cfg.adapters.discord, Metrics()))
    fake.forbid_next(fake.channel_id, times=2)
    await fake.say(f"<@{BOT_ID}> first")
    await fake.say(f"<@{BOT_ID}> second")
    await fake.wait_for(
        lambda calls: (
            len(fake.calls_to(f"/api/v10/channels/{fake.channel_id}/messages", "POST")) == 2
        ),
        5,
    )
    await fake.say("still here?", dm=True)
    [answer] = await posts(fake, 1)
    assert int(answer["channel_id"]) == fake.dm_channel(ALICE)
    refusals = [r.getMessage() for r in caplog.records if "undeliverable" in r.getMessage()]
    assert len(refusals) == 2  # once per reply, never retried
    assert all(str(fake.channel_id) in m and "Missing Permissions" in m for m in refusals)
    assert bridge.metrics.messages.labels("discord", "undeliverable")._value.get() == 2


# --------------------------------------------------------------------------------- connection


async def test_gateway_disconnect_resumes_and_the_next_message_is_answered(fake, running):
    adapter = await start(running, fake)
    await fake.disconnect()
    await fake.wait_for(lambda calls: any(op["op"] == 6 for op in fake.gateway_ops), 5)
    resume = next(op for op in fake.gateway_ops if op["op"] == 6)
    assert resume["token_ok"] and resume["d"]["seq"] >= 2
    await fake.say(f"<@{BOT_ID}> are you back?")
    [answer] = await posts(fake, 1)
    assert answer["content"].endswith("] are you back?")
    assert adapter.health().ready
    assert sum(op["op"] == 2 for op in fake.gateway_ops) == 1  # resumed, not re-identified


async def test_invalidated_session_identifies_again_and_answers(fake, running):
    adapter = await start(running, fake)
    fake.invalidate_next_resume()
    await fake.disconnect()
    await fake.wait_identified(2)
    await eventually(lambda: adapter.health().ready, 5)
    await fake.say(f"<@{BOT_ID}> after a new session")
    [answer] = await posts(fake, 1)
    assert answer["content"].endswith("] after a new session")


async def test_readiness_reports_a_lost_gateway_until_it_is_back(fake, running):
    cfg = config(fake)
    adapter = DiscordAdapter(cfg.adapters.discord, Metrics())
    bridge = await running(cfg, adapter)

    async def connected() -> float | None:
        await bridge.metrics_page()  # what a Prometheus scrape sees
        return bridge.metrics.registry.get_sample_value(
            "botbridge_adapter_connected", {"platform": "discord"}
        )

    assert (await bridge.readiness())["components"]["discord"]["ready"] is True
    fake.gateway_refused = True
    await fake.disconnect()
    await eventually(lambda: not adapter.health().ready, 5)
    readiness = await bridge.readiness()
    assert readiness["ready"] is False
    assert "disconnected" in readiness["components"]["discord"]["detail"]
    assert await connected() == 0
    fake.gateway_refused = False
    await eventually(lambda: adapter.health().ready, 10)
    assert await connected() == 1
    await fake.say(f"<@{BOT_ID}> hello again")
    assert (await posts(fake, 1))[0]["content"].endswith("] hello again")


async def test_token_never_reaches_the_log(fake, running, caplog):
    caplog.set_level(logging.DEBUG)
    await start(running, fake)
    await fake.say(f"<@{BOT_ID}> hi", author=BOB)
    await posts(fake, 1)
    assert caplog.records and TOKEN not in caplog.text


async def test_message_content_intent_refused_is_a_clear_config_error(running):
    async with FakeDiscord(message_content_allowed=False) as fake:
        with pytest.raises(ConfigError) as caught:
            await start(running, fake)
        assert caught.value.path == "adapters.discord.message_content"
        assert "developer portal" in str(caught.value)
        # Without the intent the bot still connects (Discord sends mentions and DMs anyway).
        await start(running, fake, message_content=False)
        identify = [op for op in fake.gateway_ops if op["op"] == 2][-1]
        assert identify["d"]["intents"] & MESSAGE_CONTENT == 0
        await fake.say("hi", dm=True)
        assert (await posts(fake, 1))[0]["content"].endswith("hi")


async def test_bad_token_is_a_clear_config_error(fake, running):
    cfg = make_config(
        {
            "backends": {"main": {"type": "echo"}},
            "adapters": {"discord": {**discord_section(fake), "token": "wrong"}},
        }
    )
    with pytest.raises(ConfigError, match=r"adapters\.discord\.token: rejected by Discord"):
        await running(cfg, DiscordAdapter(cfg.adapters.discord, Metrics()))


async def test_probe_logs_in_over_rest_only(fake):
    cfg = config(fake)
    assert await DiscordAdapter(cfg.adapters.discord, Metrics()).probe() == (
        f"botbridge (id {BOT_ID})"
    )
    assert [c.path for c in fake.calls] == [
        "/api/v10/users/@me",
        "/api/v10/oauth2/applications/@me",
    ]
    assert fake.gateway_ops == []


def test_shard_ids_need_a_shard_count():
    with pytest.raises(ConfigError, match=r"adapters\.discord\.shard_ids: needs shard_count"):
        make_config({"adapters": {"discord": {"token": "t", "shard_ids": [0]}}})


async def test_gateway_url_overrides_the_discovered_gateway(fake, running):
    fake.advertised_gateway = "ws://127.0.0.1:9/nowhere"  # nothing listens there
    await start(running, fake, gateway_url=fake.gateway_url)
    await fake.say("through the configured gateway", dm=True)
    assert (await posts(fake, 1))[0]["content"].endswith("] through the configured gateway")


async def test_two_shards_each_identify_and_both_kinds_of_chat_are_answered(fake, running):
    adapter = await start(running, fake, shard_count=2)
    shards = sorted(op["d"]["shard"] for op in fake.gateway_ops if op["op"] == 2)
    assert shards == [[0, 2], [1, 2]]
    assert adapter.health().detail.endswith("(2 shards)")
    await fake.say(f"<@{BOT_ID}> in the guild")
    await fake.say("in a DM", dm=True)
    contents = sorted(p["content"] for p in await posts(fake, 2))
    assert contents[0].endswith("] in a DM") and contents[1].endswith("] in the guild")


async def botbridge_check(fake: FakeDiscord, token: str, tmp_path) -> tuple[int, str]:
    """`botbridge check` in a child process (its own event loop) while the fake serves here."""
    path = tmp_path / "config.yaml"
    raw = {
        "backends": {"echo": {"type": "echo"}},
        "adapters": {"discord": {"token": "${DISCORD_TOKEN}", "api_base_url": fake.api_base_url}},
    }
    path.write_text(yaml.safe_dump(raw))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "check", "-c", str(path),
        env={**os.environ, "DISCORD_TOKEN": token}, cwd=Path(__file__).parents[2],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode()


async def test_botbridge_check_prints_the_bots_name_and_never_the_token(fake, tmp_path):
    code, out = await botbridge_check(fake, TOKEN, tmp_path)
    assert code == 0, out
    [line] = [line for line in out.splitlines() if line.startswith("adapter discord ")]
    assert re.split(r"\s{2,}", line)[1:] == ["ok", f"botbridge (id {BOT_ID})"]
    assert TOKEN not in out
    code, out = await botbridge_check(fake, "wrong-token-value", tmp_path)
    [line] = [line for line in out.splitlines() if line.startswith("adapter discord ")]
    assert code == 1 and "FAILED" in line and "adapters.discord.token" in line
    assert "wrong-token-value" not in out


async def test_unreachable_gateway_fails_start_up_clearly_and_quickly(fake, running):
    fake.gateway_refused = True
    with pytest.raises(TimeoutError, match=r"discord: not connected after 0\.5s"):
        async with asyncio.timeout(3):
            await start(running, fake, ready_timeout=0.5)


async def test_a_file_gets_a_short_reply_saying_why(fake, running):
    await start(running, fake)
    await fake.say("what is in this file?", dm=True, attachment="report.pdf")
    [answer] = await posts(fake, 1)
    assert answer["content"] == "I can only read text, so I can't take a file. Please ask in words."
    await fake.say("and now in words", dm=True)
    assert (await posts(fake, 2))[1]["content"] == f"[wx:dm:dc.{ALICE}] and now in words"


# --------------------------------------------------------------------------------- idempotency


async def start_fast_delivery(running, fake: FakeDiscord):
    raw = {
        "backends": {"main": {"type": "echo"}},
        "adapters": {"discord": discord_section(fake)},
        "bridge": {"delivery": {"retry_initial": 0.01, "retry_max": 0.05}},
    }
    cfg = make_config(raw)
    return await running(cfg, DiscordAdapter(cfg.adapters.discord, Metrics()))


async def test_a_post_whose_answer_was_lost_is_sent_again_and_appears_once(fake, running):
    bridge = await start_fast_delivery(running, fake)
    # Discord creates the message, then the connection breaks before discord.py reads the answer.
    fake.lose_answer_next(path=f"{API}/channels/{fake.dm_channel(ALICE)}/messages")
    await fake.say("did that work?", dm=True)
    await eventually(lambda: bridge.metrics.messages.labels("discord", "answered")._value.get(), 10)
    creates = fake.calls_to(f"{API}/channels/{fake.dm_channel(ALICE)}/messages", "POST")
    assert len(creates) == 2  # the retry went out, with the same nonce and enforce_nonce
    assert creates[0].json["nonce"] == creates[1].json["nonce"]
    assert all(c.json["enforce_nonce"] is True and len(c.json["nonce"]) <= 25 for c in creates)
    assert fake.posted_in(fake.dm_channel(ALICE)) == ["[wx:dm:dc.100000000000000001] did that work?"]
    assert fake.nonce_hits == 1
    assert bridge.metrics.possibly_repeated.labels("discord")._value.get() == 0


async def test_each_part_of_a_long_answer_has_a_nonce_of_its_own(fake, running):
    await start_fast_delivery(running, fake)
    await fake.say("x" * 1500 + " " + "y" * 1500, dm=True)
    parts = await posts(fake, 2)
    nonces = [p["nonce"] for p in parts]
    assert len(set(nonces)) == 2 and all(len(n) <= 25 for n in nonces)
