"""The Nugen answer engine through a real bridge: conv_thread_id per session, faults, check."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from bridge.backends.nugen import NugenBackend
from bridge.config import DEFAULT_APOLOGY
from bridge.errors import ConfigError
from tests.backends.conftest import FAST, FAULTS, apology_then_recovery, row, run_check
from tests.conftest import make_config
from tests.fakes.nugen_api import FakeNugen

TOKEN = "nugen-token-1"
ENV = {"NUGEN_TOKEN": TOKEN}


@pytest.fixture
async def nugen() -> AsyncIterator[FakeNugen]:
    async with FakeNugen() as server:
        yield server


def section(server: FakeNugen, **extra) -> dict:
    return {
        "type": "nugen",
        "base_url": server.url,
        "token": "${NUGEN_TOKEN}",
        "engine_id": "eng-1",
        **FAST,
        **extra,
    }


def config(server: FakeNugen, **extra):
    return make_config({"backends": {"main": section(server, **extra)}}, ENV)


def chats(server: FakeNugen):
    return server.calls_to("/api/v3/answer-engine/eng-1/chat")


async def test_sends_the_documented_request(nugen, console, running):
    await running(config(nugen, mode="agentic", top_k=12, prompt_id="p-9"), console)
    await console.say("what is RAG?")
    assert await console.replies(1) == ["echo: what is RAG?"]
    [call] = chats(nugen)
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.json == {
        "query": "what is RAG?",
        "model_llm": "llama-v3p3-70b-instruct",
        "mode": "agentic",
        "top_k": 12,
        "prompt_id": "p-9",
    }


async def test_thread_is_kept_per_session_and_never_shared(nugen, console, running):
    nugen.reply = lambda query, earlier: f"{query} after {earlier}"
    await running(config(nugen), console)
    await console.say("I am Ann", user="ann")
    await console.replies(1, chat="ann")
    await console.say("I am Ben", user="ben")
    await console.replies(1, chat="ben")
    await console.say("who am I?", user="ann")
    answers = await console.replies(2, chat="ann")
    assert answers[1] == "who am I? after ['I am Ann']"
    first, ben, again = chats(nugen)
    assert "conv_thread_id" not in first.json and "conv_thread_id" not in ben.json
    assert again.json["conv_thread_id"] == "conv-1"
    assert nugen.threads == {"conv-1": ["I am Ann", "who am I?"], "conv-2": ["I am Ben"]}


async def test_reset_starts_a_new_thread(nugen, console, running):
    await running(config(nugen), console)
    for text in ("one", "two", "/reset", "three", "four"):
        await console.say(text)
    await console.replies(5)
    assert nugen.threads == {"conv-1": ["one", "two"], "conv-2": ["three", "four"]}


async def test_token_usage_is_counted(nugen, console, running):
    bridge = await running(config(nugen), console)
    await console.say("three little words")
    await console.replies(1)
    assert await bridge.router.idle(5)  # tokens are counted once the answer is out
    metrics = bridge.metrics.render().decode()
    assert 'botbridge_tokens_total{backend="main",direction="input",outcome="answered",route="default",source="reported"} 13.0' in metrics
    assert 'botbridge_tokens_total{backend="main",direction="output",outcome="answered",route="default",source="reported"} 4.0' in metrics


@pytest.mark.parametrize(("fault", "cause"), FAULTS)
async def test_fault_gives_apology_and_next_message_works(
    nugen, console, running, caplog, fault, cause
):
    await running(config(nugen), console)
    await apology_then_recovery(nugen, console, caplog, fault, cause)


async def test_error_detail_is_logged(nugen, console, running, caplog):
    nugen.fail_next(400, body={"detail": "model_llm not available for this engine"})
    await running(config(nugen), console)
    await console.say("hi")
    assert await console.replies(1) == [DEFAULT_APOLOGY]
    assert "cause=rejected: HTTP 400: model_llm not available for this engine" in caplog.text


async def test_503_is_retried_on_a_first_turn_but_not_inside_a_thread(nugen, console, running):
    await running(config(nugen), console)
    nugen.fail_next(503)
    await console.say("first")
    assert await console.replies(1) == ["echo: first"]
    assert len(chats(nugen)) == 2  # resent: a first turn can only leave an empty thread behind
    nugen.fail_next(503)
    await console.say("second")
    assert (await console.replies(2))[1] == DEFAULT_APOLOGY
    assert len(chats(nugen)) == 3  # not resent: the turn may be in the thread already


async def test_secrets_never_reach_the_log(nugen, console, running, caplog):
    caplog.set_level(logging.DEBUG)
    nugen.fail_next(401, body={"detail": "Invalid or expired token"})
    await running(config(nugen), console)
    await console.say("a")
    await console.say("b")
    await console.replies(2)
    assert "credentials refused (HTTP 401: Invalid or expired token)" in caplog.text
    assert TOKEN not in caplog.text


def test_top_k_and_mode_are_checked_when_the_config_loads():
    base = {"type": "nugen", "token": "t", "engine_id": "e"}
    with pytest.raises(ConfigError, match=r"backends\.n\.top_k: input should be less than"):
        make_config({"backends": {"n": {**base, "top_k": 31}}})
    with pytest.raises(ConfigError, match=r"backends\.n\.top_k: input should be greater than"):
        make_config({"backends": {"n": {**base, "top_k": 0}}})
    with pytest.raises(ConfigError, match=r"backends\.n\.mode"):
        make_config({"backends": {"n": {**base, "mode": "turbo"}}})
    cfg = make_config({"backends": {"n": base}}).backends["n"]
    assert cfg.base_url == "https://api.nugen.in" and cfg.model_llm == "llama-v3p3-70b-instruct"


async def test_probe(nugen):
    backend = NugenBackend("main", config(nugen).backends["main"])
    try:
        assert await backend.probe() == "engine eng-1 answered (llama-v3p3-70b-instruct)"
    finally:
        await backend.aclose()


async def test_check_reports_each_backend_without_secrets(nugen, tmp_path):
    good = section(nugen)
    bad = {**section(nugen), "token": "${NUGEN_WRONG}"}
    status, out = await run_check(
        tmp_path, {"good": good, "bad": bad}, {**ENV, "NUGEN_WRONG": "wrong-token-456"}
    )
    assert status == 1
    assert "  ok  " in row(out, "backend good")
    assert "FAILED  auth: credentials refused (HTTP 401" in row(out, "backend bad")
    assert TOKEN not in out and "wrong-token-456" not in out
