"""/model and /help per chat: a person lists and switches models where the operator offers them,
the choice outlives a restart, and /help says what this chat offers."""

from __future__ import annotations

import pytest

from bridge.store.redis import RedisStore
from tests.conftest import REDIS_URL, RecordingConsole, lifetime, make_config, redis_prefix


def config(server, tmp_path=None, bridge=None, **backend):
    raw = {
        "backends": {
            "main": {"type": "openai", "base_url": server.base_url, "max_retries": 0,
                     "model": "mini", **backend},
            "fixed": {"type": "openai", "base_url": server.base_url, "max_retries": 0},
        },
        "bridge": {"default_backend": "main", **(bridge or {})},
        "routes": [
            {"chat": "lab", "backend": "main", "models": ["mini", "large", "vision-xl"],
             "options": {"model": "large"}},
            {"chat": "fixed", "backend": "fixed"},
        ],
    }  # fmt: skip
    if tmp_path is not None:
        raw["bridge"]["store"] = {"path": str(tmp_path / "state.sqlite3")}
    return make_config(raw)


def models(server) -> list[str | None]:
    return [c.json.get("model") for c in server.calls_to("/v1/chat/completions")]


async def test_model_lists_the_choices_and_switches_this_session_only(
    openai_fake, console, running
):
    await running(config(openai_fake, models=["mini", "maxi"]), console)
    await console.say("/model")
    await console.say("/model maxi")
    await console.say("hello")
    await console.say("hello", user="bob")  # Bob's session keeps the default
    await console.say("/model huge")
    await console.replies(5)
    texts = console.texts("alice")
    assert texts[0] == "Model in use: mini.\nChoices: mini, maxi.\nSwitch with /model NAME."
    assert texts[1] == "Done: this conversation now uses maxi."
    assert texts[3] == "There is no model called 'huge' here. Choices: mini, maxi."
    assert sorted(models(openai_fake)) == ["maxi", "mini"]
    assert console.texts("bob") == ["echo: hello"]


async def test_a_route_lists_its_own_models_and_elsewhere_the_model_is_fixed(
    openai_fake, console, running
):
    await running(config(openai_fake), console)
    await console.say("/model", group="lab")
    await console.say("/model VISION-XL", group="lab")
    await console.say("what now?", group="lab")
    await console.say("/model", group="fixed")
    await console.say("/model large", group="fixed")
    await console.replies(5)
    lab, fixed = console.texts("lab"), console.texts("fixed")
    assert lab[0].startswith("Model in use: large.\nChoices: mini, large, vision-xl.")
    assert lab[1] == "Done: this conversation now uses vision-xl."
    assert fixed == ["The model is fixed here: the server's default."] * 2
    assert models(openai_fake) == ["vision-xl"]


@pytest.fixture(params=["sqlite", "redis"])
async def store_for(request, tmp_path):
    """A store factory whose every instance sees the same data (a file, or one Redis prefix)."""
    if request.param == "sqlite":
        yield lambda: None  # the config's SQLite file
        return
    async with redis_prefix() as prefix:
        yield lambda: RedisStore(REDIS_URL, prefix=prefix)


async def test_a_model_switch_survives_a_restart_and_reset_keeps_it(
    openai_fake, tmp_path, store_for
):
    cfg = config(openai_fake, tmp_path, models=["mini", "maxi"])
    first = RecordingConsole(user="dana")
    async with lifetime(cfg, first, store=store_for()):
        await first.say("/model maxi")
        await first.say("before the restart")
        await first.replies(2)

    second = RecordingConsole(user="dana")
    async with lifetime(cfg, second, store=store_for()):
        for text in ("after the restart", "/reset", "after a reset", "/model"):
            await second.say(text)
        texts = await second.replies(4)
    assert models(openai_fake) == ["maxi", "maxi", "maxi"]
    assert texts[3].startswith("Model in use: maxi.")


async def test_reset_forgets_the_model_when_the_operator_says_so(openai_fake, console, running):
    cfg = config(openai_fake, bridge={"reset_clears_model": True}, models=["mini", "maxi"])
    await running(cfg, console)
    for text in ("/model maxi", "one", "/reset", "two"):
        await console.say(text)
    await console.replies(4)
    assert models(openai_fake) == ["maxi", "mini"]


async def test_help_says_what_this_chat_offers(openai_fake, console, running):
    cfg = config(openai_fake, vision=True, bridge={"max_image_bytes": 2_000_000})
    await running(cfg, console)
    await console.say("/help", group="lab")
    await console.say("/help", group="fixed")
    await console.replies(2)
    [lab], [fixed] = console.texts("lab"), console.texts("fixed")
    assert lab == (
        "I pass your messages to an AI assistant and post its answers here.\n\n"
        "/help shows this message\n"
        "/reset starts a fresh conversation\n"
        "/model shows or switches the model (mini, large, vision-xl)\n"
        "/forget deletes what I keep about you\n\n"
        "Pictures: send one (JPEG, PNG, WebP, GIF; up to 2 MB) with your question as its "
        "caption, and I'll look at it.\n"
        "Model: large.\n\n"
        "In a group, mention me or reply to one of my messages."
    )
    assert "/model" not in fixed
    assert "I read text only" in fixed and "Model: the server's default." in fixed


async def test_the_operators_help_text_opens_the_help(openai_fake, console, running):
    await running(config(openai_fake, bridge={"help_text": "Ask me about the lab."}), console)
    await console.say("/help")
    [text] = await console.replies(1)
    assert text.startswith("Ask me about the lab.\n\n/help shows this message")
    assert "In a group" not in text  # a DM


async def test_the_choice_outlives_a_backend_that_replaces_its_whole_state(openai_fake):
    """A backend returns its state for the session; the bridge keeps its own keys in it."""
    from bridge.types import Answer

    class Forgetful:
        name = "main"
        asked: list = []

        async def ask(self, session, question):
            self.asked.append(question.options.get("model"))
            return Answer(text="ok", state={"thread": "t1"})  # nothing of what it was given

        async def probe(self):
            return "forgetful"

        async def aclose(self):
            return None

    backend = Forgetful()
    console = RecordingConsole(user="erin")
    cfg = make_config(
        {"backends": {"main": {"type": "openai", "base_url": openai_fake.base_url,
                               "models": ["mini", "maxi"]}}}
    )  # fmt: skip
    async with lifetime(cfg, console, backends={"main": backend}):
        for text in ("/model maxi", "one", "two"):
            await console.say(text)
        await console.replies(3)
    assert backend.asked == ["maxi", "maxi"]
