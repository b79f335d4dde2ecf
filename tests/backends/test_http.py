"""The shared HTTP layer: retries only where they are safe, errors mapped to their causes."""

from __future__ import annotations

import socket

import pytest

from bridge.backends import _http
from bridge.config import OpenAIBackend
from bridge.errors import BadResponse, Rejected, Timeout, Unavailable, Unsendable
from bridge.types import Question, Session


def config(base_url: str, **extra) -> OpenAIBackend:
    return OpenAIBackend(**{"type": "openai", "base_url": base_url, "max_retries": 2,
                            "retry_backoff": 0.01, **extra})


async def post(server_url: str, *, idempotent: bool, **extra):
    cfg = config(server_url, **extra)
    async with _http.make_client(cfg) as client:
        return await _http.send(client, "POST", f"{server_url}/v1/chat/completions", config=cfg,
                                backend="t", idempotent=idempotent,
                                json={"messages": [{"role": "user", "content": "x"}]})


async def test_dropped_connection_is_not_resent_when_not_idempotent(openai_fake):
    openai_fake.drop_next()
    with pytest.raises(Unavailable) as caught:
        await post(openai_fake.url, idempotent=False)
    assert caught.value.sent is True
    assert len(openai_fake.calls) == 1  # it may have been acted on: never sent twice


async def test_dropped_connection_is_retried_when_idempotent(openai_fake):
    openai_fake.drop_next()
    response = await post(openai_fake.url, idempotent=True)
    assert response.status_code == 200 and len(openai_fake.calls) == 2


async def test_refused_connection_is_known_unsent():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(Unavailable) as caught:
        await post(f"http://127.0.0.1:{port}", idempotent=False)
    assert caught.value.sent is False


async def test_429_waits_retry_after_then_succeeds(openai_fake):
    openai_fake.fail_next(429, retry_after=0.2)
    response = await post(openai_fake.url, idempotent=False)
    assert response.status_code == 200 and len(openai_fake.calls) == 2


async def test_retry_after_longer_than_allowed_is_not_waited(openai_fake):
    openai_fake.fail_next(429, retry_after=120)
    with pytest.raises(Exception) as caught:
        await post(openai_fake.url, idempotent=True, max_retry_wait=5)
    assert caught.value.cause == "rate_limited" and len(openai_fake.calls) == 1


async def test_400_is_not_retried_and_carries_the_api_message(openai_fake):
    openai_fake.fail_next(400, body={"error": {"message": "model 'x' not found"}})
    with pytest.raises(Rejected, match="model 'x' not found"):
        await post(openai_fake.url, idempotent=True)
    assert len(openai_fake.calls) == 1


async def test_slow_answer_times_out(openai_fake):
    openai_fake.slow_next(2, times=3)
    with pytest.raises(Timeout):
        await post(openai_fake.url, idempotent=True, timeout=0.2, max_retries=0)


async def test_a_server_dripping_bytes_is_cut_off_at_the_total_timeout(openai_fake):
    openai_fake.drip_next(5)  # each byte within the read timeout, the whole far beyond it
    with pytest.raises(Timeout, match=r"no complete answer in 0\.5s"):
        await post(openai_fake.url, idempotent=True, timeout=0.5, max_retries=0)


async def test_a_body_that_cannot_be_encoded_is_ours_and_never_sent(openai_fake):
    cfg = config(openai_fake.url)
    async with _http.make_client(cfg) as client:
        with pytest.raises(Unsendable) as caught:
            await _http.send(client, "POST", f"{openai_fake.url}/v1/chat/completions", config=cfg,
                             backend="t", json={"messages": [{"content": "half \ud800 pair"}]})
    assert caught.value.cause == "unsendable" and "half" not in str(caught.value)
    assert openai_fake.calls == []


async def test_a_validation_error_is_reported_without_the_input_it_echoes(openai_fake):
    detail = [{"loc": ["body", "messages", 0], "msg": "too long", "input": "the user's words"}]
    openai_fake.fail_next(422, body={"detail": detail})
    with pytest.raises(Rejected) as caught:
        await post(openai_fake.url, idempotent=True)
    assert str(caught.value) == "HTTP 422: body.messages.0: too long"


async def test_an_unreadable_answer_is_described_by_its_shape(openai_fake):
    openai_fake.fail_next(200, body={"answer": "the model's words", "id": 1})
    from bridge.backends.openai import OpenAIBackend

    backend = OpenAIBackend("main", config(openai_fake.base_url))
    try:
        with pytest.raises(BadResponse) as caught:
            await backend.ask(Session("k", {}), Question("hi"))
    finally:
        await backend.aclose()
    assert str(caught.value) == "no choices[0].message in the answer (an object with keys [answer, id])"


async def test_paths_are_joined_to_the_base_once_and_many_paths_still_work(openai_fake):
    api = _http.Api("t", config(openai_fake.base_url), base_url=openai_fake.url + "/v1/")
    try:
        for n in range(80):  # more paths than are kept (threads named in the path)
            response = await api.call("GET", f"models?n={n}", idempotent=True)
            assert response.status_code == 200
            assert str(response.request.url) == f"{openai_fake.url}/v1/models?n={n}"
        assert len(api._urls) <= _http._URLS_KEPT
        first = api._absolute("chat/completions")
        assert api._absolute("chat/completions") is first  # parsed once
    finally:
        await api.aclose()
