"""Streamed answers on Slack, through slack-bolt/slack_sdk against the fake Web API (Socket Mode),
with the fake OpenAI server writing a few characters at a time. U012's answers stream; U013's come
whole from the same server, so a scene can hold one against the other."""

from __future__ import annotations

import pytest

from adapters._slack_format import to_mrkdwn
from adapters.slack import SlackAdapter
from bridge.metrics import Metrics
from bridge.types import Outbound
from tests.adapters.streaming_world import MARKDOWN, routed_config, writing_model
from tests.fakes.base import eventually
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack, im, mention

PLAIN = "Words keep coming, one after another. " * 12


@pytest.fixture
async def slack():
    async with FakeSlack() as server:
        yield server


@pytest.fixture
async def llm():
    async with writing_model() as server:
        yield server


async def start(running, slack, llm, **streaming):
    section = {"bot_token": BOT_TOKEN, "app_token": APP_TOKEN, "api_base_url": slack.api_url}
    config = routed_config(llm, "slack", section, "U012", **streaming)
    return await running(config, SlackAdapter(config.adapters.slack, Metrics()))


def in_channel(slack: FakeSlack, channel: str) -> list[dict]:
    return [m for m in slack.posted if m["channel"] == channel]


async def test_a_dm_streams_in_the_questions_thread_and_ends_as_the_whole_answer(slack, llm, running):
    await start(running, slack, llm)
    asked = im("plan please")
    await slack.push(asked)
    await slack.push(im("plan please", user="U013", channel="D0IM2"))
    await eventually(lambda: llm.finished and slack.updates and in_channel(slack, "D0IM2"), 20)
    [streamed] = in_channel(slack, "D0IM")
    [whole] = in_channel(slack, "D0IM2")
    assert streamed["thread_ts"] == asked["event"]["ts"]  # a stream replies in a thread
    assert streamed["at"] < llm.finished[0]  # visible while the model still wrote
    assert not streamed["streaming"]
    assert streamed["text"] == whole["text"] == to_mrkdwn(MARKDOWN)  # the same message in the end
    assert "markdown" not in streamed  # the streamed Markdown was replaced by that text
    [start_call] = slack.args_of("chat.startStream")
    assert "recipient_user_id" not in start_call  # not needed in a DM
    statuses = [s["status"] for s in slack.statuses]
    assert statuses[0] == "is thinking…" and statuses[-1] == ""


async def test_in_a_channel_the_stream_is_addressed_to_the_asker(slack, llm, running):
    await start(running, slack, llm, groups=True)
    asked = mention("<@UBOT> plan please")
    await slack.push(asked)
    await eventually(lambda: llm.finished and slack.updates, 20)
    [start_call] = slack.args_of("chat.startStream")
    assert start_call["recipient_user_id"] == "U012" and start_call["recipient_team_id"] == "T024"
    assert start_call["thread_ts"] == asked["event"]["ts"]
    [answer] = slack.posted
    assert answer["text"] == to_mrkdwn(MARKDOWN)


async def test_refused_streams_fall_back_to_an_updated_message(slack, llm, running):
    slack.streams_supported = False
    await start(running, slack, llm)
    for number in range(2):
        await slack.push(im(f"plan please {number}"))
        await eventually(lambda n=number: len(slack.posted) > n and llm.finished[n:], 20)
        await eventually(lambda n=number: slack.posted[n]["text"] == to_mrkdwn(MARKDOWN), 20)
    assert len(slack.posted) == 2
    assert len(slack.args_of("chat.startStream")) == 1  # refused once, not tried again
    assert "thread_ts" not in slack.posted[0]  # placed like a whole answer in a DM


async def test_an_expired_stream_goes_on_in_a_new_message_and_loses_nothing(slack, llm, running):
    llm.reply = lambda body, headers: PLAIN
    llm.stream.delay = 0.05
    await start(running, slack, llm)
    await slack.push(im("long please"))
    await eventually(lambda: slack.posted and len(slack.posted[0]["markdown"]) > 20, 20)
    slack.expire_streams()  # Slack ends the stream (about 5 minutes in real life)
    await eventually(lambda: llm.finished and len(slack.posted) == 2 and slack.updates, 20)
    first, second = slack.posted
    assert "markdown" in first and "text" not in first  # it keeps what it held
    assert first["markdown"] + second["text"] == PLAIN.strip()
    assert second["thread_ts"] == first["thread_ts"]


async def test_think_never_appears_in_any_stream_or_update(slack, llm, running):
    llm.reply = lambda body, headers: "<think>the SECRET plan</think>" + MARKDOWN
    llm.stream.chunk = 3
    await start(running, slack, llm, min_chars=1)
    await slack.push(im("plan please"))
    await eventually(lambda: llm.finished and slack.updates, 20)
    sent = [a.get("markdown_text", "") for m, a in slack.api_calls if "Stream" in m]
    sent += [u["text"] for u in slack.updates]
    assert len(sent) >= 2 and not [t for t in sent if "SECRET" in t or "think" in t.lower()]


async def test_a_part_replacing_a_message_that_is_gone_is_posted_anew(slack, llm, running):
    """Finishing a stream a crash cut short: the growing message was deleted meanwhile."""
    bridge = await start(running, slack, llm)
    [adapter] = bridge.adapters
    ts = await adapter.send(Outbound("slack", "D0IM", "the answer, whole", edit="1.000001"))
    [posted] = in_channel(slack, "D0IM")
    assert posted["ts"] == ts and posted["text"] == "the answer, whole"
    again = await adapter.send(Outbound("slack", "D0IM", "the answer, edited", edit=ts))
    assert again == ts and [m["text"] for m in in_channel(slack, "D0IM")] == ["the answer, edited"]
