"""Streaming benchmark: how soon a person sees the answer begin, against when it is complete, on
each platform, with a model writing 50 tokens a second.

Per platform, the real adapter and library (python-telegram-bot, discord.py, slack-bolt) run in a
real Bridge against the platform's fake, and the fake OpenAI server streams an answer of
`--tokens` tokens (4 characters each) at `--rate` tokens/s. One question at a time; for each
answer it measures, from the moment the question reaches the platform fake: the first visible
text (first draft, message or stream start), the complete answer (the last final message, edit
or update), and the number of updates the platform received. The same answer sent whole (no
streaming) is measured too: its only visible moment is the complete answer.

    python -m bench.stream --answers 5 --tokens 200 --json bench/results/stream.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from adapters.discord import DiscordAdapter
from adapters.slack import SlackAdapter
from adapters.telegram import TelegramAdapter
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.metrics import Metrics
from tests.fakes.base import eventually
from tests.fakes.discord_gateway import ALICE, TOKEN, FakeDiscord
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack, im
from tests.fakes.telegram_api import FakeTelegram, user


@dataclass
class Sample:
    first: float  # seconds from the question to the first visible text
    full: float  # seconds from the question to the complete answer
    updates: int  # platform calls that changed the growing answer


def _config(backend_url: str, stream: bool, adapter: str, section: dict[str, Any]) -> Any:
    backend = {"type": "openai", "base_url": backend_url, "timeout": 300, "stream": stream}
    section = {**section, "streaming": {"min_chars": 40, "min_interval": 1.5}}
    return parse_config({
        "backends": {"main": backend},
        "adapters": {adapter: section},
        "bridge": {"store": {"path": ":memory:"}},
        "http": {"enabled": False},
    }, {})  # fmt: skip


Ask = Callable[[int], Awaitable[Sample]]


@contextlib.asynccontextmanager
async def telegram(llm: FakeOpenAI, stream: bool) -> AsyncIterator[Ask]:
    async with FakeTelegram() as fake:
        config = _config(llm.base_url, stream, "telegram", {
            "token": fake.token, "api_base_url": fake.base_url, "api_file_url": fake.file_url,
            "poll_timeout": 1, "stall_timeout": 5,
        })  # fmt: skip
        bridge = Bridge(config, [TelegramAdapter(config.adapters.telegram, Metrics())])
        await bridge.start()
        loop = asyncio.get_running_loop()

        async def ask(number: int) -> Sample:
            drafts, sent = len(fake.drafts), len(fake.sent)
            asked = loop.time()
            await fake.push(fake.dm(user(42, "Alice"), f"question {number}"))
            await _until(lambda: len(llm.calls) > number and len(fake.sent) > sent)
            await bridge.router.idle(60)
            shown = [d["at"] for d in fake.drafts[drafts:]] + fake.sent_at[sent:]
            return Sample(min(shown) - asked, fake.sent_at[-1] - asked, len(fake.drafts) - drafts)

        try:
            yield ask
        finally:
            await bridge.stop()


@contextlib.asynccontextmanager
async def discord(llm: FakeOpenAI, stream: bool) -> AsyncIterator[Ask]:
    async with FakeDiscord() as fake:
        config = _config(llm.base_url, stream, "discord", {
            "token": TOKEN, "api_base_url": fake.api_base_url, "guild_ready_timeout": 0.05,
            "identify_delay": 0,
        })  # fmt: skip
        bridge = Bridge(config, [DiscordAdapter(config.adapters.discord, Metrics())])
        await bridge.start()
        loop = asyncio.get_running_loop()

        async def ask(number: int) -> Sample:
            posted, edits = len(fake.posted), len(fake.edits)
            asked = loop.time()
            await fake.say(f"question {number}", dm=True, author=ALICE)
            await _until(lambda: len(llm.calls) > number and len(fake.posted) > posted)
            await bridge.router.idle(60)
            new = fake.posted[posted:]
            shown = [fake.posted_at[m["id"]] for m in new]
            changed = shown + [e["at"] for e in fake.edits[edits:]]
            updates = len(new) + len(fake.edits) - edits - 1
            return Sample(min(shown) - asked, max(changed) - asked, updates)

        try:
            yield ask
        finally:
            await bridge.stop()


@contextlib.asynccontextmanager
async def slack(llm: FakeOpenAI, stream: bool) -> AsyncIterator[Ask]:
    async with FakeSlack() as fake:
        config = _config(llm.base_url, stream, "slack", {
            "bot_token": BOT_TOKEN, "app_token": APP_TOKEN, "api_base_url": fake.api_url,
            "progress_reaction": None,
        })  # fmt: skip
        bridge = Bridge(config, [SlackAdapter(config.adapters.slack, Metrics())])
        await bridge.start()
        loop = asyncio.get_running_loop()

        async def ask(number: int) -> Sample:
            posted, updates, calls = len(fake.posted), len(fake.updates), len(fake.api_calls)
            asked = loop.time()
            await fake.push(im(f"question {number}"))
            await _until(lambda: len(llm.calls) > number and len(fake.posted) > posted)
            await bridge.router.idle(60)
            shown = [m["at"] for m in fake.posted[posted:]]
            done = shown + [u["at"] for u in fake.updates[updates:]]
            appends = [m for m, _ in fake.api_calls[calls:] if m == "chat.appendStream"]
            return Sample(min(shown) - asked, max(done) - asked, len(appends))

        try:
            yield ask
        finally:
            await bridge.stop()


async def _until(predicate: Callable[[], Any]) -> None:
    await eventually(predicate, timeout=300)


PLATFORMS = {"telegram": telegram, "discord": discord, "slack": slack}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    words = ("the", "model", "writes", "this", "answer", "slowly", "for", "us")
    text = " ".join(words[i % len(words)] for i in range(args.tokens * 4 // 5))
    results: dict[str, Any] = {}
    for name in args.platforms:
        for stream in (True, False):
            async with FakeOpenAI(lambda body, headers: text) as llm:
                llm.stream.chunk = 4  # one token
                llm.stream.delay = 1 / args.rate
                if not stream:  # a whole answer takes as long to write; it arrives at once
                    llm.slow_next(args.tokens / args.rate, times=args.answers, path="/v1/chat")
                async with PLATFORMS[name](llm, stream) as ask:
                    samples = [await ask(n) for n in range(args.answers)]
            results[f"{name} {'streamed' if stream else 'whole'}"] = _summary(samples)
            print(_line(f"{name} {'streamed' if stream else 'whole'}", results), flush=True)
    return results


def _summary(samples: list[Sample]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {"p50": statistics.median(ordered), "max": ordered[-1]}

    return {
        "first_visible_s": stats([s.first for s in samples]),
        "complete_s": stats([s.full for s in samples]),
        "updates": stats([float(s.updates) for s in samples]),
        "samples": [asdict(s) for s in samples],
    }


def _line(name: str, results: dict[str, Any]) -> str:
    r = results[name]
    return (
        f"{name:20s} first visible p50 {r['first_visible_s']['p50']:6.2f}s "
        f"(max {r['first_visible_s']['max']:.2f})  complete p50 {r['complete_s']['p50']:6.2f}s "
        f"(max {r['complete_s']['max']:.2f})  updates p50 {r['updates']['p50']:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=5, help="answers per platform and mode")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per answer")
    parser.add_argument("--rate", type=float, default=50.0, help="tokens per second")
    parser.add_argument("--platforms", nargs="+", default=list(PLATFORMS), choices=PLATFORMS)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    print(f"{args.tokens} tokens at {args.rate:g}/s, {args.answers} answers each "
          f"(Python {platform.python_version()})", flush=True)  # fmt: skip
    results = asyncio.run(measure(args))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"args": vars(args), "results": results}, out, indent=2)
    sys.exit(0)


if __name__ == "__main__":
    main()
