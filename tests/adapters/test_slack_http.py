"""Slack end to end over HTTP Events: signed POSTs to the bridge's own HTTP server ↔ real slack-bolt
↔ the bridge ↔ the fake OpenAI server; answers go to the fake Slack Web API."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import httpx
import pytest

from tests.adapters.test_slack import GROUP_KEY, count, keys, start
from tests.fakes.base import eventually
from tests.fakes.slack_api import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    SlackEvents,
    channel_message,
    event_callback,
    im,
    mention,
)


@pytest.fixture
async def slack():
    async with FakeSlack() as server:
        yield server


async def start_http(running, slack, openai, **section):
    bridge, _ = await start(
        running, slack, openai, http=True, signing_secret=SIGNING_SECRET, **section
    )
    events = SlackEvents(f"http://127.0.0.1:{bridge.http.port}/slack/events")
    return bridge, events


async def test_im_is_answered(slack, openai_fake, running):
    _, events = await start_http(running, slack, openai_fake)
    response = await events.post(im("hello over http"))
    assert response.status_code == 200
    [posted] = await slack.wait_posted(1)
    assert (posted["channel"], posted["text"]) == ("D0IM", "echo: hello over http")
    assert "thread_ts" not in posted


async def test_channel_message_without_mention_is_ignored(slack, openai_fake, running):
    bridge, events = await start_http(running, slack, openai_fake)
    assert (await events.post(channel_message("anyone seen my keys?"))).status_code == 200
    assert count(bridge, "ignored") == 1
    assert (await events.post(im("and now me"))).status_code == 200
    await slack.wait_posted(1)
    assert await bridge.router.idle(5)
    assert [p["text"] for p in slack.posted] == ["echo: and now me"]
    assert openai_fake.calls_to("/v1/chat/completions")[0].json["messages"][-1]["content"] == (
        "and now me"
    )


async def test_mention_is_answered_in_its_thread_with_the_per_user_group_key(
    slack, openai_fake, running
):
    _, events = await start_http(running, slack, openai_fake)
    asked = mention("<@UBOT> summarise &lt;this&gt; &amp; that")
    assert (await events.post(asked)).status_code == 200
    [posted] = await slack.wait_posted(1)
    assert posted["channel"] == "C123"
    assert posted["thread_ts"] == asked["event"]["ts"]
    # Slack's entities are undone for the LLM and escaped again for Slack.
    assert posted["text"] == "echo: summarise &lt;this&gt; &amp; that"
    assert openai_fake.calls[0].json["messages"][-1]["content"] == "summarise <this> & that"
    assert keys(openai_fake) == [GROUP_KEY]


async def test_retry_of_an_accepted_event_is_acknowledged_and_answered_once(
    slack, openai_fake, running
):
    bridge, events = await start_http(running, slack, openai_fake)
    payload = im("are you there?")
    assert (await events.post(payload)).status_code == 200
    assert (await events.post(payload, retry_num=1)).status_code == 200
    assert (await events.post(payload, retry_num=2)).status_code == 200
    assert count(bridge, "duplicate") == 2
    await slack.wait_posted(1)
    assert await bridge.router.idle(5)
    assert [p["text"] for p in slack.posted] == ["echo: are you there?"]
    assert len(openai_fake.calls) == 1


async def test_badly_signed_or_stale_requests_are_refused(slack, openai_fake, running):
    bridge, events = await start_http(running, slack, openai_fake)
    wrong = await events.post(im("forged"), secret="not-the-signing-secret")
    unsigned = await events.post(im("unsigned"), signed=False)
    # Correctly signed, but six minutes old: a replay.
    stale = await events.post(im("replayed"), timestamp=int(time.time()) - 360)
    assert [wrong.status_code, unsigned.status_code, stale.status_code] == [401, 401, 401]
    assert count(bridge, "received") == 0
    assert (await events.post(im("genuine"))).status_code == 200
    await slack.wait_posted(1)
    assert await bridge.router.idle(5)
    assert [p["text"] for p in slack.posted] == ["echo: genuine"]
    assert len(openai_fake.calls) == 1


async def test_long_answer_arrives_in_order_as_mrkdwn(slack, openai_fake, running):
    paragraphs = [f"**Part {n:02d}** " + "lorem ipsum dolor sit amet " * 3 for n in range(100)]
    answer = "\n\n".join(paragraphs)
    assert len(answer) >= 9000
    openai_fake.reply = lambda body, headers: answer
    _, events = await start_http(running, slack, openai_fake)
    asked = mention("<@UBOT> tell me everything")
    await events.post(asked)
    await eventually_posted(slack, "Part 99")
    texts = [p["text"] for p in slack.posted]
    assert len(texts) >= 3
    assert all(len(t) <= 3000 for t in texts)
    assert all(p["thread_ts"] == asked["event"]["ts"] for p in slack.posted)
    joined = "\n\n".join(texts)
    assert "**" not in joined  # Markdown bold became mrkdwn bold
    assert re.findall(r"\*Part (\d\d)\*", joined) == [f"{n:02d}" for n in range(100)]


async def eventually_posted(slack, needle: str) -> None:
    await eventually(lambda: any(needle in p["text"] for p in slack.posted), 5)


async def test_event_is_acknowledged_before_the_slow_answer(slack, openai_fake, running):
    openai_fake.slow_next(1.0)
    _, events = await start_http(running, slack, openai_fake)
    loop = asyncio.get_running_loop()
    began = loop.time()
    response = await events.post(im("take your time"))
    acked = loop.time() - began
    assert response.status_code == 200
    assert acked < 0.5 and slack.posted == []  # Slack wants its 200 within 3 s
    await slack.wait_posted(1)
    assert loop.time() - began >= 1.0


async def test_url_verification_and_other_events_get_200(slack, openai_fake, running):
    _, events = await start_http(running, slack, openai_fake)
    challenge = {"token": "legacy", "challenge": "c-123", "type": "url_verification"}
    response = await events.post(challenge)
    assert response.status_code == 200 and response.json() == {"challenge": "c-123"}
    reaction = event_callback({"type": "reaction_added", "user": "U012", "reaction": "+1"})
    assert (await events.post(reaction)).status_code == 200  # never 404: Slack would retry
    assert slack.posted == []


async def test_ready_once_auth_test_passed(slack, openai_fake, running, caplog):
    caplog.set_level(logging.DEBUG)
    bridge, events = await start_http(running, slack, openai_fake)
    async with httpx.AsyncClient() as client:
        ready = await client.get(f"http://127.0.0.1:{bridge.http.port}/readyz")
    assert ready.status_code == 200
    assert ready.json()["components"]["slack"] == {
        "ready": True,
        "detail": "HTTP events on /slack/events",
    }
    await events.post(im("quiet please"))
    await slack.wait_posted(1)
    assert BOT_TOKEN not in caplog.text and SIGNING_SECRET not in caplog.text


async def test_event_the_bridge_could_not_accept_gets_no_200_so_slack_retries(
    slack, openai_fake, running
):
    bridge, events = await start_http(running, slack, openai_fake)
    accept = bridge.store.journal.accept

    async def disk_full_once(*args, **kwargs):
        bridge.store.journal.accept = accept
        raise OSError("disk full")

    bridge.store.journal.accept = disk_full_once
    payload = im("do not lose me")
    assert (await events.post(payload)).status_code == 503  # not acknowledged: Slack retries
    assert (await events.post(payload, retry_num=1)).status_code == 200
    await slack.wait_posted(1)
    assert await bridge.router.idle(5)
    assert [p["text"] for p in slack.posted] == ["echo: do not lose me"]
