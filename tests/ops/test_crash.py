"""Crash safety, proven on the real daemon: `botbridge run` is killed (SIGKILL, no drain) while a
question is with the LLM; started again on the same state, it answers that question, once."""

from __future__ import annotations

from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegram, user
from tests.ops.test_daemon import daemon, stop, telegram_config


async def test_a_question_in_flight_when_the_daemon_is_killed_is_answered_once_after_restart(
    tmp_path,
):
    alice, bob = user(42, "Alice"), user(43, "Bob")
    async with FakeTelegram() as telegram, FakeOpenAI() as llm:
        config = telegram_config(telegram, llm)
        async with daemon(tmp_path, config) as first:
            await first.ready(True, 15)
            llm.slow_next(60)  # the LLM is still thinking when the process dies
            await telegram.push(telegram.dm(alice, "question before the crash"))
            await llm.wait_for(lambda calls: len(calls) == 1, 10)
            first.proc.kill()  # no SIGTERM, no drain: a crash
            await first.proc.wait()
        assert telegram.texts() == []

        async with daemon(tmp_path, config) as second:  # same state directory
            await second.ready(True, 15)
            await telegram.wait_sent(1, timeout=15)
            await telegram.push(telegram.dm(bob, "and a new question"))
            await telegram.wait_sent(2, timeout=15)
            assert await stop(second) == 0

    assert sorted(telegram.texts()) == ["echo: and a new question", "echo: question before the crash"]
    assert [m["chat"]["id"] for m in telegram.sent if "crash" in m["text"]] == [42]
