"""End to end through a real platform library: people on a fake platform ask, the real adapter,
router and store carry each question to a fake LLM and the answer back.

    python -m bench.e2e --platform telegram                 # closed loop, SQLite, vs the floor
    python -m bench.e2e --platform slack --store redis -n 3000 -s 100
    python -m bench.e2e --platform telegram --rate 200 --json bench/results/e2e.json

Three processes: this one (the fake platform and the people), the bridge (`bench.bridge_process`,
so its CPU and memory are its own) and the LLM (`bench.llm`). Bridge-added latency is measured as
issue 13 defines it, from timestamps taken by the fakes and joined by question id: update
available at the platform → request received by the LLM, plus answer sent by the LLM → reply
received by the platform. Closed loop (default): each of S people asks again once answered
(throughput at saturation). `--rate R`: questions arrive at R per second whatever the answers do
(latency at a given load). For Telegram the floor (`bench.floor`, a bare python-telegram-bot pipe)
runs on the same fake in the same run, interleaved, and the bridge's rate is shown as a fraction
of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from ._child import Child, usage
from ._people import Ledger, Load, drive
from ._stats import machine, median, summary, write_json
from .llm import running_llm
from .platforms import SIDES

SETTLE = 0.3  # seconds after the last answer in which a late duplicate is still counted


# ---------------------------------------------------------------------------------- one run


@dataclass
class Setup:
    platform: str
    store: str
    llm_delay: float
    max_in_flight: int
    telegram_sends_per_second: float
    redis_url: str
    profile: str | None = None
    floor_transport: str = "httpx"
    max_pending: int | None = None  # bridge.max_pending; None: the default


def bridge_config(setup: Setup, section: dict[str, Any], llm: str, state: str) -> dict[str, Any]:
    store: dict[str, Any] = {"type": "sqlite", "path": str(Path(state) / "bench.sqlite3")}
    if setup.store == "redis":
        store = {"type": "redis", "url": setup.redis_url, "prefix": f"bench-{uuid.uuid4().hex}"}
    if setup.platform == "telegram":
        section = {**section, "max_sends_per_second": setup.telegram_sends_per_second}
    return {
        "bridge": {
            "store": store,
            "max_in_flight": setup.max_in_flight,
            **({"max_pending": setup.max_pending} if setup.max_pending else {}),
            "log_level": "warning",
            "state_dir": state,
        },
        "backends": {"main": {"type": "openai", "base_url": llm, "session": "header"}},
        "adapters": {setup.platform: section},
        "http": {"enabled": False},
    }


def limits_of(setup: Setup, kind: str) -> dict[str, Any]:
    if kind == "floor":
        return {
            "note": "bare python-telegram-bot: no limiter, no store, no typing",
            "transport": setup.floor_transport,
        }
    found: dict[str, Any] = {"max_in_flight": setup.max_in_flight}
    if setup.platform == "telegram":
        found.update(
            max_sends_per_second=setup.telegram_sends_per_second or "none",
            group_messages_per_minute=20,
            get_updates_limit=100,
            private_chat_limit="none",
        )
    return found


async def _redis_cleanup(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _child_for(
    kind: str, setup: Setup, side: Any, llm: str, state: str
) -> AsyncIterator[Child]:
    config_path = Path(state) / f"{kind}.json"
    if kind == "floor":
        settings = {**side.section(), "llm_url": llm, "transport": setup.floor_transport}
        config_path.write_text(json.dumps(settings))
        child = Child("bench.floor", str(config_path))
    else:
        config = bridge_config(setup, side.section(), llm, state)
        config_path.write_text(json.dumps(config))
        extra = ["--profile", setup.profile] if setup.profile else []
        child = Child("bench.bridge_process", str(config_path), *extra)
    try:
        yield child
    finally:
        await child.kill()
        if kind == "bridge" and setup.store == "redis":
            await _redis_cleanup(setup.redis_url, config["bridge"]["store"]["prefix"])


async def _stamps(llm: str) -> dict[str, list[float]]:
    url = llm.removesuffix("/v1") + "/_bench/stamps"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()


async def run_once(kind: str, setup: Setup, load: Load, llm: str) -> dict[str, Any]:
    """One run of the bridge (or, kind="floor", the bare pipe) on a fresh fake platform."""
    ledger = Ledger(load)
    side = SIDES[setup.platform](ledger.on_reply)
    await side.start()
    try:
        with tempfile.TemporaryDirectory() as state:
            async with _child_for(kind, setup, side, llm, state) as child:
                await child.start()
                await _stamps(llm)  # forget anything from before
                before = await child.mark()
                driver = usage()["cpu_s"]
                await drive(side, ledger)
                after = await child.mark()
                driver = usage()["cpu_s"] - driver
                await asyncio.sleep(SETTLE)  # a window for late duplicates, not synchronisation
                final = await child.stop()
            stamps = await _stamps(llm)
    finally:
        await side.stop()
    found = _figures(kind, setup, load, ledger, stamps, before, after, final)
    # This process (the fake platform and the people): if it nears one core, the fake is the
    # bottleneck, not the bridge.
    found["driver_cpu_s_per_1000"] = (
        round(driver / found["messages"] * 1000, 3) if found["messages"] else None
    )
    return found


def _figures(
    kind: str,
    setup: Setup,
    load: Load,
    ledger: Ledger,
    stamps: dict[str, list[float]],
    before: dict[str, Any],
    after: dict[str, Any],
    final: dict[str, Any],
) -> dict[str, Any]:
    added, e2e, to_llm, from_llm = [], [], [], []
    for qid, replies in ledger.replies.items():
        available = ledger.available.get(qid)
        if available is None:
            continue
        e2e.append((replies[0] - available) * 1000)
        stamp = stamps.get(str(qid))
        if stamp is not None:
            to_llm.append((stamp[0] - available) * 1000)
            from_llm.append((replies[0] - stamp[1]) * 1000)
            added.append(to_llm[-1] + from_llm[-1])
    answered = len(ledger.replies)
    first = min(ledger.available.values(), default=0.0)
    last = max((r[0] for r in ledger.replies.values()), default=first)
    seconds = max(last - first, 1e-9)
    cpu = after["cpu_s"] - before["cpu_s"]
    return {
        "run": kind,
        "platform": setup.platform,
        "store": setup.store if kind == "bridge" else "none",
        "mode": load.mode,
        "messages": answered,
        "sessions": load.sessions,
        "llm_delay_s": setup.llm_delay,
        "seconds": round(seconds, 3),
        "messages_per_s": round(answered / seconds, 1),
        "added_latency_ms": summary(added),
        "added_stages_ms": {"to_llm": summary(to_llm), "from_llm": summary(from_llm)},
        "e2e_latency_ms": summary(e2e),
        "cpu_s_per_1000": round(cpu / answered * 1000, 3) if answered else None,
        "peak_rss_mb": round(final["peak_rss_mb"], 1),
        "idle_rss_mb": round(before["peak_rss_mb"], 1),
        "loop_lag_ms": after["loop_lag_ms"],
        "lost": ledger.expected - answered,
        "duplicates": sum(len(r) - 1 for r in ledger.replies.values()),
        "limits": limits_of(setup, kind),
    }


# ---------------------------------------------------------------------------------- the runs


async def run(setup: Setup, load: Load, repeat: int, floor: bool) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    async with running_llm(setup.llm_delay) as llm:
        for _ in range(repeat):
            for kind in ("floor", "bridge") if floor else ("bridge",):  # interleaved
                result = await run_once(kind, setup, load, llm)
                runs.append(result)
                print(_row(result), flush=True)
    return combine(runs, setup, load)


def _middle(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median messages/s (a real run, so its figures belong together)."""
    ordered = sorted(runs, key=lambda r: r["messages_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def combine(runs: list[dict[str, Any]], setup: Setup, load: Load) -> dict[str, Any]:
    bridge = [r for r in runs if r["run"] == "bridge"]
    floor = [r for r in runs if r["run"] == "floor"]
    result: dict[str, Any] = {
        "benchmark": "e2e",
        **machine(),
        **_middle(bridge),
        "repeats": len(bridge),
        "messages_per_s_runs": [r["messages_per_s"] for r in bridge],
        "messages_per_s_median": median(r["messages_per_s"] for r in bridge),
        "lost": sum(r["lost"] for r in bridge),
        "duplicates": sum(r["duplicates"] for r in bridge),
    }
    if floor:
        floor_rate = median(r["messages_per_s"] for r in floor)
        result["floor"] = {
            **_middle(floor),
            "messages_per_s_runs": [r["messages_per_s"] for r in floor],
            "messages_per_s_median": floor_rate,
        }
        result["fraction_of_floor"] = round(result["messages_per_s_median"] / floor_rate, 3)
    result["runs"] = runs
    return result


def _row(r: dict[str, Any]) -> str:
    added, e2e = r["added_latency_ms"], r["e2e_latency_ms"]
    return (
        f"{r['run']:6} {r['platform']:8} {r['store']:6} {r['mode']:22} {r['messages']:6d} msgs "
        f"{r['messages_per_s']:8.1f}/s  added p50 {added['p50']} p90 {added['p90']} "
        f"p99 {added['p99']} max {added['max']} ms  e2e p50 {e2e['p50']} p99 {e2e['p99']} ms  "
        f"cpu {r['cpu_s_per_1000']} s/1000  rss {r['peak_rss_mb']} MB  "
        f"lag p99 {r['loop_lag_ms']['p99']} ms  lost {r['lost']} dup {r['duplicates']}"
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n")[0])
    p.add_argument("--platform", choices=sorted(SIDES), default="telegram")
    p.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    p.add_argument("--llm-delay", type=float, default=0.0, help="seconds the LLM takes")
    p.add_argument("-n", "--messages", type=int, default=2000)
    p.add_argument("-s", "--sessions", type=int, default=50)
    p.add_argument("--rate", type=float, help="questions per second (open loop)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each (interleaved)")
    p.add_argument("--no-floor", action="store_true", help="skip the bare-PTB floor (telegram)")
    p.add_argument(
        "--floor-transport", choices=("httpx", "aiohttp"), default="httpx",
        help="the floor's HTTP: PTB's default httpx, or aiohttp like the bridge",
    )  # fmt: skip
    p.add_argument("--max-in-flight", type=int, default=256, help="bridge.max_in_flight")
    p.add_argument("--max-pending", type=int, help="bridge.max_pending (default: its default)")
    p.add_argument(
        "--telegram-sends-per-second", type=float, default=0,
        help="adapters.telegram.max_sends_per_second (0: no bot-wide limit, the default here)",
    )  # fmt: skip
    p.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    p.add_argument("--stall", type=float, default=30.0, help="give up after this long idle")
    p.add_argument("--profile", help="cProfile the bridge process into this file")
    p.add_argument("--json", help="also write the result as JSON to this path")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup = Setup(
        args.platform, args.store, args.llm_delay, args.max_in_flight,
        args.telegram_sends_per_second, args.redis_url, args.profile, args.floor_transport,
        args.max_pending,
    )  # fmt: skip
    load = Load(args.messages, args.sessions, args.rate, args.stall)
    floor = args.platform == "telegram" and not args.no_floor
    result = asyncio.run(run(setup, load, args.repeat, floor))
    print(f"bridge: median {result['messages_per_s_median']} messages/s over "
          f"{result['repeats']} run(s); lost {result['lost']}, duplicates {result['duplicates']}")
    if "floor" in result:
        print(f"floor (bare PTB): median {result['floor']['messages_per_s_median']} messages/s; "
              f"bridge = {result['fraction_of_floor']:.0%} of the floor")
    write_json(args.json, result)
    return 0 if result["lost"] == 0 and result["duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
