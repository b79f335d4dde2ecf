"""What an operator reads: JSON lines that parse with the message's context, secrets never shown,
a level per component."""

from __future__ import annotations

import json
import logging

from tests.conftest import RecordingConsole, make_config

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
