"""Telegram's delivery paths under trouble: stalled long polls, 409 Conflict, network errors while
polling, webhook registration and secrets, readiness, `check`'s probe, and a token that never
reaches the log."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys

import pytest

from adapters.telegram import TelegramAdapter, TelegramFailure
from bridge.cli import main
from bridge.config import parse_config
from bridge.errors import ConfigError
from bridge.metrics import Metrics
from tests.adapters.telegram_world import SECRET, start_world, telegram_section
from tests.fakes.base import eventually
from tests.fakes.telegram_api import TOKEN, FakeTelegram, user

ALICE = user(42, "Alice")


@pytest.fixture
async def fake():
    async with FakeTelegram() as server:
        yield server


async def test_stalled_poller_is_restarted_and_answers_the_next_message(fake, running, caplog):
    world = await start_world(running, fake, "polling", stall_timeout=1.5)
    adapter = world.adapter
    await eventually(lambda: adapter.health().ready, timeout=3)
    fake.stalled = True  # getUpdates stops answering, like a silently dropped connection
    await eventually(lambda: not adapter.health().ready, timeout=3)
    assert "no getUpdates round trip" in adapter.health().detail
    fake.stalled = False  # new connections work again; the hung one never answers
    await world.send(fake.dm(ALICE, "anyone home?"))
    # PTB's own read timeout would only end the hung poll after 6 s: the watchdog is faster.
    [answer] = await fake.wait_sent(1, timeout=4)
    assert answer["text"] == "[wx:dm:tg.42] anyone home?"
    assert adapter.restarts >= 1
    assert adapter.health().ready
    assert "restarting the poller" in caplog.text


async def test_network_errors_while_polling_lose_and_repeat_nothing(fake, running):
    world = await start_world(running, fake, "polling")
    await fake.wait_for(lambda calls: fake.api_calls("getUpdates"))
    fake.fail_method("getUpdates", 502, "Bad Gateway", times=2)
    fake.drop_next(path=f"/bot{fake.token}/getUpdates")
    await world.send(*(fake.dm(ALICE, f"message {n}") for n in range(3)))
    await fake.wait_sent(3)
    await world.send(fake.dm(ALICE, "marker"))
    await fake.wait_sent(4)
    await world.bridge.router.idle(2)
    assert fake.texts() == [f"[wx:dm:tg.42] message {n}" for n in range(3)] + [
        "[wx:dm:tg.42] marker"
    ]


async def test_store_failure_leaves_the_update_to_be_fetched_again(fake, running):
    world = await start_world(running, fake, "polling")
    store = world.bridge.store
    real_accept = store.journal.accept
    failures = []

    async def flaky_accept(*args, **kwargs):
        if not failures:
            failures.append(args[0])
            raise OSError("disk full")
        return await real_accept(*args, **kwargs)

    store.journal.accept = flaky_accept  # type: ignore[method-assign]
    await world.send(fake.dm(ALICE, "do not lose me"))
    [answer] = await fake.wait_sent(1)
    assert answer["text"] == "[wx:dm:tg.42] do not lose me"
    assert failures


async def test_a_burst_is_taken_in_at_once_not_one_store_round_trip_at_a_time(fake, running):
    world = await start_world(running, fake, "polling")
    await fake.wait_for(lambda calls: fake.api_calls("getUpdates"))
    store = world.bridge.store
    real_accept = store.journal.accept
    burst = 20
    under_way: list[str] = []
    all_arrived = asyncio.Event()

    async def slow_accept(event_id, *args, **kwargs):
        # Each accept waits until the whole burst is being accepted: one at a time, the first
        # would wait for ever.
        under_way.append(event_id)
        if len(under_way) == burst:
            all_arrived.set()
        await all_arrived.wait()
        return await real_accept(event_id, *args, **kwargs)

    store.journal.accept = slow_accept  # type: ignore[method-assign]
    people = [user(100 + n, f"P{n}") for n in range(burst)]
    await world.send(*(fake.dm(person, f"question {n}") for n, person in enumerate(people)))
    await fake.wait_sent(burst, timeout=20)
    assert sorted(fake.texts()) == sorted(
        f"[wx:dm:tg.{100 + n}] question {n}" for n in range(burst)
    )


async def test_a_store_failure_mid_batch_loses_and_repeats_nothing(fake, running):
    world = await start_world(running, fake, "polling")
    await fake.wait_for(lambda calls: fake.api_calls("getUpdates"))
    store = world.bridge.store
    real_accept = store.journal.accept
    failed: list[str] = []

    async def accept_failing_once_on_the_third(event_id, *args, **kwargs):
        if not failed and event_id.endswith(str(first + 2)):
            failed.append(event_id)
            raise OSError("disk full")
        return await real_accept(event_id, *args, **kwargs)

    store.journal.accept = accept_failing_once_on_the_third  # type: ignore[method-assign]
    [first, *_] = await fake.push(*(fake.dm(ALICE, f"message {n}") for n in range(5)))
    await fake.wait_sent(5, timeout=10)
    await world.bridge.router.idle(5)
    # Alice's five messages, each answered once and in the order she sent them.
    assert fake.texts() == [f"[wx:dm:tg.42] message {n}" for n in range(5)]
    assert failed


async def test_conflict_with_another_poller_is_reported(fake, running, caplog):
    fake.conflict = True
    world = await start_world(running, fake, "polling")
    adapter = world.adapter
    await fake.wait_for(lambda calls: len(fake.api_calls("getUpdates")) >= 2)
    health = adapter.health()
    assert not health.ready
    assert "409 Conflict" in health.detail and "only one process may poll" in health.detail
    assert "only one process may poll" in caplog.text
    fake.conflict = False
    await eventually(lambda: adapter.health().ready, timeout=3)
    ready = await world.bridge.readiness()
    assert ready["components"]["telegram"]["ready"] is True


async def test_polling_deletes_a_webhook_first(fake, running):
    fake.webhook = {"url": "https://old.example.org/hook"}
    world = await start_world(running, fake, "polling")
    await world.send(fake.dm(ALICE, "hi"))
    await fake.wait_sent(1)
    methods = [c.method for c in fake.api_calls()]
    assert methods.index("deleteWebhook") < methods.index("getUpdates")


async def test_webhook_is_registered_with_its_secret(fake, running):
    world = await start_world(running, fake, "webhook")
    [call] = fake.api_calls("setWebhook")
    assert call.params["url"] == "https://bridge.example.org/telegram/webhook"
    assert call.params["secret_token"] == SECRET
    assert call.params["allowed_updates"] == ["message"]
    assert not fake.api_calls("getUpdates")
    assert world.adapter.health().ready


async def test_webhook_with_wrong_or_missing_secret_is_refused(fake, running):
    world = await start_world(running, fake, "webhook")
    update = fake.complete(fake.dm(ALICE, "let me in"))
    assert await world.post(update, secret="guess") == 403
    assert await world.post(update, secret=None) == 401
    assert await world.post(update, secret=SECRET.upper()) == 403
    await world.bridge.router.idle(1)
    assert world.bridge.metrics.messages.labels("telegram", "received")._value.get() == 0
    # The same update with the right secret is then answered: nothing was half-processed.
    assert await world.post(update) == 200
    [answer] = await fake.wait_sent(1)
    assert answer["text"] == "[wx:dm:tg.42] let me in"


async def test_webhook_rejects_a_body_that_is_not_an_update(fake, running):
    world = await start_world(running, fake, "webhook")
    assert await world.post(["not", "an", "update"]) == 400  # type: ignore[arg-type]


async def test_probe_names_the_bot(fake):
    config = parse_config({"adapters": {"telegram": telegram_section(fake)}}, {})
    assert config.adapters.telegram is not None
    adapter = TelegramAdapter(config.adapters.telegram, Metrics())
    assert await adapter.probe() == "@bridge_bot (id 7000001)"


async def test_the_token_never_reaches_the_log(fake, running, caplog):
    caplog.set_level(logging.DEBUG, logger="adapters.telegram")
    caplog.set_level(logging.DEBUG, logger="bridge")
    # A wrong token: PTB's own exception text contains it.
    wrong = dict(telegram_section(fake), token="999999:WRONG-secret-token-value")
    config = parse_config({"adapters": {"telegram": wrong}}, {})
    assert config.adapters.telegram is not None
    adapter = TelegramAdapter(config.adapters.telegram, Metrics())
    with pytest.raises(TelegramFailure) as probe_error:
        await adapter.probe()
    with pytest.raises(TelegramFailure) as start_error:
        await adapter.start(lambda inbound: asyncio.sleep(0, True))
    for error in (probe_error.value, start_error.value):
        assert "WRONG-secret" not in str(error) and "rejected the token" in str(error)
    # The right token through failures that get logged: 502s, a 409, a kicked bot.
    fake.fail_method("getUpdates", 502, "Bad Gateway", times=2)
    world = await start_world(running, fake, "polling")
    fake.forbid_chat(-100555)
    await world.send(
        fake.group_message({"id": -100555, "type": "supergroup"}, ALICE, "@bridge_bot x")
    )
    await eventually(lambda: "bot was kicked" in caplog.text, timeout=3)
    assert "Bad Gateway" in caplog.text
    for secret in (fake.token, "WRONG-secret-token-value"):
        assert secret not in caplog.text


def test_stall_timeout_must_exceed_the_long_poll():
    with pytest.raises(ConfigError) as error:
        parse_config(
            {"adapters": {"telegram": {"token": "1:x", "poll_timeout": 30, "stall_timeout": 30}}},
            {},
        )
    assert str(error.value).startswith("adapters.telegram.stall_timeout")


def test_check_prints_the_bot_username_from_a_standalone_fake(tmp_path, capsys):
    """`botbridge check` against `python -m tests.fakes.telegram_api` in its own process."""
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.telegram_api", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        url = fake.stdout.readline().split()[-1]  # "ready http://127.0.0.1:N"
        config = tmp_path / "botbridge.yaml"
        for token, expected in ((TOKEN, 0), ("1:WRONG-token-for-check", 1)):
            section = {"token": token, "api_base_url": f"{url}/bot"}
            config.write_text(
                json.dumps({"backends": {"e": {"type": "echo"}}, "adapters": {"telegram": section}})
            )
            assert main(["check", "-c", str(config)]) == expected
        out = capsys.readouterr().out
        assert "@bridge_bot (id 7000001)" in out
        assert "rejected the token" in out and "WRONG-token" not in out
    finally:
        fake.terminate()
        fake.wait(5)
