"""Retries and the time budget, across backends: a question that may have reached a server that
keeps the conversation is asked once, and `timeout` bounds the user's whole wait for an answer or
the apology, retries and pauses included."""

from __future__ import annotations

import time

import pytest

from bridge.config import DEFAULT_APOLOGY
from tests.conftest import make_config
from tests.fakes.nexus_api import FakeNexus
from tests.fakes.nexusgpt_api import FakeNexusGPT
from tests.fakes.nugen_api import FakeNugen
from tests.fakes.openai_api import FakeOpenAI

CHAT = "/v1/chat/completions"
NUGEN_CHAT = "/api/v3/answer-engine/eng-1/chat"
RETRYING = {"max_retries": 2, "retry_backoff": 0.01, "connect_timeout": 1}


def openai(server: FakeOpenAI, session: str, timeout: float = 1.0) -> dict:
    return {"type": "openai", "base_url": server.base_url, "session": session,
            "timeout": timeout, **RETRYING}  # fmt: skip


def inject(server, fault: str, path: str) -> None:
    """A fault after the request reached the server: it may have acted on it."""
    if fault == "drop":  # the body was read, then the connection is cut
        server.drop_next(path=path, times=5)
    elif fault == "drip":  # 200 at once, then a byte at a time past the timeout
        server.drip_next(5.0, path=path, times=5)
    elif fault == "502":
        server.fail_next(502, path=path, times=5)


FAULTS = ["drop", "drip", "502"]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("session", ["header", "body"])
async def test_a_server_keeping_history_gets_the_question_once(
    openai_fake, console, running, session, fault
):
    await running(make_config({"backends": {"main": openai(openai_fake, session)}}), console)
    inject(openai_fake, fault, CHAT)
    await console.say("what is the capital of France?")
    assert await console.replies(1) == [DEFAULT_APOLOGY]
    # One POST: a second would be a second user turn in the server's history (and billed).
    assert len(openai_fake.calls_to(CHAT)) == 1


@pytest.mark.parametrize("fault", ["drop", "502"])
async def test_history_kept_by_the_bridge_is_retried_and_answered(
    openai_fake, console, running, fault
):
    await running(make_config({"backends": {"main": openai(openai_fake, "bridge")}}), console)
    inject(openai_fake, fault, CHAT)
    openai_fake.faults[0].times = 1
    await console.say("hello")
    assert await console.replies(1) == ["echo: hello"]
    assert len(openai_fake.calls_to(CHAT)) == 2


@pytest.mark.parametrize("fault", FAULTS)
async def test_nugen_inside_a_thread_gets_the_question_once(console, running, fault):
    async with FakeNugen() as nugen:
        section = {"type": "nugen", "base_url": nugen.url, "token": "nugen-token-1",
                   "engine_id": "eng-1", "timeout": 1.0, **RETRYING}  # fmt: skip
        await running(make_config({"backends": {"main": section}}), console)
        await console.say("first")
        await console.replies(1)  # the session now has a conv_thread_id
        inject(nugen, fault, NUGEN_CHAT)
        await console.say("second")
        assert (await console.replies(2))[1] == DEFAULT_APOLOGY
        assert [c.json["query"] for c in nugen.calls_to(NUGEN_CHAT)] == ["first", "second"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_nexusgpt_posts_the_message_once(console, running, fault):
    async with FakeNexusGPT(answer_delay=0.01) as ngpt:
        section = {"type": "nexusgpt", "base_url": ngpt.url, "api_key": "ngpt-key-1",
                   "timeout": 1.0, "poll_timeout": 1.0, "poll_initial": 0.02, **RETRYING}  # fmt: skip
        await running(make_config({"backends": {"main": section}}), console)
        inject(ngpt, fault, "/api/public/thread/thr-1/messages")
        await console.say("hello")
        assert await console.replies(1) == [DEFAULT_APOLOGY]
        posts = ngpt.calls_to("/api/public/thread/thr-1/messages", "POST")
        assert [c.json["content"] for c in posts] == ["hello"]
        # The message may be in the thread: the next turn continues it, no new thread.
        ngpt.faults.clear()
        await console.say("again")
        await console.replies(2)
        assert len(ngpt.calls_to("/api/public/thread", "POST")) == 1


async def elapsed_until_reply(console, count: int) -> float:
    started = time.monotonic()
    await console.say("are you there?")
    await console.replies(count, timeout=20)
    return time.monotonic() - started


@pytest.mark.parametrize("backend", ["openai-bridge", "openai-body", "nexus"])
async def test_a_hanging_server_gets_the_apology_after_timeout_not_after_every_retry(
    console, running, backend
):
    # timeout 1 s, 2 retries: the old per-attempt timeout made the user wait 3 s and more.
    async with FakeOpenAI() as llm, FakeNexus() as nexus:
        if backend == "nexus":
            server, path = nexus, "/api/v3/"
            section = {"type": "nexus", "base_url": nexus.url, "account": "acct-1",
                       "access_key": "nexus-access-key-1", "secret_key": "nexus-secret-key-1",
                       "api": "chat", "instance": "inst-1", "timeout": 1.0, **RETRYING}  # fmt: skip
        else:
            server, path = llm, CHAT
            section = openai(llm, backend.removeprefix("openai-"))
        await running(make_config({"backends": {"main": section}}), console)
        server.slow_next(30, path=path, times=10)
        took = await elapsed_until_reply(console, 1)
        assert console.texts() == [DEFAULT_APOLOGY]
        assert took < 2.2, f"apology after {took:.2f}s with timeout 1s"


async def test_retries_of_a_stateless_backend_share_the_one_budget(console, running):
    async with FakeOpenAI() as llm:
        await running(make_config({"backends": {"main": openai(llm, "bridge")}}), console)
        llm.fail_next(502, path=CHAT)  # a quick failure, then a hang: the retry gets what is left
        llm.slow_next(30, path=CHAT, times=10)
        took = await elapsed_until_reply(console, 1)
        assert console.texts() == [DEFAULT_APOLOGY]
        assert len(llm.calls_to(CHAT)) == 2
        assert took < 2.2, f"apology after {took:.2f}s with timeout 1s"


async def test_nexusgpt_turn_ends_within_timeout_plus_poll_timeout(console, running):
    async with FakeNexusGPT(answer_delay=0.01) as ngpt:
        section = {"type": "nexusgpt", "base_url": ngpt.url, "api_key": "ngpt-key-1", "timeout": 1.0,
                   "poll_timeout": 0.5, "poll_initial": 0.02, **RETRYING}  # fmt: skip
        await running(make_config({"backends": {"main": section}}), console)
        ngpt.slow_next(30, path="/api/public/thread", times=20)  # every call hangs
        took = await elapsed_until_reply(console, 1)
        assert console.texts() == [DEFAULT_APOLOGY]
        assert took < 2.7, f"apology after {took:.2f}s with timeout 1s + poll_timeout 0.5s"
