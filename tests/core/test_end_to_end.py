"""One message end to end: console adapter → router → OpenAI-compatible fake → back."""

from __future__ import annotations

import asyncio

from tests.conftest import RecordingConsole, make_config


def openai_config(server, session: str, **extra) -> dict:
    return {
        "backends": {
            "main": {
                "type": "openai",
                "base_url": server.base_url,
                "session": session,
                "max_retries": 2,
                "retry_backoff": 0.01,
                **extra,
            }
        }
    }


async def test_dm_key_arrives_as_header(openai_fake, console, running):
    await running(make_config(openai_config(openai_fake, "header")), console)
    await console.say("hello there")
    assert await console.replies(1) == ["echo: hello there"]
    call = openai_fake.calls_to("/v1/chat/completions")[0]
    assert call.headers["x-session-key"] == "wx:dm:cl.alice"
    assert call.json["messages"] == [{"role": "user", "content": "hello there"}]
    assert "session_id" not in call.json


async def test_group_key_arrives_as_body_field(openai_fake, console, running):
    await running(make_config(openai_config(openai_fake, "body")), console)
    await console.say("hi all", user="bob", group="team")
    await console.replies(1)
    call = openai_fake.calls_to("/v1/chat/completions")[0]
    assert call.json["session_id"] == "wx:group:cl.team:user:cl.bob"
    assert "x-session-key" not in call.headers


async def test_bridge_history_is_per_user(openai_fake, console, running):
    openai_fake.reply = lambda body, headers: " | ".join(m["content"] for m in body["messages"])
    await running(
        make_config(openai_config(openai_fake, "bridge", system_prompt="Be brief.")), console
    )
    await console.say("I am Ann", user="ann")
    await console.replies(1, chat="ann")
    await console.say("I am Ben", user="ben")
    await console.replies(1, chat="ben")
    await console.say("who am I?", user="ann")
    answers = await console.replies(2, chat="ann")
    assert answers[1] == "Be brief. | I am Ann | Be brief. | I am Ann | who am I?"
    assert "Ben" not in answers[1]


async def test_fifty_messages_over_ten_sessions_keep_order(openai_fake, running):
    console = RecordingConsole(user="x")
    openai_fake.slow_next(0.05, times=5)  # some answers come late; order must hold anyway
    await running(make_config(openai_config(openai_fake, "header")), console)
    await asyncio.gather(
        *(console.say(f"{user}-{n}", user=f"u{user}") for n in range(5) for user in range(10))
    )
    await console.replies(50)
    for user in range(10):
        assert console.texts(f"u{user}") == [f"echo: {user}-{n}" for n in range(5)]


async def test_retried_503_succeeds(openai_fake, console, running):
    # History kept by the bridge: the server keeps nothing, so resending is safe.
    openai_fake.fail_next(503, times=2)
    await running(make_config(openai_config(openai_fake, "bridge")), console)
    await console.say("still there?")
    assert await console.replies(1) == ["echo: still there?"]
    assert len(openai_fake.calls_to("/v1/chat/completions")) == 3


async def test_permanent_failure_apologises_and_next_message_works(
    openai_fake, console, running, caplog
):
    openai_fake.fail_next(500, body={"error": {"message": "model exploded"}})
    await running(make_config(openai_config(openai_fake, "header")), console)
    await console.say("first")
    [apology] = await console.replies(1)
    assert apology.startswith("Sorry")
    assert "500" not in apology and "exploded" not in apology
    assert "session=wx:dm:cl.alice backend=main" in caplog.text
    assert "model exploded" in caplog.text
    await console.say("second")
    assert (await console.replies(2))[1] == "echo: second"


async def test_duplicate_event_is_answered_once(openai_fake, console, running):
    await running(make_config(openai_config(openai_fake, "header")), console)
    assert await console.say("once", event_id="evt-1") is True
    assert await console.say("once", event_id="evt-1") is False
    await console.say("after", event_id="evt-2")
    await console.replies(2)
    assert console.texts() == ["echo: once", "echo: after"]
    assert len(openai_fake.calls_to("/v1/chat/completions")) == 2


async def test_restart_answers_message_left_pending(openai_fake, tmp_path, running):
    from bridge.app import Bridge

    config = make_config(
        {
            **openai_config(openai_fake, "header"),
            "bridge": {"store": {"path": str(tmp_path / "state.sqlite3")}, "drain_timeout": 0.1},
        }
    )
    openai_fake.slow_next(30)  # the first run never gets its answer
    first = RecordingConsole(user="carol")
    bridge = Bridge(config, [first])
    await bridge.start()
    await first.say("are you there?")
    await openai_fake.wait_for(lambda calls: calls)
    await bridge.stop()  # drain times out: the message stays pending
    assert first.texts() == []

    second = RecordingConsole(user="carol")
    await running(config, second)
    assert await second.replies(1) == ["echo: are you there?"]


async def test_empty_text_is_ignored_without_backend_call(openai_fake, console, running):
    bridge = await running(make_config(openai_config(openai_fake, "header")), console)
    assert await console.say("   \t ") is False
    await console.say("real")
    await console.replies(1)
    assert await bridge.router.idle(5)
    assert console.texts() == ["echo: real"]
    assert len(openai_fake.calls) == 1


async def test_too_long_text_is_refused_with_the_limit(openai_fake, console, running):
    await running(
        make_config({**openai_config(openai_fake, "header"), "bridge": {"max_input_chars": 100}}),
        console,
    )
    await console.say("x" * 150)
    [refusal] = await console.replies(1)
    assert "150" in refusal and "100" in refusal
    assert openai_fake.calls == []


async def test_control_characters_in_answers_are_sanitized(openai_fake, console, running):
    openai_fake.reply = lambda body, headers: "<think>plan</think>clean\x00 text\x1b[31m\ud800"
    await running(make_config(openai_config(openai_fake, "header")), console)
    await console.say("go")
    assert await console.replies(1) == ["clean text[31m"]


async def test_invalid_utf8_in_an_answer_is_replaced_not_fatal(openai_fake, console, running):
    openai_fake.reply = lambda body, headers: "caf<invalid-utf8>é ok"
    await running(make_config(openai_config(openai_fake, "header")), console)
    await console.say("go")
    assert await console.replies(1) == ["caf\ufffd\ufffdé ok"]


async def test_nanobot_llm_error_is_a_failure_not_an_answer(openai_fake, console, running, caplog):
    openai_fake.reply = lambda body, headers: "Error calling LLM: connection refused"
    await running(make_config(openai_config(openai_fake, "body")), console)
    await console.say("hi")
    [reply] = await console.replies(1)
    assert reply.startswith("Sorry") and "Error calling LLM" not in reply
    assert "cause=unavailable" in caplog.text


async def test_reset_sends_a_new_generation_of_the_session_id(openai_fake, console, running):
    await running(make_config(openai_config(openai_fake, "header")), console)
    await console.say("one")
    await console.say("/reset")
    await console.say("two")
    await console.say("/reset")
    await console.say("three")
    await console.replies(5)
    keys = [c.headers["x-session-key"] for c in openai_fake.calls_to("/v1/chat/completions")]
    assert keys == ["wx:dm:cl.alice", "wx:dm:cl.alice#2", "wx:dm:cl.alice#3"]


async def test_reset_clears_bridge_kept_history(openai_fake, console, running):
    openai_fake.reply = lambda body, headers: str(len(body["messages"]))
    await running(make_config(openai_config(openai_fake, "bridge")), console)
    for text in ("a", "b", "/reset", "c"):
        await console.say(text)
    assert await console.replies(4) == [
        "1",
        "3",
        "Done: the next message starts a fresh conversation.",
        "1",
    ]


async def test_raw_session_keys_carry_the_platform_ids_as_they_are(openai_fake, console, running):
    config = make_config({**openai_config(openai_fake, "header"), "bridge": {"session_keys": "raw"}})
    await running(config, console)
    await console.say("hi")
    await console.say("hi all", user="bob", group="team")
    await console.replies(2)
    keys = [c.headers["x-session-key"] for c in openai_fake.calls_to("/v1/chat/completions")]
    assert sorted(keys) == ["wx:dm:alice", "wx:group:team:user:bob"]


async def test_a_reset_user_and_a_user_named_like_their_next_session_never_share_history(
    openai_fake, running
):
    console = RecordingConsole(user="a:b")
    await running(make_config(openai_config(openai_fake, "body")), console)
    await console.say("I am a:b, before the reset")
    await console.say("/reset")
    await console.say("I am a:b, after the reset")
    await console.say("I am someone else", user="a:b#2")
    await console.replies(4)
    histories = sorted(openai_fake.sessions.values())
    assert histories == [
        ["I am a:b, after the reset"],
        ["I am a:b, before the reset"],
        ["I am someone else"],
    ]
