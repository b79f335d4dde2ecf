"""Daily token budgets as the user meets them: counted from what each backend reports (or
estimated), refused at the limit with when it resets, and the refused question never reaches the
backend."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bridge.budgets import Budgets, duration
from bridge.config import AccessSettings
from bridge.config import Budgets as BudgetSettings
from bridge.metrics import Metrics
from bridge.people import People
from bridge.store.sqlite import SqliteStore
from bridge.types import ChatKind, Inbound
from tests.backends import test_nexus, test_nexusgpt, test_nugen
from tests.conftest import RecordingConsole, make_config
from tests.fakes.base import FakeServer
from tests.fakes.nexus_api import FakeNexus
from tests.fakes.nexusgpt_api import FakeNexusGPT
from tests.fakes.nugen_api import FakeNugen
from tests.fakes.openai_api import FakeOpenAI

REFUSAL = "You have used today's token budget. It resets at 00:00 UTC (in "


def openai_section(server: FakeServer) -> dict:
    return {"type": "openai", "base_url": f"{server.url}/v1", "max_retries": 0}


# backend type → (fake, its config section, its environment, tokens one "hello" costs)
BACKENDS: dict[str, tuple[type[FakeServer], Callable[[Any], dict], dict, int]] = {
    "openai": (FakeOpenAI, openai_section, {}, 7 + 3),  # usage.prompt/completion_tokens
    "nexus": (FakeNexus, lambda s: test_nexus.section(s, history="none"), test_nexus.ENV, 11 + 5),
    "nugen": (FakeNugen, test_nugen.section, test_nugen.ENV, 11 + 2),  # token_usage
    # NexusGPT reports nothing: 4 characters a token, "hello" → 2, "echo: hello" → 3.
    "nexusgpt": (FakeNexusGPT, test_nexusgpt.section, test_nexusgpt.ENV, 2 + 3),
}


@contextlib.asynccontextmanager
async def backend(kind: str) -> AsyncIterator[tuple[FakeServer, dict, dict, int]]:
    fake, section, env, cost = BACKENDS[kind]
    async with fake() as server:
        yield server, section(server), env, cost


async def used_today(bridge, subject: str) -> dict[str, int]:
    counts = await bridge.store.counters.tokens(bridge.budgets.day(), [subject])
    return counts[subject]


@pytest.mark.parametrize("kind", list(BACKENDS))
async def test_each_backends_usage_is_counted_and_the_budget_refuses_at_the_limit(kind, running):
    async with backend(kind) as (server, section, env, cost):
        config = make_config(
            {"backends": {"main": section}, "access": {"budgets": {"person_daily": cost}}}, env
        )
        console = RecordingConsole(user="alice")
        bridge = await running(config, console)
        await console.say("hello")
        assert await console.replies(1) == ["echo: hello"]
        assert await bridge.router.idle(5)
        assert await used_today(bridge, "cl.alice") == {"*": cost, "main": cost}
        calls = len(server.calls)
        await console.say("hello again")
        [_, refusal] = await console.replies(2)
        assert refusal.startswith(REFUSAL) and refusal.endswith(")."), refusal
        assert len(server.calls) == calls  # the refused question never reached the backend
        await console.say("another one", user="bob")  # someone else still has their budget
        assert (await console.replies(3))[2] == "echo: another one"
        page = bridge.metrics.registry.get_sample_value
        assert page("botbridge_budget_refusals_total", {"scope": "person", "backend": "main"}) == 1
        outcome = {"platform": "console", "outcome": "over_budget"}
        assert page("botbridge_messages_total", outcome) == 1


async def test_a_group_chats_budget_is_shared_by_its_members_not_their_dms(running):
    config = make_config(
        {"backends": {"e": {"type": "echo"}}, "access": {"budgets": {"chat_daily": 5}}}
    )
    console = RecordingConsole(user="x")
    await running(config, console)
    await console.say("a question of forty characters, give or take", user="ann", group="g")
    await console.replies(1)
    await console.say("mine now?", user="bob", group="g")
    await console.say("and in private?", user="bob")
    await console.replies(3)
    assert console.texts("g")[1].startswith(REFUSAL)
    assert console.texts("bob") == ["[wx:dm:cl.bob] and in private?"]


async def test_a_backends_own_budget_stops_that_backend_only(openai_fake, running):
    config = make_config(
        {
            "backends": {"llm": openai_section(openai_fake), "echo": {"type": "echo"}},
            "bridge": {"default_backend": "llm"},
            "routes": [{"kind": "group", "backend": "echo", "name": "groups"}],
            "access": {"budgets": {"backends": {"llm": {"person_daily": 10}}}},
        }
    )
    console = RecordingConsole(user="ann")
    bridge = await running(config, console)
    await console.say("costly")
    await console.say("costly again")
    await console.say("cheap", group="g")
    await console.replies(3)
    assert console.texts("ann")[0] == "echo: costly"
    assert console.texts("ann")[1].startswith(REFUSAL)
    assert console.texts("g") == ["[wx:group:cl.g:user:cl.ann] cheap"]
    assert await bridge.router.idle(5)
    page = bridge.metrics.registry.get_sample_value
    groups = {"backend": "echo", "route": "groups", "direction": "input"}
    assert page("botbridge_tokens_total", {**groups, "outcome": "answered", "source": "estimated"})


async def test_linked_accounts_spend_one_budget(running):
    people = {"ann": [{"platform": "console", "user": "ann"}, {"platform": "console", "user": "ann2"}]}
    config = make_config(
        {
            "backends": {"e": {"type": "echo"}},
            "access": {"people": people, "budgets": {"person_daily": 3}},
        }
    )
    console = RecordingConsole(user="x")
    bridge = await running(config, console)
    await console.say("from the laptop", user="ann")
    await console.replies(1)
    assert await bridge.router.idle(5)
    await console.say("from the phone", user="ann2")
    assert (await console.replies(1, chat="ann2"))[0].startswith(REFUSAL)
    assert (await used_today(bridge, "person:ann"))["*"] > 3


async def test_the_day_ends_at_midnight_in_the_configured_time_zone(tmp_path):
    now = [1_700_000_000.0]  # 2023-11-14 22:13:20 UTC = 2023-11-15 07:13:20 in Tokyo
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    await store.open()
    settings = BudgetSettings(person_daily=10, timezone="Asia/Tokyo")
    budgets = Budgets(settings, People(AccessSettings()), store, Metrics(), clock=lambda: now[0])
    ann = Inbound("telegram", "42", "42", "hi", ChatKind.DM, "e1")
    assert budgets.day() == "2023-11-15"
    await store.counters.add(budgets.day(), [("tg.42", "*")], 10)
    over = await budgets.check(ann, "main")
    assert over is not None and over.scope == "person"
    assert over.reply.endswith("It resets at 00:00 Asia/Tokyo (in 16 h 47 min).")
    now[0] += 16 * 3600 + 46 * 60 + 40  # 23:59:60 in Tokyo: the next day
    assert budgets.day() == "2023-11-16"
    assert await budgets.check(ann, "main") is None
    await store.close()


def test_waits_are_said_in_words():
    assert duration(30) == "under a minute"
    assert duration(61) == "2 min"
    assert duration(3600) == "1 h"
    assert duration(5 * 3600 + 12 * 60) == "5 h 12 min"


async def test_status_shows_the_days_tokens_to_an_admin(openai_fake, running):
    config = make_config(
        {
            "backends": {"llm": openai_section(openai_fake)},
            "access": {"admins": [{"platform": "console", "user": "root"}]},
        }
    )
    console = RecordingConsole(user="ann")
    bridge = await running(config, console)
    await console.say("a question")
    await console.replies(1)
    assert await bridge.router.idle(5)
    await console.say("/status", user="root")
    [status] = await console.replies(1, chat="root")
    assert "tokens today (UTC): 10 (llm 10)" in status.splitlines()
    await console.say("/budget ann", user="root")
    assert (await console.replies(2, chat="root"))[1] == (
        "cl.ann: 10 tokens used today; no personal budget (the configured one applies)."
    )
