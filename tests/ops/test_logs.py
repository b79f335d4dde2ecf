"""What an operator reads: JSON lines that parse with the message's context, secrets never shown,
a level per component."""

from __future__ import annotations

import json
import logging

import pytest

from adapters.telegram import TelegramAdapter
from bridge.config import DEFAULT_APOLOGY
from bridge.metrics import Metrics
from tests.adapters.telegram_world import world_config
from tests.conftest import RecordingConsole, make_config
from tests.fakes.telegram_api import FakeTelegram, group, user

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def json_lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def openai(server, **extra) -> dict:
    return {
        "type": "openai",
        "base_url": server.base_url,
        "max_retries": 0,
        "api_key": "sk-backend-secret-value",
        **extra,
    }


async def test_json_lines_carry_the_message_context(log_setup, openai_fake, running):
    stream = log_setup(level="info", fmt="json")
    console = RecordingConsole(user="ann")
    await running(make_config({"backends": {"main": openai(openai_fake)}}), console)

    await console.say("hello", event_id="ev-1")
    await console.replies(1)
    openai_fake.fail_next(400, body={"error": {"message": "no such model"}})
    await console.say("again", event_id="ev-2")
    await console.replies(2)

    lines = json_lines(stream)  # every line is one JSON object
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line)
        assert line["time"].endswith("Z")
    answered = next(line for line in lines if line["message"] == "answered")
    assert answered["level"] == "info" and answered["logger"] == "bridge.router"
    assert answered["session_key"] == "wx:dm:cl.ann"
    assert answered["platform"] == "console" and answered["backend"] == "main"
    assert answered["event_id"] == "console::ev-1"
    assert 0 <= answered["latency_ms"] < 5000
    failed = next(line for line in lines if line["level"] == "error")
    assert failed["event_id"] == "console::ev-2" and failed["cause"] == "rejected"
    assert "no such model" in failed["message"]
    assert "sk-backend-secret-value" not in stream.getvalue()


async def test_a_token_inside_an_exception_is_redacted_in_both_formats(log_setup):
    log = logging.getLogger("adapters.telegram")
    for fmt in ("json", "text"):
        stream = log_setup(fmt=fmt, secrets=[TOKEN])
        try:
            raise ConnectionError(f"POST https://api.telegram.org/bot{TOKEN}/getUpdates failed")
        except ConnectionError:
            log.exception("polling failed for %s", TOKEN, extra={"platform": "telegram"})
        # The same token as an HTTP library may print it: percent-encoded in a URL.
        log.warning("GET /bot%s/getMe", TOKEN.replace(":", "%3A"))
        out = stream.getvalue()
        assert TOKEN not in out and TOKEN.split(":")[1] not in out, fmt
        assert out.count("[redacted]") == 3, fmt
        assert "getUpdates failed" in out and "Traceback" in out


def test_a_secret_that_json_would_escape_is_still_redacted(log_setup):
    secret = 'pa"ss\\word/ü'
    stream = log_setup(fmt="json", secrets=[secret])
    logging.getLogger("bridge").error("login with %s refused", secret)
    line = json_lines(stream)[0]
    assert line["message"] == "login with [redacted] refused"
    assert "pa" + '\\"ss' not in stream.getvalue()


def test_levels_per_component(log_setup):
    stream = log_setup(level="warning", levels={"bridge.router": "debug", "httpx": "info"})
    logging.getLogger("bridge.router").debug("router detail")
    logging.getLogger("bridge.http").info("http chatter")
    logging.getLogger("httpx").info("HTTP Request: POST")
    logging.getLogger("telegram.ext").info("library chatter")  # quiet by default
    logging.getLogger("bridge.http").warning("http trouble")
    out = stream.getvalue()
    assert "router detail" in out and "HTTP Request" in out and "http trouble" in out
    assert "http chatter" not in out and "library chatter" not in out


def test_text_lines_append_the_context(log_setup):
    stream = log_setup(fmt="text")
    logging.getLogger("bridge.router").info(
        "answered", extra={"session_key": "wx:dm:tg.1", "platform": "telegram", "latency_ms": 12}
    )
    line = stream.getvalue().strip()
    assert line.endswith("answered [session_key=wx:dm:tg.1 platform=telegram latency_ms=12]")
    assert " INFO " in line and "bridge.router:" in line


# What a user might write that must never be in a log: a secret-ish marker.
MARKER = "Zq7-my-bank-pin-is-4711"


async def talk_with_faults(openai_fake, running, tmp_path, bridge: dict) -> FakeTelegram:
    """A Telegram user and a group member write the marker; the backend answers once well, once
    with an unreadable answer holding the marker, once with a 422 that echoes the request."""
    telegram = await FakeTelegram().start()
    backend = {"type": "openai", "base_url": openai_fake.base_url, "max_retries": 0}
    config = world_config(telegram, "polling", backends={"main": backend})
    config = config.model_copy(update={"bridge": config.bridge.model_copy(update={
        "store": config.bridge.store.model_copy(update={"path": str(tmp_path / "s.sqlite3")}),
        **bridge,
    })})  # fmt: skip
    assert config.adapters.telegram is not None
    await running(config, TelegramAdapter(config.adapters.telegram, Metrics()))
    alice, team = user(42, "Alice"), group(-100777, "Team")
    await telegram.push(telegram.dm(alice, f"my secret: {MARKER}"))
    await telegram.wait_sent(1, timeout=10)
    openai_fake.fail_next(200, body={"answer": f"here you go: {MARKER}"})  # no `choices`
    await telegram.push(telegram.group_message(team, alice, f"@bridge_bot again {MARKER} \ud800"))
    await telegram.wait_sent(2, timeout=10)
    detail = [{"loc": ["body", "messages"], "msg": "too many", "input": f"{MARKER} echoed"}]
    openai_fake.fail_next(422, body={"detail": detail})
    await telegram.push(telegram.dm(alice, f"last: {MARKER}"))
    await telegram.wait_sent(3, timeout=10)
    assert telegram.texts() == [f"echo: my secret: {MARKER}", DEFAULT_APOLOGY, DEFAULT_APOLOGY]
    return telegram


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_no_log_line_carries_what_users_wrote_even_at_debug(
    log_setup, openai_fake, running, tmp_path, fmt
):
    stream = log_setup(level="debug", fmt=fmt)
    telegram = await talk_with_faults(openai_fake, running, tmp_path, {})
    try:
        out = stream.getvalue()
        assert "cause=bad_response" in out or '"cause": "bad_response"' in out
        assert "an object with keys [answer]" in out  # the shape of the answer, not its text
        assert "body.messages: too many" in out  # the API's own words, not the echoed input
        assert "bridge.router" in out and "answered" in out  # the debug log itself is there
        assert MARKER not in out
    finally:
        await telegram.stop()


async def test_message_text_is_logged_only_at_debug_and_only_when_asked(
    log_setup, openai_fake, running, tmp_path
):
    stream = log_setup(level="debug")
    telegram = await talk_with_faults(
        openai_fake, running, tmp_path, {"log_message_text": True}
    )
    try:
        lines = stream.getvalue().splitlines()
        with_text = [line for line in lines if MARKER in line]
        assert with_text, "log_message_text: true logs the text at debug"
        assert all(" DEBUG " in line and "bridge.router:" in line for line in with_text)
    finally:
        await telegram.stop()


def test_libraries_below_warning_only_when_named(log_setup):
    stream = log_setup(level="debug", levels={"httpx": "debug"})
    logging.getLogger("telegram").debug("sendMessage: {'text': 'what a user wrote'}")
    logging.getLogger("some.library").info("payload: what a user wrote")
    logging.getLogger("httpx").debug("HTTP Request: POST named by the operator")
    logging.getLogger("some.library").warning("library trouble")
    logging.getLogger("bridge.router").debug("router detail")
    out = stream.getvalue()
    assert "what a user wrote" not in out
    assert "named by the operator" in out and "library trouble" in out and "router detail" in out
