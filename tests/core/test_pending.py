"""Intake backpressure (`bridge.max_pending`): past the bound a new message waits at intake, in
arrival order, until one taken in earlier is put to the backend; nothing is lost, reordered or
stuck behind its own session."""

from __future__ import annotations

import asyncio

from bridge.pending import Pending
from tests.conftest import RecordingConsole, make_config
from tests.fakes.base import eventually


async def test_places_go_in_arrival_order_and_a_cancelled_waiter_passes_its_turn_on():
    pending = Pending(2)
    first, second = await pending.enter(), await pending.enter()
    order: list[str] = []

    async def waiter(name: str) -> None:
        ticket = await pending.enter()
        order.append(name)
        ticket.release()

    tasks = {name: asyncio.create_task(waiter(name)) for name in ("c", "d", "e")}
    await eventually(lambda: pending.waiting == 3, 1)
    tasks["d"].cancel()
    first.release()
    first.release()  # a second release of one ticket gives nothing back
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    assert order == ["c", "e"] and pending.held == 1
    second.release()
    assert pending.held == 0 and pending.waiting == 0


async def test_close_lets_every_waiter_in():
    pending = Pending(1)
    await pending.enter()
    late = asyncio.create_task(pending.enter())
    await eventually(lambda: pending.waiting == 1, 1)
    pending.close()
    (await late).release()
    assert late.done() and pending.waiting == 0


async def test_intake_waits_past_the_bound_until_an_earlier_message_is_asked(openai_fake, running):
    console = RecordingConsole(user="x")
    openai_fake.slow_next(0.5, times=3)  # the model's pace, so that the first is still asked
    config = make_config(
        {
            "backends": {"llm": {"type": "openai", "base_url": openai_fake.base_url}},
            "bridge": {"max_in_flight": 1, "max_pending": 1},
        }
    )
    await running(config, console)
    first = asyncio.create_task(console.say("one", user="ann"))
    await eventually(lambda: len(openai_fake.calls) == 1, 5)  # asked: its place is free
    second = asyncio.create_task(console.say("two", user="bob"))
    await asyncio.wait_for(second, 5)  # taken in; waits for the one backend slot, in its place
    # The one place is the second's until it is asked, after the first's backend call ended.
    await asyncio.wait_for(console.say("three", user="cy"), 10)
    assert len(openai_fake.calls) - openai_fake.in_flight >= 1  # the first call was over
    await first
    assert sorted(await console.replies(3)) == ["echo: one", "echo: three", "echo: two"]


async def test_one_session_never_waits_for_itself(openai_fake, running):
    console = RecordingConsole(user="ann")
    config = make_config(
        {
            "backends": {"llm": {"type": "openai", "base_url": openai_fake.base_url}},
            "bridge": {"max_pending": 1},
        }
    )
    await running(config, console)
    await asyncio.wait_for(
        asyncio.gather(*(console.say(f"q{n}", event_id=f"e{n}") for n in range(6))), 10
    )
    await console.say("q0", event_id="e0")  # a redelivery: dropped, and its place given back
    assert await console.replies(6) == [f"echo: q{n}" for n in range(6)]
    await console.say("last")
    assert (await console.replies(7))[-1] == "echo: last"


async def test_one_persons_burst_behind_a_slow_answer_holds_no_place_from_anyone_else(
    openai_fake, running
):
    console = RecordingConsole(user="ann")
    openai_fake.slow_next(3.0)  # ann's first answer is slow; her next ones queue behind it
    config = make_config(
        {
            "backends": {"llm": {"type": "openai", "base_url": openai_fake.base_url}},
            "bridge": {"max_pending": 2},
        }
    )
    await running(config, console)
    first = asyncio.create_task(console.say("q0", event_id="e0"))
    await eventually(lambda: openai_fake.in_flight == 1, 5)
    burst = [asyncio.create_task(console.say(f"q{n}", event_id=f"e{n}")) for n in range(1, 9)]
    await asyncio.wait_for(console.say("hello", user="bob"), 2)  # taken in at once
    await eventually(lambda: "echo: hello" in console.texts(), 2)
    assert openai_fake.in_flight == 1  # bob was answered while ann's first was still asked
    await asyncio.gather(first, *burst)
    replies = await console.replies(10)
    assert [r for r in replies if r != "echo: hello"] == [f"echo: q{n}" for n in range(9)]
