"""Nexus v3 `interact` through a real bridge: folded history, envelopes, faults, TLS, check."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from bridge.backends.nexus import NexusBackend
from bridge.config import DEFAULT_APOLOGY
from bridge.errors import ConfigError
from tests.backends.conftest import FAST, FAULTS, apology_then_recovery, row, run_check
from tests.conftest import make_config
from tests.fakes.nexus_api import FakeNexus

ACCESS, SECRET = "nexus-access-key-1", "nexus-secret-key-1"
ENV = {"NEXUS_ACCESS": ACCESS, "NEXUS_SECRET": SECRET}


@pytest.fixture
async def nexus() -> AsyncIterator[FakeNexus]:
    async with FakeNexus() as server:
        yield server


def section(server: FakeNexus, **extra) -> dict:
    return {
        "type": "nexus",
        "base_url": server.url,
        "account": "acct-1",
        "access_key": "${NEXUS_ACCESS}",
        "secret_key": "${NEXUS_SECRET}",
        "api": "chat",
        "instance": "inst-1",
        **FAST,
        **extra,
    }


def config(server: FakeNexus, **extra):
    return make_config({"backends": {"main": section(server, **extra)}}, ENV)


async def test_sends_the_documented_request(nexus, console, running):
    await running(config(nexus, history="none"), console)
    await console.say("hello")
    assert await console.replies(1) == ["echo: hello"]
    [call] = nexus.calls
    assert call.method == "POST" and call.path == "/api/v3/"
    assert call.headers["x-access-account"] == "acct-1"
    assert call.headers["x-access-authorization"] == ACCESS
    assert call.headers["x-secret-key"] == SECRET
    assert call.headers["x-api"] == "chat"
    assert call.headers["x-api-command"] == "interact"
    assert call.json == {"id": "inst-1", "prompt": "hello"}


async def test_two_turns_fold_history_and_sessions_never_share_it(nexus, console, running):
    await running(config(nexus), console)
    await console.say("I am Ann", user="ann")
    await console.replies(1, chat="ann")
    await console.say("I am Ben", user="ben")
    await console.replies(1, chat="ben")
    await console.say("who am I?", user="ann")
    await console.replies(2, chat="ann")
    assert nexus.prompts[0] == "User: I am Ann\nAssistant:"
    assert nexus.prompts[2] == (
        "User: I am Ann\nAssistant: echo: User: I am Ann\nAssistant:\n\nUser: who am I?\nAssistant:"
    )
    assert "Ben" not in nexus.prompts[2]


async def test_history_keeps_the_last_turns_within_the_char_budget(nexus, console, running):
    nexus.reply = lambda prompt: "ok"
    await running(config(nexus, history_turns=2, history_max_chars=60), console)
    long = "a question long enough to overflow the budget of sixty characters"
    for text in ("one", "two", "three", long, "last"):
        await console.say(text)
    await console.replies(5)
    # The last two turns are kept; of those only what fits in 60 characters is folded in.
    assert nexus.prompts[3] == (
        f"User: two\nAssistant: ok\n\nUser: three\nAssistant: ok\n\nUser: {long}\nAssistant:"
    )
    assert nexus.prompts[4] == "User: last\nAssistant:"


async def test_custom_templates(nexus, console, running):
    await running(
        config(
            nexus,
            prompt_template="You are terse.\n{history}Q: {text}\nA:",
            turn_template="Q: {user}\nA: {assistant}\n",
        ),
        console,
    )
    nexus.reply = lambda prompt: "fine"
    await console.say("hi")
    await console.say("again")
    await console.replies(2)
    assert nexus.prompts[1] == "You are terse.\nQ: hi\nA: fine\nQ: again\nA:"


async def test_reset_forgets_the_history(nexus, console, running):
    await running(config(nexus), console)
    for text in ("remember 7", "/reset", "what number?"):
        await console.say(text)
    await console.replies(3)
    assert nexus.prompts[-1] == "User: what number?\nAssistant:"


async def test_think_is_stripped_and_usage_and_durations_logged(nexus, console, running, caplog):
    caplog.set_level(logging.INFO, logger="bridge.backends.nexus")
    nexus.reply = lambda prompt: "<think>hmm</think>Paris."
    bridge = await running(config(nexus), console)
    await console.say("capital of France?")
    await console.say("and Spain?")
    assert await console.replies(2) == ["Paris.", "Paris."]
    assert "<think>" not in nexus.prompts[1]  # the history holds the answer, not the thinking
    assert "prompt_tokens=11 answer_tokens=5 total=1.50s load=0.10s" in caplog.text
    assert await bridge.router.idle(5)  # tokens are counted once the answer is out
    metrics = bridge.metrics.render().decode()
    assert 'backend="main",direction="input",outcome="answered",route="default",source="reported"} 22.0' in metrics


@pytest.mark.parametrize(
    ("level", "cause", "message"),
    [("outer", "cause=rejected", "instance quota exceeded"), ("inner", "cause=unavailable", "GPU")],
)
async def test_result_not_ok_is_a_failure_with_its_message(
    nexus, console, running, caplog, level, cause, message
):
    getattr(nexus, f"fail_{level}")(message)
    await running(config(nexus), console)
    await console.say("first")
    assert await console.replies(1) == [DEFAULT_APOLOGY]
    assert cause in caplog.text and message in caplog.text
    await console.say("second")
    assert (await console.replies(2))[1].startswith("echo: ")


@pytest.mark.parametrize(("fault", "cause"), FAULTS)
async def test_fault_gives_apology_and_next_message_works(
    nexus, console, running, caplog, fault, cause
):
    await running(config(nexus, history="none"), console)
    await apology_then_recovery(nexus, console, caplog, fault, cause)


async def test_a_single_503_is_retried_unseen(nexus, console, running):
    nexus.fail_next(503)
    await running(config(nexus, history="none"), console)
    await console.say("hi")
    assert await console.replies(1) == ["echo: hi"]
    assert len(nexus.calls) == 2


async def test_secrets_never_reach_the_log(nexus, console, running, caplog):
    caplog.set_level(logging.DEBUG)
    nexus.fail_next(401, body={"result": "ERROR", "message": "Unauthorized"})
    nexus.fail_next(503)
    await running(config(nexus, verify=False), console)
    for text in ("a", "b", "c"):
        await console.say(text)
    await console.replies(3)
    assert "credentials refused (HTTP 401" in caplog.text
    assert "verification is OFF" in caplog.text
    assert ACCESS not in caplog.text and SECRET not in caplog.text


def test_tls_settings(tmp_path, caplog):
    base = {
        "type": "nexus",
        "base_url": "https://nexus.example",
        "account": "a",
        "access_key": "k" * 8,
        "secret_key": "s" * 8,
        "api": "x",
        "instance": "i",
    }
    with pytest.raises(ConfigError, match="ca_file: cannot be used with verify: false"):
        make_config({"backends": {"n": {**base, "verify": False, "ca_file": "/x.pem"}}})
    missing = make_config({"backends": {"n": {**base, "ca_file": str(tmp_path / "none.pem")}}})
    with pytest.raises(ConfigError, match=r"backends\.n\.ca_file: cannot load"):
        NexusBackend("n", missing.backends["n"])
    with caplog.at_level(logging.WARNING):
        NexusBackend("n", make_config({"backends": {"n": {**base}}}).backends["n"])
        assert "verification is OFF" not in caplog.text
        NexusBackend("n", make_config({"backends": {"n": {**base, "verify": False}}}).backends["n"])
        assert "backend n: TLS certificate verification is OFF" in caplog.text


def test_template_mistakes_are_config_errors():
    base = {
        "type": "nexus",
        "base_url": "https://nexus.example",
        "account": "a",
        "access_key": "k",
        "secret_key": "s",
        "api": "x",
        "instance": "i",
    }
    with pytest.raises(ConfigError, match=r"backends\.n\.prompt_template: must contain \{text\}"):
        make_config({"backends": {"n": {**base, "prompt_template": "{history}"}}})
    with pytest.raises(ConfigError, match=r"backends\.n\.turn_template: unknown field"):
        make_config({"backends": {"n": {**base, "turn_template": "{user} {bot}"}}})


async def test_probe_sends_one_tiny_prompt(nexus):
    backend = NexusBackend("main", config(nexus).backends["main"])
    try:
        assert await backend.probe() == (
            "instance inst-1 answered 'echo: Reply with the single word OK.', 16 tokens"
        )
    finally:
        await backend.aclose()


async def test_check_reports_each_backend_without_secrets(nexus, tmp_path):
    good = section(nexus)
    bad = {**section(nexus), "secret_key": "${NEXUS_WRONG}"}
    status, out = await run_check(
        tmp_path, {"good": good, "bad": bad}, {**ENV, "NEXUS_WRONG": "wrong-secret-123"}
    )
    assert status == 1
    assert "  ok  " in row(out, "backend good")
    assert "FAILED  auth: credentials refused (HTTP 401: Unauthorized)" in row(out, "backend bad")
    for secret in (ACCESS, SECRET, "wrong-secret-123"):
        assert secret not in out
