"""Faults, part 2: a real `botbridge run` is killed with SIGKILL at random moments while twenty
people talk to it through a platform fake, and started again on the same state each time. After
the last start every message it accepted is answered; no part is posted twice on Discord and
Slack (Telegram: no more repeats than kills); the LLM (NexusGPT, which keeps the conversation)
got each question once; each person's answers came in the order of their questions."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.base import FakeServer, eventually
from tests.fakes.discord_gateway import ALICE, TOKEN, FakeDiscord
from tests.fakes.nexusgpt_api import FakeNexusGPT
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack, im
from tests.fakes.telegram_api import FakeTelegram, user
from tests.ops.faults import KILLS, SESSIONS, TIMEOUT, Seen, question, report, rng, two_part_answer
from tests.ops.test_daemon import daemon, stop

pytestmark = [pytest.mark.faults, pytest.mark.timeout(TIMEOUT)]

POLL = {"poll_timeout": 30, "poll_initial": 0.02, "poll_factor": 1.5, "poll_max": 0.2}
# Each post takes this long on the platform fake, as on a real one: kills often land while a
# part is being posted (the window between its "sending" and "sent" records).
POST_TIME = 0.1
FOREVER = 10**9


@asynccontextmanager
async def llm_for(platform: FakeServer, limit: int, post_path: str) -> AsyncIterator[FakeNexusGPT]:
    """The LLM (NexusGPT, which keeps the conversation) answering in two parts of the platform's
    `limit`, while every post to `post_path` on the platform takes POST_TIME."""
    async with FakeNexusGPT(answer_delay=0.02, messages_per_minute=10**6) as ngpt:
        ngpt.reply = two_part_answer(limit)
        platform.slow_next(POST_TIME, times=FOREVER, path=post_path)
        yield ngpt


def daemon_config(tmp_path: Path, ngpt: FakeNexusGPT, adapters: dict[str, Any]) -> dict[str, Any]:
    return {
        "backends": {
            "main": {"type": "nexusgpt", "base_url": ngpt.url, "api_key": ngpt.api_key,
                     "messages_per_minute": 100_000, **POLL},
        },
        "bridge": {
            "store": {"path": str(tmp_path / "state.sqlite3")},
            "delivery": {"retry_initial": 0.05, "retry_max": 0.5},
            "log_level": "info",
        },
        "adapters": adapters,
    }  # fmt: skip


class People:
    """Twenty people, each asking their questions in order, one every so often."""

    def __init__(self, name: str, send: Callable[[int, str], Awaitable[str | None]]) -> None:
        self.random = rng(name)
        self.send = send  # (session, text) → the platform's event id, None if not taken
        self.asked: dict[str, list[str]] = {}
        self.events: dict[str, str] = {}  # the platform's event id → question
        self._next = [0] * SESSIONS
        self._task: asyncio.Task[None] | None = None

    async def talk(self) -> None:
        while True:
            session = self.random.randrange(SESSIONS)
            name = question(session, self._next[session])
            event = await self.send(session, f"please answer {name}")
            if event is not None:
                self.events[event] = name
                self._next[session] += 1
                self.asked.setdefault(f"s{session}", []).append(name)
            await asyncio.sleep(self.random.uniform(0.01, 0.08))  # the pace people type at

    def __enter__(self) -> People:
        self._task = asyncio.create_task(self.talk())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    @property
    def names(self) -> list[str]:
        return [n for names in self.asked.values() for n in names]


async def kill_repeatedly(tmp_path: Path, config: dict, name: str, kills: int) -> int:
    """Start the daemon and SIGKILL it at a random moment, `kills` times; how many of the kills
    came once it was up (the others came while it started, recovering what was pending)."""
    random = rng(f"{name}-kills")
    landed = 0
    for n in range(kills):
        (tmp_path / f"run{n}").mkdir()
        async with daemon(tmp_path / f"run{n}", config) as running:
            if random.random() < 0.8:  # mostly once it is up; sometimes in the middle of starting
                await running.ready(True, 30)
                landed += 1
            await asyncio.sleep(random.uniform(0.05, 1.5))
            running.proc.kill()
            await running.proc.wait()
    return landed


async def last_run(tmp_path: Path, config: dict, done: Callable[[], bool]) -> None:
    (tmp_path / "last").mkdir()
    async with daemon(tmp_path / "last", config) as running:
        await running.ready(True, 30)
        await eventually(done, 120, every=0.2)
        assert await stop(running, 30) == 0


def journal(tmp_path: Path) -> tuple[int, list[tuple[str, str | None]]]:
    """(accepted messages, those not completed as answered) from the state file."""
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        rows = db.execute("SELECT event_id, outcome, payload IS NOT NULL FROM events").fetchall()
    return len(rows), [(e, o) for e, o, pending in rows if pending or o != "answered"]


def accepted_order(tmp_path: Path, people: People) -> dict[str, list[str]]:
    """Each session's questions in the order the bridge accepted them (a platform may deliver a
    question late, after a later one: Slack redelivering an event the dead process never took)."""
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        ids = [r[0] for r in db.execute("SELECT event_id FROM events ORDER BY accepted, rowid")]
    order: dict[str, list[str]] = {}
    for event_id in ids:
        name = people.events.get(event_id.rsplit(":", 1)[-1])
        if name is not None:
            order.setdefault(name.split("-")[0], []).append(name)
    return order


def in_the_window(tmp_path: Path) -> int:
    """Parts a restarted daemon found "sending" but not "sent": a kill landed between their
    post and its record (each logged once when posted again)."""
    logs = [*tmp_path.glob("run*/stderr.log"), tmp_path / "last" / "stderr.log"]
    marker = "may have been posted already"
    return sum(log.read_text().count(marker) for log in logs if log.exists())


def asked_once(ngpt: FakeNexusGPT) -> dict[str, int]:
    """Questions the LLM was given more than once (content → times)."""
    counts: dict[str, int] = {}
    for thread in ngpt.threads.values():
        for message in thread.messages:
            if message["type"] == "user":
                counts[message["content"]] = counts.get(message["content"], 0) + 1
    return {k: v for k, v in counts.items() if v > 1}


def check(name: str, tmp_path: Path, seen: Seen, people: People, ngpt: FakeNexusGPT,
          landed: int, *, repeats_allowed: int | None, **figures: object) -> None:  # fmt: skip
    """`repeats_allowed` None: as many as parts caught in the window by a kill."""
    accepted, unanswered = journal(tmp_path)
    window = in_the_window(tmp_path)
    answered = [n for n in people.names if seen.answered(n)]
    report(name, kills=KILLS, kills_once_up=landed, asked=len(people.names), accepted=accepted,
           answered=len(answered), parts_in_the_window=window, repeated_parts=seen.repeated,
           llm_asked_twice=len(asked_once(ngpt)), **figures)  # fmt: skip
    assert unanswered == []
    assert len(answered) == accepted  # every accepted message answered, nothing else
    assert seen.repeated <= (window if repeats_allowed is None else repeats_allowed)
    assert asked_once(ngpt) == {}
    assert seen.out_of_order(accepted_order(tmp_path, people)) == []


async def test_telegram_daemon_killed_at_random_answers_everything_it_accepted(tmp_path):
    async with (
        FakeTelegram() as telegram,
        llm_for(telegram, 4096, f"/bot{telegram.token}/sendMessage") as ngpt,
    ):
        config = daemon_config(tmp_path, ngpt, {"telegram": {
            "token": telegram.token, "api_base_url": telegram.base_url,
            "api_file_url": telegram.file_url, "poll_timeout": 1, "stall_timeout": 5,
            "retry_backoff": 0.05, "max_backoff": 0.2, "typing_interval": 1,
        }})  # fmt: skip
        people_ids = [user(2000 + n, f"P{n}") for n in range(SESSIONS)]

        async def send(session: int, text: str) -> str | None:
            [update_id] = await telegram.push(telegram.dm(people_ids[session], text))
            return f"7000001.{update_id}"  # Telegram keeps it until a poller confirms it

        with People("telegram", send) as people:
            landed = await kill_repeatedly(tmp_path, config, "telegram", KILLS)
        # Telegram delivers everything pushed: each question must be answered.
        await last_run(tmp_path, config, lambda: all(
            Seen.of(telegram.texts()).answered(n) for n in people.names))  # fmt: skip
        seen = Seen.of(telegram.texts())
        check("telegram-kills", tmp_path, seen, people, ngpt, landed, repeats_allowed=None)


async def test_discord_daemon_killed_at_random_answers_everything_it_accepted(tmp_path):
    async with FakeDiscord() as discord, llm_for(discord, 2000, "/api/v10/channels/") as ngpt:
        config = daemon_config(tmp_path, ngpt, {"discord": {
            "token": TOKEN, "api_base_url": discord.api_base_url, "guild_ready_timeout": 0.05,
            "ready_timeout": 20, "identify_delay": 0,
        }})  # fmt: skip
        authors = [ALICE + 100 + n for n in range(SESSIONS)]
        for n, author in enumerate(authors):
            discord.users[author] = {**discord.users[ALICE], "id": str(author), "username": f"p{n}"}

        async def send(session: int, text: str) -> str | None:
            live = [c for c in discord.connections if c.session is not None]
            if not live or live[-1].session is not discord.sessions.get(live[-1].session.id):
                return None  # nobody connected: the person waits and asks again later
            try:
                data = await discord.say(text, dm=True, author=authors[session])
            except (AssertionError, ConnectionError):
                return None
            return str(data["id"])

        with People("discord", send) as people:
            landed = await kill_repeatedly(tmp_path, config, "discord", KILLS)

        def texts() -> list[str]:
            return [p["content"] for p in discord.posted]

        def done() -> bool:  # a message sent to a dying connection was never accepted: no answer
            accepted, unanswered = journal(tmp_path)
            seen = Seen.of(texts())
            return not unanswered and sum(seen.answered(n) for n in people.names) >= accepted

        await last_run(tmp_path, config, done)
        check("discord-kills", tmp_path, Seen.of(texts()), people, ngpt, landed,
              repeats_allowed=0, resends_dropped_by_nonce=discord.nonce_hits)  # fmt: skip


async def test_slack_daemon_killed_at_random_answers_everything_it_accepted(tmp_path):
    async with FakeSlack() as slack, llm_for(slack, 3000, "/api/chat.postMessage") as ngpt:
        config = daemon_config(tmp_path, ngpt, {"slack": {
            "bot_token": BOT_TOKEN, "app_token": APP_TOKEN, "api_base_url": slack.api_url,
            "progress_reaction": None,
        }})  # fmt: skip
        unacked: list[tuple[str, dict]] = []

        async def send(session: int, text: str) -> str | None:
            if not slack.sockets:
                return None
            payload = im(text, user=f"U{session}", channel=f"D{session}")
            try:
                envelope = await slack.push(payload, timeout=0.5)
            except (TimeoutError, ConnectionError, RuntimeError):
                return None
            unacked.append((envelope, payload))
            return str(payload["event_id"])

        async def redeliver() -> None:
            """Like Slack: an event not acknowledged is sent again (retry_attempt counts)."""
            while True:
                await asyncio.sleep(0.5)
                for envelope, payload in list(unacked):
                    if envelope in slack.acks:
                        unacked.remove((envelope, payload))
                    elif slack.sockets:
                        unacked.remove((envelope, payload))
                        try:
                            again = await slack.push(payload, retry_attempt=1, timeout=0.5)
                        except (TimeoutError, ConnectionError, RuntimeError):
                            again = envelope
                        unacked.append((again, payload))

        retrier = asyncio.create_task(redeliver())
        with People("slack", send) as people:
            landed = await kill_repeatedly(tmp_path, config, "slack", KILLS)

        def texts() -> list[str]:
            return [p["text"] for p in slack.posted]

        try:
            await last_run(tmp_path, config, lambda: not unacked and all(
                Seen.of(texts()).answered(n) for n in people.names))  # fmt: skip
        finally:
            retrier.cancel()
        lookups = len(slack.args_of("conversations.history"))
        check("slack-kills", tmp_path, Seen.of(texts()), people, ngpt, landed,
              repeats_allowed=0, metadata_lookups=lookups)  # fmt: skip
