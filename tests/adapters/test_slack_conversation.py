"""Slack conversation features end to end in Socket Mode: the fake Slack (Web API, websocket, and
its private file URLs) ⇄ real slack-bolt and slack_sdk ⇄ the bridge ⇄ the fake OpenAI server."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from adapters.slack import SlackAdapter
from bridge.metrics import Metrics
from tests.adapters.test_slack import slack_config
from tests.conftest import make_config
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.pictures import PNG, big_png
from tests.fakes.slack_api import FakeSlack, im, mention


@pytest.fixture
async def slack():
    async with FakeSlack() as server:
        yield server


async def start(running, slack: FakeSlack, openai: FakeOpenAI, bridge=None, **backend: Any):
    raw = slack_config(slack, openai, progress_reaction=None)
    raw["backends"]["main"].update(session="bridge", max_retries=0, **backend)
    raw["bridge"] = bridge or {}
    config = make_config(raw)
    await running(config, SlackAdapter(config.adapters.slack, Metrics()))


# ------------------------------------------------------------------------------ the thread's parent


async def test_a_question_in_bobs_thread_reaches_the_backend_with_bobs_text_marked(
    slack, openai_fake, running
):
    await start(running, slack, openai_fake)
    parent = slack.add_message("C123", "The deploy is on Friday.", user="U0BOB", profile="Bob")
    await slack.push(mention("<@UBOT> is that right?", thread_ts=parent))
    [posted] = await slack.wait_posted(1)
    assert openai_fake.asked() == ["[In reply to Bob: The deploy is on Friday.]\nis that right?"]
    assert posted["thread_ts"] == parent
    [replies] = slack.args_of("conversations.replies")
    assert (replies["channel"], replies["ts"]) == ("C123", parent)


async def test_the_parents_author_is_named_through_users_info_when_the_message_does_not(
    slack, openai_fake, running
):
    await start(running, slack, openai_fake)
    slack.add_user("U0BOB", "Bob Builder")
    first = slack.add_message("C123", "Can we ship today?", user="U0BOB")
    second = slack.add_message("C123", "And tomorrow?", user="U0BOB")
    await slack.push(mention("<@UBOT> thoughts?", thread_ts=first))
    await slack.wait_posted(1)
    await slack.push(mention("<@UBOT> and?", thread_ts=second))
    await slack.wait_posted(2)
    assert openai_fake.asked() == [
        "[In reply to Bob Builder: Can we ship today?]\nthoughts?",
        "[In reply to Bob Builder: And tomorrow?]\nand?",
    ]
    assert len(slack.args_of("users.info")) == 1  # the name is remembered


async def test_the_askers_own_question_at_the_top_of_the_thread_is_not_repeated(
    slack, openai_fake, running
):
    await start(running, slack, openai_fake)  # the bridge keeps the history
    question = mention("<@UBOT> name a colour")
    slack.history[("C123", question["event"]["ts"])] = dict(question["event"], type="message")
    await slack.push(question)
    await slack.wait_posted(1)
    await slack.push(mention("<@UBOT> another one?", thread_ts=question["event"]["ts"]))
    await slack.wait_posted(2)
    assert openai_fake.asked() == ["name a colour", "another one?"]


async def test_an_unreadable_parent_does_not_cost_the_answer(slack, openai_fake, running):
    await start(running, slack, openai_fake)
    slack.error_next("/api/conversations.replies", "missing_scope")
    await slack.push(mention("<@UBOT> still answered?", thread_ts="1700000000.000001"))
    [posted] = await slack.wait_posted(1)
    assert posted["text"] == "echo: still answered?"


# ------------------------------------------------------------------------------ pictures


async def test_a_picture_reaches_a_vision_backend_as_an_image_part(slack, openai_fake, running):
    await start(running, slack, openai_fake, vision=True)
    file = slack.add_file(PNG)
    await slack.push(im("what is this?", subtype="file_share", files=[file]))
    [posted] = await slack.wait_posted(1)
    [content] = openai_fake.asked()
    url = f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
    assert content == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    assert posted["text"] == f"echo: what is this? [image image/png, {len(PNG)} bytes]"
    [download] = slack.downloads
    assert download.complete


async def test_a_picture_gets_the_polite_refusal_from_a_backend_without_vision(
    slack, openai_fake, running
):
    await start(running, slack, openai_fake)
    await slack.push(im("what is this?", subtype="file_share", files=[slack.add_file(PNG)]))
    [posted] = await slack.wait_posted(1)
    assert posted["text"] == "I can only read text, so I can't take a picture. Please ask in words."
    assert slack.downloads == [] and openai_fake.calls == []


async def test_an_oversized_picture_gets_a_clear_message_and_is_not_downloaded(
    slack, openai_fake, running
):
    await start(running, slack, openai_fake, bridge={"max_image_bytes": 1_000_000}, vision=True)
    file = slack.add_file(big_png(4_000_000))
    await slack.push(im("look", subtype="file_share", files=[file]))
    [posted] = await slack.wait_posted(1)
    assert posted["text"] == (
        "That picture is 4 MB; I can take pictures up to 1 MB. Please send a smaller one."
    )
    assert slack.downloads == [] and openai_fake.calls == []


async def test_a_picture_whose_size_is_not_stated_is_cut_off_at_the_limit(
    slack, openai_fake, running
):
    await start(running, slack, openai_fake, bridge={"max_image_bytes": 1_000_000}, vision=True)
    file = slack.add_file(big_png(20_000_000), stated_size=-1)
    await slack.push(im("look", subtype="file_share", files=[file]))
    [posted] = await slack.wait_posted(1)
    assert posted["text"] == (
        "That picture is too large; I can take pictures up to 1 MB. Please send a smaller one."
    )
    [download] = slack.downloads
    assert not download.complete and download.sent < 10_000_000  # read no further than needed
    assert openai_fake.calls == []


async def test_without_files_read_the_sender_is_told_and_the_operator_why(
    slack, openai_fake, running, caplog
):
    caplog.set_level(logging.WARNING, logger="bridge.router")  # whatever an earlier test left
    await start(running, slack, openai_fake, vision=True)
    slack.files_read = False
    await slack.push(im("what is this?", subtype="file_share", files=[slack.add_file(PNG)]))
    [posted] = await slack.wait_posted(1)
    assert posted["text"] == "Sorry, I couldn't get that picture. Please try sending it again."
    assert "does the app have the files:read scope?" in caplog.text
    assert openai_fake.calls == []


async def test_the_bot_token_goes_only_to_slacks_own_hosts(slack, openai_fake, running):
    await start(running, slack, openai_fake, vision=True)
    file = slack.add_file(PNG)
    # The same server under another name: not the configured API host, nor Slack's.
    elsewhere = file["url_private"].replace("127.0.0.1", "localhost")
    file["url_private"] = file["url_private_download"] = elsewhere
    await slack.push(im("what is this?", subtype="file_share", files=[file]))
    [posted] = await slack.wait_posted(1)
    assert posted["text"] == "Sorry, I couldn't get that picture. Please try sending it again."
    assert slack.downloads == [] and openai_fake.calls == []
