"""The openai backend with `stream: true`: server-sent events become text increments, then the
whole answer; failures before and during the stream are the usual `BackendError`s."""

from __future__ import annotations

import asyncio

import pytest

from bridge.backends.openai import OpenAIBackend
from bridge.breaker import CircuitBreaker, GuardedBackend
from bridge.errors import Timeout, Unavailable
from bridge.types import Answer, Question, Session, Usage
from tests.backends.test_openai import backend_for


def streaming_backend(server, **extra) -> OpenAIBackend:
    return backend_for(server, stream=True, **extra)


async def collect(backend, text="hi", session=None):
    """(increments with the loop time each arrived, the final Answer)."""
    loop = asyncio.get_running_loop()
    increments: list[tuple[float, str]] = []
    answer = None
    async for piece in backend.stream(session or Session("k", {}), Question(text)):
        if isinstance(piece, Answer):
            answer = piece
        else:
            increments.append((loop.time(), piece))
    return increments, answer


async def test_increments_arrive_while_the_server_is_still_writing(openai_fake):
    openai_fake.reply = lambda body, headers: "The quick brown fox jumps over the lazy dog."
    openai_fake.stream.delay = 0.03
    backend = streaming_backend(openai_fake, timeout=10)
    try:
        increments, answer = await collect(backend)
    finally:
        await backend.aclose()
    [finished] = openai_fake.finished
    assert len(increments) == 11
    assert increments[0][0] < finished - 0.2  # the first words long before the last
    assert "".join(text for _, text in increments) == answer.text
    assert answer.text == "The quick brown fox jumps over the lazy dog."
    assert answer.usage == Usage(7, 3)
    [call] = openai_fake.calls
    assert call.json["stream"] is True and call.headers["Accept"] == "text/event-stream"


@pytest.mark.parametrize("role, usage", [(False, False), (True, False), (False, True)])
async def test_role_and_usage_chunks_are_optional(openai_fake, role, usage):
    openai_fake.stream.role_chunk = role
    openai_fake.stream.usage_chunk = usage
    backend = streaming_backend(openai_fake)
    try:
        increments, answer = await collect(backend, "ping")
    finally:
        await backend.aclose()
    assert answer.text == "echo: ping" == "".join(t for _, t in increments)
    assert answer.usage == (Usage(7, 3) if usage else Usage())


async def test_a_server_that_ignores_stream_true_is_read_whole(openai_fake):
    openai_fake.stream.honoured = False
    backend = streaming_backend(openai_fake)
    try:
        increments, answer = await collect(backend, "ping")
    finally:
        await backend.aclose()
    assert [t for _, t in increments] == ["echo: ping"]
    assert answer.text == "echo: ping" and answer.usage == Usage(7, 3)


async def test_bridge_kept_history_records_the_whole_streamed_answer(openai_fake):
    backend = streaming_backend(openai_fake)
    try:
        _, answer = await collect(backend, "first")
        _, second = await collect(backend, "second", Session("k", answer.state))
    finally:
        await backend.aclose()
    assert second.state["history"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "echo: second"},
    ]
    assert [m["content"] for m in openai_fake.calls[1].json["messages"]] == [
        "first", "echo: first", "second"
    ]


async def test_a_server_keeping_history_is_never_asked_twice(openai_fake):
    openai_fake.fail_next(503, times=5)
    backend = streaming_backend(openai_fake, session="header")
    try:
        with pytest.raises(Unavailable, match="HTTP 503"):
            await collect(backend)
    finally:
        await backend.aclose()
    assert len(openai_fake.calls) == 1


async def test_a_failed_start_is_retried_when_the_bridge_keeps_history(openai_fake):
    openai_fake.fail_next(503)
    backend = streaming_backend(openai_fake)
    try:
        _, answer = await collect(backend, "again")
    finally:
        await backend.aclose()
    assert answer.text == "echo: again" and len(openai_fake.calls) == 2


async def test_a_stream_cut_midway_fails_after_what_arrived(openai_fake):
    openai_fake.reply = lambda body, headers: "x" * 40
    openai_fake.stream.drop_after = 3
    backend = streaming_backend(openai_fake, session="body")
    received = []
    try:
        with pytest.raises(Unavailable):
            async for piece in backend.stream(Session("k", {}), Question("hi")):
                received.append(piece)
    finally:
        await backend.aclose()
    assert received == ["xxxx"] * 3
    assert len(openai_fake.calls) == 1


async def test_the_whole_answer_timeout_bounds_a_stalled_stream(openai_fake):
    openai_fake.stream.stall_after = 1
    backend = streaming_backend(openai_fake, timeout=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(Timeout):
            await collect(backend)
    finally:
        openai_fake.release()
        await backend.aclose()
    assert loop.time() - started < 5


async def test_nanobot_failure_text_is_never_yielded(openai_fake):
    openai_fake.reply = lambda body, headers: "Error calling LLM: upstream is down"
    openai_fake.stream.chunk = 3
    backend = streaming_backend(openai_fake)
    received = []
    try:
        with pytest.raises(Unavailable, match="its LLM failed"):
            async for piece in backend.stream(Session("k", {}), Question("hi")):
                received.append(piece)
    finally:
        await backend.aclose()
    assert received == []


async def test_an_answer_that_only_starts_like_the_failure_text_is_shown(openai_fake):
    openai_fake.reply = lambda body, headers: "Error handling in Python uses try."
    backend = streaming_backend(openai_fake)
    try:
        increments, answer = await collect(backend)
    finally:
        await backend.aclose()
    assert "".join(t for _, t in increments) == answer.text == "Error handling in Python uses try."


async def test_the_breaker_counts_a_failed_stream(openai_fake):
    openai_fake.fail_next(500, times=10)
    breaker = CircuitBreaker("main", threshold=2, cooldown=60)
    guarded = GuardedBackend(streaming_backend(openai_fake, max_retries=0), breaker)
    assert guarded.streaming
    try:
        for _ in range(2):
            with pytest.raises(Unavailable):
                await collect(guarded)
    finally:
        await guarded.aclose()
    assert breaker.state == "open"
