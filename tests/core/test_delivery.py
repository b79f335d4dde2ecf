"""Delivery through the real router and store, with the console as the platform: a reply that
cannot be posted right now is kept and retried in its conversation's order, a refusal ends it as
undeliverable, readiness follows the sends, and a stop never loses a stored reply."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bridge.app import Bridge
from bridge.errors import DeliveryFailed, Undeliverable
from bridge.types import Outbound
from tests.conftest import RecordingConsole, make_config
from tests.fakes.base import eventually

FAST = {"retry_initial": 0.01, "retry_max": 0.05, "unready_failures": 3, "unready_after": 60}


class FlakyConsole(RecordingConsole):
    """The console, failing the next sends as told (`fail`), or every send to a chat in
    `refusing`, or every send while `down` is set."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail: list[Exception] = []
        self.refusing: set[str] = set()
        self.down = False
        self.attempts: list[Outbound] = []

    async def send(self, outbound: Outbound) -> str:
        self.attempts.append(outbound)
        if outbound.chat_id in self.refusing:
            raise Undeliverable("blocked by the user")
        if self.down:
            raise DeliveryFailed("connection refused")
        if self.fail:
            raise self.fail.pop(0)
        return await super().send(outbound)


def config(tmp_path=None, **bridge: Any):
    settings: dict[str, Any] = {"delivery": FAST, **bridge}
    if tmp_path is not None:
        settings["store"] = {"path": str(tmp_path / "state.sqlite3")}
    return make_config({"backends": {"echo": {"type": "echo"}}, "bridge": settings})


async def test_a_reply_that_fails_to_post_is_retried_and_arrives_once(running):
    console = FlakyConsole(user="ann")
    console.fail = [DeliveryFailed("pool exhausted"), DeliveryFailed("502 Bad Gateway")]
    bridge = await running(config(), console)
    await console.say("hello")
    assert await console.replies(1) == ["[wx:dm:cl.ann] hello"]
    assert len(console.attempts) == 3
    assert bridge.metrics.delivery_retries.labels("console")._value.get() == 2
    await bridge.router.idle(5)
    assert console.texts() == ["[wx:dm:cl.ann] hello"]


async def test_later_messages_of_the_session_wait_for_the_stuck_one_others_do_not(running):
    console = FlakyConsole(user="ann")
    bridge = await running(config(), console)
    console.down = True
    await console.say("first", user="ann")
    await eventually(lambda: len(console.attempts) >= 2)
    await console.say("second", user="ann")
    await console.say("meanwhile", user="bob")
    await eventually(lambda: any(o.chat_id == "bob" for o in console.attempts))
    assert console.texts("ann") == []  # nothing of ann's went out: the platform is down
    console.down = False
    await console.replies(2, chat="ann")
    assert console.texts("ann") == ["[wx:dm:cl.ann] first", "[wx:dm:cl.ann] second"]
    assert bridge.metrics.messages.labels("console", "answered")._value.get() == 3


async def test_readiness_goes_red_while_sends_fail_and_green_after_one_succeeds(running):
    console = FlakyConsole(user="ann")
    bridge = await running(config(), console)
    assert (await bridge.readiness())["ready"] is True
    console.down = True
    await console.say("anyone?")

    async def red() -> Any:
        report = await bridge.readiness()
        return report if not report["ready"] else None

    report = await eventually(red, 5)
    detail = report["components"]["console"]["detail"]
    assert "sends failing" in detail and "connection refused" in detail
    console.down = False
    await console.replies(1)
    assert (await bridge.readiness())["ready"] is True


async def test_a_refused_reply_ends_undeliverable_and_the_session_goes_on(running, caplog):
    caplog.set_level(logging.INFO)
    console = FlakyConsole(user="ann")
    bridge = await running(config(), console)
    console.refusing.add("ann")
    await console.say("are you there?")
    await bridge.router.idle(5)
    assert len(console.attempts) == 1  # no retry can help
    assert bridge.metrics.messages.labels("console", "undeliverable")._value.get() == 1
    refusals = [r.getMessage() for r in caplog.records if "undeliverable" in r.getMessage()]
    assert len(refusals) == 1 and "blocked by the user" in refusals[0]
    console.refusing.clear()
    await console.say("unblocked now")
    assert await console.replies(1) == ["[wx:dm:cl.ann] unblocked now"]


async def test_stopping_while_a_reply_waits_keeps_it_and_the_restart_delivers_it_in_order(
    tmp_path, running
):
    cfg = config(tmp_path, drain_timeout=5)
    first = FlakyConsole(user="ann")
    first.down = True
    bridge = Bridge(cfg, [first])
    await bridge.start()
    await first.say("one")
    await first.say("two")
    await eventually(lambda: len(first.attempts) >= 2)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await bridge.stop()  # does not wait out the backoff: the reply stays stored
    assert loop.time() - began < 4
    assert first.texts() == []

    second = FlakyConsole(user="ann")
    restarted = await running(cfg, second)
    assert await second.replies(2) == ["[wx:dm:cl.ann] one", "[wx:dm:cl.ann] two"]
    recovered = restarted.metrics.recovered
    assert recovered.labels("answered")._value.get() == 1  # its stored reply, not asked again
    assert recovered.labels("accepted")._value.get() == 1
