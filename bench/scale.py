"""Scale-out benchmark: one ingress and 1, 2 or 4 workers (real `botbridge run --role …`
subprocesses) on a Redis of their own, against the fake Slack (events over Socket Mode, answers
by chat.postMessage) and a fake LLM in a process of its own answering at once or after 500 ms.

Throughput: N messages over S sessions pushed at once (an open loop at saturation); reported as
messages/s (first push to last answer) and push-to-answer latency p50/p90/p99. Every answer is
checked: once each, in each session's order. Failover: under a steady load, one of two workers
is SIGKILLed (claim delay: the kill to the first answer of a session it held) or sent SIGTERM
(hand-over: the signal to that first answer); and the elected Telegram poller of two ingress
processes is SIGKILLed (the kill to the standby polling).

    python -m bench.scale                                   # all of it, one run each
    python -m bench.scale --workers 1 2 4 --latency 0 0.5 --repeat 3 --json bench/results/scale.json
    python -m bench.scale --only failover --claim-idle 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from bench._scale_world import (
    Process,
    TimedSlack,
    base_config,
    bridge_process,
    ready,
    slack_cluster,
    until,
)
from bench._stats import percentile, write_json
from bench.llm import running_llm
from bridge import __version__
from bridge.workqueue import partition_of
from tests.fakes.redis_server import OwnRedis
from tests.fakes.telegram_api import FakeTelegram, user
from tests.ops.scaleout_world import held_partitions


def check(arrived: list[tuple[float, int, int]], expected: set[tuple[int, int]]) -> dict[str, int]:
    """Every (session, line) in `expected` answered once, each session's in order: the counts
    that say otherwise."""
    seen: dict[int, list[int]] = defaultdict(list)
    for _, session, line in arrived:
        seen[session].append(line)
    repeated = sum(len(v) - len(set(v)) for v in seen.values())
    disordered = sum(1 for v in seen.values() if list(dict.fromkeys(v)) != sorted(set(v)))
    answered = {(s, n) for s, lines in seen.items() for n in lines}
    return {"repeated": repeated, "out_of_order": disordered, "missing": len(expected - answered)}


async def throughput(
    folder: Path, workers: int, latency: float, messages: int, sessions: int, claim_idle: float
) -> dict[str, Any]:
    lines = messages // sessions
    async with slack_cluster(folder, workers, latency, claim_idle) as (slack, ingress, started):
        processes = [ingress, *started]
        cpu_before = [p.cpu_seconds() for p in processes]
        pushed: dict[tuple[int, int], float] = {}
        start = time.monotonic()
        for line in range(lines):
            for session in range(sessions):
                pushed[(session, line)] = time.monotonic()
                await slack.say(session, line)
        total = lines * sessions
        await until(lambda: _answered(slack, total), 600, every=0.05)
        elapsed = slack.arrived[-1][0] - start
        cpu = [p.cpu_seconds() - before for p, before in zip(processes, cpu_before, strict=True)]
    waits = sorted((at - pushed[(s, n)]) * 1000 for at, s, n in slack.arrived if (s, n) in pushed)
    return {
        "workers": workers,
        "llm_latency_s": latency,
        "messages": total,
        "sessions": sessions,
        "seconds": round(elapsed, 2),
        "messages_per_second": round(total / elapsed, 1),
        "latency_ms": {q: round(percentile(waits, p), 1) for q, p in _QUANTILES},
        # Where the time goes: CPU seconds per 1,000 messages, the ingress and all workers.
        "cpu_s_per_1000": {
            "ingress": round(cpu[0] * 1000 / total, 2),
            "workers": round(sum(cpu[1:]) * 1000 / total, 2),
        },
        **check(slack.arrived, set(pushed)),
    }


_QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


async def _answered(slack: TimedSlack, total: int) -> bool:
    return len(slack.arrived) >= total


async def worker_failover(
    folder: Path, how: signal.Signals, claim_idle: float, partitions: int = 16
) -> dict[str, Any]:
    """Two workers under a steady load (20 sessions, 20 messages/s, 200 ms LLM); one of them gets
    `how`. For the sessions it held: how long after the signal the first message said after it
    was answered (by the other worker), and the longest any of their messages waited."""
    sessions, rate = 20, 20.0
    async with slack_cluster(folder, 2, 0.2, claim_idle) as (slack, _, workers):
        victim = workers[0]
        held = held_partitions(victim)
        orphans = {
            s for s in range(sessions) if partition_of(f"wx:dm:sl.T024.U{s}", partitions) in held
        }
        said: dict[tuple[int, int], float] = {}
        load = asyncio.create_task(_steady(slack, said, sessions, rate, claim_idle * 3 + 10))
        await asyncio.sleep(3)  # the load settles before the fault (pacing, not sync)
        victim.proc.send_signal(how)
        struck = time.monotonic()
        await load
        total = len(said)
        await until(lambda: _answered(slack, total), claim_idle * 4 + 60)
    after = [
        (at, at - said[(s, n)])
        for at, s, n in slack.arrived
        if s in orphans and said[(s, n)] > struck
    ]
    waited = [at - said[(s, n)] for at, s, n in slack.arrived if s in orphans]
    return {
        "fault": f"{how.name} to one of two workers",
        "claim_idle_s": claim_idle,
        "first_answer_after_s": round(min(at for at, _ in after) - struck, 2),
        "longest_wait_s": round(max(waited), 2),
        "sessions_affected": len(orphans),
        "answers": len(slack.arrived),
        **check(slack.arrived, set(said)),
    }


async def _steady(
    slack: TimedSlack,
    said: dict[tuple[int, int], float],
    sessions: int,
    rate: float,
    seconds: float,
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # the arrival schedule itself
        session, line = i % sessions, i // sessions
        said[(session, line)] = await slack.say(session, line)


async def poller_failover(folder: Path, claim_idle: float, stall_timeout: float) -> dict[str, Any]:
    """Two ingress processes polling one Telegram bot (one elected); the poller is SIGKILLed."""
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(OwnRedis(folder / "redis"))
        llm = await stack.enter_async_context(running_llm(0.0))
        telegram = await stack.enter_async_context(FakeTelegram())
        config = base_config(redis.url, llm, claim_idle)
        config["adapters"] = {
            "telegram": {
                "token": telegram.token, "api_base_url": telegram.base_url,
                "api_file_url": telegram.file_url, "poll_timeout": max(1, int(stall_timeout // 3)),
                "stall_timeout": stall_timeout,
            }
        }  # fmt: skip
        names = ["ingress0", "ingress1", "worker0"]
        roles = ["ingress", "ingress", "worker"]
        processes = [
            await stack.enter_async_context(bridge_process(folder, name, role, config))
            for name, role in zip(names, roles, strict=True)
        ]
        await ready(processes, 1)
        poller, standby = await _poller(processes[:2])
        poller.proc.kill()
        killed = time.monotonic()
        await telegram.push(telegram.dm(user(77, "U"), "after the kill"))
        await until(lambda: _polling(standby), claim_idle * 4 + stall_timeout + 60)
        polling = time.monotonic() - killed
        await until(lambda: _sent(telegram), 60)
        answered = time.monotonic() - killed
    return {
        "fault": "SIGKILL to the elected Telegram poller (two ingress processes)",
        "claim_idle_s": claim_idle,
        "stall_timeout_s": stall_timeout,
        "standby_polling_s": round(polling, 2),
        "first_answer_s": round(answered, 2),
    }


async def _poller(ingresses: list[Process]) -> tuple[Process, Process]:
    async def find() -> tuple[Process, Process] | None:
        for i, process in enumerate(ingresses):
            body = await process.readyz()
            if body and body["components"]["telegram"]["detail"] == "polling":
                return process, ingresses[1 - i]
        return None

    return await until(find, 60)


async def _polling(process: Process) -> bool:
    body = await process.readyz()
    return bool(body) and body["components"]["telegram"]["detail"] == "polling"


async def _sent(telegram: FakeTelegram) -> bool:
    return bool(telegram.sent)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 2)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "benchmark": "scale",
        "version": __version__,
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "throughput": [],
        "failover": [],
    }
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        for attempt in range(args.repeat):  # interleaved: each repeat runs every setting once
            if args.only in (None, "throughput"):
                for latency in args.latency:
                    for workers in args.workers:
                        here = folder / f"t{attempt}-{workers}-{latency}"
                        here.mkdir()
                        found = await throughput(
                            here, workers, latency, args.messages, args.sessions, args.claim_idle
                        )
                        print(_line(found), flush=True)
                        results["throughput"].append(found)
            if args.only in (None, "failover"):
                for how in (signal.SIGKILL, signal.SIGTERM):
                    here = folder / f"f{attempt}-{how.name}"
                    here.mkdir()
                    found = await worker_failover(here, how, args.claim_idle)
                    print(json.dumps(found), flush=True)
                    results["failover"].append(found)
                here = folder / f"p{attempt}"
                here.mkdir()
                found = await poller_failover(here, args.claim_idle, args.stall_timeout)
                print(json.dumps(found), flush=True)
                results["failover"].append(found)
    return results


def _line(found: dict[str, Any]) -> str:
    latency = "  ".join(f"{k} {v}" for k, v in found["latency_ms"].items())
    return (
        f"{found['workers']} worker(s), LLM {found['llm_latency_s']:g} s: {found['messages']} "
        f"messages in {found['seconds']} s = {found['messages_per_second']}/s; push to answer "
        f"(ms) {latency}; CPU s per 1000: {found['cpu_s_per_1000']}; repeated "
        f"{found['repeated']}, out of order {found['out_of_order']}, missing {found['missing']}"
    )


def summary(results: dict[str, Any]) -> list[str]:
    """Medians per setting, the table the README shows."""
    rows = ["| workers | LLM | messages/s | p50 ms | p99 ms |", "| --- | --- | --- | --- | --- |"]
    settings = sorted({(r["llm_latency_s"], r["workers"]) for r in results["throughput"]})
    for latency, workers in settings:
        runs = [
            r
            for r in results["throughput"]
            if r["workers"] == workers and r["llm_latency_s"] == latency
        ]
        rate = _median(runs, "messages_per_second")
        p50 = round(statistics.median(r["latency_ms"]["p50"] for r in runs))
        p99 = round(statistics.median(r["latency_ms"]["p99"] for r in runs))
        rows.append(f"| {workers} | {latency * 1000:g} ms | {rate} | {p50} | {p99} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--claim-idle", type=float, default=15.0)
    parser.add_argument("--stall-timeout", type=float, default=30.0)
    parser.add_argument("--only", choices=["throughput", "failover"])
    parser.add_argument("--json", help="also write the results as JSON to this path")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    if results["throughput"]:
        print("\n".join(summary(results)))
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
