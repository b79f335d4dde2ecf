"""Slack end to end, Socket Mode: a fake Slack (Web API + websocket) ↔ real slack-bolt ↔ the bridge
↔ the fake OpenAI server. Each test is a scene: what a person does in Slack, what they see."""

from __future__ import annotations

import pytest

from adapters.slack import SlackAdapter
from bridge.metrics import Metrics
from tests.conftest import make_config
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack, im


@pytest.fixture
async def slack():
    async with FakeSlack() as server:
        yield server


def slack_config(slack, openai, **section) -> dict:
    return {
        "backends": {
            "main": {
                "type": "openai",
                "base_url": openai.base_url,
                "session": "header",
                "retry_backoff": 0.01,
            }
        },
        "adapters": {
            "slack": {
                "bot_token": BOT_TOKEN,
                "app_token": APP_TOKEN,
                "api_base_url": slack.api_url,
                **section,
            }
        },
    }


async def test_im_is_answered(slack, openai_fake, running):
    config = make_config(slack_config(slack, openai_fake))
    adapter = SlackAdapter(config.adapters.slack, Metrics())
    await running(config, adapter)
    envelope = await slack.push(im("hello there"))
    await slack.wait_ack(envelope)
    [posted] = await slack.wait_posted(1)
    assert posted["text"] == "echo: hello there"
