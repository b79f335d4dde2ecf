"""The OpenAI-compatible backend and the shared HTTP helper: error mapping, retries, probe."""

from __future__ import annotations

import logging
import socket

import pytest

from bridge.backends.openai import OpenAIBackend
from bridge.errors import AuthFailed, BadResponse, RateLimited, Rejected, Unavailable
from bridge.types import Question, Session
from tests.conftest import make_config


def backend_for(server, **extra) -> OpenAIBackend:
    raw = {"type": "openai", "base_url": server.base_url, "api_key": "sk-test-secret-1",
           "timeout": 0.3, "max_retries": 1, "retry_backoff": 0.01, **extra}  # fmt: skip
    return OpenAIBackend("main", make_config({"backends": {"main": raw}}).backends["main"])


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        (401, AuthFailed, "credentials refused (HTTP 401: injected 401)"),
        (400, Rejected, "HTTP 400: injected 400"),
        (429, RateLimited, "HTTP 429"),
        (500, Unavailable, "HTTP 500: injected 500"),
    ],
)
async def test_status_becomes_its_error(openai_fake, status, error, text):
    openai_fake.fail_next(status, retry_after=600 if status == 429 else None)
    backend = backend_for(openai_fake)
    try:
        with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
            await backend.ask(Session("k", {}), Question("hi"))
    finally:
        await backend.aclose()
    assert len(openai_fake.calls) == 1  # none of these is worth resending


async def test_malformed_body_is_a_bad_response(openai_fake):
    openai_fake.malformed_next()
    backend = backend_for(openai_fake)
    try:
        with pytest.raises(BadResponse, match="not JSON"):
            await backend.ask(Session("k", {}), Question("hi"))
    finally:
        await backend.aclose()


async def test_probe_lists_models_and_a_401_is_a_credential_problem(openai_fake):
    backend = backend_for(openai_fake)
    try:
        assert await backend.probe() == "1 model(s): fake"
        openai_fake.fail_next(401)
        with pytest.raises(AuthFailed, match="credentials refused"):
            await backend.probe()
    finally:
        await backend.aclose()


async def test_non_idempotent_post_is_not_resent_after_a_drop(openai_fake):
    openai_fake.drop_next(times=5)
    backend = backend_for(openai_fake)
    try:
        with pytest.raises(Unavailable, match="connection failed"):
            await backend._api.call("POST", "chat/completions", json={}, idempotent=False)
    finally:
        await backend.aclose()
    assert len(openai_fake.calls) == 1


async def test_connect_failure_is_resent_even_for_a_post(caplog):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    class Nowhere:
        base_url = f"http://127.0.0.1:{port}/v1"

    backend = backend_for(Nowhere)
    caplog.set_level(logging.WARNING, logger="bridge.backends")
    try:
        with pytest.raises(Unavailable, match="cannot connect"):
            await backend._api.call("POST", "chat/completions", json={}, idempotent=False)
    finally:
        await backend.aclose()
    assert "attempt 1 failed" in caplog.text  # provably never sent: safe to try again
    assert "sk-test-secret-1" not in caplog.text
