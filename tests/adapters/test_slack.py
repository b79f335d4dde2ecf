"""Slack end to end in Socket Mode: fake Slack (Web API + websocket) ↔ real slack-bolt and slack_sdk
↔ the bridge ↔ the fake OpenAI server. Each test is a scene: what a person does in Slack, and
what they see there."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from adapters.slack import SlackAdapter, SlackStartError
from bridge.metrics import Metrics
from tests.conftest import make_config
from tests.fakes.base import eventually
from tests.fakes.slack_api import (
    APP_TOKEN,
    BOT_TOKEN,
    FakeSlack,
    channel_message,
    event_callback,
    im,
    mention,
)

DM_KEY = "wx:dm:sl.T024.U012"
GROUP_KEY = "wx:group:sl.T024.C123:user:sl.T024.U012"


@pytest.fixture
async def slack():
    async with FakeSlack() as server:
        yield server


def slack_config(slack, openai, *, http: bool = False, **section) -> dict:
    mode = {"signing_secret": section.pop("signing_secret")} if http else {"app_token": APP_TOKEN}
    raw = {
        "backends": {
            "main": {
                "type": "openai",
                "base_url": openai.base_url,
                "session": "header",
                "retry_backoff": 0.01,
            }
        },
        "adapters": {
            "slack": {"bot_token": BOT_TOKEN, "api_base_url": slack.api_url, **mode, **section}
        },
    }
    if http:
        raw["http"] = {"enabled": True, "port": 0}
    return raw


async def start(running, slack, openai, **section):
    config = make_config(slack_config(slack, openai, **section))
    adapter = SlackAdapter(config.adapters.slack, Metrics())
    bridge = await running(config, adapter)
    return bridge, adapter


def keys(openai) -> list[str]:
    return [c.headers["x-session-key"] for c in openai.calls_to("/v1/chat/completions")]


def count(bridge, outcome: str) -> float:
    value = bridge.metrics.registry.get_sample_value(
        "botbridge_messages_total", {"platform": "slack", "outcome": outcome}
    )
    return value or 0.0


async def test_im_is_answered_plainly_with_the_dm_key(slack, openai_fake, running):
    await start(running, slack, openai_fake)
    envelope = await slack.push(im("hello there"))
    await slack.wait_ack(envelope)
    [posted] = await slack.wait_posted(1)
    assert posted["channel"] == "D0IM"
    assert posted["text"] == "echo: hello there"
    assert "thread_ts" not in posted  # an IM answer is a plain message
    assert keys(openai_fake) == [DM_KEY]


async def test_mention_in_thread_is_answered_there_with_the_per_user_group_key(
    slack, openai_fake, running
):
    await start(running, slack, openai_fake)
    asked = mention("<@UBOT> what is up?", thread_ts="1700000000.000001")
    await slack.push(asked)
    [posted] = await slack.wait_posted(1)
    assert posted["channel"] == "C123"
    assert posted["thread_ts"] == "1700000000.000001"
    assert posted["text"] == "echo: what is up?"  # the mention is not sent to the LLM
    assert keys(openai_fake) == [GROUP_KEY]


async def test_top_level_mention_starts_a_thread_on_the_asking_message(slack, openai_fake, running):
    await start(running, slack, openai_fake)
    asked = mention("<@UBOT|botbridge> hi")
    await slack.push(asked)
    [posted] = await slack.wait_posted(1)
    assert posted["thread_ts"] == asked["event"]["ts"]
    assert posted["text"] == "echo: hi"


async def test_a_bare_mention_gets_the_help(slack, openai_fake, running):
    await start(running, slack, openai_fake)
    asked = mention("<@UBOT>")
    await slack.push(asked)
    [posted] = await slack.wait_posted(1)
    assert "/reset starts a fresh conversation" in posted["text"]
    assert posted["thread_ts"] == asked["event"]["ts"]
    assert openai_fake.calls == []  # the bridge answers it itself


async def test_threads_as_groups_gives_each_thread_its_own_session(slack, openai_fake, running):
    await start(running, slack, openai_fake, threads_as_groups=True)
    await slack.push(mention("<@UBOT> one", thread_ts="1700000000.000001"))
    await slack.push(mention("<@UBOT> two", thread_ts="1700000000.000002"))
    await slack.wait_posted(2)
    assert sorted(keys(openai_fake)) == [
        "wx:group:sl.T024.C123/1700000000%2E000001:user:sl.T024.U012",
        "wx:group:sl.T024.C123/1700000000%2E000002:user:sl.T024.U012",
    ]


async def test_channel_chatter_is_ignored_and_a_mention_answered_once(slack, openai_fake, running):
    bridge, _ = await start(running, slack, openai_fake)
    await slack.wait_ack(await slack.push(channel_message("lunch anyone?")))
    assert count(bridge, "ignored") == 1
    # Slack sends a mention both as `message` and as `app_mention`: one answer.
    copy = channel_message("<@UBOT> status?")
    await slack.wait_ack(await slack.push(copy))
    same = mention("<@UBOT> status?", ts=copy["event"]["ts"])
    await slack.wait_ack(await slack.push(same))
    await slack.wait_posted(1)
    assert await bridge.router.idle(5)
    assert [p["text"] for p in slack.posted] == ["echo: status?"]
    assert len(openai_fake.calls) == 1


async def test_redelivered_envelope_is_acknowledged_and_answered_once(slack, openai_fake, running):
    bridge, _ = await start(running, slack, openai_fake)
    payload = im("only once please")
    await slack.wait_ack(await slack.push(payload))
    again = await slack.push(payload, retry_attempt=1, retry_reason="timeout")
    await slack.wait_ack(again)
    assert count(bridge, "duplicate") == 1
    assert await bridge.router.idle(5)
    assert [p["text"] for p in slack.posted] == ["echo: only once please"]
    assert len(openai_fake.calls) == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"subtype": "message_changed"},
        {"subtype": "channel_join"},
        {"bot_id": "B0OTHER"},
        {"user": "UBOT"},
    ],
    ids=["edit", "join", "other-bot", "ourselves"],
)
async def test_bots_edits_joins_and_own_messages_are_not_answered(
    slack, openai_fake, running, extra
):
    bridge, _ = await start(running, slack, openai_fake)
    await slack.wait_ack(await slack.push(im("not for an answer", **extra)))
    await slack.push(im("real question"))
    await slack.wait_posted(1)
    assert await bridge.router.idle(5)
    assert [p["text"] for p in slack.posted] == ["echo: real question"]


async def test_other_event_types_are_acknowledged(slack, openai_fake, running):
    await start(running, slack, openai_fake)
    reaction = event_callback({"type": "reaction_added", "user": "U012", "reaction": "+1"})
    ack = await slack.wait_ack(await slack.push(reaction))
    assert "payload" not in ack  # a bare ack, as Slack expects for events
    assert slack.posted == []


async def test_reaction_shows_while_the_assistant_works(slack, openai_fake, running):
    # The backend answers with what the user saw on their message at that moment.
    openai_fake.reply = lambda body, headers: f"reactions: {sorted(r[2] for r in slack.reactions)}"
    await start(running, slack, openai_fake, progress_reaction="eyes")
    asked = im("think hard")
    await slack.push(asked)
    [posted] = await slack.wait_posted(1)
    assert posted["text"] == "reactions: ['eyes']"
    assert slack.reactions == set()  # removed once answered
    methods = slack.methods()
    assert methods.index("reactions.remove") < methods.index("chat.postMessage")
    [add] = slack.args_of("reactions.add")
    assert (add["channel"], add["timestamp"]) == ("D0IM", asked["event"]["ts"])


async def test_reaction_errors_never_stop_the_answer(slack, openai_fake, running, caplog):
    await start(running, slack, openai_fake)
    slack.error_next("/api/reactions.add", "already_reacted")  # tolerated silently
    await slack.push(im("first"))
    await slack.wait_posted(1)
    slack.error_next("/api/reactions.add", "missing_scope")  # logged, answer still comes
    await slack.push(im("second"))
    await slack.wait_posted(2)
    assert [p["text"] for p in slack.posted] == ["echo: first", "echo: second"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("missing_scope" in w for w in warnings)
    assert not any("already_reacted" in w or "no_reaction" in w for w in warnings)


async def test_ratelimited_post_waits_retry_after_then_arrives(slack, openai_fake, running):
    _, adapter = await start(running, slack, openai_fake, progress_reaction=None)
    slack.ratelimit_next("/api/chat.postMessage", retry_after=1)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await slack.push(im("busy day"))
    await slack.wait_posted(1, timeout=5)
    assert loop.time() - began >= 1.0
    assert [p["text"] for p in slack.posted] == ["echo: busy day"]
    assert len(slack.calls_to("/api/chat.postMessage")) == 2
    retries = adapter._metrics.registry.get_sample_value(
        "botbridge_platform_send_retries_total", {"platform": "slack", "reason": "rate_limited"}
    )
    assert retries == 1


async def test_health_follows_the_socket(slack, openai_fake, running):
    bridge, adapter = await start(running, slack, openai_fake)
    report = await bridge.readiness()
    assert report["components"]["slack"] == {"ready": True, "detail": "socket mode connected"}
    await slack.sockets[-1].close()  # Slack drops the connection; the library reconnects
    await eventually(lambda: len(slack.calls_to("/api/apps.connections.open")) == 2)
    await eventually(lambda: adapter.health().ready and slack.sockets)
    await slack.push(im("still there?"))
    assert (await slack.wait_posted(1))[0]["text"] == "echo: still there?"


async def test_probe_names_bot_and_team(slack, openai_fake):
    config = make_config(slack_config(slack, openai_fake))
    adapter = SlackAdapter(config.adapters.slack, Metrics())
    assert await adapter.probe() == "bot botbridge in team Acme (socket mode)"


async def test_botbridge_check_prints_bot_and_team(slack, openai_fake, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(slack_config(slack, openai_fake)))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "check", "-c", str(path),
        cwd=Path(__file__).parents[2], env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
    assert proc.returncode == 0, out
    line = next(line for line in out.splitlines() if line.startswith("adapter slack"))
    assert line.split(None, 3)[2:] == ["ok", "bot botbridge in team Acme (socket mode)"]
    assert BOT_TOKEN not in out and APP_TOKEN not in out
    assert slack.methods() == ["auth.test", "apps.connections.open"]


async def test_bad_tokens_fail_clearly_without_the_secret(slack, openai_fake, running):
    wrong = make_config(slack_config(slack, openai_fake)).adapters.slack.model_copy(
        update={"bot_token": SecretStr("xoxb-wrong-token-123456")}
    )
    adapter = SlackAdapter(wrong, Metrics())
    with pytest.raises(SlackStartError, match=r"auth\.test failed: invalid_auth") as probed:
        await adapter.probe()
    assert "xoxb" not in str(probed.value)
    slack.app_token = "xapp-other"
    config = make_config(slack_config(slack, openai_fake))
    with pytest.raises(SlackStartError, match=r"apps\.connections\.open failed: invalid_auth"):
        await running(config, SlackAdapter(config.adapters.slack, Metrics()))


async def test_tokens_never_reach_the_log(slack, openai_fake, running, caplog):
    caplog.set_level(logging.DEBUG)
    await start(running, slack, openai_fake)
    await slack.push(im("anything secret?"))
    await slack.wait_posted(1)
    assert "apps.connections.open" in caplog.text  # the log did see the calls
    assert BOT_TOKEN not in caplog.text
    assert APP_TOKEN not in caplog.text


async def test_quick_messages_from_one_person_are_answered_in_order(slack, openai_fake, running):
    await start(running, slack, openai_fake, progress_reaction=None)
    for n in range(6):
        await slack.push(im(f"message {n}"))
    await slack.wait_posted(6)
    assert [p["text"] for p in slack.posted] == [f"echo: message {n}" for n in range(6)]


async def test_a_file_gets_a_short_reply_saying_why(slack, openai_fake, running):
    await start(running, slack, openai_fake)
    files = [{"id": "F01", "name": "chart.png", "mimetype": "image/png"}]
    await slack.push(im("what does this show?", subtype="file_share", files=files))
    [posted] = await slack.wait_posted(1)
    assert posted["text"] == "I can only read text, so I can't take a file. Please ask in words."
    assert openai_fake.calls == []
    await slack.push(im("and in words?"))
    assert (await slack.wait_posted(2))[1]["text"] == "echo: and in words?"


# --------------------------------------------------------------------------------- idempotency


async def start_fast_delivery(running, slack, openai):
    raw = slack_config(slack, openai, progress_reaction=None)
    raw["bridge"] = {"delivery": {"retry_initial": 0.01, "retry_max": 0.05}}
    config = make_config(raw)
    adapter = SlackAdapter(config.adapters.slack, Metrics())
    bridge = await running(config, adapter)
    bridge.adapter_metrics = adapter._metrics  # what the adapter counts itself
    return bridge


async def test_each_part_carries_metadata_naming_the_question_and_the_part(
    slack, openai_fake, running
):
    await start_fast_delivery(running, slack, openai_fake)
    openai_fake.reply = lambda body, headers: "a" * 2900 + "\n\n" + "b" * 2900
    await slack.push(mention("<@UBOT> long one"))
    first, second = await slack.wait_posted(2)
    payloads = [p["metadata"]["event_payload"] for p in (first, second)]
    assert [p["metadata"]["event_type"] for p in (first, second)] == ["botbridge_part"] * 2
    assert [p["part"] for p in payloads] == [0, 1]
    assert payloads[0]["event_id"] == payloads[1]["event_id"] and payloads[0]["event_id"]
    assert payloads[0]["key"] != payloads[1]["key"]


@pytest.mark.parametrize("where", ["im", "thread"])
async def test_a_post_whose_answer_was_lost_is_found_by_its_metadata_not_posted_again(
    slack, openai_fake, running, where
):
    bridge = await start_fast_delivery(running, slack, openai_fake)
    # Slack posts it, then the connection breaks before the answer: slack_sdk must not resend.
    slack.lose_answer_next(path="/api/chat.postMessage")
    await slack.push(im("lost answer?") if where == "im" else mention("<@UBOT> lost answer?"))
    await eventually(lambda: count(bridge, "answered") == 1, 10)
    assert [p["text"] for p in slack.posted] == ["echo: lost answer?"]
    assert len(slack.calls_to("/api/chat.postMessage")) == 1
    looked = "conversations.history" if where == "im" else "conversations.replies"
    [lookup] = slack.args_of(looked)
    assert lookup["include_all_metadata"] in ("true", "1", True)
    assert bridge.metrics.possibly_repeated.labels("slack")._value.get() == 0


async def test_without_the_history_scope_a_lost_post_is_sent_again_and_counted(
    slack, openai_fake, running, caplog
):
    caplog.set_level(logging.INFO)
    bridge = await start_fast_delivery(running, slack, openai_fake)
    slack.missing_history_scope = True
    slack.lose_answer_next(path="/api/chat.postMessage")
    await slack.push(im("lost answer?"))
    await eventually(lambda: count(bridge, "answered") == 1, 10)
    assert [p["text"] for p in slack.posted] == ["echo: lost answer?"] * 2
    assert bridge.adapter_metrics.possibly_repeated.labels("slack")._value.get() == 1
    assert "add the history scopes" in caplog.text


@pytest.mark.parametrize("error", ["channel_not_found", "is_archived", "not_in_channel"])
async def test_a_refused_post_is_undeliverable_at_once(slack, openai_fake, running, error):
    bridge = await start_fast_delivery(running, slack, openai_fake)
    slack.error_next("/api/chat.postMessage", error)
    await slack.push(im("anyone?"))
    await eventually(lambda: count(bridge, "undeliverable") == 1, 10)
    assert len(slack.calls_to("/api/chat.postMessage")) == 1
    await slack.push(im("next one"))
    assert [p["text"] for p in await slack.wait_posted(1)] == ["echo: next one"]


async def test_a_passing_failure_is_retried_until_the_post_goes_through(
    slack, openai_fake, running
):
    bridge = await start_fast_delivery(running, slack, openai_fake)
    slack.error_next("/api/chat.postMessage", "internal_error", times=2)
    slack.fail_next(503, path="/api/chat.postMessage", body={"ok": False})
    await slack.push(im("eventually?"))
    await eventually(lambda: count(bridge, "answered") == 1, 10)
    assert [p["text"] for p in slack.posted] == ["echo: eventually?"]
    assert bridge.metrics.delivery_retries.labels("slack")._value.get() == 3
