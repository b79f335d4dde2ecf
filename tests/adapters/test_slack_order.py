"""A person's Slack messages reach the bridge in the order they were sent, from the very first
event: bolt checks the token (auth.test) on its first event, and events that arrive meanwhile
must not overtake the ones waiting for that answer."""

from __future__ import annotations

import pytest

from tests.adapters.test_slack import start
from tests.fakes.base import eventually
from tests.fakes.slack_api import FakeSlack, im


@pytest.fixture
async def slack():
    async with FakeSlack() as server:
        yield server


async def test_a_burst_of_messages_right_after_start_is_answered_in_order(
    slack, openai_fake, running
):
    slack.slow_next(0.3, path="/api/auth.test", times=2)  # Slack is slow to answer auth.test
    await start(running, slack, openai_fake, progress_reaction=None)
    for line in range(8):
        await slack.push(im(f"line {line}"))
    await eventually(lambda: len(slack.posted) == 8, 15)
    assert [p["text"] for p in slack.posted] == [f"echo: line {line}" for line in range(8)]
