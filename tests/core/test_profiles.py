"""Persona and model per route: a route's `options:` reach its backend in the request body, and
an option the backend's type does not have is a config error naming the key."""

from __future__ import annotations

import pytest

from bridge.config import parse_config
from bridge.errors import ConfigError
from tests.conftest import make_config
from tests.fakes.nugen_api import FakeNugen


def error_of(raw) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {})
    return str(caught.value)


def openai(server, **extra) -> dict:
    return {"type": "openai", "base_url": server.base_url, "max_retries": 0, **extra}


NEXUS = {"type": "nexus", "base_url": "https://nexus.example.com", "account": "acct-1",
         "access_key": "nexus-access-key-1", "secret_key": "nexus-secret-key-1", "api": "chat",
         "instance": "inst-1"}  # fmt: skip


async def test_two_routes_give_two_system_prompts_and_models_in_the_request_bodies(
    openai_fake, console, running
):
    config = make_config(
        {
            "backends": {"main": openai(openai_fake, model="default-model", system_prompt="Hi.")},
            "routes": [
                {"chat": "terse", "backend": "main",
                 "options": {"system_prompt": "Answer in one line.", "model": "small"}},
                {"chat": "tutor", "backend": "main",
                 "options": {"system_prompt": "Teach step by step.", "model": "large",
                             "temperature": 0.7, "max_tokens": 900}},
            ],
        }
    )  # fmt: skip
    await running(config, console)
    await console.say("what is 2+2?", group="terse")
    await console.say("what is 2+2?", group="tutor")
    await console.say("what is 2+2?")  # no route: the backend's own settings
    await console.replies(3)
    bodies = {
        c.json["messages"][-1]["content"] + "@" + str(c.json["model"]): c.json
        for c in openai_fake.calls_to("/v1/chat/completions")
    }
    terse, tutor, plain = (bodies[f"what is 2+2?@{m}"] for m in ("small", "large", "default-model"))
    assert terse["messages"][0] == {"role": "system", "content": "Answer in one line."}
    assert "temperature" not in terse and "max_tokens" not in terse
    assert tutor["messages"][0] == {"role": "system", "content": "Teach step by step."}
    assert (tutor["temperature"], tutor["max_tokens"]) == (0.7, 900)
    assert plain["messages"][0] == {"role": "system", "content": "Hi."}


async def test_nugen_route_options_override_the_backends_own(console, running):
    async with FakeNugen() as nugen:
        config = make_config(
            {
                "backends": {"nugen": {"type": "nugen", "base_url": nugen.url,
                                       "token": "nugen-token-1", "engine_id": "eng-1",
                                       "max_retries": 0}},
                "routes": [{"user": "alice", "backend": "nugen",
                            "options": {"prompt_id": "tutor", "model_llm": "big-llm",
                                        "mode": "agentic", "top_k": 12}}],
            }
        )  # fmt: skip
        await running(config, console)
        await console.say("hello")
        await console.say("hello", user="bob")
        await console.replies(2)
        alice, bob = (c.json for c in nugen.calls if c.method == "POST")
    assert {k: alice[k] for k in ("prompt_id", "model_llm", "mode", "top_k")} == {
        "prompt_id": "tutor", "model_llm": "big-llm", "mode": "agentic", "top_k": 12,
    }  # fmt: skip
    assert "prompt_id" not in bob and bob["mode"] == "vanilla"


def test_an_option_the_backend_type_does_not_have_is_an_error_naming_the_key():
    backends = {"main": {"type": "openai", "base_url": "http://127.0.0.1:1/v1"}}
    assert error_of(
        {"backends": backends, "routes": [{"backend": "main", "options": {"foo": 1}}]}
    ) == (
        "routes.0.options.foo: unknown option for an openai backend "
        "(it takes: model, system_prompt, temperature, max_tokens)"
    )
    assert error_of(
        {"backends": {"e": {"type": "echo"}}, "routes": [{"backend": "e", "options": {"model": "m"}}]}
    ) == "routes.0.options.model: unknown option for an echo backend (it takes: none)"
    assert error_of(
        {"backends": backends,
         "routes": [{"user": "1", "backend": "main"},
                    {"backend": "main", "options": {"temperature": 3}}]}
    ) == "routes.1.options.temperature: input should be less than or equal to 2"  # fmt: skip


@pytest.mark.parametrize("session", ["header", "body"])
def test_system_prompt_on_a_server_keyed_backend_fails_with_the_key_named(session):
    backend = {"type": "openai", "base_url": "http://127.0.0.1:1/v1", "session": session}
    why = (
        f"the server keeps this conversation's history (session: {session}), so the bridge "
        "cannot send it a system prompt; set the prompt on the server, or use session: bridge"
    )
    routes = [{"backend": "main", "options": {"system_prompt": "Be brief."}}]
    assert error_of({"backends": {"main": backend}, "routes": routes}) == (
        f"routes.0.options.system_prompt: {why}"
    )
    on_backend = {"main": {**backend, "system_prompt": "Be brief."}}
    assert error_of({"backends": on_backend}) == f"backends.main.system_prompt: {why}"


def test_nexus_prompt_template_is_checked_like_the_backends_own_and_models_need_a_model():
    bad = {"backends": {"n": NEXUS}, "routes": [{"backend": "n", "options": {"prompt_template": "{x}"}}]}
    assert error_of(bad) == (
        "routes.0.options.prompt_template: unknown field(s) ['x']; use ['history', 'text']"
    )
    models = {"backends": {"n": NEXUS}, "routes": [{"backend": "n", "models": ["a", "b"]}]}
    assert error_of(models) == "routes.0.models: a nexus backend has no model to choose"


async def test_a_nexus_route_gets_its_own_prompt_template(console, running):
    from tests.fakes.nexus_api import FakeNexus

    async with FakeNexus() as nexus:
        config = make_config(
            {
                "backends": {"n": {**NEXUS, "base_url": nexus.url, "max_retries": 0}},
                "routes": [{"kind": "group", "backend": "n",
                            "options": {"prompt_template": "Pirate voice.\n{history}{text}"}}],
            }
        )  # fmt: skip
        await running(config, console)
        await console.say("ahoy", group="ship")
        await console.say("hello")
        await console.replies(2)
        prompts = [c.json["prompt"] for c in nexus.calls if c.method == "POST"]
    assert sorted(prompts) == sorted(["Pirate voice.\nahoy", "User: hello\nAssistant:"])
