"""Router decisions: routing rules, the global bound on backend calls, commands, draining."""

from __future__ import annotations

import asyncio

from bridge.app import Bridge
from tests.conftest import RecordingConsole, make_config


def two_backends(server, routes):
    return {
        "backends": {
            "llm": {"type": "openai", "base_url": server.base_url, "session": "header"},
            "echo": {"type": "echo"},
        },
        "bridge": {"default_backend": "echo"},
        "routes": routes,
    }


async def test_first_matching_route_wins_and_default_catches_the_rest(
    openai_fake, console, running
):
    routes = [
        {"kind": "group", "chat": ["ops"], "backend": "llm"},
        {"user": "vip", "backend": "llm"},
        {"platform": "telegram", "backend": "echo"},
    ]
    await running(make_config(two_backends(openai_fake, routes)), console)
    await console.say("from ops", user="ann", group="ops")
    await console.say("from vip", user="vip")
    await console.say("from anyone", user="bob")
    await console.say("from another group", user="ann", group="dev")
    await console.replies(4)
    assert console.texts("ops") == ["echo: from ops"]
    assert console.texts("vip") == ["echo: from vip"]
    assert console.texts("bob") == ["[wx:dm:cl.bob] from anyone"]
    assert console.texts("dev") == ["[wx:group:cl.dev:user:cl.ann] from another group"]


async def test_backend_calls_are_bounded_and_the_rest_queue(openai_fake, running):
    console = RecordingConsole(user="x")
    openai_fake.slow_next(0.1, times=12)
    config = make_config(
        {
            "backends": {"llm": {"type": "openai", "base_url": openai_fake.base_url}},
            "bridge": {"max_in_flight": 3},
        }
    )
    await running(config, console)
    await asyncio.gather(*(console.say(f"q{n}", user=f"user{n}") for n in range(12)))
    await console.replies(12, timeout=20)
    assert openai_fake.max_in_flight == 3  # bounded, and the bound was used
    assert sorted(console.texts()) == sorted(f"echo: q{n}" for n in range(12))


async def test_help_and_start_answer_without_a_backend(openai_fake, console, running):
    await running(
        make_config({"backends": {"llm": {"type": "openai", "base_url": openai_fake.base_url}}}),
        console,
    )
    await console.say("/help")
    await console.say("/start")
    await console.say("/help@somebot", user="ann", group="g")
    texts = await console.replies(3)
    assert all("/reset" in t for t in texts)
    assert openai_fake.calls == []


async def test_group_answers_reply_to_the_asking_message(console, running):
    await running(make_config({"backends": {"e": {"type": "echo"}}}), console)
    await console.say("in a group", user="ann", group="g")
    await console.say("in a dm", user="ann")
    await console.replies(2)
    group, dm = console.sent
    assert group.reply_to is not None and group.chat_id == "g"
    assert dm.reply_to is None


async def test_sigterm_style_stop_finishes_the_answer_in_flight(openai_fake):
    console = RecordingConsole(user="dan")
    openai_fake.slow_next(0.3)
    config = make_config(
        {"backends": {"llm": {"type": "openai", "base_url": openai_fake.base_url}}}
    )
    bridge = Bridge(config, [console])
    await bridge.start()
    await console.say("slow question")
    await openai_fake.wait_for(lambda calls: calls)
    await bridge.stop()  # drains: the answer arrives before stop returns
    assert console.texts() == ["echo: slow question"]


async def test_a_broken_backend_gets_the_apology_and_the_bridge_keeps_serving(
    console, running, caplog
):
    class Broken:
        name = "broken"

        async def ask(self, session, question):
            raise RuntimeError("bug in backend")

        async def probe(self):
            return "broken"

        async def aclose(self):
            return None

    config = make_config({"backends": {"broken": {"type": "echo"}}})
    bridge = Bridge(config, [console], backends={"broken": Broken()})
    await bridge.start()
    try:
        await console.say("hi")
        await console.say("/help")
        texts = await console.replies(2)
        assert texts[0].startswith("Sorry") and "/reset" in texts[1]
        assert "backend=broken" in caplog.text and "bug in backend" in caplog.text
    finally:
        await bridge.stop()
