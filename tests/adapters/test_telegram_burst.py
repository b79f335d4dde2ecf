"""Issue 15's proof, through the real python-telegram-bot adapter and the fake Bot API on one
process: bursts of messages from 50 users, all released at once, three in a row, are each answered
once — also when the Bot API refuses every 10th send with a 502 and closes every 50th connection
mid-request. (Before the typing indicator stopped cancelling requests mid-flight, the second burst
lost half its answers to "Pool timeout: All connections in the connection pool are occupied".)

CI runs 3 bursts of 200; `BOTBRIDGE_FAULTS_FULL=1` runs the issue's 3 bursts of 2,000.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from adapters.telegram import TelegramAdapter
from bridge.metrics import Metrics
from tests.adapters.telegram_world import world_config
from tests.adapters.test_telegram_pool import busy
from tests.fakes.base import eventually
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegram, user

FULL = os.environ.get("BOTBRIDGE_FAULTS_FULL") == "1"
BURST = 2000 if FULL else 200
BURSTS = 3
USERS = 50

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1800 if FULL else 300)]


async def bursts(running, tmp_path, *, faults: bool) -> dict[str, Any]:
    async with FakeTelegram() as fake, FakeOpenAI() as llm:
        if faults:
            fake.fail_every("sendMessage", 10, 502)
            fake.drop_every(50)
        backend = {"type": "openai", "base_url": llm.base_url, "max_retries": 0}
        # Until the delivery journal keeps an undelivered reply pending (issue 15 part 2), a
        # reply whose every send attempt fails is lost: with the default 4 retries and ~12% of
        # sends failing, one in ~70 CI runs would lose one. 10 retries leave only 11 failures
        # in a row (p ~ 1e-10 per reply); the pool leak, if it came back, fails every send.
        config = world_config(
            fake, "polling", backends={"main": backend}, typing_interval=4,
            retry_backoff=0.05, max_sends_per_second=0, send_retries=10 if faults else 4,
        )  # fmt: skip
        config = config.model_copy(update={"bridge": config.bridge.model_copy(update={
            "store": config.bridge.store.model_copy(update={"path": str(tmp_path / "s.db")})})})
        assert config.adapters.telegram is not None
        adapter = TelegramAdapter(config.adapters.telegram, Metrics())
        await running(config, adapter)
        people = [user(100 + n, f"U{n}") for n in range(USERS)]
        started = time.monotonic()
        for burst in range(BURSTS):
            await fake.push(*(
                fake.dm(people[i % USERS], f"burst {burst} message {i}") for i in range(BURST)
            ))  # fmt: skip
            await fake.wait_sent((burst + 1) * BURST, timeout=600 if FULL else 120)
        took = time.monotonic() - started
        await eventually(lambda: busy(adapter) == (0, 0), 30, every=0.05)

        answers = Counter(fake.texts())
        expected = {f"echo: burst {b} message {i}" for b in range(BURSTS) for i in range(BURST)}
        assert set(answers) == expected, f"lost: {len(expected - set(answers))}"
        assert max(answers.values()) == 1, [t for t, n in answers.items() if n > 1][:5]
        asked = Counter(c.json["messages"][-1]["content"] for c in llm.calls)
        assert max(asked.values()) == 1 and len(asked) == BURSTS * BURST  # the LLM asked once
        by_chat: dict[int, list[str]] = defaultdict(list)
        for message in fake.sent:
            by_chat[message["chat"]["id"]].append(message["text"])
        for texts in by_chat.values():  # each person's answers in the order they asked
            order = [(int(t.split()[2]), int(t.split()[4])) for t in texts]
            assert order == sorted(order)
        return {"answered": len(answers), "seconds": round(took, 1), **fake.injected}


async def test_three_bursts_are_each_answered_once(running, tmp_path):
    figures = await bursts(running, tmp_path, faults=False)
    assert figures["answered"] == BURSTS * BURST
    print(f"\nbursts without faults: {figures}")


async def test_three_bursts_under_bot_api_faults_lose_nothing(running, tmp_path):
    figures = await bursts(running, tmp_path, faults=True)
    assert figures["answered"] == BURSTS * BURST
    assert figures["failed"] >= BURSTS * BURST // 10 and figures["dropped"] > 0
    print(f"\nbursts with every 10th send refused and every 50th connection cut: {figures}")
