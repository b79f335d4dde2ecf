"""What a restart resumes, through the real router and store with the console as the platform:
a question the process died asking is answered without a second user turn where the API allows
it (NexusGPT) and counted where it does not; stored session state is never lost; another
platform's pending messages are left alone."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.journal import Outcome, Reply, SessionWrite
from bridge.store.sqlite import SqliteStore
from bridge.types import ChatKind, Inbound, dedup_id
from tests.conftest import RecordingConsole, make_config
from tests.fakes.nexusgpt_api import FakeNexusGPT
from tests.fakes.openai_api import FakeOpenAI

POLL = {"poll_timeout": 5, "poll_initial": 0.02, "poll_factor": 1.5, "poll_max": 0.1}


def config(tmp_path, backend: dict[str, Any], env: dict[str, str] | None = None):
    raw = {
        "backends": {"main": backend},
        "bridge": {"store": {"path": str(tmp_path / "state.sqlite3")}, "drain_timeout": 0.05},
    }
    return make_config(raw, env)


async def killed_while_asking(cfg, server, text: str, asked) -> None:
    """A bridge that stops (its drain cut short) while the backend works on `text`: the
    message stays pending at the asked stage, like a crash in mid-call."""
    console = RecordingConsole(user="ann")
    bridge = Bridge(cfg, [console])
    await bridge.start()
    await console.say(text)
    await server.wait_for(asked, 10)
    await bridge.stop()
    assert console.texts() == []


async def test_nexusgpt_finds_the_question_already_in_its_thread_and_polls_for_the_answer(
    tmp_path, running
):
    async with FakeNexusGPT(answer_delay=0.01) as ngpt:
        cfg = config(
            tmp_path,
            {"type": "nexusgpt", "base_url": ngpt.url, "api_key": "${K}", **POLL},
            {"K": "ngpt-key-1"},
        )
        ngpt.hold = True  # the answer comes after the crash

        def posted(calls):
            return [c for c in calls if c.method == "POST" and c.path.endswith("/messages")]

        await killed_while_asking(cfg, ngpt, "what is 6 x 7?", posted)
        ngpt.hold = False
        ngpt.release()
        console = RecordingConsole(user="ann")
        bridge = await running(cfg, console)
        assert await console.replies(1) == ["echo: what is 6 x 7?"]
        assert len(posted(ngpt.calls)) == 1  # asked once: no second user turn in the thread
        assert bridge.metrics.reasked.labels("main")._value.get() == 0
        await console.say("and 7 x 8?")  # the thread goes on, answers paired correctly
        assert (await console.replies(2))[1] == "echo: and 7 x 8?"


@pytest.mark.parametrize(
    "mode, reasked", [("body", 1), ("bridge", 0)], ids=["server-keeps-history", "bridge-keeps-it"]
)
async def test_a_question_cut_short_is_asked_again_and_counted_when_the_server_keeps_history(
    tmp_path, running, caplog, mode, reasked
):
    caplog.set_level(logging.INFO)
    async with FakeOpenAI() as llm:
        cfg = config(tmp_path, {"type": "openai", "base_url": llm.base_url, "session": mode})
        llm.slow_next(30)
        await killed_while_asking(cfg, llm, "first question", lambda calls: calls)
        console = RecordingConsole(user="ann")
        bridge = await running(cfg, console)
        assert await console.replies(1) == ["echo: first question"]
        assert len(llm.calls_to("/v1/chat/completions")) == 2  # asked again, once
        assert bridge.metrics.reasked.labels("main")._value.get() == reasked
        assert ("asked backend main again after a restart" in caplog.text) is bool(reasked)
        await console.say("second question")
        await console.replies(2)
        last = llm.calls_to("/v1/chat/completions")[-1].json
        if mode == "bridge":  # the history is stored with the answer: the question is in it once
            assert [m["content"] for m in last["messages"]] == [
                "first question", "echo: first question", "second question"
            ]  # fmt: skip
        else:
            assert last["session_id"] == "wx:dm:cl.ann"


def message(platform: str, chat: str, text: str, event: str) -> Inbound:
    return Inbound(platform=platform, chat_id=chat, sender_id=chat, text=text, kind=ChatKind.DM,
                   event_id=event)  # fmt: skip


async def test_the_console_on_the_daemons_state_leaves_other_platforms_messages_alone(
    tmp_path, running
):
    path = str(tmp_path / "state.sqlite3")
    telegram = message("telegram", "42", "for the daemon", "7.1")
    mine = message("console", "ann", "for the console", "c-1")
    store = SqliteStore(path)
    await store.open()
    for inbound in (telegram, mine):
        await store.journal.accept(dedup_id(inbound), inbound.to_dict(), ttl=3600)
    await store.close()

    console = RecordingConsole(user="ann")
    bridge = await running(config(tmp_path, {"type": "echo"}), console)
    assert await console.replies(1) == ["[wx:dm:cl.ann] for the console"]
    await bridge.stop()

    store = SqliteStore(path)
    await store.open()
    [left] = await store.journal.pending()
    assert left.event_id == dedup_id(telegram) and left.payload["text"] == "for the daemon"
    await store.close()


async def test_a_stored_reply_brings_its_session_state_back_with_it(tmp_path, running):
    path = str(tmp_path / "state.sqlite3")
    inbound = message("console", "ann", "hello", "c-2")
    store = SqliteStore(path)
    await store.open()
    event = dedup_id(inbound)
    await store.journal.accept(event, inbound.to_dict(), ttl=3600)
    state = {"history": [{"role": "user", "content": "hello"}]}
    write = SessionWrite("wx:dm:cl.ann", "main", state)
    await store.journal.answered(event, Reply(("hi!",)), write)  # the crash came before the put
    await store.close()

    console = RecordingConsole(user="ann")
    bridge = await running(config(tmp_path, {"type": "echo"}), console)
    assert await console.replies(1) == ["hi!"]
    assert await bridge.store.sessions.get("wx:dm:cl.ann", "main") == state


async def test_an_unreadable_pending_message_is_completed_not_retried_for_ever(
    tmp_path, running
):
    path = str(tmp_path / "state.sqlite3")
    store = SqliteStore(path)
    await store.open()
    await store.journal.accept("console::broken", {"platform": "console"}, ttl=3600)
    await store.close()
    console = RecordingConsole(user="ann")
    bridge = await running(config(tmp_path, {"type": "echo"}), console)
    assert await bridge.router.idle(5)
    assert await bridge.store.journal.outcome("console::broken") == Outcome.UNREADABLE
