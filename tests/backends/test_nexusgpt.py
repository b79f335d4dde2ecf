"""NexusGPT threads through a real bridge: a thread per session, answers found by position,
late answers never posted twice, expiry, the 4,000-character limit, the shared rate limit."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from bridge.backends import nexusgpt
from bridge.backends.nexusgpt import NexusGPTBackend, SharedLimiters, answer_for, backoff
from bridge.config import DEFAULT_APOLOGY
from bridge.errors import AuthFailed
from tests.backends.conftest import FAST, FAULTS, apology_then_recovery, row, run_check
from tests.conftest import make_config
from tests.fakes.nexusgpt_api import FakeNexusGPT

KEY = "ngpt-key-1"
ENV = {"NGPT_KEY": KEY}
THREAD = "/api/public/thread"
POLL = {"poll_timeout": 0.6, "poll_initial": 0.02, "poll_factor": 1.5, "poll_max": 0.1}


@pytest.fixture
async def ngpt() -> AsyncIterator[FakeNexusGPT]:
    async with FakeNexusGPT(answer_delay=0.03) as server:
        yield server


def section(server: FakeNexusGPT, **extra) -> dict:
    return {"type": "nexusgpt", "base_url": server.url, "api_key": "${NGPT_KEY}",
            **FAST, **POLL, **extra}  # fmt: skip


def config(server: FakeNexusGPT, **extra):
    return make_config({"backends": {"main": section(server, **extra)}}, ENV)


def posts(server: FakeNexusGPT, thread: str = "thr-1"):
    return server.calls_to(f"{THREAD}/{thread}/messages", "POST")


async def test_sends_the_documented_requests(ngpt, console, running):
    await running(config(ngpt), console)
    await console.say("hello")
    assert await console.replies(1) == ["echo: hello"]
    create, post, *polls = ngpt.calls
    assert (create.method, create.path) == ("POST", THREAD)
    assert (post.method, post.path, post.json) == ("POST", f"{THREAD}/thr-1/messages",
                                                   {"content": "hello"})  # fmt: skip
    assert polls and all(c.method == "GET" and c.query["order"] == "asc" for c in polls)
    assert all(c.headers["api-key"] == KEY for c in ngpt.calls)


async def test_thread_per_session_kept_across_turns_and_never_shared(ngpt, console, running):
    ngpt.reply = lambda content, earlier: f"{content} after {earlier}"
    await running(config(ngpt), console)
    await console.say("I am Ann", user="ann")
    await console.replies(1, chat="ann")
    await console.say("I am Ben", user="ben")
    await console.replies(1, chat="ben")
    await console.say("who am I?", user="ann")
    assert (await console.replies(2, chat="ann"))[1] == "who am I? after ['I am Ann']"
    assert len(ngpt.calls_to(THREAD, "POST")) == 2
    [ann, ben] = ngpt.threads
    assert [t for k, t in ngpt.texts(ann) if k == "user"] == ["I am Ann", "who am I?"]
    assert [t for k, t in ngpt.texts(ben) if k == "user"] == ["I am Ben"]


async def test_reset_starts_a_new_thread(ngpt, console, running):
    await running(config(ngpt), console)
    for text in ("one", "/reset", "two"):
        await console.say(text)
    assert await console.replies(3) == ["echo: one", "Done: the next message starts a fresh "
                                        "conversation.", "echo: two"]  # fmt: skip
    assert [ngpt.texts(t)[0][1] for t in ngpt.threads] == ["one", "two"]


@pytest.mark.parametrize("envelope", [None, "data", "messages"])
async def test_list_envelopes_and_tool_messages(ngpt, console, running, envelope):
    ngpt.envelope, ngpt.tool_step = envelope, True
    await running(config(ngpt), console)
    await console.say("a")
    await console.say("b")
    assert await console.replies(2) == ["echo: a", "echo: b"]


async def test_a_late_answer_is_never_posted_as_the_next_ones(ngpt, console, running, caplog):
    await running(config(ngpt, poll_timeout=0.2), console)
    await console.say("hello")
    await console.replies(1)  # the session has its thread
    ngpt.hold = True  # from now on answers appear only when the test says so
    await console.say("first question")
    assert await console.replies(2) == ["echo: hello", DEFAULT_APOLOGY]
    assert "cause=timeout: no assistant message in thread thr-1 after 0.2s" in caplog.text
    await console.say("second question")
    await ngpt.wait_for(lambda calls: len(posts(ngpt)) == 3)
    ngpt.release(1)  # the answer to the first question lands after the second was sent
    looked = len(ngpt.calls)
    await ngpt.wait_for(lambda calls: len(calls) > looked + 1)  # the bridge has looked again
    assert len(console.texts()) == 2
    ngpt.release()
    assert (await console.replies(3))[2] == "echo: second question"
    ngpt.hold = False
    await console.say("third")
    assert (await console.replies(4))[3] == "echo: third"
    assert console.texts().count("echo: first question") == 0


async def test_a_first_turn_that_times_out_keeps_its_thread(ngpt, console, running):
    await running(config(ngpt, poll_timeout=0.2), console)
    ngpt.hold = True
    await console.say("first question")
    assert await console.replies(1) == [DEFAULT_APOLOGY]
    ngpt.release()  # its answer arrives late
    ngpt.hold = False
    await console.say("second question")
    assert (await console.replies(2))[1] == "echo: second question"
    # The same thread carried on: the conversation was not lost with the first timeout.
    assert len(ngpt.calls_to(THREAD, "POST")) == 1
    assert len(posts(ngpt)) == 2


async def test_expired_thread_is_replaced_and_the_message_sent_once(ngpt, console, running):
    await running(config(ngpt), console)
    await console.say("one")
    await console.replies(1)
    ngpt.expire()
    await console.say("two")
    assert (await console.replies(2))[1] == "echo: two"
    assert ngpt.texts("thr-4") == [("user", "two"), ("assistant", "echo: two")]
    assert len(posts(ngpt, "thr-1")) == 1  # found expired by the check: nothing sent there


async def test_thread_expiring_at_the_send_is_replaced_once(ngpt, console, running):
    await running(config(ngpt), console)
    await console.say("one")
    await console.replies(1)
    ngpt.expire_before_next_post = True
    await console.say("two")
    assert (await console.replies(2))[1] == "echo: two"
    assert len(posts(ngpt, "thr-1")) == 2 and len(posts(ngpt, "thr-4")) == 1


async def test_too_long_is_refused_with_the_limit(ngpt, console, running):
    await running(config(ngpt), console)
    await console.say("x" * 4500)
    assert await console.replies(1) == [
        "Your message is 4,500 characters long; the limit is 4,000. Please shorten it."
    ]
    assert not ngpt.calls


async def test_servers_413_is_the_same_refusal(ngpt, console, running, monkeypatch):
    monkeypatch.setattr(nexusgpt, "MAX_CONTENT", 5000)  # a bridge unaware of the limit
    await running(config(ngpt), console)
    await console.say("x" * 4500)
    assert (await console.replies(1))[0].startswith("Your message is 4,500 characters long")


async def test_split_long_input_sends_parts_then_answers_the_last(ngpt, console, running):
    await running(config(ngpt, split_long_input=True), console)
    text = ("word " * 900).strip()  # 4,499 characters
    await console.say(text)
    [answer] = await console.replies(1)
    sent = [c.json["content"] for c in posts(ngpt)]
    assert len(sent) == 2 and all(len(p) <= 4000 for p in sent)
    assert " ".join(sent) == text and answer == f"echo: {sent[1]}"


async def test_429_waits_and_the_message_goes_through(console, running):
    async with FakeNexusGPT(answer_delay=0.01, messages_per_minute=2, window=0.3) as ngpt:
        # The Retry-After waits count against `timeout`: give them room.
        await running(config(ngpt, max_retries=3, timeout=5), console)
        for user in ("a", "b", "c"):
            await console.say("hi", user=user)
        await console.replies(3)
        assert console.texts() == ["echo: hi"] * 3
        assert ngpt.rate_limited >= 1


async def test_limiter_is_shared_by_every_backend_of_a_key(console, running):
    async with FakeNexusGPT(answer_delay=0.01, messages_per_minute=3) as ngpt:
        limiters = SharedLimiters()
        one = NexusGPTBackend("one", config(ngpt, messages_per_minute=3).backends["main"], limiters)
        two = NexusGPTBackend("two", config(ngpt).backends["main"], limiters)
        other = make_config({"backends": {"m": {**section(ngpt), "api_key": "another-key"}}})
        three = NexusGPTBackend("three", other.backends["m"], limiters)
        bridge = await running(config(ngpt), console)
        bridge.router._asker._backends = {"main": one}  # the bridge asks through `one`
        for user in ("a", "b", "c"):
            await console.say("hi", user=user)
        assert await console.replies(3) == ["echo: hi"] * 3
        assert ngpt.rate_limited == 0
        assert two.limiter is one.limiter and three.limiter is not one.limiter
        assert not two.limiter.has_capacity()  # a fourth message would wait, not get a 429
        for backend in (one, two, three):
            await backend.aclose()


@pytest.mark.parametrize(("fault", "cause"), FAULTS)
async def test_fault_gives_apology_and_next_message_works(
    ngpt, console, running, caplog, fault, cause
):
    await running(config(ngpt), console)
    await apology_then_recovery(ngpt, console, caplog, fault, cause)


@pytest.mark.parametrize(("fault", "cause"), FAULTS)
async def test_fault_inside_a_thread_gives_apology_and_next_message_works(
    ngpt, console, running, caplog, fault, cause
):
    await running(config(ngpt), console)
    await console.say("warm up")
    await console.replies(1)
    console.sent.clear()
    await apology_then_recovery(ngpt, console, caplog, fault, cause, path=f"{THREAD}/thr-1/")


async def test_a_dropped_message_post_is_not_resent(ngpt, console, running, caplog):
    ngpt.drop_next(path=f"{THREAD}/thr-1/messages")
    await running(config(ngpt), console)
    await console.say("once only")
    assert await console.replies(1) == [DEFAULT_APOLOGY]
    assert len(posts(ngpt)) == 1
    assert "cause=unavailable: connection failed" in caplog.text


async def test_secrets_never_reach_the_log(ngpt, console, running, caplog):
    caplog.set_level(logging.DEBUG)
    ngpt.fail_next(401, body={"statusCode": 401, "message": "Invalid API key"})
    await running(config(ngpt), console)
    await console.say("a")
    await console.say("b")
    assert await console.replies(2) == [DEFAULT_APOLOGY, "echo: b"]
    assert "cause=auth: credentials refused (HTTP 401: Invalid API key)" in caplog.text
    assert KEY not in caplog.text


async def test_probe_reads_a_thread_that_cannot_exist(ngpt):
    good = NexusGPTBackend("main", config(ngpt).backends["main"])
    bad_config = make_config({"backends": {"m": {**section(ngpt), "api_key": "wrong-key"}}})
    bad = NexusGPTBackend("main", bad_config.backends["m"])
    try:
        assert (await good.probe()).startswith("api key accepted")
        with pytest.raises(AuthFailed, match="credentials refused"):
            await bad.probe()
        assert not ngpt.threads and not ngpt.calls_to(THREAD, "POST")  # nothing was created
    finally:
        await good.aclose()
        await bad.aclose()


async def test_check_reports_each_backend_without_secrets(ngpt, tmp_path):
    good = section(ngpt)
    bad = {**section(ngpt), "api_key": "${NGPT_WRONG}"}
    status, out = await run_check(
        tmp_path, {"good": good, "bad": bad}, {**ENV, "NGPT_WRONG": "wrong-key-789"}
    )
    assert status == 1
    assert "  ok  " in row(out, "backend good")
    assert "FAILED  auth: credentials refused (HTTP 401: Invalid API key)" in row(
        out, "backend bad"
    )
    assert KEY not in out and "wrong-key-789" not in out


def test_answer_pairs_by_position_not_by_clock():
    def m(kind: str, n: int) -> dict:
        return {"id": f"m{n}", "type": kind, "content": f"{kind}{n}"}

    late = [m("user", 1), m("user", 2), m("assistant", 3), m("tool", 4), m("assistant", 5)]
    assert answer_for(late, 1) == m("assistant", 5)
    assert answer_for(late[:4], 1) is None  # only the first question's answer is there yet
    extra = [m("user", 1), m("assistant", 2), m("assistant", 3), m("user", 4)]
    assert answer_for(extra, 1) is None  # an assistant message before ours never answers it


def test_poll_backoff():
    delays = backoff(0.5, 1.5, 2.0)
    assert [next(delays) for _ in range(6)] == [0.5, 0.75, 1.125, 1.6875, 2.0, 2.0]
