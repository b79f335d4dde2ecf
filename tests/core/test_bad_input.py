"""Odd input never shuts anyone out: a message with a lone surrogate or control characters is
repaired and answered, and neither it nor a bug of ours counts against the backend's circuit."""

from __future__ import annotations

import pytest

from bridge.app import Bridge
from bridge.config import DEFAULT_APOLOGY
from bridge.text import clean_input
from tests.adapters.telegram_world import start_world
from tests.conftest import RecordingConsole, make_config
from tests.fakes.telegram_api import FakeTelegram, user

CHAT = "/v1/chat/completions"


async def test_lone_surrogates_are_answered_and_the_circuit_stays_closed(openai_fake, running):
    async with FakeTelegram() as telegram:
        backends = {"main": {"type": "openai", "base_url": openai_fake.base_url,
                             "max_retries": 0}}  # fmt: skip
        world = await start_world(running, telegram, "polling", backends=backends)
        # Telegram can deliver half of a surrogate pair inside JSON: "x \ud800".
        for n in range(5):
            await world.send(telegram.dm(user(100 + n, f"U{n}"), f"question {n} \ud800 end"))
        await telegram.wait_sent(5, timeout=15)
        await world.send(telegram.dm(user(200, "Other"), "and mine?"))
        await telegram.wait_sent(6, timeout=15)

        assert sorted(telegram.texts()[:5]) == [f"echo: question {n} \ufffd end" for n in range(5)]
        assert telegram.texts()[5] == "echo: and mine?"  # everyone else is still answered
        asked = [c.json["messages"][-1]["content"] for c in openai_fake.calls_to(CHAT)]
        assert sorted(asked) == ["and mine?"] + [f"question {n} \ufffd end" for n in range(5)]
        report = await world.bridge.readiness()
        assert report["backends"] == {"main": {"circuit": "closed"}}


def test_cleaning_repairs_what_a_client_can_send():
    assert clean_input("a \ud83d\ude00 b") == "a 😀 b"  # a pair split in two code points: joined
    assert clean_input("lone \udc00 low") == "lone \ufffd low"
    assert clean_input("tab\tand\r\nnewline\x00\x1b[31m\x7f") == "tab\tand\nnewline[31m"
    assert clean_input("plain") == "plain"


class Broken:
    """A backend with a bug: every call raises something that is not a BackendError."""

    name = "main"

    def __init__(self) -> None:
        self.calls = 0

    async def ask(self, session, text):
        self.calls += 1
        raise KeyError("a bug of ours")

    async def probe(self):
        return "broken"

    async def aclose(self):
        return None


async def test_a_bug_of_ours_never_opens_the_circuit():
    console = RecordingConsole(user="ann")
    config = make_config({"backends": {"main": {"type": "echo"}},
                          "bridge": {"breaker_threshold": 3}})  # fmt: skip
    broken = Broken()
    bridge = Bridge(config, [console], backends={"main": broken})
    await bridge.start()
    try:
        for n in range(6):
            await console.say(f"q{n}")
        assert await console.replies(6) == [DEFAULT_APOLOGY] * 6
        assert broken.calls == 6  # never short-circuited: the backend itself is fine
        assert (await bridge.readiness())["backends"] == {"main": {"circuit": "closed"}}
    finally:
        await bridge.stop()


@pytest.mark.parametrize("threshold", [3])
async def test_a_request_the_bridge_cannot_build_never_opens_the_circuit(
    openai_fake, console, running, caplog, threshold
):
    # A system prompt the HTTP client cannot encode: every request fails on our side.
    backend = {"type": "openai", "base_url": openai_fake.base_url, "max_retries": 0,
               "system_prompt": "be kind \ud800"}  # fmt: skip
    config = make_config({"backends": {"main": backend},
                          "bridge": {"breaker_threshold": threshold}})  # fmt: skip
    bridge = await running(config, console)
    for n in range(threshold + 2):
        await console.say(f"q{n}")
    assert await console.replies(threshold + 2) == [DEFAULT_APOLOGY] * (threshold + 2)
    assert openai_fake.calls == []
    assert (await bridge.readiness())["backends"] == {"main": {"circuit": "closed"}}
    failures = [r.getMessage() for r in caplog.records if "backend failed" in r.getMessage()]
    assert len(failures) == threshold + 2
    assert all("cause=unsendable" in line and "be kind" not in line for line in failures)
