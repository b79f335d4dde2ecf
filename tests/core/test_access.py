"""Access rules and per-user rate limits: who gets answers, and how many, as the user sees it."""

from __future__ import annotations

import pytest

from bridge.errors import ConfigError
from tests.conftest import make_config


def config(server, access: dict):
    return make_config({
        "backends": {"llm": {"type": "openai", "base_url": server.base_url, "session": "header"}},
        "access": access,
    })  # fmt: skip


async def test_a_private_bot_answers_only_whom_the_rules_allow(openai_fake, console, running):
    access = {"default": "deny", "rules": [
        {"user": ["ann"], "allow": True},
        {"kind": "group", "chat": "ops", "allow": True},
    ]}  # fmt: skip
    await running(config(openai_fake, access), console)
    await console.say("hello", user="ann")
    await console.say("let me in", user="eve")
    await console.say("in the ops group", user="eve", group="ops")
    await console.replies(3)
    assert console.texts("ann") == ["echo: hello"]
    assert console.texts("eve") == ["Sorry, this bot is not open to you."]
    assert console.texts("ops") == ["echo: in the ops group"]
    asked = [c.json["messages"][-1]["content"] for c in openai_fake.calls]
    assert "let me in" not in asked  # a denied message never reaches the LLM (or the bill)


async def test_a_deny_rule_can_be_silent(openai_fake, console, running):
    access = {"rules": [{"user": "spammer", "allow": False}], "denied_reply": None}
    bridge = await running(config(openai_fake, access), console)
    await console.say("buy now", user="spammer")
    await console.say("a real question", user="ann")
    await console.replies(1)
    assert await bridge.router.idle(5)
    assert console.texts() == ["echo: a real question"]


async def test_the_rate_limit_tells_once_then_stays_quiet(openai_fake, console, running):
    access = {"rate_limit": {"messages": 2, "per_seconds": 3600}}
    bridge = await running(config(openai_fake, access), console)
    for n in range(5):
        await console.say(f"question {n}")
    await console.say("/help")  # commands are not counted and still work
    await console.say("a question from someone else", user="bob")
    await console.replies(5)
    assert await bridge.router.idle(5)
    texts = console.texts("alice")
    assert texts[:2] == ["echo: question 0", "echo: question 1"]
    assert texts[2].startswith("You're sending messages faster than I can answer.")
    assert "seconds" in texts[2]
    assert len(texts) == 4 and "/reset" in texts[3]  # questions 3 and 4: no reply at all
    assert console.texts("bob") == ["echo: a question from someone else"]
    assert len(openai_fake.calls) == 3


def test_a_reply_with_unknown_placeholders_is_a_config_error():
    with pytest.raises(ConfigError, match=r"access.rate_limited_reply: only \{wait\} may be used"):
        make_config({"backends": {"e": {"type": "echo"}},
                     "access": {"rate_limited_reply": "wait {seconds}s"}})


def test_operator_keys_name_their_path_when_wrong():
    def error(access: dict) -> str:
        with pytest.raises(ConfigError) as caught:
            make_config({"backends": {"e": {"type": "echo"}}, "access": access})
        return str(caught.value)

    twice = {"platform": "telegram", "user": "42"}
    assert error({"people": {"ann": [twice], "bob": [twice]}}) == (
        "access.people.bob.0: this account is already ann's"
    )
    assert error({"budgets": {"timezone": "Mars/Olympus"}}).startswith(
        "access.budgets.timezone: unknown time zone 'Mars/Olympus'"
    )
    assert error({"budgets": {"backends": {"gpt": {"person_daily": 5}}}}) == (
        "access.budgets.backends.gpt: no backend named 'gpt'"
    )
    assert error({"budgets": {"reply": "wait {hours}"}}).startswith(
        "access.budgets.reply: only {resets} and {wait} may be used"
    )
    assert error({"budgets": {"person_daily": -1}}).startswith("access.budgets.person_daily:")
    config = make_config(
        {"backends": {"e": {"type": "echo"}}, "access": {"admins": [{"platform": "telegram", "user": 42}]}}
    )
    assert config.access.admins[0].user == "42"  # a YAML number is the id as written
